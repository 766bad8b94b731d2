"""Preemption's parts without an engine: the victim choice, the scheduler's "would it fit
were these given back?" simulation, and the pool's grace setting. End to end, with real
processes: tests/core/test_preemption.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from osmo_core.config import PRIORITIES, OsmoConfig, PlatformConfig, PoolConfig
from osmo_core.errors import ConfigError
from osmo_core.preemption import Candidate, choose_victims
from osmo_core.scheduler import Alloc, Scheduler
from osmo_core.spec.models import Resource
from osmo_core.wire import Node


def unit(key: str, started: float, cpu: float) -> Candidate[str]:
    return Candidate(key, started, (Alloc("local", "m", cpu, 0),))


def need(cpu: float) -> Callable[[list[Alloc]], bool]:
    """Work that fits once `cpu` cores are given back."""
    return lambda freed: sum(a.cpu for a in freed) >= cpu


def keys(chosen: list[Candidate[str]] | None) -> list[str] | None:
    return None if chosen is None else sorted(c.key for c in chosen)


def test_the_youngest_single_unit_that_makes_room_goes() -> None:
    units = [unit("old", 1, 1), unit("mid", 2, 1), unit("young", 3, 1)]
    assert keys(choose_victims(units, need(1))) == ["young"]


def test_fewest_before_youngest() -> None:
    # two small young units would do, one bigger older unit does alone: one unit goes
    units = [unit("old", 1, 1), unit("big", 2, 2), unit("young", 3, 1)]
    assert keys(choose_victims(units, need(2))) == ["big"]


def test_several_units_youngest_first_and_none_spared_that_is_needed() -> None:
    units = [unit("a", 1, 1), unit("b", 2, 1), unit("c", 3, 1), unit("d", 4, 1)]
    assert keys(choose_victims(units, need(3))) == ["b", "c", "d"]


def test_a_unit_that_does_not_help_is_spared() -> None:
    # "gpu" frees what the work does not need (fits ignores it): only the cpu units count
    units = [unit("a", 1, 2), Candidate("gpu", 5, (Alloc("local", "n", 0, 0, [0]),))]
    assert keys(choose_victims(units, need(2))) == ["a"]


def test_nothing_is_chosen_when_even_all_would_not_make_room() -> None:
    assert choose_victims([unit("a", 1, 1), unit("b", 2, 1)], need(3)) is None
    assert choose_victims([], need(0)) is None


def test_a_simulation_changes_nothing() -> None:
    pool = PoolConfig("p", "b", "any", {"any": PlatformConfig("any")})
    s = Scheduler({"p": pool})
    s.set_nodes("b", [Node("m1", cpu=2, memory=0, gpus=[0, 1]), Node("m2", cpu=2, memory=0)])
    two_gpus = Resource(cpu=1, gpu=2)
    held = [s.place("p", Resource(cpu=1, gpu=1)), s.place("p", Resource(cpu=1, gpu=1))]
    assert all(a is not None and a.node == "m1" for a in held)
    before = s.usage()
    sim = s.simulation("p", [two_gpus])
    assert not sim.fits([])
    assert not sim.fits([held[0]])  # one GPU back is not enough
    assert sim.fits([a for a in held if a is not None])
    assert sim.fits([a for a in held if a is not None])  # asked again: the same answer
    assert s.usage() == before  # nothing was taken or given back for real
    assert s.entitled("p", PRIORITIES["NORMAL"], two_gpus)
    assert not s.entitled("p", PRIORITIES["LOW"], two_gpus)


def test_preemption_grace_is_checked_with_the_config() -> None:
    def pools(grace: Any) -> OsmoConfig:
        return OsmoConfig(
            backends={"local": {"kind": "local"}},
            pools={"local": {"backend": "local", "preemption_grace": grace}},
        )

    assert pools("2m").pool_configs()["local"].preemption_grace == 120
    assert pools(0).pool_configs()["local"].preemption_grace == 0
    with pytest.raises(ConfigError) as e:
        pools(-1).pool_configs()
    assert "OsmoConfig.pools.local.preemption_grace" in str(e.value)
    assert "got -1" in str(e.value)
