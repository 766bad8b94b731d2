"""Preemption: LOW work stopped to make room for NORMAL/HIGH work, on the local backend with
declared cores (real agent, real processes). The victim choice alone:
tests/core/test_preemption_choice.py.

Each task waits at a gate file the test opens, so what runs when is the test's to decide."""

from __future__ import annotations

import asyncio
import getpass
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from osmo_core.scheduling_config import Usage
from osmo_core.service import Service
from tests.conftest import ServiceFactory, make_config

# --- end to end on the local backend ---------------------------------------------------------


class Gates:
    """Files tasks wait for: `task(name)` waits at gate `name`, `open(name)` lets it end."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir()

    def script(self, name: str, on_term: str | None = None) -> str:
        trap = f"trap '{on_term}' TERM; " if on_term is not None else ""
        gate = self.root / name
        return f"{trap}while [ ! -e {gate} ]; do sleep 0.05; done"

    def open(self, *names: str) -> None:
        for name in names:
            (self.root / name).touch()


def gated(
    gates: Gates, name: str, cpu: float = 1, on_term: str | None = None, **task: Any
) -> dict[str, Any]:
    """A one-task workflow waiting at gate `name` (running `on_term` on SIGTERM)."""
    command = ["sh", "-c", gates.script(name, on_term)]
    return {
        "workflow": {
            "name": name,
            "resources": {"default": {"cpu": cpu, **task.pop("resource", {})}},
            "tasks": [{"name": "t", "command": command, **task}],
        }
    }


async def until(
    service: Service, wf_id: str, check: Callable[[list[dict[str, Any]]], bool], timeout=20.0
) -> list[dict[str, Any]]:
    """Poll the workflow's attempts until `check` holds (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = service.get(wf_id)["tasks"]
        if check(tasks):
            return tasks
        assert time.monotonic() < deadline, f"{wf_id}: {[(t['name'], t['status']) for t in tasks]}"
        await asyncio.sleep(0.05)


def last(status: str, name: str = "t") -> Callable[[list[dict[str, Any]]], bool]:
    return lambda ts: [t for t in ts if t["name"] == name][-1]["status"] == status


def statuses(service: Service, wf_id: str) -> list[str]:
    return [t["status"] for t in service.get(wf_id)["tasks"]]


def preempt_events(service: Service, wf_id: str) -> list[dict[str, Any]]:
    return [
        ev
        for ev in service.store.events_since(0, wf_id, limit=10_000)
        if ev["type"] in ("task.preempt", "task.preempting")
    ]


# --- scenarios shared with the SSH test hosts (tests/ssh/test_ssh_preemption.py) -------------

Start = Callable[..., Awaitable[Service]]
"""`await start(cpus, pools)`: a service whose pools (name -> scheduling settings; the first is
the default, `{"p": {}}` when none) share one machine of `cpus` declared cores: this machine
here, an SSH test host in tests/ssh (real processes on it preempted)."""

FULL = "needs cpu 1 on one machine; the most free has 0"
# LOW work behind LOW work that does not fit: the pass stops at the first (engine/waitqueue.py)
BEHIND_LOW = (
    f"queued behind earlier LOW work in pool p (submission order); the first waiting: {FULL}"
)


@pytest.fixture
def start(service_factory: ServiceFactory) -> Start:
    async def start(cpus: int, pools: dict[str, dict[str, Any]] | None = None) -> Service:
        pools = pools or {"p": {}}
        return await service_factory(
            local={"cpus": cpus},
            pools={name: {"backend": "local", **p} for name, p in pools.items()},
            default_pool=next(iter(pools)),
        )

    return start


@pytest.fixture
def gates(tmp_path: Path) -> Gates:
    return Gates(tmp_path / "gates")


def waiting_reasons(service: Service, *wf_ids: str) -> list[str | None]:
    """The reason of each workflow's waiting attempt (None when none waits)."""
    return [
        next(
            (t["pending_reason"] for t in service.get(w)["tasks"] if t["status"] == "SCHEDULING"),
            None,
        )
        for w in wf_ids
    ]


async def until_reasons(service: Service, expected: dict[str, str]) -> None:
    """Poll until each workflow's waiting attempt has the expected reason (bounded)."""
    deadline = time.monotonic() + 20
    while (got := waiting_reasons(service, *expected)) != list(expected.values()):
        assert time.monotonic() < deadline, f"reasons: {got}"
        await asyncio.sleep(0.05)


async def scenario_osmo_wf1(start: Start, g: Gates) -> tuple[Service, str]:
    """OSMO's scheduling guide: WF1 (LOW) and WF2 (NORMAL) run, WF3 and WF4 (LOW) wait; WF5
    (NORMAL) preempts WF1 (SIGTERM reaches its process, which leaves `wf1.term`, naming its
    user), which is queued again in front of WF3 and WF4, and finishes later. The default
    retry budget (0): a preemption is rescheduled outside it. Returns WF1's id."""
    service = await start(2)
    mark = f"echo $(whoami) > {g.root}/wf1.term; exit 0"
    wf1 = await service.submit(gated(g, "wf1", on_term=mark), priority="LOW")
    await until(service, wf1, last("RUNNING"))
    wf2 = await service.submit(gated(g, "wf2"), priority="NORMAL")
    await until(service, wf2, last("RUNNING"))
    wf3 = await service.submit(gated(g, "wf3"), priority="LOW")
    wf4 = await service.submit(gated(g, "wf4"), priority="LOW")
    wf5 = await service.submit(gated(g, "wf5"), priority="NORMAL")
    await until(service, wf5, last("RUNNING"))
    first, retry = service.get(wf1)["tasks"]
    assert (first["status"], first["exit_code"]) == ("FAILED_PREEMPTED", 3006)
    assert first["message"] == f"preempted by NORMAL workflow {wf5} (task t) in pool p"
    assert retry["retry_id"] == 1 and retry["status"] == "SCHEDULING"
    assert (g.root / "wf1.term").read_text().strip()  # its real process got SIGTERM
    assert statuses(service, wf3) == statuses(service, wf4) == ["SCHEDULING"]
    await until_reasons(service, {wf1: FULL, wf3: BEHIND_LOW, wf4: BEHIND_LOW})
    [ev] = preempt_events(service, wf1)
    assert ev["type"] == "task.preempt" and ev["payload"]["by"] == wf5
    [ev] = preempt_events(service, wf5)
    assert ev["payload"]["victims"] == [f"{wf1}/t/0"]

    g.open("wf2")  # a core frees: WF1's retry, not WF3 or WF4, takes it
    await until(service, wf1, last("RUNNING"))
    assert statuses(service, wf3) == statuses(service, wf4) == ["SCHEDULING"]
    g.open("wf5")
    await until(service, wf3, last("RUNNING"))
    assert statuses(service, wf4) == ["SCHEDULING"]
    g.open("wf1", "wf3", "wf4")
    for wf in (wf1, wf2, wf3, wf4, wf5):
        assert (await asyncio.wait_for(service.wait(wf), 30)).value == "COMPLETED"
    assert statuses(service, wf1) == ["FAILED_PREEMPTED", "COMPLETED"]
    assert service.scheduler.held("p") == Usage()  # nothing left reserved
    return service, wf1


async def scenario_gang(start: Start, g: Gates) -> None:
    """A barrier group is preempted as a whole (though a younger single task would free one
    core) and its retries start together, when two cores are free at once."""
    service = await start(3)
    gang_spec = {
        "workflow": {
            "name": "gang",
            "resources": {"default": {"cpu": 1}},
            "groups": [
                {
                    "name": "pair",
                    "tasks": [
                        {"name": "a", "command": ["sh", "-c", g.script("gang")], "lead": True},
                        {"name": "b", "command": ["sh", "-c", g.script("gang")]},
                    ],
                }
            ],
        }
    }
    gang = await service.submit(gang_spec, priority="LOW")
    await until(service, gang, lambda ts: [t["status"] for t in ts] == ["RUNNING"] * 2)
    solo = await service.submit(gated(g, "solo"), priority="LOW")  # younger, but 1 core only
    await until(service, solo, last("RUNNING"))
    high = await service.submit(gated(g, "high", cpu=2), priority="HIGH")
    await until(service, high, last("RUNNING"))
    tasks = service.get(gang)["tasks"]
    assert [(t["name"], t["retry_id"], t["status"]) for t in tasks] == [
        ("a", 0, "FAILED_PREEMPTED"),
        ("a", 1, "SCHEDULING"),
        ("b", 0, "FAILED_PREEMPTED"),
        ("b", 1, "SCHEDULING"),
    ]
    assert statuses(service, solo) == ["RUNNING"]
    g.open("solo")  # one core free: the gang needs two at once, so it still waits
    assert (await asyncio.wait_for(service.wait(solo), 30)).value == "COMPLETED"
    await until_reasons(service, {gang: "gang: 1 of 2 tasks placeable"})
    assert [t["status"] for t in service.get(gang)["tasks"]][1::2] == ["SCHEDULING"] * 2
    g.open("high")  # both retries start together
    await until(service, gang, lambda ts: [t["status"] for t in ts][1::2] == ["RUNNING"] * 2)
    g.open("gang")
    assert (await asyncio.wait_for(service.wait(gang), 30)).value == "COMPLETED"


async def scenario_reclaim(start: Start, g: Gates) -> None:
    """Pools a and b share one machine: b's LOW work borrows it, a's NORMAL work reclaims it;
    the borrower waits, saying why, and runs again once a's work ends."""
    service = await start(1, {"a": {}, "b": {}})
    borrower = await service.submit(gated(g, "borrower"), pool="b", priority="LOW")
    await until(service, borrower, last("RUNNING"))
    owner = await service.submit(gated(g, "owner"), pool="a", priority="NORMAL")
    await until(service, owner, last("RUNNING"))
    first = service.get(borrower)["tasks"][0]
    assert first["message"] == f"preempted by NORMAL workflow {owner} (task t) in pool a"
    await until_reasons(service, {borrower: FULL})
    g.open("owner")
    await until(service, borrower, last("RUNNING"))
    g.open("borrower")
    for wf in (owner, borrower):
        assert (await asyncio.wait_for(service.wait(wf), 30)).value == "COMPLETED"
    assert statuses(service, borrower) == ["FAILED_PREEMPTED", "COMPLETED"]


async def test_osmo_example_wf1_is_preempted_and_goes_back_in_front_of_later_low_work(
    start: Start, gates: Gates
) -> None:
    await scenario_osmo_wf1(start, gates)
    assert (gates.root / "wf1.term").read_text().strip() == getpass.getuser()


async def test_a_barrier_group_is_preempted_as_a_gang_and_requeued_whole(
    start: Start, gates: Gates
) -> None:
    await scenario_gang(start, gates)


async def test_low_work_of_another_pool_on_shared_machines_is_reclaimed(
    start: Start, gates: Gates
) -> None:
    await scenario_reclaim(start, gates)


async def test_fewest_then_youngest_are_preempted(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    service = await service_factory(local={"cpus": 4})
    g = Gates(tmp_path / "gates")
    old = await service.submit(gated(g, "old"), priority="LOW")
    await until(service, old, last("RUNNING"))
    big = await service.submit(gated(g, "big", cpu=2), priority="LOW")
    await until(service, big, last("RUNNING"))
    young = await service.submit(gated(g, "young"), priority="LOW")
    await until(service, young, last("RUNNING"))
    # needs 2 cores: "young" alone frees 1; "big" alone frees 2, so one unit goes, not two
    high = await service.submit(gated(g, "high", cpu=2), priority="HIGH")
    await until(service, high, last("RUNNING"))
    assert statuses(service, big)[0] == "FAILED_PREEMPTED"
    assert statuses(service, old) == statuses(service, young) == ["RUNNING"]
    # one core more: the youngest LOW task goes ("big"'s retry waits, it does not run)
    normal = await service.submit(gated(g, "normal"), priority="NORMAL")
    await until(service, normal, last("RUNNING"))
    assert statuses(service, young)[0] == "FAILED_PREEMPTED"
    assert statuses(service, old) == ["RUNNING"]
    g.open("old", "big", "young", "high", "normal")
    for wf in (old, big, young, high, normal):
        assert (await asyncio.wait_for(service.wait(wf), 20)).value == "COMPLETED"


async def test_each_waiting_unit_preempts_in_the_same_pass(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    """A pass stops at the first unit of a full pool when none behind it asks less, but not
    while LOW work runs that preemption could stop for the others: two NORMAL tasks behind
    two LOW ones preempt both at once, while the first victim is still ending (each traps
    SIGTERM and waits for a gate)."""
    service = await service_factory(local={"cpus": 2})
    g = Gates(tmp_path / "gates")
    lows = []
    for i in range(2):
        on_term = f"while [ ! -e {g.root}/end{i} ]; do sleep 0.05; done; exit 0"
        spec = gated(g, f"low{i}", on_term=on_term, resource={"preemptionGrace": "60s"})
        lows.append(await service.submit(spec, priority="LOW"))
        await until(service, lows[-1], last("RUNNING"))
    tasks = [{"name": f"n{i}", "command": ["sh", "-c", g.script(f"n{i}")]} for i in range(2)]
    normal = await service.submit(
        {"workflow": {"name": "normal", "resources": {"default": {"cpu": 1}}, "tasks": tasks}},
        priority="NORMAL",
    )
    deadline = time.monotonic() + 20
    while not all(preempt_events(service, wf) for wf in lows):
        assert time.monotonic() < deadline, "only one LOW task was preempted"
        await asyncio.sleep(0.05)
    for wf in lows:  # both still ending: neither preemption waited for the other's end
        assert service.get(wf)["tasks"][0]["end_time"] is None
    g.open("end0", "end1", "n0", "n1", "low0", "low1")
    for wf in (*lows, normal):
        assert (await asyncio.wait_for(service.wait(wf), 30)).value == "COMPLETED"


async def test_no_preemption_when_it_would_not_make_room(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    service = await service_factory(local={"cpus": 2})
    g = Gates(tmp_path / "gates")
    low = await service.submit(gated(g, "low"), priority="LOW")
    await until(service, low, last("RUNNING"))
    normal = await service.submit(gated(g, "normal"), priority="NORMAL")
    await until(service, normal, last("RUNNING"))
    # 2 cores: preempting the LOW task frees 1, and NORMAL work is never preempted
    high = await service.submit(gated(g, "high", cpu=2), priority="HIGH")
    await asyncio.sleep(1.0)
    assert statuses(service, low) == statuses(service, normal) == ["RUNNING"]
    assert statuses(service, high) == ["SCHEDULING"]
    assert preempt_events(service, low) == preempt_events(service, high) == []
    # nor does LOW work preempt LOW work
    other = await service.submit(gated(g, "other"), priority="LOW")
    await asyncio.sleep(0.5)
    assert statuses(service, low) == ["RUNNING"] and statuses(service, other) == ["SCHEDULING"]
    g.open("low", "normal", "high", "other")
    for wf in (low, normal, high, other):
        assert (await asyncio.wait_for(service.wait(wf), 20)).value == "COMPLETED"


async def scenario_grace(start: Start, g: Gates) -> None:
    """A preempted task that traps SIGTERM writes its checkpoint, which is uploaded; one that
    ignores SIGTERM is killed once its own grace (1 s, not its pool's 30 s) is over."""
    service = await start(2, {"p": {"preemption_grace": 30}})
    dest = g.root / "ckpt-out"
    # traps SIGTERM: writes its state to the checkpoint folder and exits; the agent uploads it
    saver = await service.submit(
        {
            "workflow": {
                "name": "saver",
                "tasks": [
                    {
                        "name": "t",
                        "command": [
                            "sh",
                            "-c",
                            g.script("saver", on_term="echo step-7 > /ckpt/state; exit 0")
                            + "; echo done > /ckpt/state",
                        ],
                        "checkpoint": [
                            {"path": "/ckpt", "url": f"file://{dest}", "frequency": "1h"}
                        ],
                    }
                ],
            }
        },
        priority="LOW",
    )
    await until(service, saver, last("RUNNING"))
    # ignores SIGTERM: killed once its own grace (the spec's, 1s, not the pool's 30s) is over
    stubborn = await service.submit(
        gated(g, "stubborn", on_term="", resource={"preemptionGrace": "1s"}), priority="LOW"
    )
    await until(service, stubborn, last("RUNNING"))
    high = await service.submit(gated(g, "high", cpu=2), priority="HIGH")
    await until(service, high, last("RUNNING"), timeout=30)
    assert (dest / "state").read_text() == "step-7\n"
    ups = [
        ev
        for ev in service.store.events_since(0, saver, limit=1000)
        if ev["type"] == "task.transfer"
    ]
    assert [(u["retry_id"], u["payload"]["direction"]) for u in ups] == [(0, "checkpoint")]
    assert "error" not in ups[0]["payload"]
    first = service.get(stubborn)["tasks"][0]
    [ev] = [e for e in preempt_events(service, stubborn) if e["type"] == "task.preempt"]
    assert ev["payload"]["grace"] == 1
    assert first["status"] == "FAILED_PREEMPTED"
    assert 0.9 <= first["end_time"] - ev["ts"] < 10  # SIGKILL after the grace, not 30 s
    g.open("saver", "stubborn", "high")
    for wf in (saver, stubborn, high):
        assert (await asyncio.wait_for(service.wait(wf), 30)).value == "COMPLETED"
    assert (dest / "state").read_text() == "done\n"  # the retry ran to its end


async def test_grace_lets_a_task_checkpoint_and_a_task_ignoring_sigterm_is_killed(
    start: Start, gates: Gates
) -> None:
    await scenario_grace(start, gates)


async def test_exit_actions_may_fail_a_preempted_task_instead(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    service = await service_factory(local={"cpus": 1})
    g = Gates(tmp_path / "gates")
    low = await service.submit(gated(g, "low", exitActions={"FAIL": "3006"}), priority="LOW")
    await until(service, low, last("RUNNING"))
    high = await service.submit(gated(g, "high"), priority="HIGH")
    await until(service, high, last("RUNNING"))
    assert (await asyncio.wait_for(service.wait(low), 20)).value == "FAILED"
    [t] = service.get(low)["tasks"]
    assert (t["status"], t["exit_code"]) == ("FAILED", 3006)
    assert t["message"].endswith("exit action FAIL for exit code 3006")
    g.open("high")
    assert (await asyncio.wait_for(service.wait(high), 20)).value == "COMPLETED"


async def test_a_preempted_task_keeps_its_retry_budget(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    """A preemption is rescheduled outside the budget: the victim's retry still has its one
    retry for its own RESCHEDULE exit (exit 3), and only then is the budget exhausted."""
    service = await service_factory(local={"cpus": 1})
    g = Gates(tmp_path / "gates")
    command = ["sh", "-c", g.script("low") + "; exit 3"]
    low = await service.submit(
        gated(g, "low", maxRetries=1, exitActions={"RESCHEDULE": "3"}, command=command),
        priority="LOW",
    )
    await until(service, low, last("RUNNING"))
    high = await service.submit(gated(g, "high"), priority="HIGH")
    await until(service, high, last("RUNNING"))
    assert statuses(service, low) == ["FAILED_PREEMPTED", "SCHEDULING"]
    g.open("high", "low")
    assert (await asyncio.wait_for(service.wait(low), 20)).value == "FAILED"
    tasks = service.get(low)["tasks"]
    assert [(t["status"], t["exit_code"]) for t in tasks] == [
        ("FAILED_PREEMPTED", 3006),
        ("RESCHEDULED", 3),
        ("FAILED", 3),
    ]
    assert tasks[-1]["message"] == "exit code 3: RESCHEDULE; retry budget (1) exhausted"


async def test_work_past_its_pool_quota_preempts_nothing(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    """Only entitled work preempts (Scheduler.entitled): NORMAL work that would take its pool
    past its quota waits for the pool's own work to end, and the LOW task keeps running."""
    pools = {"p": {"backend": "local", "quota": {"cpu": 1}}}
    service = await service_factory(local={"cpus": 2}, pools=pools, default_pool="p")
    g = Gates(tmp_path / "gates")
    first = await service.submit(gated(g, "first"), priority="NORMAL")
    low = await service.submit(gated(g, "low"), priority="LOW")  # borrows the idle core
    for wf in (first, low):
        await until(service, wf, last("RUNNING"))
    second = await service.submit(gated(g, "second"), priority="NORMAL")
    quota = "pool p at its CPU quota (1/1 used by NORMAL/HIGH)"
    await until(service, second, lambda ts: ts[0]["pending_reason"] == quota)
    g.open("first")
    await until(service, second, last("RUNNING"))
    assert statuses(service, low) == ["RUNNING"] and not preempt_events(service, low)
    g.open("second", "low")
    for wf in (first, second, low):
        assert (await asyncio.wait_for(service.wait(wf), 20)).value == "COMPLETED"


async def test_a_preemption_under_way_survives_a_control_plane_restart(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    data = tmp_path / "osmo"
    first = Service(make_config(data, local={"cpus": 1}))
    await first.start()
    g = Gates(tmp_path / "gates")
    # takes 2 s to save its state on SIGTERM: the control plane stops meanwhile
    low = await first.submit(gated(g, "low", on_term="sleep 2; exit 0"), priority="LOW")
    await until(first, low, last("RUNNING"))
    high = await first.submit(gated(g, "high"), priority="HIGH")
    await until(first, low, lambda ts: bool(preempt_events(first, low)))
    await first.stop()  # the agent and the terminating task go on

    second = await service_factory(data, local={"cpus": 1})
    await until(second, high, last("RUNNING"))
    first_attempt, retry = second.get(low)["tasks"]
    assert (first_attempt["status"], first_attempt["exit_code"]) == ("FAILED_PREEMPTED", 3006)
    assert retry["status"] == "SCHEDULING"  # rescheduled, behind the HIGH work
    g.open("high", "low")
    for wf in (high, low):
        assert (await asyncio.wait_for(second.wait(wf), 20)).value == "COMPLETED"


async def test_a_victim_terminating_is_not_preempted_twice(
    service_factory: ServiceFactory, tmp_path: Path
) -> None:
    service = await service_factory(local={"cpus": 2})
    g = Gates(tmp_path / "gates")
    slow = "sleep 1; exit 0"  # a second to save its state: still terminating when asked again
    a = await service.submit(gated(g, "a", on_term=slow), priority="LOW")
    await until(service, a, last("RUNNING"))
    b = await service.submit(gated(g, "b", on_term=slow), priority="LOW")
    await until(service, b, last("RUNNING"))
    h1 = await service.submit(gated(g, "h1"), priority="HIGH")
    await until(service, b, lambda ts: bool(preempt_events(service, b)))
    h2 = await service.submit(gated(g, "h2"), priority="HIGH")  # b is still terminating
    for wf in (h1, h2):
        await until(service, wf, last("RUNNING"))
    victims = {
        wf: next(e for e in preempt_events(service, wf) if e["type"] == "task.preempting")
        for wf in (h1, h2)
    }
    assert victims[h1]["payload"]["victims"] == [f"{b}/t/0"]  # the youngest
    assert victims[h2]["payload"]["victims"] == [f"{a}/t/0"]  # not b again
    assert len(preempt_events(service, a)) == len(preempt_events(service, b)) == 1
    g.open("a", "b", "h1", "h2")
    for wf in (a, b, h1, h2):
        assert (await asyncio.wait_for(service.wait(wf), 20)).value == "COMPLETED"
