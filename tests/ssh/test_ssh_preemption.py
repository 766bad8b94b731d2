"""Preemption on the SSH test hosts: the LOW task's real process on its host gets SIGTERM (it
traps it and leaves a mark), and the HIGH work takes its host."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

from sshhosts import Hosts, until

WAIT = 60  # seconds a workflow may take here, at most


def spec(gates: Path, name: str) -> str:
    """A LOW/HIGH task of one core that waits at gate `name`; on SIGTERM it writes
    `<name>.term` (as its host's user) and exits."""
    script = (
        f"trap 'echo $(whoami) > {gates}/{name}.term; exit 0' TERM; "
        f"while [ ! -e {gates}/{name} ]; do sleep 0.05; done"
    )
    return (
        f"workflow:\n  name: {name}\n  pool: lab\n  resources: {{default: {{cpu: 1}}}}\n"
        # a preempted task is rescheduled within its retry budget (OSMO's default is 0)
        f'  tasks:\n  - {{name: t, maxRetries: 1, command: [sh, -c, "{script}"]}}\n'
    )


async def test_the_youngest_low_task_on_a_host_is_preempted_for_high_work(
    ssh_service, hosts: Hosts
) -> None:
    svc = await ssh_service(hosts={"h1": {"cpus": 1}, "h2": {"cpus": 1}})
    gates = Path(tempfile.mkdtemp(prefix="osmo-gates-"))
    gates.chmod(0o777)  # the hosts' users wait on it and write their marks there
    try:
        old = await svc.submit(spec(gates, "old"), priority="LOW")
        await until(lambda: svc.task(old, "t")["status"] == "RUNNING", what="old RUNNING")
        young = await svc.submit(spec(gates, "young"), priority="LOW")
        await until(lambda: svc.task(young, "t")["status"] == "RUNNING", what="young RUNNING")
        where = svc.task(young, "t")["node"]
        high = await svc.submit(spec(gates, "high"), priority="HIGH")
        await until(lambda: svc.task(high, "t")["status"] == "RUNNING", what="high RUNNING")
        assert svc.task(high, "t")["node"] == where  # it took the preempted task's host
        first = svc.task(young, "t")["attempts"][0]
        assert (first["status"], first["exit_code"]) == ("FAILED_PREEMPTED", 3006)
        assert first["message"] == f"preempted by HIGH workflow {high} (task t) in pool lab"
        user = {h.alias: h.user for h in hosts.hosts}[where]
        assert (gates / "young.term").read_text().strip() == user  # SIGTERM reached it there
        assert svc.task(old, "t")["status"] == "RUNNING" and not (gates / "old.term").exists()
        assert svc.task(young, "t")["status"] == "SCHEDULING"  # its retry waits for a host
        for name in ("old", "young", "high"):
            (gates / name).touch()
        for wf in (old, young, high):
            assert (await asyncio.wait_for(svc.wait(wf), WAIT)).value == "COMPLETED"
        statuses = [a["status"] for a in svc.task(young, "t")["attempts"]]
        assert statuses == ["FAILED_PREEMPTED", "COMPLETED"]
    finally:
        shutil.rmtree(gates, ignore_errors=True)
