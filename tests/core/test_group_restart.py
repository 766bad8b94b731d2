"""A rescheduled task in a group restarts the group's other tasks in place (OSMO's jobs.py
`_restart_task`, its control sidecar's `restart` action): which peers restart, that they keep
their room, that the barrier group starts together again, and what is left as it was."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from osmo_core.engine import policy
from osmo_core.service import Service
from tests.conftest import make_config
from tests.core.test_engine import attempts, latest, log_text, run, task

PEERS = ("b", "c")
ONE_CORE = {"default": {"cpu": 1}}


def group_spec(marks: Path, *, rescheduler: str = "a", **group: Any) -> dict[str, Any]:
    """A barrier group: `a` leads. `rescheduler` exits 7 (RESCHEDULE) on its first run, after
    its peers have started; a peer's first run waits long (a restart stops it), its second
    ends at once. Each run appends a line to `<marks>/<task>`, so a test counts the runs."""

    def script(name: str) -> str:
        count = f'echo run >> {marks}/{name}; n=$(wc -l < {marks}/{name}); echo "run $n"; '
        if name == rescheduler:
            return count + 'sleep 1; if [ "$n" -eq 1 ]; then exit 7; fi'
        if name == "a":
            return count + "sleep 3"  # the lead ends last: its peers keep their own outcome
        return count + 'if [ "$n" -eq 1 ]; then sleep 30; fi'

    return {
        "workflow": {
            "name": "restart-peers",
            "resources": ONE_CORE,
            "groups": [
                {
                    "name": "g",
                    **group,
                    "tasks": [
                        task(
                            n,
                            script(n),
                            exitActions={"RESCHEDULE": "7"},
                            **({"lead": True} if n == "a" else {}),
                        )
                        for n in ("a", *PEERS)
                    ],
                }
            ],
        }
    }


def runs(marks: Path, name: str) -> int:
    return len((marks / name).read_text().splitlines())


def free_cpu(service: Service) -> float:
    return sum(float(n["free_cpu"]) for n in service.scheduler.usage())


async def until_group_runs(service: Service, wf_id: str) -> None:
    for _ in range(200):  # bounded: 20 s
        if service.get(wf_id)["groups"][0]["status"] == "RUNNING":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"group never ran: {service.get(wf_id)['groups']}")


async def test_a_rescheduled_lead_restarts_its_peers_in_place(service_factory, tmp_path) -> None:
    """OSMO: the lead's RESCHEDULE restarts every other task of its group (whatever
    ignoreNonleadStatus says); here each peer's attempt ends RESCHEDULED and its next attempt
    runs on the same room, and all end COMPLETED."""
    service = await service_factory(max_retries=1)
    marks = tmp_path / "marks"
    marks.mkdir()
    wf = await run(service, group_spec(marks))
    assert wf["status"] == "COMPLETED"
    assert {n: t["status"] for n, t in latest(wf).items()} == dict.fromkeys("abc", "COMPLETED")
    assert {n: runs(marks, n) for n in "abc"} == dict.fromkeys("abc", 2)
    lead = attempts(wf, "a")
    assert [(t["status"], t["exit_code"]) for t in lead] == [("RESCHEDULED", 7), ("COMPLETED", 0)]
    for peer in PEERS:
        tries = attempts(wf, peer)
        assert [t["status"] for t in tries] == ["RESCHEDULED", "COMPLETED"]
        assert tries[0]["message"] == "restarted in place: task a of its group was rescheduled"
        rows = service.store.tasks_of(wf["id"], peer)
        assert (rows[1]["backend"], rows[1]["node"], rows[1]["alloc"]) == (
            rows[0]["backend"],
            rows[0]["node"],
            rows[0]["alloc"],
        )
        assert json.loads(rows[1]["alloc"])["cpu"] == 1
        # a log per attempt, as for a retry
        assert await log_text(service, wf["id"], peer, 0) == "run 1"
        assert await log_text(service, wf["id"], peer, 1) == "run 2"
    # the barrier is re-entered: the second round of the group starts together
    starts = [attempts(wf, n)[1]["start_time"] for n in "abc"]
    assert max(starts) - min(starts) < 1.0


async def test_the_restarted_peers_keep_their_room(service_factory, tmp_path) -> None:
    """On a strict 3-core machine the group holds all three cores. When the lead is
    rescheduled its core goes back to the queue (another workflow's task takes it), but its
    peers' two cores stay theirs while they restart: the other workflow's two tasks never run
    at the same time, and the group meets again once the lead has a core."""
    service = await service_factory(max_retries=1, local={"cpus": 3})
    marks = tmp_path / "marks"
    marks.mkdir()
    wf_id = await service.submit(group_spec(marks))
    await until_group_runs(service, wf_id)
    other = {
        "workflow": {
            "name": "other",
            "resources": ONE_CORE,
            "tasks": [task(n, "sleep 1") for n in ("x", "y")],
        }
    }
    other_id = await service.submit(other)
    assert (await asyncio.wait_for(service.wait(wf_id), 60)).value == "COMPLETED"
    assert (await asyncio.wait_for(service.wait(other_id), 30)).value == "COMPLETED"
    x, y = (latest(service.get(other_id))[n] for n in ("x", "y"))
    assert x["end_time"] <= y["start_time"] or y["end_time"] <= x["start_time"]
    wf = service.get(wf_id)
    assert {n: runs(marks, n) for n in "abc"} == dict.fromkeys("abc", 2)
    second = [attempts(wf, n)[1] for n in "abc"]
    assert all(t["status"] == "COMPLETED" for t in second)
    # the group's second round waited for the lead's core (after one of the other's tasks)
    first_other_end = min(x["end_time"], y["end_time"])
    assert min(t["start_time"] for t in second) >= first_other_end


@pytest.mark.parametrize(
    ("ignore_nonlead", "restarted"),
    [(True, False), (False, True)],
    ids=["ignoreNonleadStatus-true-peers-go-on", "ignoreNonleadStatus-false-peers-restart"],
)
async def test_a_rescheduled_nonlead_restarts_peers_only_in_a_strict_group(
    service_factory, tmp_path, ignore_nonlead: bool, restarted: bool
) -> None:
    """OSMO's jobs.py: a non-lead's RESCHEDULE restarts the others only with
    ignoreNonleadStatus: false; by default they go on running."""
    service = await service_factory(max_retries=1)
    marks = tmp_path / "marks"
    marks.mkdir()
    spec = group_spec(marks, rescheduler="b", ignoreNonleadStatus=ignore_nonlead)
    # c's first run must end on its own when nothing restarts it
    spec["workflow"]["groups"][0]["tasks"][2]["command"][-1] = f"echo run >> {marks}/c; sleep 2"
    wf = await run(service, spec)
    assert wf["status"] == "COMPLETED"
    assert runs(marks, "b") == 2
    expected = 2 if restarted else 1
    assert (runs(marks, "a"), runs(marks, "c")) == (expected, expected)
    assert [t["status"] for t in attempts(wf, "a")] == (
        ["RESCHEDULED", "COMPLETED"] if restarted else ["COMPLETED"]
    )


async def test_peers_that_ended_are_left_alone(service_factory, tmp_path) -> None:
    """A group whose other tasks no longer run is unchanged: the lead's reschedule reruns
    the lead only."""
    service = await service_factory(max_retries=1)
    marks = tmp_path / "marks"
    marks.mkdir()
    spec = group_spec(marks)
    for t in spec["workflow"]["groups"][0]["tasks"][1:]:
        t["command"][-1] = f"echo run >> {marks}/{t['name']}"
    spec["workflow"]["groups"][0]["tasks"][0]["command"][-1] = (
        f"echo run >> {marks}/a; n=$(wc -l < {marks}/a); "
        'sleep 2; if [ "$n" -eq 1 ]; then exit 7; fi'
    )
    wf = await run(service, spec)
    assert wf["status"] == "COMPLETED"
    assert {n: runs(marks, n) for n in "abc"} == {"a": 2, "b": 1, "c": 1}
    assert [len(attempts(wf, n)) for n in "abc"] == [2, 1, 1]


async def test_past_the_budget_the_group_ends_as_before(service_factory, tmp_path) -> None:
    """The lead reschedules every time: within the budget (1) its peers restart once; past
    it the lead ends FAILED and its peers FAILED with "Lead task finished", as without
    restarts. The peers' restart spent none of their own budget."""
    service = await service_factory(max_retries=1)
    marks = tmp_path / "marks"
    marks.mkdir()
    spec = group_spec(marks)
    a, b, c = spec["workflow"]["groups"][0]["tasks"]
    a["command"][-1] = f"echo run >> {marks}/a; sleep 1; exit 7"
    for peer in (b, c):  # still running when the lead fails
        peer["command"][-1] = f"echo run >> {marks}/{peer['name']}; sleep 30"
    wf = await run(service, spec)
    assert wf["status"] == "FAILED"
    lead = attempts(wf, "a")
    assert [(t["status"], t["exit_code"]) for t in lead] == [("RESCHEDULED", 7), ("FAILED", 7)]
    assert "retry budget (1) exhausted" in lead[-1]["message"]
    for peer in PEERS:
        tries = attempts(wf, peer)
        assert [t["status"] for t in tries] == ["RESCHEDULED", "FAILED"]
        assert tries[-1]["message"] == "Lead task finished"
    assert {n: runs(marks, n) for n in "abc"} == dict.fromkeys("abc", 2)


async def parked_behind_a_blocker(service: Service, marks: Path) -> tuple[str, str]:
    """The group running on a strict 3-core machine, a one-core `blocker` workflow queued
    behind it; once the lead is rescheduled the blocker takes its core and the peers wait,
    parked on theirs. (workflow id, blocker id)"""
    wf_id = await service.submit(group_spec(marks))
    await until_group_runs(service, wf_id)
    blocker = await service.submit(
        {"workflow": {"name": "blocker", "resources": ONE_CORE, "tasks": [task("x", "sleep 60")]}}
    )
    for _ in range(200):  # bounded: 20 s, until the peers are parked and the lead waits
        wf = service.get(wf_id)
        if [t["status"] for t in wf["tasks"] if t["retry_id"] == 1] == ["SCHEDULING"] * 3:
            return wf_id, blocker
        await asyncio.sleep(0.1)
    raise AssertionError(f"the group never waited to meet again: {wf['tasks']}")


async def test_the_kept_room_survives_a_control_plane_restart(service_factory, tmp_path) -> None:
    """The engine stops while the peers are parked: the next one keeps their cores (the
    blocker's task is adopted), and the group meets again once the blocker is gone."""
    marks = tmp_path / "marks"
    marks.mkdir()
    first = Service(make_config(tmp_path / "osmo", max_retries=1, local={"cpus": 3}))
    await first.start()
    wf_id, blocker = await parked_behind_a_blocker(first, marks)
    await first.stop()  # the agent and the blocker's task go on
    second = await service_factory(tmp_path / "osmo", max_retries=1, local={"cpus": 3})
    assert free_cpu(second) == 0
    await second.cancel(blocker)
    assert (await asyncio.wait_for(second.wait(wf_id), 60)).value == "COMPLETED"
    assert {n: runs(marks, n) for n in "abc"} == dict.fromkeys("abc", 2)


async def test_cancel_during_a_restart_frees_the_kept_room(service_factory, tmp_path) -> None:
    """Cancelled while the peers wait, parked on their room, for the rescheduled lead to get
    a core: every attempt ends FAILED_CANCELED and the peers' room is free again."""
    service = await service_factory(max_retries=1, local={"cpus": 3})
    marks = tmp_path / "marks"
    marks.mkdir()
    wf_id, blocker = await parked_behind_a_blocker(service, marks)
    wf = service.get(wf_id)
    assert free_cpu(service) == 0  # the blocker has the lead's core, the peers keep theirs
    waiting = {t["name"]: t["pending_reason"] for t in wf["tasks"] if t["retry_id"] == 1}
    assert waiting["b"] == waiting["c"] == policy.MEET_AGAIN
    assert waiting["a"] is not None and waiting["a"] != policy.MEET_AGAIN  # the queue's word
    await service.cancel(wf_id)
    wf = service.get(wf_id)
    assert [t["status"] for t in wf["tasks"] if t["retry_id"] == 1] == ["FAILED_CANCELED"] * 3
    assert free_cpu(service) == 2
    await service.cancel(blocker)
    await asyncio.wait_for(service.wait(blocker), 30)  # its running task ends with its process
    assert free_cpu(service) == 3


async def test_a_restart_spends_none_of_a_peers_own_budget(service_factory, tmp_path) -> None:
    """OSMO's restart leaves a peer's retry id alone, so its own budget is whole: a peer
    restarted once may still reschedule itself once with a budget of 1."""
    service = await service_factory(max_retries=1)
    marks = tmp_path / "marks"
    marks.mkdir()
    spec = group_spec(marks)
    b = spec["workflow"]["groups"][0]["tasks"][1]
    b["command"][-1] = (  # run 1: restarted by the lead; run 2: rescheduled by itself
        f"echo run >> {marks}/b; n=$(wc -l < {marks}/b); "
        'if [ "$n" -eq 1 ]; then sleep 30; elif [ "$n" -eq 2 ]; then exit 7; fi'
    )
    wf = await run(service, spec)
    assert wf["status"] == "COMPLETED"
    assert [(t["status"], t["exit_code"]) for t in attempts(wf, "b")][1:] == [
        ("RESCHEDULED", 7),
        ("COMPLETED", 0),
    ]
    assert runs(marks, "b") == 3
