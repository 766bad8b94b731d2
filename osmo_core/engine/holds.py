"""Holds (`interactive: true`, `debug: on-failure`): a held attempt waits for its user.

When the command ends and the task holds, the backend reports `Held` and the attempt stays
RUNNING with `hold` = interactive (`done()`) or debug (`retry()` or cancel) until `hold_until`.
The user's decision is persisted before it is sent, so a restart resends it.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from ..errors import Conflict, NotFound
from ..spec.models import ExitAction
from ..states import TaskStatus
from ..wire import Held
from . import policy
from .runs import Attempt

if TYPE_CHECKING:
    from .loop import Engine

T = TaskStatus


class Holds:
    """The Engine's holds: `done` and `retry` commands, hold deadlines and timeouts.

    A part of `Engine` (engine/loop.py): methods only, on the engine's state, run in its loop.
    """

    async def done(self: Engine, wf_id: str, task: str) -> int:
        """An interactive task waiting for its user is done: its outputs are persisted and its
        downstream starts. Returns the attempt's retry_id; Conflict unless it is waiting."""
        return await self._call(self._done, wf_id, task)

    async def retry(self: Engine, wf_id: str, task: str) -> int:
        """A task held for debugging runs again (a new attempt); returns its retry_id."""
        return await self._call(self._retry, wf_id, task)

    def _on_held(self: Engine, att: Attempt, ev: Held) -> None:
        """The command ended and the backend keeps the attempt: decide what it waits for."""
        if att.hold is not None or att.cancel_reason is not None:
            return  # a repeat (resync, recovery), or a cancel that ends the hold anyway
        if att.status == T.INITIALIZING:
            self._set_task(att, T.RUNNING)
        spec, code, wf = att.task.spec, ev.exit_code, att.task.group.workflow
        action = policy.exit_action(spec, code)
        kind = policy.hold_kind(spec, action)
        if kind is None:  # the exit actions say otherwise (e.g. RESCHEDULE): end it as they say
            (self._releases if action == ExitAction.COMPLETE else self._cancels).append(att)
            return
        att.hold_until = self._hold_deadline(att, time.time())
        until = f" until {policy.utc(att.hold_until)}" if att.hold_until else ""
        ref = f"{wf.id} {att.task.name}"
        if kind == "interactive":
            message = f"waiting for the user{until}; `osmo workflow done {ref}` when finished"
        else:
            att.exit_code = code
            message = (
                f"exit code {code}; held for debugging{until}; "
                f"`osmo workflow retry {ref}` re-runs it"
            )
        att.hold, att.message = kind, message
        self._save(
            att, hold=kind, hold_until=att.hold_until, exit_code=att.exit_code, message=message
        )
        self._hold_event(att, message, until=att.hold_until)
        self._arm_hold(att)

    def _hold_event(self: Engine, att: Attempt, message: str, **payload: Any) -> None:
        assert att.status is not None
        self._event(
            "task.hold",
            att.task.group.workflow,
            group=att.task.group.name,
            task=att.task.name,
            retry_id=att.retry_id,
            status=att.status.value,
            hold=att.hold,
            exit_code=att.exit_code,
            message=message,
            **payload,
        )

    def _hold_deadline(self: Engine, att: Attempt, since: float) -> float | None:
        """The exec timeout (from the group's start), else OsmoConfig.hold_timeout from now."""
        g = att.task.group
        secs = g.workflow.spec.timeout.exec_timeout or self.config.default_exec_timeout
        return policy.hold_deadline(secs, self.config.hold_timeout, g.start_time, since)

    def _arm_hold(self: Engine, att: Attempt) -> None:
        if att.hold_timer:
            att.hold_timer.cancel()
            att.hold_timer = None
        if att.hold_until is not None:
            delay = max(0.0, att.hold_until - time.time())
            att.hold_timer = asyncio.get_running_loop().call_later(
                delay, self._post, ("hold_timeout", att)
            )

    def _on_hold_timeout(self: Engine, att: Attempt) -> None:
        att.hold_timer = None
        if att.status != T.RUNNING or att.hold not in ("interactive", "debug"):
            return
        wf = att.task.group.workflow
        exec_secs = wf.spec.timeout.exec_timeout or self.config.default_exec_timeout
        status, secs, what = policy.hold_expiry(exec_secs, self.config.hold_timeout, att.hold)
        message = policy.hold_timeout_message(att.hold, att.exit_code, secs, what)
        self._stop(att, status, message or what)

    def _held(self: Engine, wf_id: str, task: str, kind: str, verb: str) -> Attempt:
        """The attempt `verb` acts on: Conflict unless it is held as `kind`."""
        wf = self.workflows.get(wf_id)
        if wf is None:
            status = self.store.get_workflow(wf_id)["status"]  # NotFound for an unknown id
            raise Conflict(f"workflow {wf_id} already ended {status}; there is nothing to {verb}")
        t = wf.tasks.get(task)
        if t is None:
            raise NotFound(f"workflow {wf_id!r} has no task {task!r}")
        att = t.current
        if att.status != T.RUNNING or att.hold != kind or att.cancel_reason is not None:
            described = policy.describe(att.status, att.cancel_reason, att.hold)
            want = (
                "an interactive task waiting for its user"
                if kind == "interactive"
                else "a task held for debugging (debug: on-failure, failed)"
            )
            raise Conflict(f"task {task!r} of {wf_id} is {described}; {verb} needs {want}")
        return att

    def _decide(self: Engine, att: Attempt, hold: str, message: str) -> None:
        """Record the user's decision before acting on it: a restart resends it."""
        att.hold = hold
        if att.hold_timer:
            att.hold_timer.cancel()
            att.hold_timer = None
        self._save(att, hold=hold)
        self._hold_event(att, message)

    def _done(self: Engine, wf_id: str, task: str) -> int:
        att = self._held(wf_id, task, "interactive", "done")
        self._decide(att, "done", "marked done by the user")
        self._releases.append(att)
        return att.retry_id

    def _retry(self: Engine, wf_id: str, task: str) -> int:
        att = self._held(wf_id, task, "debug", "retry")
        self._decide(att, "retry", "retry requested by the user")
        self._cancels.append(att)
        return att.retry_id + 1
