"""Fault injection on SSH hosts (network namespaces with sshd, tests/ssh/sshhosts.py): the
sshd of the host running the target task dies, the whole host dies (its namespace's
processes: sshd, agent, tasks), or its network goes down; each comes back after a while."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest

from osmo_core.config import OsmoConfig
from tests.faults.conftest import FAULT_RETRIES, RunFactory
from tests.faults.harness import SEED, Fault, Run, pick_moment
from tests.faults.test_faults import cells, run_cell

PLATFORMS = {"any": {"hosts": ["h1", "h2"]}}


def _host(run: Run, hosts: Any) -> Any:
    """The host the target task's latest attempt runs on."""
    assert run.service is not None and run.wf_id is not None
    node = run.service.task(run.wf_id, run.target)["node"]
    return next(h for h in hosts.hosts if h.alias == node)


class SshFault(Fault):
    needs = "ssh"
    hold = 2.0  # longer than the backend's lost_grace (1 s)

    def __init__(self) -> None:
        self.hosts: Any = None
        self.victim: Any = None

    async def teardown(self, run: Run) -> None:
        """Leave nothing of this cell on the hosts, which every cell shares (each cell is its
        own control plane, with its own agent root there)."""
        for h in self.hosts.hosts:
            self.hosts.kill_agent(h)  # one no service could stop (host down)
            shutil.rmtree(h.agent_root(run.data_dir), ignore_errors=True)


class Sshd(SshFault):
    """SIGKILL of the host's sshd with every session it serves; the agent, detached, lives."""

    name = "ssh-sshd"

    async def inject(self, run: Run) -> None:
        self.victim = _host(run, self.hosts)
        sshd = psutil.Process(self.victim.sshd.pid)
        procs = [sshd, *sshd.children(recursive=True)]
        for p in procs:
            p.kill()
        psutil.wait_procs(procs, timeout=5)
        self.victim.sshd.wait(5)
        self.victim.sshd = None

    async def recover(self, run: Run) -> None:
        self.hosts.start_sshd(self.victim)


class HostDown(SshFault):
    """The whole host dies: sshd, agent and tasks (every process of its namespace)."""

    name = "ssh-host"

    async def inject(self, run: Run) -> None:
        self.victim = _host(run, self.hosts)
        self.hosts.kill(self.victim)

    async def recover(self, run: Run) -> None:
        self.hosts.start_sshd(self.victim)


class NetDown(SshFault):
    """The host's network goes down (its namespace's link), then up again."""

    name = "ssh-net"

    def _link(self, state: str) -> None:
        ns = self.victim.ns
        links = subprocess.run(
            ["ip", "-n", ns, "-o", "link", "show"], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        dev = next(ln.split(":")[1].strip().split("@")[0] for ln in links if " lo:" not in ln)
        subprocess.run(["ip", "-n", ns, "link", "set", dev, state], check=True, timeout=10)

    async def inject(self, run: Run) -> None:
        self.victim = _host(run, self.hosts)
        self._link("down")

    async def recover(self, run: Run) -> None:
        self._link("up")


SSH_FAULTS: list[Fault] = [Sshd(), HostDown(), NetDown()]


@pytest.mark.parametrize(("fault", "workflow", "phase"), cells(SSH_FAULTS))
async def test_ssh_fault(
    fault: SshFault, workflow: str, phase: str, fault_run: RunFactory, hosts: Any
) -> None:
    fault.hosts = hosts

    def config(data_dir: Path, store_url: str) -> OsmoConfig:
        return OsmoConfig(
            data_dir=str(data_dir),
            store_url=store_url,
            backends={"local": {"kind": "local", "idle_timeout": 60}, "lab": hosts.backend()},
            pools={"lab": {"backend": "lab", "platforms": PLATFORMS}},
            default_pool="lab",
            max_retries=FAULT_RETRIES,
        )

    run = fault_run(workflow, pick_moment(SEED, fault.name, workflow, phase), fault, config)
    run.output_roots += [h.agent_root(run.data_dir) for h in hosts.hosts]
    await run_cell(run, fault)
