"""The invariant: no attempt stays INITIALIZING or RUNNING without a live process behind it.

Real agent, real processes, real SQLite: the agent is killed with SIGKILL while several tasks
run, and every one of them must settle (FAILED_BACKEND_ERROR, rescheduled per policy).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from osmo_core.service import Service

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
    service = await service_factory(local={"cpus": n})
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
