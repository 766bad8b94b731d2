"""`jupyter osmo`: the headless team server, as an admin starts it (a subprocess)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.conftest import free_port, osmo_cli

TOKEN = "headless-test-token"


def jupyter_osmo(*args: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from osmo_jupyter.app import main; main()",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={TOKEN}",
        *args,
    ]


def call(url: str, body: dict | None = None, token: str = TOKEN) -> tuple[int, dict]:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body else None,
        headers={"Authorization": f"token {token}"},
        method="POST" if body else "GET",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def ignore_sigint() -> None:
    """As a shell's background job (or nohup) starts a command: SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def start_server(
    env: dict[str, str], port: int, command: list[str] | None = None, sigint_ignored: bool = False
) -> subprocess.Popen[str]:
    """`jupyter osmo` (or `command`) on `port`, once it answers its health check."""
    proc = subprocess.Popen(
        (command or jupyter_osmo()) + [f"--port={port}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=ignore_sigint if sigint_ignored else None,
    )
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        try:
            if call(f"http://127.0.0.1:{port}/osmo/api/v1/health")[0] == 200:
                return proc
        except OSError:
            pass
        assert time.monotonic() < deadline, "server did not come up"
        time.sleep(0.2)


def test_headless_server_runs_workflows(osmo_env: dict[str, str]) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/osmo/api/v1"
    proc = start_server(osmo_env, port)
    try:
        spec = "workflow:\n  name: hl\n  tasks:\n  - name: t\n    command: [echo, headless]\n"
        status, body = call(f"{base}/workflows", {"spec": spec})
        assert status == 201 and body["id"] == "hl-1"
        for _ in range(100):
            status, wf = call(f"{base}/workflows/hl-1")
            if wf["status"] == "COMPLETED":
                break
            time.sleep(0.1)
        assert wf["status"] == "COMPLETED"
        status, lines = call(f"{base}/workflows/hl-1/tasks/t/logs")
        assert [ln["text"] for ln in lines] == ["headless"]
    finally:
        proc.terminate()
        proc.wait(20)


def test_osmo_server_is_the_headless_server(osmo_env: dict[str, str]) -> None:
    port = free_port()
    command = osmo_cli("server", *jupyter_osmo()[3:])  # the same flags
    proc = start_server(osmo_env, port, command)
    try:
        status, me = call(f"http://127.0.0.1:{port}/osmo/api/v1/me")
        assert status == 200 and me["role"] == "admin" and me["via"] == "jupyter"
        # headless: the osmo identity provider is on, so bearer tokens are understood
        status, err = call(f"http://127.0.0.1:{port}/osmo/api/v1/me", token="osmo_x")
        assert status == 401 and err["message"] == "unknown personal access token"
    finally:
        proc.terminate()
        proc.wait(20)


def test_sigint_stops_it_even_where_its_parent_ignored_sigint(osmo_env: dict[str, str]) -> None:
    """JupyterHub stops a managed service with SIGINT, and sends SIGTERM only 30 s later; a
    Hub started as a shell's background job or under nohup passes SIGINT on ignored (a CI run
    started so saw the service outlive its Hub)."""
    proc = start_server(osmo_env, free_port(), sigint_ignored=True)
    try:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "received signal 2, stopping" in out


def test_bad_config_refuses_to_start(osmo_env: dict[str, str]) -> None:
    r = subprocess.run(
        jupyter_osmo(f"--port={free_port()}", "--OsmoConfig.default_pool=nope"),
        env=osmo_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0
    assert "default_pool 'nope' is not a configured pool" in r.stdout + r.stderr


async def test_server_killed_mid_workflow_loses_nothing(osmo_env: dict[str, str]) -> None:
    """SIGKILL the server while a task runs; a new server on the same data directory adopts
    the task, the workflow completes, and the event stream resumes from the last id seen."""
    from osmo_core.client import Client

    port = free_port()
    client = Client(f"http://127.0.0.1:{port}", TOKEN)
    spec = """workflow:
  name: survivor
  tasks:
  - name: slow
    command: [sh, -c, "sleep 2; echo slow done"]
  - name: after
    command: [echo, after]
    inputs: [{task: slow}]
"""
    proc = start_server(osmo_env, port)
    try:
        wf_id = client.post("workflows", {"spec": spec})["id"]
        before = []
        async for ev in client.stream("events", workflow_id=wf_id, logs="false"):
            before.append(ev)
            if (ev["task"], ev["status"]) == ("slow", "RUNNING"):
                break
        proc.kill()
        proc.wait(10)
        proc = start_server(osmo_env, port)
        after = []
        async for ev in client.stream("events", workflow_id=wf_id, after=before[-1]["id"]):
            if ev["type"] == "task.log":
                continue
            after.append(ev)
            if ev["type"] == "workflow.status" and ev["status"] == "COMPLETED":
                break
    finally:
        proc.terminate()
        proc.wait(20)
        proc = start_server(osmo_env, port)  # read the outcome from a fresh server
    try:
        ids = [e["id"] for e in before + after]
        assert ids == list(range(ids[0], ids[0] + len(ids))), "no event lost or repeated"
        wf = client.get(f"workflows/{wf_id}")
        assert wf["status"] == "COMPLETED"
        assert [(t["name"], t["retry_id"], t["status"]) for t in wf["tasks"]] == [
            ("slow", 0, "COMPLETED"),
            ("after", 0, "COMPLETED"),
        ], "the running task was adopted, not rerun"
        logs = client.get(f"workflows/{wf_id}/tasks/slow/logs")
        assert "slow done" in [ln["text"] for ln in logs]
    finally:
        proc.terminate()
        proc.wait(20)
