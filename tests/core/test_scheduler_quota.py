"""Quotas: what NORMAL/HIGH work of a pool may hold (`Scheduler.entitled`), and their config."""

from __future__ import annotations

import pytest

from osmo_core.config import PRIORITIES, load_config
from osmo_core.errors import ConfigError
from osmo_core.scheduler import Scheduler
from osmo_core.spec.models import Resource
from osmo_core.wire import Node

GI = 2**30
HIGH, NORMAL, LOW = PRIORITIES["HIGH"], PRIORITIES["NORMAL"], PRIORITIES["LOW"]


def gpu_pools(**scheduling: object) -> Scheduler:
    config = load_config(
        backends={"local": {"kind": "local"}},
        pools={"gpu": {"backend": "local", **scheduling}},
        default_pool="gpu",
    )
    s = Scheduler(config.pool_configs())
    s.set_nodes(
        "local", [Node(f"m{i}", cpu=16, memory=64 * GI, gpus=list(range(8))) for i in (1, 2)]
    )
    return s


def gpus(n: int) -> Resource:
    return Resource(cpu=1, gpu=n)


def test_normal_and_high_are_entitled_up_to_the_quota_and_low_never() -> None:
    s = gpu_pools(quota={"gpu": 8})
    assert s.entitled("gpu", NORMAL, gpus(8)) and not s.entitled("gpu", NORMAL, gpus(9))
    assert not s.entitled("gpu", LOW, gpus(1))
    a = s.place("gpu", gpus(6), priority=HIGH, user="ann")
    assert a is not None and s.guaranteed("gpu").gpu == 6
    assert s.entitled("gpu", NORMAL, gpus(2)) and not s.entitled("gpu", NORMAL, gpus(3))
    low = s.place("gpu", gpus(8), priority=LOW)  # LOW holds machines but not the quota
    assert low is not None and s.held("gpu").gpu == 14 and s.guaranteed("gpu").gpu == 6
    assert s.entitled("gpu", HIGH, gpus(2))
    s.release(a)
    assert s.guaranteed("gpu").gpu == 0 and s.entitled("gpu", NORMAL, gpus(8))


def test_a_pool_without_quota_entitles_any_normal_work() -> None:
    s = gpu_pools()
    assert s.entitled("gpu", NORMAL, gpus(1000)) and not s.entitled("gpu", LOW, gpus(0))


@pytest.mark.parametrize(
    ("scheduling", "field", "words"),
    [
        ({"quota": {"gpu": -1}}, "OsmoConfig.pools.gpu.quota.gpu", "whole number"),
        ({"quota": {"gpus": 8}}, "OsmoConfig.pools.gpu.quota", "gpu, cpu, memory"),
        ({"quota": {"memory": "lots"}}, "OsmoConfig.pools.gpu.quota.memory", "not a size"),
        ({"fair_share": "lottery"}, "OsmoConfig.pools.gpu.fair_share", "lottery"),
        ({"weights": {"ann": 0}}, "OsmoConfig.pools.gpu.weights", "number > 0"),
        ({"role_weights": {"admin": -2}}, "OsmoConfig.pools.gpu.role_weights", "number > 0"),
        ({"role_weights": {"boss": 2}}, "OsmoConfig.pools.gpu.role_weights.boss", "unknown role"),
        ({"limits": {"ann": {"max_jobs": 1}}}, "OsmoConfig.pools.gpu.limits.ann", "max_tasks"),
        ({"limits": {"*": {"max_gpus": 1.5}}}, "OsmoConfig.pools.gpu.limits.*.max_gpus", "whole"),
    ],
)
def test_bad_scheduling_settings_fail_at_start_naming_the_trait(
    scheduling: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(ConfigError) as e:
        gpu_pools(**scheduling)
    [problem] = e.value.problems
    assert problem.field == field and words in problem.message
