"""Submission: a checked workflow spec becomes stored rows and in-memory runs.

The submission is its own transaction (the store allocates the workflow id); then its groups
start (those with no upstream) or wait, a slice per engine round (slices.py): the tasks'
transitions of a 10,000-task workflow took seconds of the loop in one round. A crash between
two slices leaves groups SUBMITTING, which recovery starts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..config import PRIORITIES
from ..errors import Problem, SpecError
from ..events import Event
from ..roles import USER
from ..spec.localfiles import localpath_fields
from ..spec.models import Workflow
from ..states import TaskStatus, WorkflowStatus
from ..store import Batch
from .runs import Attempt, GroupRun, TaskRun, WorkflowRun, workflow_dag
from .slices import PAUSE, run_slice

if TYPE_CHECKING:
    from sqlalchemy import RowMapping

    from .loop import Engine

T = TaskStatus
W = WorkflowStatus


def check_submission(spec: Workflow, priority: str, max_tasks: int) -> None:
    """SpecError unless the server takes this workflow: at most `max_tasks` tasks
    (OsmoConfig.max_tasks_per_workflow), a known priority, no `localpath` left to read."""
    n_tasks = len(spec.all_tasks())
    if n_tasks > max_tasks:
        raise SpecError(
            f"workflow has {n_tasks} tasks; this server allows at most "
            f"{max_tasks} (OsmoConfig."
            f"max_tasks_per_workflow)"
        )
    if priority not in PRIORITIES:
        raise SpecError(f"priority {priority!r} is not one of {', '.join(PRIORITIES)}")
    if lp := localpath_fields(spec):  # the client reads those (spec/localfiles.py)
        raise SpecError(
            [Problem("`localpath` must be sent inline by the client", field=f) for f in lp]
        )


def prepare(
    spec: Workflow,
    pool: str,
    user: str,
    role: str,
    priority: int,
    original: str,
    rendered: str,
    values: dict[str, Any],
    file: str | None,
    parent: str | None = None,
    env: dict[str, str] | None = None,
) -> tuple[WorkflowRun, dict[str, Any], Batch]:
    """A submission's in-memory run and its rows (workflow row, then groups and tasks in a
    batch): everything but the id, which the store allocates."""
    now = time.time()
    wf = WorkflowRun(
        id="",
        spec=spec,
        dag=workflow_dag(spec),
        pool=pool,
        user=user,
        role=role,
        priority=priority,
        submit_time=now,
        status=W.PENDING,
    )
    batch = Batch()
    for g_spec in spec.all_groups():
        g = GroupRun(g_spec, wf, status=T.SUBMITTING)
        wf.groups[g.name] = g
        batch.insert("groups", {"name": g.name, "status": T.SUBMITTING.value})
        for t_spec in g_spec.tasks:
            t = TaskRun(t_spec, g)
            t.attempts.append(Attempt(t, 0, T.SUBMITTING, create_time=now))
            g.tasks.append(t)
            wf.tasks[t.name] = t
            batch.insert(
                "tasks",
                {
                    "name": t.name,
                    "retry_id": 0,
                    "group_name": g.name,
                    "status": T.SUBMITTING.value,
                    "create_time": now,
                },
            )
    wf.groups_left = len(wf.groups)
    for key, value in spec.labels.items():
        batch.insert("workflow_labels", {"key": key, "value": value})
    row = {
        "name": spec.name,
        "user": user,
        "role": role,
        "pool": pool,
        "status": W.PENDING.value,
        "priority": priority,
        "file": file,
        "spec_original": original or "",
        "spec_rendered": rendered or "",
        "spec_json": spec.model_dump_json(by_alias=True),
        "set_values": json.dumps(values, default=str),
        "set_env": json.dumps(env or {}),
        "submit_time": now,
        "parent_workflow_id": parent,
    }
    return wf, row, batch


class Submission:
    """The Engine's `submit` command and the transaction that creates a workflow.

    A part of `Engine` (engine/loop.py): methods only, on the engine's state, run in its loop.
    """

    async def submit(
        self: Engine,
        spec: Workflow,
        *,
        pool: str | None = None,
        user: str = "local",
        role: str = USER,
        priority: str = "NORMAL",
        original: str = "",
        rendered: str = "",
        values: dict[str, Any] | None = None,
        file: str | None = None,
        parent: str | None = None,
        reuse: Mapping[str, RowMapping] | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        """Start a workflow whose placement the caller has checked (Service.check_placement).
        A restart names its `parent` and the tasks to `reuse`: task -> the parent's attempt
        row whose outputs it keeps (whole groups: Service.restart decides). `env`: the
        submission's `--set-env` (already in the spec), kept for a restart."""
        pool = pool or spec.pool or self.config.default_pool
        check_submission(spec, priority, self.config.max_tasks_per_workflow)
        # The runs and rows are built off the loop (pure work on the spec: seconds for 10,000
        # tasks); the engine's round only writes them and takes the workflow in.
        wf, row, batch = await asyncio.to_thread(
            prepare,
            spec,
            pool,
            user,
            role,
            PRIORITIES[priority],
            original,
            rendered,
            values or {},
            file,
            parent,
            env,
        )
        wf_id: str = await self._call(self._submit, wf, row, batch, parent, reuse or {})
        while not await self._call(self._start_slice, wf_id):
            await asyncio.sleep(PAUSE)
        return wf_id

    def _submit(
        self: Engine,
        wf: WorkflowRun,
        row: dict[str, Any],
        batch: Batch,
        parent: str | None,
        reuse: Mapping[str, RowMapping],
    ) -> str:
        """The submission's transaction (it allocates the id), then its groups' start begins."""
        self._flush()  # the submission is its own transaction
        ev_id = self._next_event_id
        self._next_event_id += 1
        ev_row = {
            "id": ev_id,
            "ts": wf.submit_time,
            "type": "workflow.submitted",
            "version": 1,
            "status": W.PENDING.value,
            "payload": {
                "name": wf.spec.name,
                "pool": wf.pool,
                "user": wf.user,
                "tasks": len(wf.tasks),
                **({"restarted": parent, "reused": len(reuse)} if parent else {}),
            },
        }
        batch.events.append(ev_row)
        wf.id = self.store.create_workflow(row, batch)
        self.workflows[wf.id] = wf
        for t in wf.tasks.values():
            self._attempts[t.current.key] = t.current
        self.bus.publish(
            Event.from_row(
                {**ev_row, "workflow_id": wf.id, "group_name": None, "task": None, "retry_id": None}
            )
        )
        wf.start_steps = self._start_steps(wf, parent, reuse)
        return wf.id

    def _start_steps(
        self: Engine, wf: WorkflowRun, parent: str | None, reuse: Mapping[str, RowMapping]
    ) -> Iterator[bool]:
        """In topological order, each group still SUBMITTING is reused (a restart keeps it:
        its tasks take the parent's outputs, engine/cache.py), starts when its upstream groups
        have completed (they may have, between two slices) or waits. A group that moved
        meanwhile (cancelled, blocked by a failed upstream) is left as it is."""
        for name in wf.dag.topo_iter():
            g = wf.groups[name]
            if g.status != T.SUBMITTING:
                continue
            if all(t.name in reuse for t in g.tasks):
                for t in g.tasks:
                    self._reuse(t.current, reuse[t.name], f"restart of {parent}")
                self._group_follows(g)
            elif all(wf.groups[u].status == T.COMPLETED for u in wf.dag.upstream(name)):
                self._start_group(g)
            else:
                for t in g.tasks:
                    self._set_task(t.current, T.WAITING)
            yield True

    def _start_slice(self: Engine, wf_id: str) -> bool:
        """Start groups of a submitted workflow for a slice; True once all are started or
        waiting (or the workflow ended meanwhile)."""
        wf = self.workflows.get(wf_id)
        if wf is None or wf.start_steps is None:
            return True
        if not run_slice(wf.start_steps):
            return False
        wf.start_steps = None
        return True
