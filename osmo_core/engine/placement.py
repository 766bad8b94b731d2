"""The queue: attempts waiting for capacity, placed by the scheduling pass, then launched.

The order and the pass are engine/waitqueue.py's (priority, then submission order or fair
share per pool, quotas, user limits, a bounded backfill). Every waiting attempt has a reason;
one the pass looked at, and then a slice per round of those it did not reach, gets a
`task.pending` event and its row's `pending_reason` when the reason changes, never once per
pass. Node listings refreshed from the backends (`Backend.node_refresh`) reach the scheduler
and trigger a new pass.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from ..backends.base import Backend
from ..scheduler import Alloc
from ..spec.models import Resource
from ..states import TaskStatus
from ..wire import LaunchRequest, Node
from .preempt import LOW
from .runs import Attempt
from .waitqueue import Unit

if TYPE_CHECKING:
    from .loop import Engine

log = logging.getLogger("osmo.engine")
T = TaskStatus
REASON_SLICE = 500  # reasons of units the pass did not reach, brought up to date per round


def resource_of(att: Attempt) -> Resource:
    return att.task.group.workflow.spec.resource_of(att.task.spec)


class Placement:
    """The Engine's queue, placement on the scheduler's nodes, and launches.

    A part of `Engine` (engine/loop.py): methods only, on the engine's state, run in its loop.
    """

    def _enqueue(self: Engine, units: list[list[Attempt]], seq: int | None = None) -> None:
        """`seq`: the submission order a preempted unit had (one unit), so it goes back to the
        place it had in the queue (engine/waitqueue.py orders a user's units by it)."""
        for unit in units:
            wf = unit[0].task.group.workflow
            queued = self._queue.add(unit, wf.pool, wf.priority, wf.user, wf.id, seq, wf.role)
            queued.reported = unit[0].pending_reason  # a restart does not announce it again
            for att in unit:
                att.seq = queued.seq

    def _enqueue_after(self: Engine, att: Attempt, delay: float, after: TaskStatus) -> None:
        """Queue a new attempt after `delay` seconds (a retry's backoff after its previous
        attempt ended `after`), SCHEDULING meanwhile, with that as its reason."""
        if delay <= 0:
            self._enqueue([[att]])
            return
        at = time.strftime("%H:%M:%S UTC", time.gmtime(time.time() + delay))
        self._pending(att, f"retry {att.retry_id} after {after}: backing off {delay:g}s until {at}")
        asyncio.get_running_loop().call_later(delay, self._post, ("requeue", att))

    def _requeue(self: Engine, att: Attempt) -> None:
        """Its backoff is over: queue it, unless it ended meanwhile (a cancel)."""
        if att.status == T.SCHEDULING and self._queue.unit_of(att) is None:
            self._enqueue([[att]])

    def _unqueue(self: Engine, att: Attempt) -> None:
        # O(1) per attempt (cancelling 10,000 queued tasks must not scan the queue 10,000 times)
        self._queue.remove(att)

    def _schedule(self: Engine) -> None:
        if self._queue.dirty:
            self._pass()
        # The units the pass did not reach: their reasons too are stored and announced when
        # they change, a slice per round (the rest in the rounds that follow).
        for unit in self._queue.unreached(REASON_SLICE):
            self._report(unit, self._queue.reason_of_unit(unit))
        if self._queue.sweeping:
            self._post(("reasons",))

    def _pass(self: Engine) -> None:
        self._settle_claims()  # engine/preempt.py: even with nothing queued, a claim may end
        placed = self._reclaimed()  # the room its victims freed goes to the preemptor first
        waiting: list[Unit[Attempt]] = []
        if len(self._queue):
            passed, waiting = self._queue.schedule(
                skip=lambda unit: unit.items[0].task.group.workflow.canceling,
                # a level stops at a unit nothing fits unless preempting LOW work could make
                # room for the units behind it (engine/preempt.py looks at each)
                may_stop=lambda priority: priority <= LOW or not self._may_preempt(),
            )
            placed += passed
        self._queue.dirty = False
        for atts, allocs in placed:
            for att, alloc in zip(atts, allocs, strict=True):
                att.pending_reason = None
                self._take_alloc(att, alloc, pending_reason=None)
                self._placed(att)  # engine/groups.py: launched now, or parked for its group
        for unit in waiting:
            self._report(unit, unit.reason)
        for unit in waiting:
            self._preempt_for(unit)  # engine/preempt.py: LOW work may hold its room

    def _report(self: Engine, unit: Unit[Attempt], reason: str | None) -> None:
        """Store and announce a waiting unit's reason when it changed, not every pass."""
        if reason != unit.reported:
            unit.reported = reason
            for att in unit.items:
                self._pending(att, reason)

    def _take_alloc(self: Engine, att: Attempt, alloc: Alloc, **fields: Any) -> None:
        """`att` holds `alloc` (stored with its row, so a restart knows its room)."""
        att.alloc = alloc
        self._save(
            att,
            backend=alloc.backend,
            node=alloc.node,
            alloc=json.dumps({"cpu": alloc.cpu, "memory": alloc.memory, "gpus": alloc.gpus}),
            **fields,
        )

    def _start_launch(self: Engine, att: Attempt) -> None:
        """A placed attempt goes INITIALIZING; its launch starts once the round is stored."""
        if att.pending_reason is not None:  # it waited, placed, for its group (groups.py)
            att.pending_reason = None
            self._save(att, pending_reason=None)
        att.launching = True
        self._set_task(att, T.INITIALIZING)
        self._launches.append(att)

    def _pending(self: Engine, att: Attempt, reason: str | None) -> None:
        task = att.task
        att.pending_reason = reason
        self._save(att, pending_reason=reason)
        self._event(
            "task.pending",
            task.group.workflow,
            group=task.group.name,
            task=task.name,
            retry_id=att.retry_id,
            status=att.status.value if att.status else None,
            reason=reason,
        )

    def pending_reason(self: Engine, att: Attempt) -> str | None:
        """Why a waiting attempt waits, now (None once it is placed)."""
        return self._queue.reason_of(att)

    def _release(self: Engine, att: Attempt) -> None:
        if att.alloc is not None:
            if not self._claim_keeps(att):  # a victim's room stays taken for its preemptor
                self.scheduler.release(att.alloc)
            self._queue.dirty = True

    async def _launch(self: Engine, att: Attempt, req: LaunchRequest) -> None:
        assert att.alloc is not None
        backend = self.backends[att.alloc.backend]
        if req.hold and not backend.supports_hold:
            self._post(
                (
                    "start_refused",
                    att,
                    f"the {backend.kind} backend cannot hold tasks yet "
                    "(interactive: true, debug: on-failure)",
                )
            )
            return
        try:
            info = await backend.launch(req)
        except Exception as e:
            self._post(("launch_failed", att, f"{type(e).__name__}: {e}"))
            return
        self._post(("launched", att, info))

    async def _refresh_nodes(self: Engine, name: str, backend: Backend, every: float) -> None:
        """Nodes added, removed or resized (a cluster's autoscaler, one unreachable at start)
        reach the scheduler; waiting tasks are placed again."""
        while True:
            await asyncio.sleep(every)
            try:
                nodes = await backend.nodes()
                await self._call(self._set_nodes, name, nodes)
            except asyncio.CancelledError:
                raise
            except Exception:  # the next listing may work; the engine must not stop for it
                log.exception("listing the nodes of backend %s failed", name)

    def _set_nodes(self: Engine, name: str, nodes: list[Node]) -> None:
        self.scheduler.set_nodes(name, nodes)
        self._queue.dirty = True
