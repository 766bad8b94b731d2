"""State changes: the only places statuses move, each checked against `osmo_core.states`.

Every change queues its row and its event for the round's commit (`Engine._flush`); nothing
here touches the store or the bus directly.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..events import Event
from ..exit_codes import status_exit_code
from ..states import TaskStatus, WorkflowStatus, check_group, check_task, check_workflow
from .runs import LAUNCHED, Attempt, GroupRun, TaskRun, WorkflowRun

if TYPE_CHECKING:
    from .loop import Engine

T = TaskStatus
W = WorkflowStatus


class Transitions:
    """The Engine's state changes: task, group and workflow moves, and the events they queue.

    A part of `Engine` (engine/loop.py): methods only, on the engine's state, run in its loop.
    """

    # --- events ---------------------------------------------------------------------------

    def _event(
        self: Engine,
        type_: str,
        wf: WorkflowRun | str,
        *,
        group: str | None = None,
        task: str | None = None,
        retry_id: int | None = None,
        status: str | None = None,
        **payload: Any,
    ) -> Event:
        ev = Event(
            type=type_,
            workflow_id=wf if isinstance(wf, str) else wf.id,
            ts=time.time(),
            id=self._next_event_id,
            group_name=group,
            task=task,
            retry_id=retry_id,
            status=status,
            payload={k: v for k, v in payload.items() if v is not None},
        )
        self._next_event_id += 1
        row = ev.to_dict()
        self._batch.events.append(row)
        self._announce.append(ev)
        return ev

    # --- state changes (the only places statuses change) ----------------------------------

    def _set_task(
        self: Engine, att: Attempt, to: TaskStatus, *, follow: bool = True, **fields: Any
    ) -> None:
        """Move an attempt. `follow=False` defers the group's reaction (bulk changes call
        `_group_follows` once when the whole group has moved)."""
        task = att.task
        wf = task.group.workflow
        check_task(att.status, to, f"{wf.id}/{task.name}/{att.retry_id}")
        was_active = att.status in LAUNCHED
        att.status = to
        if to in LAUNCHED:  # the reconciliation's index: it never walks the queued ones
            self._launched[att.key] = att
        elif was_active:
            self._launched.pop(att.key, None)  # one recovered without a placement is not in it
        now = time.time()
        if to == T.RUNNING and att.start_time is None:
            att.start_time = now
        if to.terminal:
            att.end_time = now
            if att.hold_timer:
                att.hold_timer.cancel()
                att.hold_timer = None
        for k, v in fields.items():
            setattr(att, k, v)
        if to.terminal and att.exit_code is None:  # OSMO's 3000-3006 name the failure
            att.exit_code = status_exit_code(to.value)
        wf.active += (to in LAUNCHED) - was_active
        self._save(
            att,
            status=to.value,
            start_time=att.start_time,
            end_time=att.end_time,
            exit_code=att.exit_code,
            message=att.message,
        )
        self._event(
            "task.status",
            wf,
            group=task.group.name,
            task=task.name,
            retry_id=att.retry_id,
            status=to.value,
            exit_code=att.exit_code,
            node=att.alloc.node if att.alloc else None,
            message=att.message,
            reused_from=att.reused_from if to == T.COMPLETED else None,
            # what the command used, as last sampled: kept with its end (the samples are not)
            usage=att.usage.summary() if to.terminal and att.usage else None,
        )
        if follow:
            self._group_follows(task.group)
        self._progress_due.add(wf)

    def _save(self: Engine, att: Attempt, **columns: Any) -> None:
        """Queue an update of the attempt's row for this round's commit."""
        wf = att.task.group.workflow
        key = {"workflow_id": wf.id, "name": att.task.name, "retry_id": att.retry_id}
        self._batch.update("tasks", {**key, **columns})

    def _new_attempt(self: Engine, task: TaskRun, status: TaskStatus) -> Attempt:
        wf = task.group.workflow
        retry_id = task.attempts[-1].retry_id + 1 if task.attempts else 0
        check_task(None, status)
        att = Attempt(task, retry_id, status, create_time=time.time())
        task.attempts.append(att)
        self._attempts[att.key] = att
        row = {
            "workflow_id": wf.id,
            "name": task.name,
            "retry_id": retry_id,
            "group_name": task.group.name,
            "status": status.value,
            "create_time": att.create_time,
        }
        self._batch.insert("tasks", row)
        if retry_id:
            self._event(
                "task.status",
                wf,
                group=task.group.name,
                task=task.name,
                retry_id=retry_id,
                status=status.value,
            )
        return att

    def _set_group(self: Engine, g: GroupRun, to: TaskStatus, message: str | None = None) -> None:
        wf = g.workflow
        check_group(g.status, to, f"{wf.id}/group {g.name}")
        g.status = to
        now = time.time()
        if to == T.SCHEDULING:
            g.scheduling_time = now
            self._arm_timer(
                g,
                wf.spec.timeout.queue_timeout or self.config.default_queue_timeout,
                "queue_timeout",
                now,
            )
        elif to == T.RUNNING:
            g.start_time = now
            self._arm_timer(
                g,
                wf.spec.timeout.exec_timeout or self.config.default_exec_timeout,
                "exec_timeout",
                now,
            )
        if to.terminal:
            g.end_time = now
            for handle in (g.timer, g.grace_timer):
                if handle:
                    handle.cancel()
            g.timer = g.grace_timer = None
        if message:
            g.message = message
        self._batch.update(
            "groups",
            {
                "workflow_id": wf.id,
                "name": g.name,
                "status": to.value,
                "scheduling_time": g.scheduling_time,
                "start_time": g.start_time,
                "end_time": g.end_time,
                "message": g.message,
            },
        )
        self._event("group.status", wf, group=g.name, status=to.value, message=message)
        if to.terminal:
            self._group_ended(g)

    def _set_workflow(
        self: Engine, wf: WorkflowRun, to: WorkflowStatus, message: str | None = None
    ) -> None:
        if wf.status == to:
            return
        check_workflow(wf.status, to, wf.id)
        wf.status = to
        now = time.time()
        if to == W.RUNNING and wf.start_time is None:
            wf.start_time = now
        if to.terminal:
            wf.end_time = now
        if message:
            wf.message = message
        self._batch.update(
            "workflows",
            {
                "id": wf.id,
                "status": to.value,
                "start_time": wf.start_time,
                "end_time": wf.end_time,
                "message": wf.message,
            },
        )
        self._event("workflow.status", wf, status=to.value, message=message)
        if to.terminal:
            wf.done.set()
            self._forget(wf)

    def _forget(self: Engine, wf: WorkflowRun) -> None:
        """A finished workflow leaves memory; the store keeps it."""
        for t in wf.tasks.values():
            for a in t.attempts:
                self._attempts.pop(a.key, None)
        self.workflows.pop(wf.id, None)
