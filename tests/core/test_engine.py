"""The engine end to end on the local backend: real agent, real processes, real SQLite."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from osmo_core.engine import slices
from osmo_core.errors import Conflict, PlacementError, SpecError, StoreError
from osmo_core.events import Event
from osmo_core.service import Service
from osmo_core.spec.localfiles import inline_localpaths
from osmo_core.states import TASK_TRANSITIONS, TaskStatus, WorkflowStatus

T = TaskStatus


def latest(wf: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for t in wf["tasks"]:
        out[t["name"]] = t
    return out


def attempts(wf: dict, name: str) -> list[dict]:
    return [t for t in wf["tasks"] if t["name"] == name]


async def run(service: Service, spec: dict | str, timeout: float = 30, **kw) -> dict:
    wf_id = await service.submit(spec, **kw)
    status = await asyncio.wait_for(service.wait(wf_id), timeout)
    wf = service.get(wf_id)
    assert wf["status"] == status.value
    return wf


async def log_text(service: Service, wf_id: str, task: str, retry_id: int | None = None) -> str:
    return "\n".join(line.text for line in await service.logs(wf_id, task, retry_id))


def task(name: str, script: str, **extra) -> dict:
    return {"name": name, "command": ["sh", "-c", script], **extra}


def assert_transitions_legal(service: Service, wf_id: str) -> None:
    """Replay the stored task events: every move is in the table, in order."""
    last: dict[tuple[str, int], TaskStatus | None] = {}
    for ev in service.store.events_since(0, wf_id, limit=100_000):
        if ev["type"] != "task.status":
            continue
        key = (ev["task"], ev["retry_id"])
        to = TaskStatus(ev["status"])
        frm = last.get(key)
        if frm is None:  # first event of an attempt: from its creation status
            frm = T.SUBMITTING if ev["retry_id"] == 0 else None
            if frm == to:
                continue
        assert to in TASK_TRANSITIONS[frm], f"{key}: {frm} -> {to}"
        last[key] = to


async def test_chain_passes_data_and_logs(service: Service) -> None:
    spec = {
        "workflow": {
            "name": "chain",
            "tasks": [
                task("a", "echo from-a; echo payload-a > {{output}}/data.txt"),
                task(
                    "b",
                    "echo err-b >&2; cat {{input:0}}/data.txt > {{output}}/data.txt; "
                    "echo payload-b >> {{output}}/data.txt",
                    inputs=[{"task": "a"}],
                ),
                task("c", "cat {{input:b}}/data.txt", inputs=[{"task": "b"}]),
            ],
        }
    }
    wf = await run(service, spec)
    assert wf["status"] == "COMPLETED"
    assert [t["status"] for t in wf["tasks"]] == ["COMPLETED"] * 3
    assert (await log_text(service, wf["id"], "c")).split("\n") == ["payload-a", "payload-b"]
    lines = await service.logs(wf["id"], "b")
    assert [(ln.stream, ln.text) for ln in lines] == [("stderr", "err-b")]
    a, b = latest(wf)["a"], latest(wf)["b"]
    assert a["end_time"] <= b["start_time"]
    assert_transitions_legal(service, wf["id"])


async def test_environment_and_files(service: Service) -> None:
    spec = {
        "workflow": {
            "name": "envfiles",
            "tasks": [
                {
                    "name": "t",
                    "command": ["sh", "/tmp/run.sh"],
                    "environment": {"GREETING": "hi {{workflow_id}}", "NUM": 7},
                    "files": [
                        {
                            "path": "/tmp/run.sh",
                            "contents": "echo $GREETING $NUM $OSMO_TASK_NAME\ncat conf/x.txt\n",
                        },
                        {"path": "conf/x.txt", "contents": "aGVsbG8gYmFzZTY0", "base64": True},
                    ],
                }
            ],
        }
    }
    wf = await run(service, spec)
    assert wf["status"] == "COMPLETED", wf
    assert (await log_text(service, wf["id"], "t")).split("\n") == [
        f"hi {wf['id']} 7 t",
        "hello base64",
    ]


async def test_exit_actions_reschedule_then_complete(service_factory) -> None:
    service = await service_factory(max_retries=3)  # OSMO's default budget is 0
    spec = {
        "workflow": {
            "name": "flaky",
            "tasks": [
                task(
                    "f",
                    'echo try $OSMO_RETRY_ID; [ "$OSMO_RETRY_ID" -ge 2 ] || exit 4',
                    exitActions={"COMPLETE": "0", "RESCHEDULE": "3-5"},
                )
            ],
        }
    }
    wf = await run(service, spec)
    tries = attempts(wf, "f")
    assert [(t["retry_id"], t["status"], t["exit_code"]) for t in tries] == [
        (0, "RESCHEDULED", 4),
        (1, "RESCHEDULED", 4),
        (2, "COMPLETED", 0),
    ]
    assert wf["status"] == "COMPLETED"
    assert await log_text(service, wf["id"], "f", 1) == "try 1"
    assert_transitions_legal(service, wf["id"])


async def test_retry_budget_exhausted_fails(service_factory) -> None:
    service = await service_factory(max_retries=5)
    spec = {
        "workflow": {
            "name": "budget",
            "tasks": [task("f", "exit 3", exitActions={"RESCHEDULE": "3"}, maxRetries=1)],
        }
    }
    wf = await run(service, spec)
    tries = attempts(wf, "f")
    assert [t["status"] for t in tries] == ["RESCHEDULED", "FAILED"]
    assert "retry budget (1) exhausted" in tries[-1]["message"]
    assert wf["status"] == "FAILED"


async def test_exit_action_complete_on_nonzero_and_fail_on_zero(service: Service) -> None:
    spec = {
        "workflow": {
            "name": "codes",
            "tasks": [
                task("ok16", "exit 16", exitActions={"COMPLETE": "0,1-10,16,20"}),
                task("bad0", "exit 0", exitActions={"FAIL": "0"}),
            ],
        }
    }
    wf = await run(service, spec)
    t = latest(wf)
    assert (t["ok16"]["status"], t["ok16"]["exit_code"]) == ("COMPLETED", 16)
    assert (t["bad0"]["status"], t["bad0"]["exit_code"]) == ("FAILED", 0)
    assert wf["status"] == "FAILED"


async def test_failure_cascades_upstream_only_downstream(service: Service) -> None:
    spec = {
        "workflow": {
            "name": "cascade",
            "tasks": [
                task("a", "exit 2"),
                task("b", "true", inputs=[{"task": "a"}]),
                task("c", "true", inputs=[{"task": "b"}]),
                task("free", "echo independent"),
            ],
        }
    }
    wf = await run(service, spec)
    t = latest(wf)
    assert t["a"]["status"] == "FAILED" and t["a"]["exit_code"] == 2
    assert t["b"]["status"] == t["c"]["status"] == "FAILED_UPSTREAM"
    assert t["free"]["status"] == "COMPLETED"
    assert wf["status"] == "FAILED"
    assert {g["name"]: g["status"] for g in wf["groups"]}["c"] == "FAILED_UPSTREAM"
    assert_transitions_legal(service, wf["id"])


async def test_cancel_kills_running_and_cancels_waiting(service: Service, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    spec = {
        "workflow": {
            "name": "cancelme",
            "tasks": [
                task("long", f"echo $$ > {pidfile}; sleep 60 & wait"),
                task("after", "true", inputs=[{"task": "long"}]),
            ],
        }
    }
    wf_id = await service.submit(spec)
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    pid = int(pidfile.read_text())
    await service.cancel(wf_id)
    status = await asyncio.wait_for(service.wait(wf_id), 15)
    assert status == WorkflowStatus.FAILED_CANCELED
    t = latest(service.get(wf_id))
    assert t["long"]["status"] == "FAILED_CANCELED"
    assert t["after"]["status"] == "FAILED_CANCELED"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(Conflict):
        await service.cancel(wf_id)


async def test_exec_timeout(service: Service) -> None:
    spec = {
        "workflow": {
            "name": "slow",
            "timeout": {"exec_timeout": "1s"},
            "tasks": [task("sleepy", "sleep 30")],
        }
    }
    started = time.monotonic()
    wf = await run(service, spec)
    assert time.monotonic() - started < 15
    assert latest(wf)["sleepy"]["status"] == "FAILED_EXEC_TIMEOUT"
    assert wf["status"] == "FAILED_EXEC_TIMEOUT"


async def test_queue_timeout_and_capacity(service_factory) -> None:
    service = await service_factory(local={"cpus": 1})
    spec = {
        "workflow": {
            "name": "queue",
            "timeout": {"queue_timeout": "1s"},
            "resources": {"default": {"cpu": 1}},
            "tasks": [task("hog", "sleep 3"), task("starved", "true")],
        }
    }
    wf = await run(service, spec)
    t = latest(wf)
    assert t["hog"]["status"] == "COMPLETED"
    assert t["starved"]["status"] == "FAILED_QUEUE_TIMEOUT"
    assert wf["status"] == "FAILED_QUEUE_TIMEOUT"


async def test_tasks_wait_for_cpu(service_factory) -> None:
    service = await service_factory(local={"cpus": 2})
    sub = service.subscribe(logs=False)
    spec = {
        "workflow": {
            "name": "cpu",
            "resources": {"default": {"cpu": 1}},
            "tasks": [task(f"t{i}", "sleep 0.3") for i in range(5)],
        }
    }
    wf = await run(service, spec)
    assert wf["status"] == "COMPLETED"
    spans = sorted((t["start_time"], t["end_time"]) for t in wf["tasks"])
    for i, (start, _) in enumerate(spans):  # never more than 2 at once
        assert sum(1 for s, e in spans[:i] if e > start) <= 1
    seen: list[Event] = []
    while not sub._queue.empty():
        ev = sub._queue.get_nowait()
        if isinstance(ev, Event) and ev.type == "task.status":
            seen.append(ev)
    running_while_scheduling = False
    state: dict[str, str] = {}
    for ev in seen:
        state[ev.task] = ev.status
        vals = list(state.values())
        if "RUNNING" in vals and "SCHEDULING" in vals:
            running_while_scheduling = True
    assert running_while_scheduling
    sub.close()


async def test_gpus_assigned_per_task(service_factory) -> None:
    service = await service_factory(local={"gpus": [0, 1]})
    spec = {
        "workflow": {
            "name": "gpu",
            "resources": {"default": {"gpu": 1, "cpu": 0.1}},
            "tasks": [task(f"g{i}", 'echo "$CUDA_VISIBLE_DEVICES"; sleep 0.5') for i in range(3)],
        }
    }
    wf = await run(service, spec)
    assert wf["status"] == "COMPLETED"
    seen = {t["name"]: await log_text(service, wf["id"], t["name"]) for t in wf["tasks"]}
    assert set(seen.values()) <= {"0", "1"}
    spans = {t["name"]: (t["start_time"], t["end_time"]) for t in wf["tasks"]}
    for a in spans:
        for b in spans:
            overlap = a < b and spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]
            if overlap:
                assert seen[a] != seen[b], "two concurrent tasks got the same GPU"
    cpu_only = await run(
        service,
        {"workflow": {"name": "cpu-only", "tasks": [task("c", 'echo "[$CUDA_VISIBLE_DEVICES]"')]}},
    )
    assert await log_text(service, cpu_only["id"], "c") == "[]"


async def test_placement_errors(service_factory) -> None:
    service = await service_factory(local={"cpus": 2})  # declared cores: CPU is strict
    too_big = {
        "workflow": {
            "name": "big",
            "resources": {"default": {"cpu": 10_000}},
            "tasks": [task("t", "true")],
        }
    }
    with pytest.raises(PlacementError) as e:
        await service.submit(too_big)
    assert "more than any machine" in str(e.value)
    wrong_platform = {
        "workflow": {
            "name": "plat",
            "resources": {"default": {"platform": "dgx"}},
            "tasks": [task("t", "true")],
        }
    }
    with pytest.raises(PlacementError, match="platform 'dgx' is not in pool 'local'"):
        await service.submit(wrong_platform)
    gang = {
        "workflow": {
            "name": "gang",
            "groups": [
                {"name": "g", "tasks": [task(f"t{i}", "true", lead=i == 0) for i in range(64)]}
            ],
        }
    }
    with pytest.raises(PlacementError, match="group 'g' starts its 64 tasks together"):
        await service.submit(gang)
    with pytest.raises(PlacementError, match="pool 'nope' does not exist"):
        await service.submit({"workflow": {"name": "p", "tasks": [task("t", "true")]}}, pool="nope")
    assert service.list() == []  # nothing was stored


async def test_group_lead_decides_and_stops_the_rest(service_factory) -> None:
    service = await service_factory(group_stop_grace=1.0)
    spec = {
        "workflow": {
            "name": "grp",
            "resources": {"default": {"cpu": 0.5}},
            "groups": [
                {
                    "name": "g",
                    "tasks": [
                        task("lead", "sleep 0.5; exit 0", lead=True),
                        task("helper", "sleep 60"),
                        task("finisher", "sleep 0.8; echo done-in-grace"),
                        task("broken", "exit 1"),
                    ],
                },
                {"name": "next", "tasks": [task("after", "echo after", inputs=[{"task": "lead"}])]},
            ],
        }
    }
    wf = await run(service, spec)
    t = latest(wf)
    assert t["lead"]["status"] == "COMPLETED"
    assert t["broken"]["status"] == "FAILED"  # ignoreNonleadStatus defaults to true
    # OSMO's jobs.py: the peers still running end COMPLETED with their lead
    assert (t["helper"]["status"], t["helper"]["message"]) == ("COMPLETED", "Lead task finished")
    assert t["finisher"]["status"] == "COMPLETED"  # finished within the grace period
    assert t["finisher"]["message"] is None
    assert t["after"]["status"] == "COMPLETED"
    assert wf["status"] == "COMPLETED"


async def test_group_strict_nonlead_failure_fails_group(service: Service) -> None:
    spec = {
        "workflow": {
            "name": "strict",
            "resources": {"default": {"cpu": 0.5}},
            "groups": [
                {
                    "name": "g",
                    "ignoreNonleadStatus": False,
                    "tasks": [task("lead", "sleep 30", lead=True), task("worker", "exit 5")],
                }
            ],
        }
    }
    wf = await run(service, spec)
    t = latest(wf)
    assert t["worker"]["status"] == "FAILED"
    # OSMO's jobs.py: the others FAILED, naming the failed task
    assert (t["lead"]["status"], t["lead"]["message"]) == ("FAILED", "Task worker Failed.")
    assert {g["name"]: g["status"] for g in wf["groups"]}["g"] == "FAILED"
    assert wf["status"] == "FAILED"


async def test_start_error(service: Service) -> None:
    spec = {
        "workflow": {
            "name": "nocmd",
            "tasks": [{"name": "t", "command": ["/definitely/not/a/command"]}],
        }
    }
    wf = await run(service, spec)
    assert latest(wf)["t"]["status"] == "FAILED_START_ERROR"
    assert "/definitely/not/a/command" in latest(wf)["t"]["message"]


async def test_events_are_persisted_before_announced(service: Service) -> None:
    sub = service.subscribe(logs=False)
    # At the moment each event is handed to a subscriber, a separate connection to the store
    # must already see it committed.
    unseen: list[int] = []
    offer = sub.offer

    def checking_offer(ev):  # type: ignore[no-untyped-def]
        if isinstance(ev, Event) and ev.id is not None and ev.id > service.store.max_event_id():
            unseen.append(ev.id)
        offer(ev)

    sub.offer = checking_offer  # type: ignore[method-assign]
    wf = await run(service, {"workflow": {"name": "ev", "tasks": [task("t", "true")]}})
    assert unseen == []
    ids = []
    while not sub._queue.empty():
        ev = sub._queue.get_nowait()
        assert isinstance(ev, Event)
        ids.append(ev.id)
    stored = [e["id"] for e in service.store.events_since(0, wf["id"])]
    assert ids == stored and ids == sorted(ids) and len(ids) >= 6
    sub.close()


async def test_a_subscription_to_some_types_gets_those_only_in_order(service: Service) -> None:
    every = service.subscribe(logs=False)
    some = service.subscribe(types=frozenset({"task.status", "workflow.submitted"}))
    await run(service, {"workflow": {"name": "ev", "tasks": [task("t", "echo hi")]}})
    got = {}
    for sub in (every, some):
        got[sub] = []
        while not sub._queue.empty():
            ev = sub._queue.get_nowait()
            assert isinstance(ev, Event)
            got[sub].append((ev.id, ev.type, ev.status))
        sub.close()
    wanted = [e for e in got[every] if e[1] in ("task.status", "workflow.submitted")]
    assert got[some] == wanted and len(wanted) >= 4  # submitted, then the task's statuses
    assert {t for _, t, _ in got[every]} - {"task.status", "workflow.submitted"}  # others exist


async def test_agent_loss_reschedules_onto_new_attempt(service_factory, tmp_path: Path) -> None:
    service = await service_factory(max_retries=1)  # OSMO's default budget is 0
    marker = tmp_path / "started"
    spec = {
        "workflow": {
            "name": "lost",
            "tasks": [
                task(
                    "t",
                    f'echo "$OSMO_RETRY_ID" >> {marker}; [ "$OSMO_RETRY_ID" -ge 1 ] || sleep 30',
                )
            ],
        }
    }
    wf_id = await service.submit(spec)
    deadline = time.monotonic() + 10
    while not marker.exists():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    agent_pid = int((Path(service.config.data_dir) / "agent.pid").read_text())
    os.kill(agent_pid, 9)  # the host's agent dies; its task is lost with it
    status = await asyncio.wait_for(service.wait(wf_id), 30)
    tries = attempts(service.get(wf_id), "t")
    assert [t["status"] for t in tries] == ["FAILED_BACKEND_ERROR", "COMPLETED"]
    assert status == WorkflowStatus.COMPLETED
    # while it backed off before the retry, it had a reason to wait too
    pending = [
        e["payload"]["reason"]
        for e in service.store.events_since(0, wf_id)
        if e["type"] == "task.pending" and e["retry_id"] == 1
    ]
    assert pending and pending[0].startswith(
        "retry 1 after FAILED_BACKEND_ERROR: backing off 0.5s until "
    ), pending


async def test_workflow_on_postgres(service_factory, pg_database) -> None:
    """The same engine on a real PostgreSQL store (skipped without a server)."""
    service = await service_factory(store_url=pg_database.url)
    spec = {
        "workflow": {
            "name": "pg",
            "tasks": [
                task("a", "echo A > {{output}}/x"),
                task(
                    "b",
                    "cat {{input:0}}/x; exit 3",
                    inputs=[{"task": "a"}],
                    exitActions={"RESCHEDULE": "3"},
                    maxRetries=1,
                ),
            ],
        }
    }
    wf = await run(service, spec)
    assert [(t["name"], t["retry_id"], t["status"]) for t in wf["tasks"]] == [
        ("a", 0, "COMPLETED"),
        ("b", 0, "RESCHEDULED"),
        ("b", 1, "FAILED"),
    ]
    assert await log_text(service, wf["id"], "b", 1) == "A"
    assert_transitions_legal(service, wf["id"])


async def test_localpath_files_are_read_by_the_client_at_submission(
    service: Service, tmp_path: Path
) -> None:
    """The client reads `localpath` (relative to the spec's folder) and sends it inline; the
    engine itself refuses one (the server never reads a file for its caller)."""
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "hello.sh"
    script.write_text("echo from localpath\n")
    spec_file = tmp_path / "wf.yaml"
    text = (  # t starts after `first`: well after the file below has changed
        "workflow:\n  name: lp\n  tasks:\n  - name: first\n    command: [sleep, '0.5']\n"
        "  - name: t\n    command: [sh, /tmp/hello.sh]\n    inputs: [{task: first}]\n"
        "    files:\n    - path: /tmp/hello.sh\n      localpath: scripts/hello.sh\n"
    )
    with pytest.raises(SpecError) as e:
        await service.submit(text, file=str(spec_file))
    assert e.value.problems[0].field == "workflow.tasks[1].files[0].localpath"

    inline, _ = inline_localpaths(text, base=tmp_path, file=str(spec_file))
    wf_id = await service.submit(inline, file=str(spec_file))
    script.write_text("echo changed after submission\n")  # the run must not see this
    await asyncio.wait_for(service.wait(wf_id), 30)
    assert await log_text(service, wf_id, "t") == "from localpath"

    missing = text.replace("scripts/hello.sh", "scripts/nope.sh")
    with pytest.raises(SpecError) as e:
        inline_localpaths(missing, base=tmp_path, file=str(spec_file))
    assert e.value.problems[0].field == "workflow.tasks[1].files[0].localpath"
    assert "nope.sh" in e.value.problems[0].message
    assert e.value.problems[0].line == 11


async def test_a_failed_commit_is_retried(service: Service) -> None:
    """SQLite refuses the engine's next write once (a real read-only connection); the engine
    retries on a fresh connection and the workflow completes."""
    wf_id = await service.submit(
        {
            "workflow": {
                "name": "retrycommit",
                "tasks": [task("a", "sleep 0.5"), task("b", "true", inputs=[{"task": "a"}])],
            }
        }
    )
    writer = service.store._writer
    assert writer is not None
    writer.connection.dbapi_connection.execute("PRAGMA query_only = ON")  # type: ignore
    assert await asyncio.wait_for(service.wait(wf_id), 30) == WorkflowStatus.COMPLETED


async def test_engine_stops_when_the_store_is_gone(service_factory, pg_database) -> None:
    service = await service_factory(store_url=pg_database.url)
    wf_id = await service.submit(
        {
            "workflow": {
                "name": "gone",
                "tasks": [task("t", "sleep 1"), task("u", "true", inputs=[{"task": "t"}])],
            }
        }
    )
    pg_database.drop()
    with pytest.raises(StoreError):  # the round that records t's end cannot be persisted
        await asyncio.wait_for(service.wait(wf_id), 30)
    with pytest.raises(StoreError):
        await service.submit({"workflow": {"name": "after", "tasks": [task("t", "true")]}})


async def test_cancel_right_after_submit(service_factory, tmp_path: Path) -> None:
    """Cancel while the first tasks are still being placed and launched: nothing is left
    running and every task ends FAILED_CANCELED."""
    service = await service_factory(local={"cpus": 1})
    marker = tmp_path / "ran"
    spec = {
        "workflow": {
            "name": "early",
            "resources": {"default": {"cpu": 1}},
            "tasks": [
                task("a", f"echo $$ >> {marker}; sleep 30"),
                task("b", f"echo $$ >> {marker}; sleep 30"),  # waits for the CPU
                task("c", "true", inputs=[{"task": "a"}]),
            ],
        }
    }
    wf_id = await service.submit(spec)
    await service.cancel(wf_id)
    assert await asyncio.wait_for(service.wait(wf_id), 20) == WorkflowStatus.FAILED_CANCELED
    assert {t["status"] for t in service.get(wf_id)["tasks"]} == {"FAILED_CANCELED"}
    for pid in (int(p) for p in (marker.read_text().split() if marker.exists() else [])):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_a_failed_background_step_is_logged_by_name(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    """Launches, cancels and releases run beside the engine's loop: a failure of one is logged
    with what it was for, not lost as an exception nobody retrieves."""

    async def refused() -> None:
        raise RuntimeError("the agent refused")

    service.engine._spawn(refused(), "release of wf-1/t/0")
    for _ in range(100):
        if "release of wf-1/t/0 failed" in caplog.text:
            break
        await asyncio.sleep(0.02)
    assert "engine: release of wf-1/t/0 failed: RuntimeError: the agent refused" in caplog.text
    assert "release of wf-1/t/0" not in {t.get_name() for t in service.engine._bg}, "let go"


async def test_a_submission_starts_its_groups_a_slice_per_round(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big workflow's groups start a slice per engine round (the loop stays free between):
    a group reached after its upstream completed starts, one reached before waits for it."""
    monkeypatch.setattr(slices, "SLICE", 0.0)  # 16 steps per round
    tasks: list[dict[str, object]] = [{"name": "first", "command": ["true"]}]
    tasks += [{"name": f"w{i}", "command": ["true"]} for i in range(40)]
    tasks += [
        {"name": "after", "command": ["true"], "inputs": [{"task": f"w{i}"}]} for i in (0, 39)
    ]
    tasks[-1]["name"] = "last"
    wf = await service.submit({"workflow": {"name": "sliced", "tasks": tasks}})
    assert str(await asyncio.wait_for(service.wait(wf), 120)) == "COMPLETED"
    assert {t["status"] for t in service.get(wf)["tasks"]} == {"COMPLETED"}
