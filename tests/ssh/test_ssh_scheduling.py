"""Pending reasons on the SSH test hosts: a retry after its only host went down says why it
waits, first its backoff, then that its platform has no machine online, until the host is back."""

from __future__ import annotations

import asyncio

from sshhosts import Hosts, until

from osmo_core.service import Service


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
