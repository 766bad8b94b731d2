"""The example notebooks, executed headless (nbclient) in real kernels against the real server,
as a kernel started by that server would see it (OSMO_SERVER_URL / OSMO_SERVER_TOKEN)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def kernel_env(server_env, monkeypatch):
    """Kernels inherit this process's environment: the server, this checkout, its data."""
    monkeypatch.setenv("PYTHONPATH", server_env.env["PYTHONPATH"])
    return server_env


def execute(name: str) -> Any:
    nb = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
    ).execute()
    return nb


def text_of(cell: Any) -> str:
    """Everything a reader would see of a code cell: streams and text/plain or text/html."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif "data" in out:
            parts.append(out["data"].get("text/plain", "") + out["data"].get("text/html", ""))
        elif out["output_type"] == "error":
            parts.append("\n".join(out["traceback"]))
    return "".join(parts)


def cell(nb: Any, startswith: str) -> Any:
    return next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(startswith))


def widget_states(nb: Any) -> dict[str, dict[str, Any]]:
    """The widget models nbclient recorded while the notebook ran, by model id."""
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    return {k: v["state"] for k, v in state.get("state", {}).items()}


def test_quickstart(kernel_env):
    nb = execute("quickstart")
    shown = cell(nb, "wf = %osmo submit")
    (out,) = shown.outputs
    assert WIDGET_VIEW in out["data"], "the monitor widget is shown"
    assert "task1" in out["data"]["text/html"]  # and the static view for nbconvert/GitHub
    model_id = out["data"][WIDGET_VIEW]["model_id"]
    monitor = widget_states(nb)[model_id]
    # the state nbclient recorded from the kernel's comm messages: the monitor reached the end
    assert monitor["status"] == "COMPLETED"
    assert [(t["name"], t["status"]) for t in monitor["tasks"]] == [
        (f"task{i}", "COMPLETED") for i in (1, 2, 3)
    ]
    assert "'COMPLETED'" in text_of(cell(nb, "wf.wait("))
    assert text_of(cell(nb, "for t in wf.tasks")).splitlines() == [
        f"task{i} COMPLETED exit 0" for i in (1, 2, 3)
    ]
    assert "hello from task2" in text_of(cell(nb, "%osmo logs"))
    assert text_of(cell(nb, "from pathlib")).split() == ["hello", "from", "task1", "hello",
                                                         "from", "task2"]  # fmt: skip
    assert "serial-" in text_of(cell(nb, "%osmo list"))


def test_cells_as_tasks(kernel_env):
    nb = execute("cells_as_tasks")
    assert text_of(cell(nb, "%%osmo task prep")).strip() == "recorded task prep"
    exported = text_of(cell(nb, "%osmo export"))
    assert "name: fit-line" in exported and "command:\n    - python3" in exported
    assert "'COMPLETED'" in text_of(cell(nb, "wf.wait("))
    assert text_of(cell(nb, "%osmo logs")).strip() == "slope=2.00 intercept=1.00"


def test_python_client(kernel_env):
    nb = execute("python_client")
    assert "<osmo_jupyter.Client server http://127.0.0.1:" in text_of(cell(nb, "from osmo_jupyter"))
    followed = text_of(cell(nb, "for line in wf.logs")).splitlines()
    assert followed == ["hi from shard 0 of 2", "hi from shard 1 of 2"]
    lines = text_of(cell(nb, "print(wf.wait")).splitlines()
    assert lines[0] == "COMPLETED" and [ln.split()[:2] for ln in lines[1:]] == [
        ["shard-0", "COMPLETED"],
        ["shard-1", "COMPLETED"],
        ["gather", "COMPLETED"],
    ]
    assert "/runs/py-client-" in text_of(cell(nb, "wf.outputs"))
    refused = text_of(cell(nb, "from osmo_core.errors"))
    assert "invalid workflow spec" in refused and "workflow.tasks[0].command" in refused
    assert text_of(cell(nb, "sleeper = ")).strip() == "FAILED_CANCELED"
