"""Groups: their phase follows their tasks, their end starts or blocks downstream, timeouts."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from ..states import TaskStatus, WorkflowStatus, workflow_outcome
from . import policy
from .runs import LAUNCHED, UNPLACED, Attempt, GroupRun, WorkflowRun

if TYPE_CHECKING:
    from .loop import Engine

T = TaskStatus
W = WorkflowStatus


class GroupProgress:
    """The Engine's group progress: phases, ends, downstream, and the group timers.

    A part of `Engine` (engine/loop.py): methods only, on the engine's state, run in its loop.
    """

    def _start_group(self: Engine, g: GroupRun) -> None:
        """Upstream done: the group's tasks go PROCESSING -> SCHEDULING and join the queue,
        or first ask the task cache (engine/cache.py)."""
        for t in g.tasks:
            self._set_task(t.current, T.PROCESSING)
        if self._group_cached(g):
            self._check_cache(g)
        else:
            self._queue_group(g)

    def _queue_group(self: Engine, g: GroupRun) -> None:
        """The group's PROCESSING tasks go SCHEDULING and join the queue."""
        for t in g.tasks:
            self._set_task(t.current, T.SCHEDULING)
        units = [[t.current for t in g.tasks]] if g.spec.barrier else [[t.current] for t in g.tasks]
        self._enqueue(units)

    def _group_follows(self: Engine, g: GroupRun) -> None:
        """Move the group's phase forward with its tasks; end it when its tasks say so."""
        if g.status is None or g.status.terminal:
            return
        currents = [t.current.status for t in g.tasks]
        lead = g.lead.current.status
        failed_nonlead = policy.nonlead_failed(
            g.spec.ignore_nonlead_status,
            ((t.name, s) for t, s in zip(g.tasks, currents, strict=True) if t is not g.lead),
        )
        lead_done = policy.lead_done(lead)
        if lead_done or failed_nonlead is not None:
            # The group's outcome is decided; whatever still runs in it ends as OSMO ends it:
            # at once after a failure, after a grace period when the lead completed (its
            # peers are often just finishing too, and keep their own outcome if they do).
            ends, message = policy.peers_end(lead if lead_done else None, failed_nonlead)
            grace = self.config.group_stop_grace if ends == T.COMPLETED else 0.0
            for t in g.tasks:
                att = t.current
                if grace > 0 and att.status in LAUNCHED:
                    if g.grace_timer is None:
                        g.grace_timer = asyncio.get_running_loop().call_later(
                            grace, self._post, ("timer", "lead_grace", g)
                        )
                    continue
                self._stop(att, ends, message, follow=False)
            if all(t.current.status is not None and t.current.status.terminal for t in g.tasks):
                assert lead is not None
                status, why = policy.group_outcome(lead, failed_nonlead, g.lead.current.message)
                self._set_group(g, status, why)
            return
        phase = policy.group_phase(g.status, currents)
        if phase is not None:
            self._set_group(g, phase)

    # --- a rescheduled task restarts its peers in place ------------------------------------

    def _restart_peers(self: Engine, att: Attempt) -> None:
        """`att` was rescheduled (its exit action, or the infrastructure, within its budget):
        as OSMO's jobs.py does, its group's other running tasks restart too. Each is stopped
        (cancel_reason RESCHEDULED); when it has ended, `_restart_in_place` gives its next
        attempt the same placement. Held peers (their command has ended) and peers already
        being stopped are left alone."""
        g = att.task.group
        if not policy.restarts_peers(att.task is g.lead, g.spec.ignore_nonlead_status):
            return
        message = policy.restart_message(att.task.name)
        for t in g.tasks:
            peer = t.current
            if t is att.task or peer.status not in LAUNCHED:
                continue
            if peer.hold is None and peer.cancel_reason is None:
                self._stop(peer, T.RESCHEDULED, message, follow=False)

    def _restart_in_place(self: Engine, att: Attempt, exit_code: int) -> None:
        """A peer stopped for its group's restart has ended: it ends RESCHEDULED and its next
        attempt takes over its placement (machine, cores, memory, GPUs) without releasing it,
        so no other work can take the room meanwhile; it launches when its group meets."""
        alloc = att.alloc
        assert alloc is not None
        self._set_task(att, T.RESCHEDULED, exit_code=exit_code, follow=False)
        nxt = self._new_attempt(att.task, T.PROCESSING)
        if att.cache_key is not None:
            nxt.cache_key = att.cache_key
            self._save(nxt, cache_key=att.cache_key)
        self._set_task(nxt, T.SCHEDULING, follow=False)
        self._take_alloc(nxt, alloc)
        self._pending(nxt, policy.MEET_AGAIN)
        self._meet(att.task.group)
        self._group_follows(att.task.group)

    def _placed(self: Engine, att: Attempt) -> None:
        """The scheduling pass gave `att` its room: it launches now, unless its barrier group
        is restarting, where it waits (parked) for its peers to meet again."""
        g = att.task.group
        if g.spec.barrier and any(
            a.parked or a.restarting for a in (t.current for t in g.tasks) if a is not att
        ):
            self._pending(att, policy.MEET_AGAIN)
            self._meet(g)
        else:
            self._start_launch(att)

    def _meet(self: Engine, g: GroupRun) -> None:
        """Launch the group's parked attempts: at once without a barrier; with one, once no
        task of the group is still being stopped for the restart or waiting for a place, so
        the group starts together again (OSMO's barrier, re-entered after a restart)."""
        currents = [t.current for t in g.tasks]
        parked = [a for a in currents if a.parked]
        if not parked or g.workflow.canceling:  # a cancel under way ends them, unlaunched
            return
        if g.spec.barrier and any(
            a.restarting or (a.status in UNPLACED and a.alloc is None) for a in currents
        ):
            return
        for a in parked:
            self._start_launch(a)

    def _group_ended(self: Engine, g: GroupRun) -> None:
        wf = g.workflow
        wf.groups_left -= 1
        if g.status == T.COMPLETED:
            for succ in wf.dag.graph.successors(g.name):
                nxt = wf.groups[succ]
                if nxt.status == T.WAITING and all(
                    wf.groups[p].status == T.COMPLETED for p in wf.dag.upstream(succ)
                ):
                    self._start_group(nxt)
        else:
            blocked = T.FAILED_CANCELED if wf.canceling else T.FAILED_UPSTREAM
            for name in wf.dag.downstream(g.name):
                d = wf.groups[name]
                if d.status is not None and d.status.terminal:
                    continue
                for t in d.tasks:
                    if t.current.status is None or not t.current.status.terminal:
                        self._set_task(
                            t.current,
                            blocked,
                            follow=False,
                            message=f"upstream group {g.name} ended {g.status}",
                        )
                self._group_follows(d)
        if wf.groups_left == 0:
            self._set_workflow(
                wf, workflow_outcome([x.status for x in wf.groups.values() if x.status is not None])
            )

    def _workflow_progress(self: Engine, wf: WorkflowRun) -> None:
        if wf.status is None or wf.status.terminal or not wf.id:
            return
        if wf.active:
            self._set_workflow(wf, W.RUNNING)
        elif wf.start_time is not None:
            self._set_workflow(wf, W.WAITING)

    # --- timers ------------------------------------------------------------------------------

    def _arm_timer(self: Engine, g: GroupRun, seconds: float, kind: str, since: float) -> None:
        if g.timer:
            g.timer.cancel()
            g.timer = None
        if seconds and seconds > 0:
            delay = max(0.0, since + seconds - time.time())
            g.timer = asyncio.get_running_loop().call_later(delay, self._post, ("timer", kind, g))

    def _on_timer(self: Engine, kind: str, g: GroupRun) -> None:
        if g.status is None or g.status.terminal:
            return
        if kind == "lead_grace":
            g.grace_timer = None
            for t in g.tasks:  # the lead completed: its peers end COMPLETED with it
                self._stop(t.current, T.COMPLETED, policy.LEAD_FINISHED, follow=False)
            self._group_follows(g)
            return
        g.timer = None
        if kind == "queue_timeout" and g.status == T.SCHEDULING:
            msg = f"queue timeout: not placed within {g.workflow.spec.timeout.queue_timeout}s"
            for t in g.tasks:
                self._stop(t.current, T.FAILED_QUEUE_TIMEOUT, msg, follow=False)
            self._group_follows(g)
        elif kind == "exec_timeout":
            secs = g.workflow.spec.timeout.exec_timeout or self.config.default_exec_timeout
            for t in g.tasks:
                self._stop(
                    t.current,
                    T.FAILED_EXEC_TIMEOUT,
                    policy.hold_timeout_message(
                        t.current.hold, t.current.exit_code, secs, "exec timeout"
                    )
                    or f"exec timeout: ran past {secs:g}s",
                    follow=False,
                )
            self._group_follows(g)
