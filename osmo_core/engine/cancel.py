"""Stopping attempts (cancel, timeouts) and cancelling a workflow in slices (slices.py): a
10,000-task cancel never holds the loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..errors import BackendError, Conflict
from ..states import TaskStatus, WorkflowStatus
from .reconcile import end_event
from .runs import UNPLACED, Attempt, WorkflowRun
from .slices import PAUSE, run_slice

if TYPE_CHECKING:
    from .loop import Engine

log = logging.getLogger("osmo.engine")
T = TaskStatus


class Cancelling:
    """The Engine's `cancel` command and how it stops attempts.

    A part of `Engine` (engine/loop.py): methods only, on the engine's state, run in its loop.
    """

    async def cancel(self: Engine, wf_id: str) -> WorkflowStatus:
        # A slice of the tasks per engine round: each round commits and yields the loop, so
        # cancelling 10,000 tasks never stalls other requests (GET /health) for long.
        first = True
        while (status := await self._call(self._cancel_workflow, wf_id, first)) is None:
            first = False
            await asyncio.sleep(PAUSE)  # let requests that queued up meanwhile through
        return status

    def _stop(
        self: Engine, att: Attempt, reason: TaskStatus, message: str, *, follow: bool = True
    ) -> None:
        """End an attempt for a reason of ours (cancel, timeout). Launched ones end when their
        process exits; the rest end now."""
        if att.status is None or att.status.terminal:
            return
        if att.status in UNPLACED:
            self._unqueue(att)
            self._release(att)  # one parked for its group's restart holds its room
            self._set_task(att, reason, message=message, follow=follow)
            return
        # A cancel or timeout overrides a preemption or a group's restart under way (its
        # signals are already sent).
        if (
            att.cancel_reason in (None, T.FAILED_PREEMPTED, T.RESCHEDULED)
            and reason != att.cancel_reason
        ):
            first = att.cancel_reason is None
            att.cancel_reason = reason
            att.message = message
            self._save(att, cancel_reason=reason.value, message=message)
            if first and not att.launching:
                self._cancels.append(att)

    async def _stop_process(self: Engine, att: Attempt) -> None:
        """Ask the backend to stop the attempt's process; when none is left to stop (it died
        with its agent, or ended unheard), no exit will follow: end it now."""
        name = att.alloc.backend if att.alloc else "local"
        backend = self.backends[name]
        grace = (
            self._preemption_grace(att)
            if att.cancel_reason == T.FAILED_PREEMPTED
            else self.config.cancel_grace
        )
        try:
            await backend.cancel(att.key, grace)
            st = (await backend.status([att.key])).get(att.key)
        except BackendError as e:  # unreachable: its link's resync or a reconciliation ends it
            log.warning("cancel of %s: %s", att.key, e)
            return
        ev = end_event(att.key, st, f"backend {name!r}")
        if ev is not None:
            self._post(ev)

    def _cancel_workflow(self: Engine, wf_id: str, first: bool = True) -> WorkflowStatus | None:
        """Stop tasks for a slice; the workflow's status once all are stopped,
        None while some are left (the caller comes back in a later round)."""
        wf = self.workflows.get(wf_id)
        if wf is None:
            status = WorkflowStatus(self.store.get_workflow(wf_id)["status"])
            if not first:  # it ended between two slices
                return status
            raise Conflict(f"workflow {wf_id} already ended {status}")
        wf.canceling = True
        if wf.cancel_steps is None:
            wf.cancel_steps = self._cancel_steps(wf)
        if not run_slice(wf.cancel_steps):
            return None
        wf.cancel_steps = None
        assert wf.status is not None
        return wf.status

    def _cancel_steps(self: Engine, wf: WorkflowRun) -> Iterator[bool]:
        """Stops the workflow's tasks in topological order, one per step."""
        for name in wf.dag.topo_iter():
            g = wf.groups[name]
            for t in g.tasks:
                self._stop(t.current, T.FAILED_CANCELED, "canceled by user", follow=False)
                yield True
            self._group_follows(g)
            yield True
