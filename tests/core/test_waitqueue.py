"""The scheduling pass on declared machines: start order and the reason of every waiting task.

The scheduler and the wait queue are driven directly (no engine): each test places, ends and
asserts in exact order. tests/core/test_scheduling.py runs the same rules through the engine.
"""

from __future__ import annotations

from typing import Any

import pytest

from osmo_core.config import PRIORITIES, load_config
from osmo_core.engine.waitqueue import WaitQueue
from osmo_core.scheduler import Alloc, Scheduler
from osmo_core.spec.models import Resource
from osmo_core.wire import Node

GI = 2**30
HIGH, NORMAL, LOW = PRIORITIES["HIGH"], PRIORITIES["NORMAL"], PRIORITIES["LOW"]
FIRST = "the first waiting: "


class Cluster:
    """Pools over declared machines; tasks are names, each with its resource request."""

    def __init__(self, pools: dict[str, Any], machines: list[Node], stops: bool = True):
        """`stops`: a level's pass may stop at a unit nothing fits when none asks less (the
        engine says no while preemption could make room for the units behind it)."""
        self.stops = stops
        backends = {"local": {"kind": "local"}}
        config = load_config(backends=backends, pools=pools, default_pool=next(iter(pools)))
        self.scheduler = Scheduler(config.pool_configs())
        self.scheduler.set_nodes("local", machines)
        self.res: dict[str, Resource] = {}
        self.queue: WaitQueue[str] = WaitQueue(self.scheduler, self.res.__getitem__)
        self.running: dict[str, Alloc] = {}
        self.started: list[str] = []

    def submit(
        self,
        pool: str,
        name: str,
        priority: int = NORMAL,
        user: str = "ann",
        gpu: int = 1,
        n: int = 1,
        gang: bool = False,
        role: str = "user",
    ) -> list[str]:
        """A workflow of `n` tasks: one unit each, or one unit for all (`gang`, a barrier)."""
        names = [name] if n == 1 else [f"{name}.{i}" for i in range(n)]
        for t in names:
            self.res[t] = Resource(cpu=1, gpu=gpu)
        for unit in [names] if gang else [[t] for t in names]:
            self.queue.add(unit, pool, priority, user, workflow=name, role=role)
        return names

    def run(self) -> list[str]:
        placed, _ = self.queue.schedule(may_stop=lambda priority: self.stops)
        new = []
        for names, allocs in placed:
            for t, a in zip(names, allocs, strict=True):
                self.running[t] = a
                new.append(t)
        self.started += new
        return new

    def end(self, *names: str) -> None:
        for t in names:
            self.scheduler.release(self.running.pop(t))

    def reasons(self) -> dict[str, str | None]:
        return {t: self.queue.reason_of(t) for t in self.res if t not in self.running}


def machines(n: int, gpus: int) -> list[Node]:
    return [Node(f"m{i}", cpu=64, memory=256 * GI, gpus=list(range(gpus))) for i in range(n)]


def test_osmo_priority_queueing_order() -> None:
    """OSMO's scheduling guide, "Priority Queueing Order": WF1, WF2 (NORMAL) run; WF3-WF6 are
    queued by priority, then submission time. (Its figure is not in OSMO's repository, only
    a Git LFS pointer: the priorities here are one reading, LOW, NORMAL, HIGH, NORMAL.)"""
    c = Cluster({"gpu": {}}, machines(1, 2))
    c.submit("gpu", "WF1"), c.submit("gpu", "WF2")
    assert c.run() == ["WF1", "WF2"]
    c.submit("gpu", "WF3", LOW), c.submit("gpu", "WF4", NORMAL)
    c.submit("gpu", "WF5", HIGH), c.submit("gpu", "WF6", NORMAL)
    assert c.run() == []
    assert c.reasons() == {
        "WF3": "queued behind 1 HIGH and 2 NORMAL workflows in pool gpu",
        "WF4": "queued behind 1 HIGH workflow in pool gpu",
        "WF5": "needs 1 GPU on one machine; the largest free has 0",
        "WF6": "queued behind 1 HIGH workflow in pool gpu",
    }
    for done in ("WF1", "WF2", "WF5", "WF4", "WF6"):
        c.end(done)
        c.run()
    assert c.started == ["WF1", "WF2", "WF5", "WF4", "WF6", "WF3"]


def test_quota_queues_normal_work_and_low_borrows_a_shared_pool_idle_gpus() -> None:
    """OSMO's "Borrowing" example: pool1 and pool2 share 4 GPUs, a quota of 2 each."""
    shared = {"quota": {"gpu": 2}}
    c = Cluster({"pool1": shared, "pool2": shared}, machines(1, 4))
    c.submit("pool1", "WF1", NORMAL), c.submit("pool1", "WF2", LOW), c.submit("pool2", "WF4")
    assert c.run() == ["WF1", "WF4", "WF2"]  # NORMAL before LOW, across pools too
    c.submit("pool1", "WF3", LOW)  # pool2 uses 1 of its 2: pool1 borrows the idle GPU
    assert c.run() == ["WF3"]
    assert c.scheduler.held("pool1").gpu == 3 and c.scheduler.guaranteed("pool1").gpu == 1
    c.submit("pool1", "WF7", NORMAL, gpu=2)  # 1 + 2 past pool1's quota of 2
    c.submit("pool2", "WF5", NORMAL)  # under pool2's quota; the machine is full (reclaim: preempt)
    assert c.run() == []
    assert c.reasons() == {
        "WF7": "pool pool1 at its GPU quota (1/2 used by NORMAL/HIGH)",
        "WF5": "needs 1 GPU on one machine; the largest free has 0",
    }
    assert c.scheduler.entitled("pool2", NORMAL, Resource(cpu=1, gpu=1))
    c.end("WF3")  # the borrowed GPU back: pool2's NORMAL work gets it, not pool1's LOW
    assert c.run() == ["WF5"]


def test_fair_share_starts_a_single_task_before_a_colleague_thousand() -> None:
    c = Cluster({"gpu": {"fair_share": "drf"}}, machines(2, 2))
    many = c.submit("gpu", "bulk", user="ann", n=1000)
    assert c.run() == many[:4]
    c.submit("gpu", "single", user="bob")
    assert c.run() == []
    assert c.reasons()["single"] == "needs 1 GPU on one machine; the largest free has 0"
    c.end(many[0])
    assert c.run() == ["single"]  # bob holds nothing: his share is the smallest
    c.end(many[1])
    assert c.run() == [many[4]]


@pytest.mark.parametrize("stops", [True, False], ids=["stops-at-a-full-pool", "window"])
def test_fifo_keeps_submission_order_across_users(stops: bool) -> None:
    """Bob's one task waits behind ann's forty. Where nothing but room is in question, the
    pass stops at the first that does not fit (nothing behind it asks less); where the engine
    must look further (preemption may make room for each), it looks at 33 waiting units
    (BACKFILL_WINDOW + 1): bob's is the 38th."""
    c = Cluster({"gpu": {}}, machines(1, 2), stops=stops)
    many = c.submit("gpu", "bulk", user="ann", n=40)
    c.submit("gpu", "single", user="bob")
    assert c.run() == many[:2]
    c.end(many[0])
    assert c.run() == [many[2]]
    reasons = c.reasons()
    no_gpu = "needs 1 GPU on one machine; the largest free has 0"
    behind = f"queued behind earlier NORMAL work in pool gpu (submission order); {FIRST}{no_gpu}"
    last = 3 if stops else 35  # the last unit the pass looked at
    assert reasons[many[3]] == reasons[many[last]] == no_gpu
    assert reasons[many[last + 1]] == reasons[many[39]] == reasons["single"] == behind


def test_a_full_pool_stops_the_pass_only_when_nothing_behind_asks_less() -> None:
    """The pass stops at a unit no machine has room for only when no unit of its level asks
    less: a smaller unit behind bigger ones is still placed (backfilled) in the same pass.
    What a level's units ask only goes down while it has units, and starts afresh once it
    is empty."""
    c = Cluster({"gpu": {}}, machines(1, 2))
    assert c.submit("gpu", "first") == ["first"] and c.run() == ["first"]  # 1 GPU of 2 left
    big = c.submit("gpu", "big", gpu=2, n=3)
    c.submit("gpu", "small", gpu=0)
    assert c.run() == ["small"]  # past three that do not fit
    assert c.queue.unit_of(big[2]).seen == c.queue.passes  # each was looked at
    for done, nxt in (("first", big[0]), ("small", None), (big[0], big[1]), (big[1], big[2])):
        c.end(done)
        assert c.run() == ([nxt] if nxt else [])
    c.run()  # the level is empty now
    c.end(big[2])
    again = c.submit("gpu", "again", n=4)
    assert c.run() == again[:2]
    # nothing behind again.2 asks less: the pass stopped there
    assert c.queue.unit_of(again[2]).seen == c.queue.passes
    assert c.queue.unit_of(again[3]).seen != c.queue.passes
    assert c.reasons()[again[3]].startswith("queued behind earlier NORMAL work in pool gpu")


def test_units_on_two_platforms_do_not_stop_the_pass() -> None:
    """A unit on another platform may fit where the first that does not fit cannot."""
    c = Cluster(
        {"gpu": {"platforms": {"x86": {"arch": "x86_64"}, "arm": {"arch": "arm64"}}}},
        [
            Node("x1", cpu=8, memory=32 * GI, gpus=[0], arch="x86_64"),
            Node("a1", cpu=8, memory=32 * GI, gpus=[0], arch="arm64"),
        ],
    )
    for name, platform in (("x.0", "x86"), ("x.1", "x86"), ("y", "arm")):
        c.res[name] = Resource(cpu=1, gpu=1, platform=platform)
        c.queue.add([name], "gpu", NORMAL, "ann", name)
    assert c.run() == ["x.0", "y"]


def test_weights_give_a_user_a_larger_share() -> None:
    c = Cluster({"gpu": {"fair_share": "drf", "weights": {"ann": 3}}}, machines(1, 4))
    c.submit("gpu", "a", user="ann", n=10), c.submit("gpu", "b", user="bob", n=10)
    c.run()
    # ann's share counts a third: she gets 3 GPUs to bob's 1
    assert sorted(c.started) == ["a.0", "a.1", "a.2", "b.0"]


def test_role_weights_weigh_the_users_weights_do_not_name() -> None:
    drf = {"fair_share": "drf", "role_weights": {"admin": 3}, "weights": {"cid": 1}}
    c = Cluster({"gpu": drf}, machines(1, 5))
    c.submit("gpu", "a", user="ann", n=10, role="admin")
    c.submit("gpu", "b", user="bob", n=10)
    c.submit("gpu", "c", user="cid", n=10, role="admin")  # his own weight, 1, comes first
    c.run()
    # ann's share counts a third (her role's weight): 3 GPUs to bob's 1 and cid's 1
    assert sorted(c.started) == ["a.0", "a.1", "a.2", "b.0", "c.0"]


def test_user_limits_hold_a_user_back_and_not_the_others() -> None:
    limits = {"*": {"max_tasks": 2}, "bob": {"max_gpus": 3}}
    c = Cluster({"gpu": {"limits": limits}}, machines(2, 8))
    c.submit("gpu", "a", user="ann", n=4)
    c.submit("gpu", "b", user="bob", gpu=2, n=3)
    assert c.run() == ["a.0", "a.1", "b.0"]
    r = c.reasons()
    assert r["a.2"] == r["a.3"] == "user limit: 2 running tasks"
    assert r["b.1"] == r["b.2"] == "user limit: 3 running GPUs"
    c.end("a.0")
    assert c.run() == ["a.2"]


def test_every_waiting_task_has_a_specific_reason() -> None:
    c = Cluster(
        {
            "gpu": {"platforms": {"x86": {}, "arm": {"arch": "arm64"}}},
            "small": {"quota": {"gpu": 1}},
        },
        [Node("x1", cpu=8, memory=32 * GI, gpus=[0, 1], arch="x86_64")],
    )
    c.submit("gpu", "big", gpu=4)
    c.res["arm"] = Resource(cpu=1, platform="arm")
    c.queue.add(["arm"], "gpu", NORMAL, "ann", "arm")
    c.submit("gpu", "gang", gpu=1, n=4, gang=True)
    c.submit("small", "q1"), c.submit("small", "q2"), c.submit("small", "huge", gpu=2)
    assert c.run() == ["q1"]
    gang = "gang: 2 of 4 tasks placeable"  # found before q1 took a GPU of the shared machine
    assert c.reasons() == {
        "big": "needs 4 GPUs on one machine; the largest free has 2",
        "arm": "platform arm has no machine online",
        **{f"gang.{i}": gang for i in range(4)},
        "q2": "pool small at its GPU quota (1/1 used by NORMAL/HIGH)",
        "huge": "asks more GPU than pool small's GPU quota holds: only LOW priority may run it "
        "(borrowing)",
    }


def test_a_unit_requeued_with_its_old_seq_goes_back_in_front_of_later_work() -> None:
    """A preempted unit is queued again with the submission order it had (engine/preempt.py):
    in front of its user's later units and of other users' later ones, behind earlier ones."""
    c = Cluster({"gpu": {}}, machines(1, 1))
    c.submit("gpu", "early", priority=LOW, user="bob")
    assert c.run() == ["early"]
    [victim] = c.submit("gpu", "victim", priority=LOW)
    assert c.run() == []
    c.end("early")
    assert c.run() == ["victim"]
    c.submit("gpu", "later", priority=LOW), c.submit("gpu", "other", priority=LOW, user="bob")
    seq = 2  # the victim's unit was the second one queued
    c.end("victim")
    c.queue.add([victim], "gpu", LOW, "ann", "victim", seq=seq)
    assert c.run() == ["victim"]  # without its seq it would come after "later" and "other"
    c.end("victim")
    assert c.run() == ["later"]  # ann's, submitted before bob's "other"
    c.end("later")
    assert c.run() == ["other"]


def test_units_the_pass_did_not_reach_are_handed_out_a_slice_at_a_time() -> None:
    """A pass looks at the window only; `unreached` gives every other waiting unit once,
    bounded per call, and then none until a pass changes what their reasons derive from."""
    c = Cluster({"gpu": {}}, machines(1, 1), stops=False)
    c.submit("gpu", "bulk", n=100)
    c.submit("gpu", "hi", priority=HIGH, gpu=2)  # too big for the machine: it waits
    assert c.run() == ["bulk.0"]
    slices = []
    while c.queue.sweeping:
        slices.append(c.queue.unreached(30))
    # 99 wait; the pass looked at hi and bulk.1-33 (a miss each, the window's 32 and one)
    assert [len(s) for s in slices] == [30, 30, 6]
    assert [u.items[0] for s in slices for u in s] == [f"bulk.{i}" for i in range(34, 100)]
    assert not c.queue.unreached(30)  # every one met once since the pass
    assert c.queue.reason_of("bulk.99") == "queued behind 1 HIGH workflow in pool gpu"
    c.run()  # a pass that changed what they wait behind (bulk.0 holds the GPU now)
    assert c.queue.sweeping and len(c.queue.unreached(1000)) == 66
    c.run()  # nothing changed: no reason is derived again (a long queue behind busy machines)
    assert not c.queue.sweeping
    c.submit("gpu", "late")  # a new unit is due its reason, alone
    c.run()
    assert [u.items for u in c.queue.unreached(1000)] == [["late"]]
    assert not c.queue.sweeping
    assert c.queue.reason_of("late") == "queued behind 1 HIGH workflow in pool gpu"


def test_a_unit_the_pass_stops_looking_at_gets_its_reason_again() -> None:
    """A unit that went back to an earlier place (a preempted one) pushes the last unit of the
    pass's window out of it: that one's specific reason is replaced by the derived one, though
    nothing it derives from changed."""
    c = Cluster({"gpu": {}}, machines(1, 1), stops=False)
    c.submit("gpu", "bulk", n=100)
    assert c.run() == ["bulk.0"]
    while c.queue.sweeping:
        c.queue.unreached(1000)
    c.run()
    assert not c.queue.sweeping
    c.res["early"] = Resource(cpu=1, gpu=1)
    c.queue.add(["early"], "gpu", NORMAL, "ann", "early", seq=1)  # ahead of bulk.1
    c.run()  # looks at early and bulk.1-32 now
    assert [u.items for u in c.queue.unreached(1000)] == [["bulk.33"]]
    assert c.queue.reason_of("bulk.33").startswith("queued behind earlier NORMAL work")
