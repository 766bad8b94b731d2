"""`POST workflows/{id}/tasks/{task}/done | retry` on a real Jupyter server with the headless
identity provider: the owner decides, another user gets 403, a task that is not held 409."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

# the headless server (tokens per user) that the interactive routes' tests use
from tests.interactive.jupyter.conftest import jp_server_config, pat, task_runs_dir  # noqa: F401

SPEC = """
workflow:
  name: holds
  tasks:
  - name: setup
    interactive: true
    command: [sh, -c, "echo ready > {{output}}/x"]
  - name: flaky
    debug: on-failure
    command: [sh, -c, "test -e {fixed} || exit 4"]
  - name: after
    inputs: [{task: setup}, {task: flaky}]
    command: [cat, "{{input:0}}/x"]
"""


async def _until(api: Any, path: str, cond: Any, headers: dict[str, str]) -> Any:
    deadline = time.monotonic() + 20
    while True:
        got = await api("GET", path, headers=headers)
        if cond(got):
            return got
        assert time.monotonic() < deadline, f"timed out on {path}: {got}"
        await asyncio.sleep(0.1)


async def test_done_and_retry_over_the_api(api: Any, pat: Any, task_runs_dir: Path) -> None:  # noqa: F811
    alice, bob = await pat("alice"), await pat("bob")
    fixed = task_runs_dir / "fixed"  # where the task (its own uid on this server) can look
    spec = SPEC.replace("{fixed}", str(fixed))
    wf = (await api("POST", "workflows", body={"spec": spec}, headers=alice, status=201))["id"]
    base = f"workflows/{wf}/tasks"

    # 409 before the task waits, with what it is and what would be needed
    err = await api("POST", f"{base}/after/done", headers=alice, status=409)
    assert err["message"] == (
        f"task 'after' of {wf} is WAITING; done needs an interactive task waiting for its user"
    )
    setup = await _until(api, f"{base}/setup", lambda t: t["waiting_for_user"], alice)
    assert (setup["status"], setup["hold"]) == ("RUNNING", "interactive")
    flaky = await _until(api, f"{base}/flaky", lambda t: t["held_for_debugging"], alice)
    assert (flaky["status"], flaky["exit_code"]) == ("RUNNING", 4)
    assert (await api("GET", f"workflows/{wf}", headers=alice))["status"] == "RUNNING"

    for path in (f"{base}/setup/done", f"{base}/flaky/retry"):
        err = await api("POST", path, headers=bob, status=403)
        assert "belongs to another user" in err["message"]
    err = await api("POST", f"{base}/setup/retry", headers=alice, status=409)
    assert "RUNNING (waiting for its user); retry needs a task held for debugging" in err["message"]
    err = await api("POST", f"{base}/nope/done", headers=alice, status=404)
    assert err["message"] == f"workflow '{wf}' has no task 'nope'"
    await api("POST", "workflows/nope-9/tasks/setup/done", headers=alice, status=404)

    answer = await api("POST", f"{base}/setup/done", headers=alice)
    assert answer == {"id": wf, "task": "setup", "retry_id": 0, "hold": "done"}
    err = await api("POST", f"{base}/setup/done", headers=alice, status=409)
    assert "marked done" in err["message"] or "COMPLETED" in err["message"]
    fixed.touch()
    answer = await api("POST", f"{base}/flaky/retry", headers=alice)
    assert answer == {"id": wf, "task": "flaky", "retry_id": 1, "hold": "retry"}

    done = await _until(
        api, f"workflows/{wf}", lambda w: w["status"] in ("COMPLETED", "FAILED"), alice
    )
    assert done["status"] == "COMPLETED"
    logs = await api("GET", f"{base}/after/logs", headers=alice)
    assert [ln["text"] for ln in logs] == ["ready"]
