"""osmo_jupyter.Client against a real `jupyter osmo` server (and the embedded default)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from osmo_core.client import ApiError, Credentials
from osmo_core.errors import SpecError
from osmo_jupyter import Client
from osmo_jupyter.specfile import with_workflow_name
from osmo_jupyter.widgets import WorkflowMonitor

SPECS = Path(__file__).parent / "specs"


def test_submit_wait_tasks_logs_outputs(server_env, wf_name):
    client = Client()  # found through OSMO_SERVER_URL / OSMO_SERVER_TOKEN, as in a kernel
    assert client.transport.kind == "server" and client.url == server_env.url
    wf = client.submit(SPECS / "chain.yaml", set_values={"greeting": "hi"}, name=wf_name)
    assert wf.id == f"{wf_name}-1"
    assert wf.wait(timeout=60) == "COMPLETED"
    assert wf.status == "COMPLETED"
    assert [(t.name, t.status, t.exit_code, t.retry_id) for t in wf.tasks] == [
        ("make", "COMPLETED", 0, 0),
        ("use", "COMPLETED", 0, 0),
    ]
    assert all(t.duration is not None and t.duration >= 0 for t in wf.tasks)
    assert wf.logs("use") == ["hi from make"]
    out = wf.outputs("make")
    assert out is not None and (Path(out) / "data.txt").read_text() == "hi from make\n"
    assert wf_name in [w["name"] for w in client.list(limit=100)]


def test_follow_yields_lines_as_they_come_until_the_attempt_ends(server_env, wf_name):
    wf = Client().submit(SPECS / "slow.yaml", set_values={"lines": 6}, name=wf_name)
    seen: list[tuple[float, str]] = []
    for text in wf.logs("ticker", follow=True, timeout=30):
        seen.append((time.monotonic(), text))
    assert [t for _, t in seen] == [f"tick {i}" for i in range(1, 7)]
    # live, not read at the end: the lines arrived spread over the task's ~1 s run
    assert seen[-1][0] - seen[0][0] > 0.4
    assert wf.wait(timeout=30) == "COMPLETED"


def test_cancel(server_env, wf_name):
    wf = Client().submit(SPECS / "slow.yaml", set_values={"lines": 300}, name=wf_name)
    deadline = time.monotonic() + 30
    while wf.tasks[0].status != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    wf.cancel()
    assert wf.wait(timeout=30) == "FAILED_CANCELED"


def test_validate_answers_the_pool_and_runs_nothing(server_env, wf_name):
    client = Client()
    spec = with_workflow_name((SPECS / "chain.yaml").read_text(), wf_name)
    assert client.validate(spec, set_values={"greeting": "x"}) == "local"
    with pytest.raises(SpecError):
        client.validate(SPECS / "bad.yaml")
    assert wf_name not in {w["name"] for w in client.list(limit=1000)}


def test_bad_spec_is_a_located_error(server_env):
    with pytest.raises(SpecError) as e:
        Client().submit(str(SPECS / "bad.yaml"))
    (problem,) = e.value.problems
    assert problem.file == str(SPECS / "bad.yaml") and problem.line == 6
    assert problem.field == "workflow.tasks[0].exec_timeout"
    assert "unknown field 'exec_timeout'" in str(e.value)


def test_unknown_workflow_and_unreadable_file(server_env):
    client = Client()
    with pytest.raises(ApiError) as e:
        client.workflow("nope-1")
    assert e.value.status == 404
    with pytest.raises(Exception, match=r"cannot read missing\.yaml"):
        client.submit("missing.yaml")


def test_explicit_url_and_token_win_and_a_wrong_token_is_refused(server, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(server.home.parent / "config"))
    assert Client(server.url, token=server.token).list(limit=1) is not None
    with pytest.raises(ApiError) as e:
        Client(server.url, token="wrong").list()
    assert e.value.status == 401 and "authentication required" in e.value.message


def test_stored_login_is_used_without_environment(server, tmp_path, monkeypatch, wf_name):
    monkeypatch.delenv("OSMO_SERVER_URL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    Credentials(server.url, server.token).save()
    client = Client()
    assert client.url == server.url
    wf = client.submit((SPECS / "chain.yaml").read_text(), name=wf_name)
    assert wf.wait(timeout=60) == "COMPLETED"


def test_with_workflow_name_keeps_lines():
    text = (SPECS / "bad.yaml").read_text()
    renamed = with_workflow_name(text, "other")
    assert renamed.splitlines()[1] == '  name: "other"'
    assert len(renamed.splitlines()) == len(text.splitlines())
    assert with_workflow_name({"workflow": {"tasks": []}}, "x") == {
        "workflow": {"tasks": [], "name": "x"}
    }


def test_embedded_default_without_server_or_login(tmp_path, monkeypatch, wf_name):
    from osmo_jupyter import client as client_module
    from tests.notebook.conftest import stop_agent

    monkeypatch.delenv("OSMO_SERVER_URL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("OSMO_HOME", str(tmp_path / "osmo"))
    monkeypatch.setattr(client_module, "_embedded", None)
    client = Client()
    try:
        assert client.transport.kind == "embedded"
        assert Client().transport is client.transport  # one engine per process
        wf = client.submit(SPECS / "chain.yaml", name=wf_name)
        assert wf.wait(timeout=60) == "COMPLETED"
        assert wf.logs("use") == ["hello from make"]
        assert list(wf.logs("make", follow=True, timeout=10)) == ["made"]
        assert wf.task("use")["attempts"][0]["exit_code"] == 0
        again = wf.restart()
        monitor = WorkflowMonitor(again)  # live updates from the in-process engine too
        assert again.id == f"{wf_name}-2" and again.wait(timeout=60) == "COMPLETED"
        deadline = time.monotonic() + 10
        while monitor.tasks[-1]["last_lines"] != ["hello from make"]:
            assert time.monotonic() < deadline, monitor.tasks
            time.sleep(0.02)
        assert monitor.status == "COMPLETED"
        monitor.close()
        # OSMO's restart, from `use`: `make` is reused (not run), `use` reads its output
        third = again.restart(from_task="use")
        assert third.wait(timeout=60) == "COMPLETED"
        assert third.task("make")["reused_from"] == f"{again.id}/make/0"
        assert third.logs("use") == ["hello from make"]
        with pytest.raises(SpecError) as e:
            client.submit(SPECS / "bad.yaml")
        assert e.value.problems[0].file == str(SPECS / "bad.yaml")
    finally:
        client.transport.close()  # type: ignore[attr-defined]
        stop_agent(tmp_path / "osmo")


def test_a_kernel_started_by_the_server_finds_it(server, wf_name):
    import asyncio

    from tests.notebook.kernels import run_in_server_kernel

    code = (
        "import os\n"
        "from osmo_jupyter import Client\n"
        "c = Client()\n"
        "print(c.transport.kind, c.url == os.environ['OSMO_SERVER_URL'])\n"
        # the magics are there without %load_ext
        "print('osmo' in get_ipython().magics_manager.magics['line'])\n"
        f"wf = c.submit({str(SPECS / 'chain.yaml')!r}, name={wf_name!r})\n"
        "print(wf.wait(timeout=60))\n"
    )
    out = asyncio.run(run_in_server_kernel(server.url, server.token, code))
    assert out.split() == ["server", "True", "True", "COMPLETED"]


def test_kernel_startup_loads_the_magics_and_chains_the_users_file(tmp_path, monkeypatch):
    import os
    from types import SimpleNamespace

    from osmo_jupyter.server_env import export_server_environment

    for var in ("OSMO_SERVER_URL", "OSMO_SERVER_TOKEN", "OSMO_USER_PYTHONSTARTUP"):
        monkeypatch.delenv(var, raising=False)  # restored after the test
    mine = tmp_path / "startup.py"
    mine.write_text("USERS_OWN_STARTUP = True\n")
    monkeypatch.setenv("PYTHONSTARTUP", str(mine))
    token = SimpleNamespace(token="t")
    app = SimpleNamespace(ip="", port=1, certfile="", base_url="/", identity_provider=token)
    export_server_environment(app)
    export_server_environment(app)  # a second call does not lose the user's file
    assert os.environ["OSMO_USER_PYTHONSTARTUP"] == str(mine)
    # a kernel started with this environment, as the server's kernels are
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", env=dict(os.environ))
    try:
        out: list[str] = []
        code = "print(USERS_OWN_STARTUP, 'osmo' in get_ipython().magics_manager.magics['line'])"
        reply = kc.execute_interactive(
            code,
            timeout=60,
            output_hook=lambda m: out.append(m["content"].get("text", "")),
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        assert "".join(out).split() == ["True", "True"]
        out.clear()  # a notebook's own %load_ext (the quickstart's first cell) says nothing
        reply = kc.execute_interactive(
            "%load_ext osmo_jupyter",
            timeout=60,
            output_hook=lambda m: out.append(m["content"].get("text", "")),
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        assert "".join(out) == ""
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
