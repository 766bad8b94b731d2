"""Run records: the in-memory model of unfinished workflows, and building it from the store's rows.

WorkflowRun -> GroupRun -> TaskRun -> Attempt mirror the store's workflows, groups and task rows;
the engine keeps the unfinished ones in memory and changes them only inside its loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..acyclic import acyclic
from ..dag import WorkflowDAG
from ..errors import SpecError
from ..roles import USER
from ..scheduler import Alloc
from ..spec.models import Group, Task, Workflow
from ..states import TaskStatus, WorkflowStatus
from ..wire import BackendEvent, LaunchInfo, Usage, attempt_key

if TYPE_CHECKING:
    from sqlalchemy import RowMapping

T = TaskStatus
W = WorkflowStatus
LAUNCHED = (T.INITIALIZING, T.RUNNING)
UNPLACED = (T.SUBMITTING, T.WAITING, T.PROCESSING, T.SCHEDULING)


@dataclass(eq=False)
class Attempt:
    task: TaskRun
    retry_id: int
    status: TaskStatus | None = None
    create_time: float = 0.0
    start_time: float | None = None
    end_time: float | None = None
    exit_code: int | None = None
    alloc: Alloc | None = None
    info: LaunchInfo | None = None
    cancel_reason: TaskStatus | None = None
    message: str | None = None
    launching: bool = False
    pending_end: BackendEvent | None = None  # an end that arrived before the launch answer
    hold: str | None = None  # interactive | debug while held; done | retry once decided
    hold_until: float | None = None
    hold_timer: asyncio.TimerHandle | None = None
    usage: Usage | None = None  # the agent's last sample while the command runs
    pending_reason: str | None = None  # why it waited, as last announced (restored at restart)
    reused_from: str | None = None  # it did not run: the attempt key whose outputs it has
    cache_key: str | None = None  # the task cache's key (engine/cache.py)
    seq: int | None = None  # its unit's submission order in the queue (preemption requeues by it)

    @property
    def key(self) -> str:
        return attempt_key(self.task.group.workflow.id, self.task.name, self.retry_id)

    @property
    def retries(self) -> int:
        """Earlier attempts of its task that spent its retry budget: not those its group
        restarted in place (stopped with cancel_reason RESCHEDULED, engine/groups.py), as a
        restart leaves OSMO's retry id alone."""
        restarted = sum(
            1
            for a in self.task.attempts
            if a.retry_id < self.retry_id and a.cancel_reason == T.RESCHEDULED
        )
        return self.retry_id - restarted

    @property
    def restarting(self) -> bool:
        """Being stopped for its group's restart in place (engine/groups.py)."""
        return self.status in LAUNCHED and self.cancel_reason == T.RESCHEDULED

    @property
    def parked(self) -> bool:
        """Placed but not launched: it keeps its room while its group meets again after a
        restart in place (engine/groups.py)."""
        return self.status == T.SCHEDULING and self.alloc is not None


@dataclass(eq=False)
class TaskRun:
    spec: Task
    group: GroupRun
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def current(self) -> Attempt:
        return self.attempts[-1]


@dataclass(eq=False)
class GroupRun:
    spec: Group
    workflow: WorkflowRun
    status: TaskStatus | None = None
    tasks: list[TaskRun] = field(default_factory=list)
    scheduling_time: float | None = None
    start_time: float | None = None
    end_time: float | None = None
    message: str | None = None
    timer: asyncio.TimerHandle | None = None  # queue or exec timeout
    grace_timer: asyncio.TimerHandle | None = None  # peers' time to finish after the lead

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def lead(self) -> TaskRun:
        return next((t for t in self.tasks if t.spec.lead), self.tasks[0])


@dataclass(eq=False)
class WorkflowRun:
    id: str
    spec: Workflow
    dag: WorkflowDAG
    pool: str
    user: str
    priority: int
    submit_time: float
    role: str = USER  # the submitter's (auth roles): fair share weighs by it
    status: WorkflowStatus | None = None
    start_time: float | None = None
    end_time: float | None = None
    message: str | None = None
    groups: dict[str, GroupRun] = field(default_factory=dict)
    tasks: dict[str, TaskRun] = field(default_factory=dict)
    groups_left: int = 0
    active: int = 0  # attempts INITIALIZING or RUNNING
    canceling: bool = False
    cancel_steps: Iterator[bool] | None = None  # a cancel under way (Engine._cancel_steps)
    start_steps: Iterator[bool] | None = None  # its groups being started (Engine._start_steps)
    done: asyncio.Event = field(default_factory=asyncio.Event)


def workflow_dag(spec: Workflow) -> WorkflowDAG:
    """The spec's group graph. SpecError on a cycle: validation refuses one, and a workflow
    that reached the engine without it would wait forever (no group of a cycle can start)."""
    graph = WorkflowDAG.build(spec)
    if not acyclic(graph.graph.edges):
        raise SpecError(f"cycle: {' -> '.join(graph.find_cycle() or [])}")
    return graph


def run_from_rows(
    row: RowMapping,
    group_rows: list[RowMapping],
    task_rows: list[RowMapping],
    attempts: dict[str, Attempt],
) -> WorkflowRun:
    """An unfinished workflow from its stored rows; its attempts are added to `attempts` (the
    engine's index by attempt key). Rows that do not make a workflow (a spec stored before a
    rule that now refuses it, a damaged row) raise: ValueError, KeyError, TypeError..."""
    wf_id = row["id"]
    spec = Workflow.model_validate_json(row["spec_json"])
    wf = WorkflowRun(
        id=wf_id,
        spec=spec,
        dag=workflow_dag(spec),
        pool=row["pool"],
        user=row["user"],
        priority=row["priority"],
        submit_time=row["submit_time"],
        role=row["role"] or USER,  # stored before 0007: no role kept
        status=W(row["status"]),
        start_time=row["start_time"],
        message=row["message"],
    )
    groups = {r["name"]: r for r in group_rows}
    by_task: dict[str, list[Any]] = {}
    for r in task_rows:
        by_task.setdefault(r["name"], []).append(r)
    for g_spec in spec.all_groups():
        gr = groups[g_spec.name]
        status = T(gr["status"])
        g = GroupRun(
            g_spec,
            wf,
            status=status,
            scheduling_time=gr["scheduling_time"],
            start_time=gr["start_time"],
            end_time=gr["end_time"],
            message=gr["message"],
        )
        wf.groups[g.name] = g
        if not status.terminal:
            wf.groups_left += 1
        for t_spec in g_spec.tasks:
            t = TaskRun(t_spec, g)
            for r in sorted(by_task[t_spec.name], key=lambda r: r["retry_id"]):
                alloc = None
                if r["alloc"]:
                    a = json.loads(r["alloc"])
                    alloc = Alloc(
                        r["backend"],
                        r["node"],
                        a["cpu"],
                        a["memory"],
                        a["gpus"],
                        pool=wf.pool,
                        priority=wf.priority,
                        user=wf.user,
                    )
                info = (
                    LaunchInfo(t.name, r["workdir"], r["output_path"], r["log_path"])
                    if r["workdir"]
                    else None
                )
                att = Attempt(
                    t,
                    r["retry_id"],
                    T(r["status"]),
                    create_time=r["create_time"],
                    start_time=r["start_time"],
                    end_time=r["end_time"],
                    exit_code=r["exit_code"],
                    alloc=alloc,
                    info=info,
                    cancel_reason=T(r["cancel_reason"]) if r["cancel_reason"] else None,
                    message=r["message"],
                    hold=r["hold"],
                    hold_until=r["hold_until"],
                    pending_reason=r["pending_reason"],
                    reused_from=r["reused_from"],
                    cache_key=r["cache_key"],
                )
                t.attempts.append(att)
                attempts[att.key] = att
                if att.status in LAUNCHED:
                    wf.active += 1
            g.tasks.append(t)
            wf.tasks[t.name] = t
    return wf
