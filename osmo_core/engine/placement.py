"""The queue: attempts waiting for capacity, placed in rank order, then launched.

Queue order is workflow priority, then first come first served; a barrier group is one unit.
Past the first unit that does not fit, BACKFILL_WINDOW more are tried. Node listings refreshed
from the backends (`Backend.node_refresh`) reach the scheduler and trigger a new pass.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
from typing import TYPE_CHECKING

from ..backends.base import Backend
from ..states import TaskStatus
from ..wire import LaunchRequest, Node
from .runs import Attempt

if TYPE_CHECKING:
    from .loop import Engine

log = logging.getLogger("osmo.engine")
T = TaskStatus
BACKFILL_WINDOW = 32  # queue units tried past the first that does not fit


class Placement:
    """The Engine's queue, placement on the scheduler's nodes, and launches.

    A part of `Engine` (engine/loop.py): methods only, on the engine's state, run in its loop.
    """

    def _enqueue(
        self: Engine, units: list[list[Attempt]], rank: tuple[int, int] | None = None
    ) -> None:
        """Queue order: workflow priority, then first come first served. `rank`: the place a
        preempted unit had (one unit; its old rank left the queue when it was placed)."""
        for unit in units:
            self._seq += 1  # unique, so ranks never tie and units are never compared
            place = rank or (-unit[0].task.group.workflow.priority, self._seq)
            bisect.insort(self._queue, (place, unit))
            for att in unit:
                self._unit_of[att] = unit
        self._queue_dirty = True

    def _enqueue_after(self: Engine, att: Attempt, delay: float) -> None:
        """Queue a new attempt after `delay` seconds (a retry's backoff), SCHEDULING meanwhile."""
        if delay <= 0:
            self._enqueue([[att]])
        else:
            asyncio.get_running_loop().call_later(delay, self._post, ("requeue", att))

    def _requeue(self: Engine, att: Attempt) -> None:
        """Its backoff is over: queue it, unless it ended meanwhile (a cancel)."""
        if att.status == T.SCHEDULING and att not in self._unit_of:
            self._enqueue([[att]])

    def _unqueue(self: Engine, att: Attempt) -> None:
        # O(1) per attempt (cancelling 10,000 queued tasks must not scan the queue 10,000
        # times); the emptied unit leaves the queue at the next _schedule.
        unit = self._unit_of.pop(att, None)
        if unit is not None:
            unit.remove(att)

    def _schedule(self: Engine) -> None:
        if not self._queue_dirty:
            return
        self._settle_claims()  # engine/preempt.py: even with nothing queued, a claim may end
        if not self._queue:
            return
        self._queue_dirty = False
        kept: list[tuple[tuple[int, int], list[Attempt]]] = []
        misses = 0
        for i, (rank, unit) in enumerate(self._queue):
            if misses > BACKFILL_WINDOW:
                kept.extend(q for q in self._queue[i:] if q[1])
                break
            if not unit:
                continue  # every attempt of it was unqueued
            wf = unit[0].task.group.workflow
            if wf.canceling:  # being cancelled a slice at a time: never launch more of it
                kept.append((rank, unit))
                continue
            allocs = self._reclaimed(unit) or self.scheduler.place_gang(
                wf.pool, [wf.spec.resource_of(a.task.spec) for a in unit]
            )
            if allocs is None:
                self._preempt_for(unit)  # engine/preempt.py
                kept.append((rank, unit))
                misses += 1
                continue
            for att, alloc in zip(unit, allocs, strict=True):
                self._unit_of.pop(att, None)
                att.alloc = alloc
                att.rank = rank
                att.launching = True
                self._save(
                    att,
                    backend=alloc.backend,
                    node=alloc.node,
                    alloc=json.dumps(
                        {"cpu": alloc.cpu, "memory": alloc.memory, "gpus": alloc.gpus}
                    ),
                )
                self._set_task(att, T.INITIALIZING)
                self._launches.append(att)
        self._queue = kept

    def _release(self: Engine, att: Attempt) -> None:
        if att.alloc is not None:
            if not self._claim_keeps(att):  # a victim's room stays taken for its preemptor
                self.scheduler.release(att.alloc)
            self._queue_dirty = True

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
        self._queue_dirty = True
