"""Scheduling scenarios through the engine on the embedded default (issue 17): real agent,
real processes, real SQLite. The local machine declares GPUs, so a pool of several GPUs runs
here; each task waits for its gate file, so the test decides when each one ends.

The exact start order is read from the stored `task.status` events, and every waiting task's
reason from the API's model (`Service.get` / `Service.task`). tests/core/test_waitqueue.py
covers the same rules without the engine, on many machines.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from osmo_core.cli.common import Output
from osmo_core.cli.workflow.remote import show_event
from osmo_core.errors import PlacementError
from osmo_core.service import Service
from tests.conftest import make_config

GPU_TASK = {"gpu": 1, "cpu": 0.1}


class Gates:
    """Workflows of gated tasks: `open(name)` lets the tasks of that workflow end,
    `open(f"{name}.{task}")` one of them."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir()
        self.ids: dict[str, str] = {}  # workflow name -> id

    def spec(self, name: str, tasks: int = 1) -> dict[str, Any]:
        gate = f"{self.root}/{name}"
        wait = "until [ -e {0} ] || [ -e {0}.t{1} ]; do sleep 0.1; done"
        return {
            "workflow": {
                "name": name,
                "resources": {"default": GPU_TASK},
                "tasks": [
                    {"name": f"t{i}", "command": ["sh", "-c", wait.format(gate, i)]}
                    for i in range(tasks)
                ],
            }
        }

    async def submit(self, svc: Service, name: str, tasks: int = 1, **kw: Any) -> str:
        self.ids[name] = await svc.submit(self.spec(name, tasks), **kw)
        return self.ids[name]

    def open(self, name: str) -> None:
        (self.root / name).touch()

    def name_of(self, wf_id: str) -> str:
        return next(n for n, i in self.ids.items() if i == wf_id)


@pytest.fixture
def gates(tmp_path: Path) -> Iterator[Gates]:
    g = Gates(tmp_path / "gates")
    yield g
    for name in g.ids:  # a failed test leaves no task waiting: its agent then idles out
        g.open(name)


async def until(check: Any, what: str, seconds: float = 20.0) -> Any:
    for _ in range(int(seconds / 0.05)):
        if value := check():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not true after {seconds}s (last: {check()!r})")


def started(svc: Service, gates: Gates) -> list[str]:
    """Workflow/task names in the order their tasks were placed (INITIALIZING)."""
    return [
        f"{gates.name_of(e['workflow_id'])}/{e['task']}"
        for e in svc.store.events_since(0, limit=100_000)
        if e["type"] == "task.status" and e["status"] == "INITIALIZING"
    ]


def reasons(svc: Service, gates: Gates) -> dict[str, str | None]:
    """Every waiting task's reason, as `GET workflows/{id}` shows it."""
    out = {}
    for name, wf_id in gates.ids.items():
        for t in svc.get(wf_id)["tasks"]:
            if t["status"] == "SCHEDULING":
                out[f"{name}/{t['name']}"] = t["pending_reason"]
    return out


def stored_reasons(svc: Service, gates: Gates) -> dict[str, str | None]:
    """Every waiting task's reason as its row stores it (what a restart starts from)."""
    out = {}
    for name, wf_id in gates.ids.items():
        for r in svc.store.workflow_detail(wf_id)[2]:
            if r["status"] == "SCHEDULING":
                out[f"{name}/{r['name']}"] = r["pending_reason"]
    return out


def pending_events(svc: Service) -> int:
    return sum(1 for e in svc.store.events_since(0, limit=100_000) if e["type"] == "task.pending")


async def test_osmo_priority_queueing_order_with_reasons_kept_across_a_restart(
    service_factory: Any, gates: Gates, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """OSMO's "Priority Queueing Order": WF1 and WF2 (NORMAL) hold the pool's 2 GPUs; WF3 LOW,
    WF4 NORMAL, WF5 HIGH, WF6 NORMAL queue and start by priority, then submission."""
    data = tmp_path / "osmo"
    config = {"local": {"gpus": [0, 1]}, "pools": {"gpu": {}}, "default_pool": "gpu"}
    first = Service(make_config(data, **config))
    await first.start()
    for name in ("WF1", "WF2"):
        await gates.submit(first, name)
    await until(lambda: len(started(first, gates)) == 2, "WF1 and WF2 placed")
    for name, priority in (("WF3", "LOW"), ("WF4", "NORMAL"), ("WF5", "HIGH"), ("WF6", "NORMAL")):
        await gates.submit(first, name, priority=priority)
    expected = {
        "WF3/t0": "queued behind 1 HIGH and 2 NORMAL workflows in pool gpu",
        "WF4/t0": "queued behind 1 HIGH workflow in pool gpu",
        "WF5/t0": "needs 1 GPU on one machine; the largest free has 0",
        "WF6/t0": "queued behind 1 HIGH workflow in pool gpu",
    }
    await until(lambda: reasons(first, gates) == expected, "every waiting task has its reason")
    assert first.task(gates.ids["WF5"], "t0")["pending_reason"] == expected["WF5/t0"]
    # `osmo workflow query` and `osmo workflow submit --wait` print them
    Output("text").summary(first.get(gates.ids["WF5"]))
    assert re.search(f"t0 +SCHEDULING +waiting: {expected['WF5/t0']}\n", capsys.readouterr().out)
    [*_, last] = (
        e for e in first.store.events_since(0, gates.ids["WF6"]) if e["type"] == "task.pending"
    )
    show_event(last, Output("text"))
    assert capsys.readouterr().err.endswith(f"t0 waiting: {expected['WF6/t0']}\n")
    announced = pending_events(first)
    await first.stop()  # the control plane restarts; the agent and WF1, WF2 run on

    second = await service_factory(data, **config)
    assert reasons(second, gates) == expected  # as stored, before and after the first pass
    await until(lambda: second.engine.pending_reasons(gates.ids["WF3"]), "the first pass")
    assert reasons(second, gates) == expected
    assert pending_events(second) == announced, "unchanged reasons are not announced again"
    for done, nxt in (("WF1", "WF5"), ("WF2", "WF4"), ("WF5", "WF6"), ("WF4", "WF3")):
        gates.open(done)
        await until(lambda n=nxt: f"{n}/t0" in started(second, gates), f"{nxt} placed")
    assert started(second, gates) == [f"WF{i}/t0" for i in (1, 2, 5, 4, 6, 3)]
    for name in ("WF3", "WF6"):
        gates.open(name)
    for wf_id in gates.ids.values():
        assert await asyncio.wait_for(second.wait(wf_id), 20) == "COMPLETED"


async def test_low_work_borrows_a_shared_pool_idle_gpu_and_normal_work_gets_it_back(
    service_factory: Any, gates: Gates
) -> None:
    """OSMO's "Borrowing" example: pool1 and pool2 share 4 GPUs with a quota of 2 each."""
    pools = {"pool1": {"quota": {"gpu": 2}}, "pool2": {"quota": {"gpu": 2}}}
    svc = await service_factory(local={"gpus": [0, 1, 2, 3]}, pools=pools, default_pool="pool1")
    await gates.submit(svc, "WF1", pool="pool1")
    await gates.submit(svc, "WF2", pool="pool1", priority="LOW")
    await gates.submit(svc, "WF4", pool="pool2")
    await gates.submit(svc, "WF3", pool="pool1", priority="LOW")  # borrows pool2's idle GPU
    await until(lambda: len(started(svc, gates)) == 4, "WF1-WF4 placed")
    await gates.submit(svc, "WF7", pool="pool1")  # NORMAL: pool1 holds 1 of its 2
    await gates.submit(svc, "WF5", pool="pool2")
    # No GPU is free, both are entitled: each preempts a LOW task (engine/preempt.py), the
    # youngest first, so WF3 gives pool2's borrowed GPU back; both are rescheduled.
    await until(lambda: {"WF7/t0", "WF5/t0"} <= set(started(svc, gates)), "WF7 and WF5 placed")
    for name in ("WF2", "WF3"):
        tasks = svc.get(gates.ids[name])["tasks"]
        assert [t["status"] for t in tasks] == ["FAILED_PREEMPTED", "SCHEDULING"]
    no_gpu = "needs 1 GPU on one machine; the largest free has 0"
    # WF3 waits behind WF2, and asks no less: the pass stops at WF2 (engine/waitqueue.py)
    behind = (
        "queued behind earlier LOW work in pool pool1 (submission order); "
        f"the first waiting: {no_gpu}"
    )
    await until(lambda: reasons(svc, gates) == {"WF2/t0": no_gpu, "WF3/t0": behind}, "reasons")
    view = {p["name"]: p for p in svc.pools_info()}
    assert view["pool1"]["used"]["LOW"]["gpu"] == 0 and view["pool1"]["used"]["NORMAL"]["gpu"] == 2
    assert view["pool1"]["borrowed"]["gpu"] == view["pool2"]["borrowed"]["gpu"] == 0
    assert view["pool1"]["capacity"]["gpu"] == view["pool2"]["capacity"]["gpu"] == 4
    assert (view["pool1"]["queued"], view["pool2"]["queued"]) == (2, 0)
    assert view["pool1"]["quota"] == {"gpu": 2, "cpu": None, "memory": None}
    await gates.submit(svc, "WF9", pool="pool1")  # pool1's NORMAL work would hold 3 of 2
    behind = "queued behind 1 NORMAL workflow in pool pool1"
    expected = {
        "WF2/t0": behind,
        "WF3/t0": behind,
        "WF9/t0": "pool pool1 at its GPU quota (2/2 used by NORMAL/HIGH)",
    }
    await until(lambda: reasons(svc, gates) == expected, "WF9 waits at the quota")
    gates.open("WF1")  # pool1 back to 1 of 2 NORMAL: WF9 may start
    await until(lambda: "WF9/t0" in started(svc, gates), "WF9 placed")
    # the preempted LOW work comes back in its old order as GPUs free, WF3 borrowing again
    for done, nxt in (("WF7", "WF2"), ("WF4", "WF3")):
        gates.open(done)
        await until(lambda n=nxt: started(svc, gates).count(f"{n}/t0") == 2, f"{nxt} back")
    order = [s.removesuffix("/t0") for s in started(svc, gates)]
    # WF7 and WF5 start as their own victim ends: in either order
    assert order[:4] == ["WF1", "WF2", "WF4", "WF3"] and set(order[4:6]) == {"WF7", "WF5"}
    assert order[6:] == ["WF9", "WF2", "WF3"]
    for name in ("WF2", "WF3", "WF5", "WF9"):
        gates.open(name)
    for wf_id in gates.ids.values():
        assert await asyncio.wait_for(svc.wait(wf_id), 20) == "COMPLETED"


# a pool `gpu` of 2 GPUs with these settings (the local machine's, or an SSH host's)
StartGpuPool = Callable[[dict[str, Any]], Awaitable[Service]]


async def test_fair_share_and_user_limits(service_factory: Any, gates: Gates) -> None:
    async def start(settings: dict[str, Any]) -> Service:
        pools = {"gpu": settings}
        return await service_factory(local={"gpus": [0, 1]}, pools=pools, default_pool="gpu")

    await scenario_fair_share_and_limits(start, gates)


async def scenario_fair_share_and_limits(start: StartGpuPool, gates: Gates) -> None:
    """ann queues 1,000 tasks, then bob 1: with DRF bob's starts at the next free GPU, not
    after ann's 1,000. cid's limit holds her back alone. (tests/ssh runs it on a host too.)"""
    svc = await start({"fair_share": "drf", "limits": {"cid": {"max_tasks": 1}}})

    def status(name: str, task: str = "t0") -> str:  # one task's row: cheap to poll
        return str(svc.task(gates.ids[name], task)["status"])

    def reason(name: str, task: str = "t0") -> Any:
        return svc.task(gates.ids[name], task)["pending_reason"]

    bulk = await gates.submit(svc, "bulk", tasks=1000, user="ann")
    await until(lambda: status("bulk", "t1") != "SCHEDULING", "two of ann's tasks placed")
    await gates.submit(svc, "single", user="bob")
    await gates.submit(svc, "limited", tasks=2, user="cid")
    await until(lambda: reason("limited", "t1"), "cid's second task waits")
    # every waiting task has a reason, the 965 the pass did not reach too, stored as read
    await until(lambda: stored_reasons(svc, gates) == reasons(svc, gates), "reasons stored")
    waiting = reasons(svc, gates)
    assert len(waiting) == 998 + 1 + 2 and all(waiting.values())  # ann's, bob's, cid's
    assert reason("single") == "needs 1 GPU on one machine; the largest free has 0"
    assert reason("bulk", "t999") == (
        "queued behind earlier NORMAL work in pool gpu (fair share); "
        "the first waiting: needs 1 GPU on one machine; the largest free has 0"
    )
    gates.open("bulk.t0")  # ann holds 1 GPU, bob none: bob's turn, not ann's 998 others
    await until(lambda: status("single") != "SCHEDULING", "bob's task placed")
    gates.open("single")  # ann holds 1, cid none: cid's turn
    await until(lambda: status("limited") != "SCHEDULING", "cid's first task placed")
    assert started(svc, gates)[:4] == ["bulk/t0", "bulk/t1", "single/t0", "limited/t0"]
    assert reason("limited", "t1") == "user limit: 1 running tasks"
    await svc.cancel(bulk)
    for name in ("single", "limited"):
        gates.open(name)
        assert await asyncio.wait_for(svc.wait(gates.ids[name]), 20) == "COMPLETED"


async def test_normal_work_larger_than_its_pool_quota_is_refused_at_submit(
    service_factory: Any, gates: Gates
) -> None:
    """The quota changes only with the config: NORMAL/HIGH work that could never start under
    it is refused with a located error naming it; LOW work may borrow past it."""
    pools = {"gpu": {"quota": {"gpu": 1}}}
    svc = await service_factory(local={"gpus": [0, 1]}, pools=pools, default_pool="gpu")
    big = gates.spec("big")
    big["workflow"]["resources"]["default"] = {"gpu": 2, "cpu": 0.1}
    for priority in ("NORMAL", "HIGH"):
        with pytest.raises(PlacementError) as e:
            await svc.submit(big, priority=priority)
        [problem] = e.value.problems
        assert problem.field == "workflow.tasks[0]"
        assert problem.message == (
            "task 't0' asks gpu 2, more than pool 'gpu''s gpu quota (1) that NORMAL and HIGH "
            "work may hold"
        )
        assert "OsmoConfig.pools.gpu.quota.gpu" in (problem.hint or "")
    assert svc.list() == []  # nothing was written
    gates.ids["big"] = await svc.submit(big, priority="LOW")  # borrows both GPUs
    await until(lambda: started(svc, gates) == ["big/t0"], "the LOW work placed")
    gates.open("big")
    assert await asyncio.wait_for(svc.wait(gates.ids["big"]), 20) == "COMPLETED"


async def test_role_weights_come_from_the_submitter_and_survive_a_restart(
    service_factory: Any, gates: Gates, tmp_path: Path
) -> None:
    """ann submits as an admin, whose role weighs 3: once cid's work ends she gets 3 of the
    4 GPUs to bob's 1, also after the control plane restarted (the role is stored)."""
    data = tmp_path / "osmo"
    pools = {"gpu": {"fair_share": "drf", "role_weights": {"admin": 3}}}
    config = {"local": {"gpus": [0, 1, 2, 3]}, "pools": pools, "default_pool": "gpu"}
    first = Service(make_config(data, **config))
    await first.start()
    await gates.submit(first, "hold", tasks=4, user="cid")
    await until(lambda: len(started(first, gates)) == 4, "cid holds the 4 GPUs")
    await gates.submit(first, "a", tasks=4, user="ann", role="admin")
    await gates.submit(first, "b", tasks=4, user="bob")
    await until(lambda: len(stored_reasons(first, gates)) == 8, "ann's and bob's tasks wait")
    await first.stop()

    second = await service_factory(data, **config)
    gates.open("hold")
    await until(lambda: len(started(second, gates)) == 8, "4 more placed")
    assert sorted(started(second, gates)[4:]) == ["a/t0", "a/t1", "a/t2", "b/t0"]
    for name in ("a", "b"):
        gates.open(name)
    for wf_id in gates.ids.values():
        assert await asyncio.wait_for(second.wait(wf_id), 20) == "COMPLETED"
