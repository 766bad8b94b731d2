"""Submission: a checked workflow spec becomes stored rows and in-memory runs.

The submission is its own transaction (the store allocates the workflow id); its root groups
then start and the rest wait.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from ..config import PRIORITIES
from ..errors import Problem, SpecError
from ..events import Event
from ..spec.localfiles import localpath_fields
from ..spec.models import Workflow
from ..states import TaskStatus, WorkflowStatus
from ..store import Batch
from .runs import Attempt, GroupRun, TaskRun, WorkflowRun, workflow_dag

if TYPE_CHECKING:
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
        priority: str = "NORMAL",
        original: str = "",
        rendered: str = "",
        values: dict[str, Any] | None = None,
        file: str | None = None,
    ) -> str:
        """Start a workflow whose placement the caller has checked (Service.check_placement)."""
        pool = pool or spec.pool or self.config.default_pool
        check_submission(spec, priority, self.config.max_tasks_per_workflow)
        return await self._call(
            self._submit,
            spec,
            pool,
            user,
            PRIORITIES[priority],
            original,
            rendered,
            values or {},
            file,
        )

    def _submit(
        self: Engine,
        spec: Workflow,
        pool: str,
        user: str,
        priority: int,
        original: str,
        rendered: str,
        values: dict[str, Any],
        file: str | None,
    ) -> str:
        now = time.time()
        wf = WorkflowRun(
            id="",
            spec=spec,
            dag=workflow_dag(spec),
            pool=pool,
            user=user,
            priority=priority,
            submit_time=now,
            status=W.PENDING,
        )
        self._flush()  # the submission is its own transaction (it allocates the id)
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
            "pool": pool,
            "status": W.PENDING.value,
            "priority": priority,
            "file": file,
            "spec_original": original or "",
            "spec_rendered": rendered or "",
            "spec_json": spec.model_dump_json(by_alias=True),
            "set_values": json.dumps(values, default=str),
            "submit_time": now,
        }
        ev_id = self._next_event_id
        self._next_event_id += 1
        ev_row = {
            "id": ev_id,
            "ts": now,
            "type": "workflow.submitted",
            "version": 1,
            "status": W.PENDING.value,
            "payload": {"name": spec.name, "pool": pool, "user": user, "tasks": len(wf.tasks)},
        }
        batch.events.append(ev_row)
        wf.id = self.store.create_workflow(row, batch)
        self._seq += 1
        self.workflows[wf.id] = wf
        for t in wf.tasks.values():
            self._attempts[t.current.key] = t.current
        self.bus.publish(
            Event.from_row(
                {**ev_row, "workflow_id": wf.id, "group_name": None, "task": None, "retry_id": None}
            )
        )
        roots = set(wf.dag.roots())
        for g in wf.groups.values():
            if g.name in roots:
                self._start_group(g)
            else:
                for t in g.tasks:
                    self._set_task(t.current, T.WAITING)
        return wf.id
