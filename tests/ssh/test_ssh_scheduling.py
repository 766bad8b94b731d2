"""Scheduling on the SSH test hosts: a retry after its only host went down says why it waits,
first its backoff, then that its platform has no machine online, until the host is back; and
tests/core/test_scheduling.py's fair share and user limits, on a host's processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sshhosts import Hosts, until

from osmo_core.service import Service
from tests.core.test_scheduling import Gates, scenario_fair_share_and_limits


def reasons_of(svc: Service, wf: str) -> list[str]:
    """The reasons the task's retry was announced with, in order."""
    return [
        e["payload"]["reason"]
        for e in svc.store.events_since(0, wf)
        if e["type"] == "task.pending" and e["retry_id"] == 1
    ]


async def test_a_retry_waiting_for_its_host_to_come_back_says_why(
    ssh_service, hosts: Hosts
) -> None:
    svc = await ssh_service(platforms={"one": {"hosts": ["h1"]}})
    wf = await svc.submit(
        "workflow:\n  name: back\n  pool: lab\n  tasks:\n"
        "  - {name: main, maxRetries: 1, command: [sh, -c, 'sleep 3']}\n"
    )
    await until(lambda: svc.task(wf, "main")["status"] == "RUNNING", what="RUNNING")
    h1 = hosts.hosts[0]
    hosts.kill(h1)
    try:
        await until(lambda: len(reasons_of(svc, wf)) >= 2, what="the retry's reasons")
        backoff, offline = reasons_of(svc, wf)[:2]
        assert backoff.startswith("retry 1 after FAILED_BACKEND_ERROR: backing off 0.5s until ")
        assert offline == "platform one has no machine online"
        assert svc.task(wf, "main")["pending_reason"] == offline  # as read now, and stored
    finally:
        hosts.start_sshd(h1)
    assert await asyncio.wait_for(svc.wait(wf), 60) == "COMPLETED"
    assert [a["status"] for a in svc.task(wf, "main")["attempts"]] == [
        "FAILED_BACKEND_ERROR",
        "COMPLETED",
    ]


@pytest.fixture
def gates(open_dir: Path) -> Iterator[Gates]:
    """Gates the hosts' users can read."""
    g = Gates(open_dir / "gates")
    yield g
    for name in g.ids:  # a failed test leaves no task waiting
        g.open(name)


async def test_fair_share_and_user_limits_on_a_host(ssh_service: Any, gates: Gates) -> None:
    async def start(settings: dict[str, Any]) -> Service:
        return await ssh_service(
            platforms={"h1": {"hosts": ["h1"]}},
            pools={"gpu": settings},
            hosts={"h1": {"gpus": [0, 1], "cpus": 4}},
        )

    await scenario_fair_share_and_limits(start, gates)
