"""Held tasks from a notebook and a terminal, against the real server: `%osmo done|retry`,
`osmo_jupyter.Client().done|retry` and `osmo workflow done|retry`."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from osmo_jupyter import Client
from osmo_jupyter.magics import OsmoMagics
from tests.conftest import osmo_cli

SPEC = """
workflow:
  name: {name}
  tasks:
  - name: setup
    interactive: true
    command: [sh, -c, "echo ready > {{{{output}}}}/x"]
  - name: flaky
    debug: on-failure
    command: [sh, -c, "test -e {fixed} || exit 4"]
  - name: after
    inputs: [{{task: setup}}, {{task: flaky}}]
    command: [cat, "{{{{input:0}}}}/x"]
"""


@pytest.fixture
def shell(server_env: Any) -> InteractiveShell:
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "osmo_jupyter")
    ip.register_magics(OsmoMagics(ip))
    return ip


def _until_held(client: Client, wf: str, task: str, flag: str) -> None:
    deadline = time.monotonic() + 20
    while not client.workflow(wf).task(task)[flag]:
        assert time.monotonic() < deadline, f"{task} never {flag}"
        time.sleep(0.1)


def test_done_and_retry_magics(shell: InteractiveShell, wf_name: str, tmp_path: Path, capsys):
    client = Client()
    fixed = tmp_path / "fixed"
    wf = client.submit(SPEC.format(name=wf_name, fixed=fixed))
    _until_held(client, wf.id, "setup", "waiting_for_user")
    _until_held(client, wf.id, "flaky", "held_for_debugging")
    with pytest.raises(UsageError, match=r"name the task as WF/TASK or WF TASK \(or run it in a"):
        shell.run_line_magic("osmo", "done")
    with pytest.raises(UsageError, match="retry needs a task held for debugging"):
        shell.run_line_magic("osmo", f"retry {wf.id}/setup")
    shell.run_line_magic("osmo", f"done {wf.id}/setup")
    assert capsys.readouterr().out.startswith(f"{wf.id}/setup: marked done (attempt 1)")
    fixed.touch()
    shell.run_line_magic("osmo", f"retry {wf.id} flaky")
    assert capsys.readouterr().out == f"{wf.id}/flaky: retrying as attempt 2\n"
    assert wf.wait(timeout=30) == "COMPLETED"
    assert wf.logs("after") == ["ready"]


def test_done_and_retry_from_the_client_and_the_cli(server_env: Any, wf_name: str, tmp_path: Path):
    env = {**server_env.env, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    login = osmo_cli("login", server_env.url, "--token", server_env.token)
    subprocess.run(login, env=env, check=True, capture_output=True, timeout=60)
    client = Client()
    fixed = tmp_path / "fixed"
    wf = client.submit(SPEC.format(name=wf_name, fixed=fixed))
    _until_held(client, wf.id, "flaky", "held_for_debugging")
    cli = subprocess.run(
        osmo_cli("workflow", "done", wf.id, "flaky"), env=env, capture_output=True, text=True
    )
    assert cli.returncode == 4  # a conflict
    assert "done needs an interactive task waiting for its user" in cli.stderr
    fixed.touch()
    cli = subprocess.run(
        osmo_cli("workflow", "retry", wf.id, "flaky"), env=env, capture_output=True, text=True
    )
    assert (cli.returncode, cli.stdout) == (0, f"{wf.id} flaky: retrying (retry 1)\n")
    _until_held(client, wf.id, "setup", "waiting_for_user")
    assert client.done(wf.id, "setup")["hold"] == "done"
    assert wf.wait(timeout=30) == "COMPLETED"
