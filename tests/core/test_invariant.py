"""The invariant: no attempt stays INITIALIZING or RUNNING without a live process behind it.

Real agent, real processes, real SQLite: the agent is killed with SIGKILL while several tasks
run, and every one of them must settle (FAILED_BACKEND_ERROR, rescheduled per policy).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from osmo_core.service import Service
from tests.conftest import osmo_cli

BOUND = 15.0  # seconds from the kill to every attempt settled (reconnect + resync, loaded CI)


def task(name: str, script: str) -> dict:
    return {"name": name, "command": ["sh", "-c", script]}


async def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def statuses(service: Service, wf_id: str) -> list[tuple[str, int, str]]:
    return [(t["name"], t["retry_id"], t["status"]) for t in service.get(wf_id)["tasks"]]


@pytest.mark.parametrize("n", [2, 3])
async def test_sigkill_of_the_agent_settles_every_running_task(
    service_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int
) -> None:
    # Usage samples flow while the tasks run (the agent the service spawns reads this): a
    # sample must not make the link forget an attempt whose end it has not delivered.
    monkeypatch.setenv("OSMO_METRICS_INTERVAL", "0.1")
    # the link alone; a budget for the lost attempts' retries (OSMO's default is 0)
    service = await service_factory(local={"cpus": n}, reconcile_interval=0, max_retries=1)
    marks = tmp_path / "marks"
    marks.mkdir()
    # Retry 0 sleeps (and is lost with its agent); retry 1 completes at once.
    script = f'touch {marks}/$OSMO_TASK_NAME.$OSMO_RETRY_ID; [ "$OSMO_RETRY_ID" -ge 1 ] || sleep 60'
    tasks = [task(f"t{i}", script) for i in range(n)]
    spec = {"workflow": {"name": "many", "resources": {"default": {"cpu": 1}}, "tasks": tasks}}
    wf_id = await service.submit(spec)
    await wait_for(lambda: len(list(marks.glob("*.0"))) == n, 20, "every task to start")
    await wait_for(
        lambda: [s for _, _, s in statuses(service, wf_id)] == ["RUNNING"] * n, 10, "RUNNING"
    )
    await asyncio.sleep(0.5)  # some usage samples arrive
    agent_pid = int((Path(service.config.data_dir) / "agent.pid").read_text())
    os.kill(agent_pid, signal.SIGKILL)
    killed = time.monotonic()
    status = await asyncio.wait_for(service.wait(wf_id), BOUND + 20)
    took = time.monotonic() - killed
    tries = sorted(statuses(service, wf_id))
    assert tries == sorted(
        [(f"t{i}", 0, "FAILED_BACKEND_ERROR") for i in range(n)]
        + [(f"t{i}", 1, "COMPLETED") for i in range(n)]
    ), tries
    assert status.value == "COMPLETED"
    assert took < BOUND, f"settled after {took:.1f} s"


async def _running_then_unseen_loss(service: Service, tmp_path: Path) -> tuple[str, str]:
    """One task RUNNING whose agent dies while its link no longer watches it (the bug class
    the engine's own check exists for): the new agent records the attempt lost, and nothing
    tells the engine. Returns (workflow id, attempt key)."""
    mark = tmp_path / "mark"
    script = f'echo "$OSMO_RETRY_ID" >> {mark}; [ "$OSMO_RETRY_ID" -ge 1 ] || sleep 60'
    spec = {
        "workflow": {
            "name": "unseen",
            "resources": {"default": {"cpu": 1}},
            "tasks": [task("t", script)],
        }
    }
    wf_id = await service.submit(spec)
    await wait_for(lambda: statuses(service, wf_id) == [("t", 0, "RUNNING")], 20, "RUNNING")
    backend = service.backends["local"]
    key = f"{wf_id}/t/0"
    await backend.forget(key)
    old = backend.agent["pid"]
    os.kill(old, signal.SIGKILL)
    exit_json = Path(service.config.data_dir) / "runs" / key / "exit.json"
    await wait_for(
        lambda: exit_json.exists() and backend.connected_now and backend.agent["pid"] != old,
        20,
        "a new agent to record the attempt lost",
    )
    if service.config.reconcile_interval == 0:  # no pass: nothing else settles it
        await asyncio.sleep(0.3)  # the resync is done
        assert statuses(service, wf_id) == [("t", 0, "RUNNING")]
    return wf_id, key


def free_cpu(service: Service) -> float:
    return sum(float(n["free_cpu"]) for n in service.scheduler.usage())


async def test_a_reconciliation_pass_settles_a_running_task_without_a_process(
    service_factory, tmp_path: Path
) -> None:
    service = await service_factory(local={"cpus": 2}, reconcile_interval=0, max_retries=1)
    wf_id, _ = await _running_then_unseen_loss(service, tmp_path)
    assert free_cpu(service) == 1
    assert await service.engine.reconcile() == 1
    status = await asyncio.wait_for(service.wait(wf_id), 20)
    first, second = service.get(wf_id)["tasks"]
    assert (first["status"], second["status"], status.value) == (
        "FAILED_BACKEND_ERROR",
        "COMPLETED",
        "COMPLETED",
    )
    assert "agent" in first["message"] and "died" in first["message"], first
    assert (tmp_path / "mark").read_text().split() == ["0", "1"]  # rescheduled once
    assert free_cpu(service) == 2  # capacity back to the total
    assert service.engine.reconciled.settled == 1
    assert await service.engine.reconcile() == 0  # nothing left to settle


async def test_reconciliation_runs_periodically(service_factory, tmp_path: Path) -> None:
    service = await service_factory(local={"cpus": 2}, reconcile_interval=0.5, max_retries=1)
    wf_id, _ = await _running_then_unseen_loss(service, tmp_path)
    status = await asyncio.wait_for(service.wait(wf_id), 10)
    assert [s for _, _, s in statuses(service, wf_id)] == ["FAILED_BACKEND_ERROR", "COMPLETED"]
    assert status.value == "COMPLETED"
    assert service.engine.reconciled.passes >= 1


async def test_cancel_of_a_task_whose_process_is_gone_ends_at_once(
    service_factory, tmp_path: Path
) -> None:
    service = await service_factory(local={"cpus": 2}, reconcile_interval=0)
    wf_id, _ = await _running_then_unseen_loss(service, tmp_path)
    t0 = time.monotonic()
    await asyncio.wait_for(service.cancel(wf_id), 10)  # answers while its tasks stop
    status = await asyncio.wait_for(service.wait(wf_id), 5)
    assert status.value == "FAILED_CANCELED"
    took = time.monotonic() - t0
    [only] = service.get(wf_id)["tasks"]
    assert (only["status"], only["message"]) == ("FAILED_CANCELED", "canceled by user")
    assert took < 3, f"cancel took {took:.1f} s"
    assert free_cpu(service) == 2


def test_osmo_workflow_run_settles_when_its_agent_is_killed(
    osmo_env: dict[str, str], tmp_path: Path
) -> None:
    """`osmo workflow run` (embedded engine) with its agent killed mid-task: the run reconnects
    to a new agent, the task is retried and the run ends, with no `resume` from anyone."""
    env = {**osmo_env, "OSMO_METRICS_INTERVAL": "0.1"}  # usage samples flow, as in real runs
    marks = tmp_path / "marks"
    marks.mkdir()
    f = tmp_path / "two.yaml"
    script = f'touch {marks}/$OSMO_TASK_NAME.$OSMO_RETRY_ID; [ "$OSMO_RETRY_ID" -ge 1 ] || sleep 60'
    f.write_text(
        "workflow:\n  name: two\n  tasks:\n"
        + "".join(
            f"  - name: t{i}\n    maxRetries: 1\n    command: [sh, -c, '{script}']\n"
            for i in range(2)
        )
    )
    proc = subprocess.Popen(
        osmo_cli("workflow", "run", str(f)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while len(list(marks.glob("*.0"))) < 2:
            assert time.monotonic() < deadline and proc.poll() is None, "tasks did not start"
            time.sleep(0.05)
        time.sleep(0.5)  # some usage samples reach the run
        agent_pid = int((Path(osmo_env["OSMO_HOME"]) / "agent.pid").read_text())
        os.kill(agent_pid, signal.SIGKILL)
        killed = time.monotonic()
        out, err = proc.communicate(timeout=BOUND + 20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    took = time.monotonic() - killed
    assert proc.returncode == 0, (out, err)
    assert "two-1: COMPLETED" in out, out
    assert sorted(p.name for p in marks.iterdir()) == ["t0.0", "t0.1", "t1.0", "t1.1"]
    assert took < BOUND, f"the run ended {took:.1f} s after the kill"


async def test_health_is_degraded_while_a_backend_with_tasks_is_disconnected(
    service_factory, tmp_path: Path
) -> None:
    service = await service_factory(local={"cpus": 2})
    spec = {"workflow": {"name": "h", "tasks": [task("t", f"touch {tmp_path}/m; sleep 60")]}}
    wf_id = await service.submit(spec)
    await wait_for(lambda: statuses(service, wf_id) == [("t", 0, "RUNNING")], 20, "RUNNING")
    healthy = await service.health()
    assert (healthy["status"], healthy["problems"]) == ("ok", [])
    assert healthy["backends"][0]["tasks"] == 1
    backend = service.backends["local"]
    await backend.stop()  # the link goes; the agent and its task run on
    try:
        sick = await service.health()
        assert sick["status"] == "degraded"
        assert sick["problems"] == ["backend 'local' is not connected; 1 task(s) on it"]
        assert sick["backends"][0]["connected"] is False
    finally:
        await backend.start(service.engine._on_backend_event)
    assert (await service.health())["status"] == "ok"
    await service.cancel(wf_id)
    assert (await asyncio.wait_for(service.wait(wf_id), 20)).value == "FAILED_CANCELED"


async def test_an_exit_that_arrives_while_a_pass_asks_is_not_settled_again(
    service_factory, caplog: pytest.LogCaptureFixture
) -> None:
    """The pass reads what the engine launched, then asks the backend what runs: a task that
    exits in between is missing from the answer, but its exit event is applied meanwhile. The
    pass must not settle it a second time, nor log that it had no process behind it."""
    service = await service_factory(local={"cpus": 1}, reconcile_interval=0)
    spec = {"workflow": {"name": "race", "tasks": [task("t", "sleep 0.5")]}}
    wf_id = await service.submit(spec)
    await wait_for(lambda: statuses(service, wf_id) == [("t", 0, "RUNNING")], 20, "RUNNING")
    backend = service.backends["local"]
    real_running = backend.running

    async def running_after_the_exit() -> object:  # the race, made certain
        await wait_for(lambda: statuses(service, wf_id) == [("t", 0, "COMPLETED")], 20, "end")
        return await real_running()

    backend.running = running_after_the_exit  # type: ignore[method-assign]
    with caplog.at_level("WARNING", logger="osmo.engine"):
        assert await service.engine.reconcile() == 0
    assert "no process behind it" not in caplog.text
    assert service.engine.reconciled.settled == 0
    assert (await service.wait(wf_id)).value == "COMPLETED"
