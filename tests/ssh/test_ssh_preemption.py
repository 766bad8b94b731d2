"""Preemption on the SSH test hosts: the scenarios of tests/core/test_preemption.py (the same
functions, not copies) on one host, h1, with declared cores, where the preempted tasks are real
processes of the host's user that get SIGTERM there (and SIGKILL after their grace)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sshhosts import Hosts

from osmo_core.service import Service
from tests.core.test_preemption import (
    Gates,
    Start,
    scenario_gang,
    scenario_grace,
    scenario_osmo_wf1,
    scenario_reclaim,
)


@pytest.fixture
def start(ssh_service: Any, hosts: Hosts) -> Start:
    # Every test's store numbers its workflows from 1 (high-1 again), but each test's data
    # folder is its own control plane with its own agent root on h1: no attempt key repeats.
    async def start(cpus: int, pools: dict[str, dict[str, Any]] | None = None) -> Service:
        return await ssh_service(
            platforms={"h1": {"hosts": ["h1"]}},
            pools=pools or {"p": {}},
            hosts={"h1": {"cpus": cpus}},
        )

    return start


@pytest.fixture
def gates(open_dir: Path) -> Gates:
    """Gates the hosts' users can read and leave their marks in."""
    g = Gates(open_dir / "gates")
    g.root.chmod(0o777)
    return g


async def test_osmo_example_wf1_on_a_host(start: Start, gates: Gates, hosts: Hosts) -> None:
    service, wf1 = await scenario_osmo_wf1(start, gates)
    first = service.task(wf1, "t")["attempts"][0]
    assert first["node"] == "h1"
    h1 = next(h for h in hosts.hosts if h.alias == "h1")
    assert (gates.root / "wf1.term").read_text().strip() == h1.user  # SIGTERM reached it there


async def test_a_gang_on_a_host_is_preempted_whole(start: Start, gates: Gates) -> None:
    await scenario_gang(start, gates)


async def test_a_host_shared_by_two_pools_is_reclaimed(start: Start, gates: Gates) -> None:
    await scenario_reclaim(start, gates)


async def test_grace_on_a_host_lets_a_task_checkpoint(start: Start, gates: Gates) -> None:
    await scenario_grace(start, gates)
