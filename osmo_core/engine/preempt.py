"""Preemption: NORMAL or HIGH work that cannot be placed takes the machines LOW work holds.

When a queued unit of NORMAL/HIGH work does not fit and its pool is entitled to the room
(`Scheduler.entitled`), the LOW units running on machines it may use are candidates (a barrier
group is one unit: a gang goes as a whole). `preemption.choose_victims` picks the fewest, then
youngest, after simulating that their room makes it fit; nothing is preempted otherwise. Each
victim is stopped like a cancel (`_stop`) with reason FAILED_PREEMPTED: SIGTERM, then SIGKILL
after its grace (the spec's `preemptionGrace`, else the pool's `preemption_grace`), in which its
`checkpoint:` is uploaded. While victims terminate, a `Claim` keeps what they free taken for the
preemptor, so nothing else is placed there; once the last has ended the room goes to it first.
A victim ends FAILED_PREEMPTED (exit code 3006) unless its exitActions name 3006, and is
rescheduled outside its retry budget (up to `policy.MAX_PREEMPTIONS` times per task): its new
attempt (a gang's, together) goes back to the queue with the submission order (`seq`) its unit
had, the earliest of its tasks', so the wait queue puts it in front of LOW work submitted after
it (OSMO's example).

The wait queue's pass runs after claims are settled: a unit whose victims have all ended is
placed on their room before the pass, and the units the pass leaves waiting are the ones that
may preempt. Claims live in memory only: after an engine restart the victims still end, and the
queue order (the preemptor first) gives it their room.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..config import PRIORITIES
from ..preemption import Candidate, choose_victims, grace_of, preempted_message
from ..scheduler import Alloc
from ..states import TaskStatus
from .runs import Attempt, GroupRun
from .waitqueue import Unit, total_of

if TYPE_CHECKING:
    from .loop import Engine

log = logging.getLogger("osmo.engine")
T = TaskStatus
LOW = PRIORITIES["LOW"]
_NAMES = {v: k for k, v in PRIORITIES.items()}


@dataclass(eq=False)
class Claim:
    """Room being made for a queued unit: its victims still terminating, and what those that
    ended freed (kept taken in the scheduler for the unit)."""

    unit: Unit[Attempt]
    victims: set[Attempt]
    freed: list[Alloc] = field(default_factory=list)


@dataclass(eq=False)
class Requeue:
    """A preempted unit on its way back to the queue: its victims not ended yet, the new
    attempts of those that did, and the submission order its unit had in the queue."""

    seq: int | None
    waiting: set[Attempt]
    retries: list[Attempt] = field(default_factory=list)


class Preempting:
    """The Engine's preemption of LOW work for NORMAL/HIGH work that cannot be placed.

    A part of `Engine` (engine/loop.py): methods only, on the engine's state, run in its loop.
    """

    def _preempt_for(self: Engine, unit: Unit[Attempt]) -> None:
        """The pass left `unit` waiting: preempt the LOW work whose room makes it fit, if any."""
        if unit.priority <= LOW or id(unit) in self._claims or self._victims is False:
            return
        if self._queue.user_limit(unit) is not None:
            return  # freeing room would not start it
        wf = unit.items[0].task.group.workflow
        requests = [wf.spec.resource_of(a.task.spec) for a in unit.items]
        if not self.scheduler.entitled(wf.pool, wf.priority, total_of(requests)):
            return
        units, pending = self._preemptible()
        if not units:
            self._victims = False  # none for the rest of this pass: no more scans of it
            return
        sim = self.scheduler.simulation(wf.pool, requests)
        units = [u for u in units if any(a.alloc and sim.helps(a.alloc) for a in u)]

        def fits(freed: list[Alloc]) -> bool:
            return sim.fits(pending + freed)

        if pending and fits([]):
            return  # room is being freed already (a cancel under way): wait for it
        candidates = [
            Candidate(
                i,
                max(a.start_time or a.create_time for a in atts),
                tuple(a.alloc for a in atts if a.alloc is not None),
            )
            for i, atts in enumerate(units)
        ]
        chosen = choose_victims(candidates, fits)
        if chosen is None:
            return
        victims = [a for c in chosen for a in units[c.key]]
        claim = Claim(unit, set(victims))
        self._claims[id(unit)] = claim
        by = [a.task.name for a in unit.items]
        message = preempted_message(wf.id, by, _NAMES.get(wf.priority, str(wf.priority)), wf.pool)
        for c in chosen:
            atts = units[c.key]
            seqs = [a.seq for a in atts if a.seq is not None]
            back = Requeue(min(seqs) if len(seqs) == len(atts) else None, set(atts))
            for att in atts:
                self._claim_of[att] = claim
                self._requeue_of[att] = back
                self._stop(att, T.FAILED_PREEMPTED, message)
                grace = self._preemption_grace(att)
                log.info("%s: %s (SIGTERM, SIGKILL after %gs)", att.key, message, grace)
                self._event(
                    "task.preempt",
                    att.task.group.workflow,
                    group=att.task.group.name,
                    task=att.task.name,
                    retry_id=att.retry_id,
                    message=f"{message}; SIGTERM, SIGKILL after {grace:g}s",
                    by=wf.id,
                    grace=grace,
                )
        first = unit.items[0]
        self._event(
            "task.preempting",
            wf,
            group=first.task.group.name,
            task=first.task.name,
            retry_id=first.retry_id,
            message=f"preempting {len(victims)} LOW task(s) to make room: "
            + ", ".join(a.key for a in victims),
            victims=[a.key for a in victims],
        )

    def _may_preempt(self: Engine) -> bool:
        """Whether LOW work runs that preemption could stop: looked for once a pass, and
        the answer spares `_preempt_for` its own look when there is none."""
        if self._victims is None:
            self._victims = bool(self._preemptible()[0])
        return self._victims

    def _preemptible(self: Engine) -> tuple[list[list[Attempt]], list[Alloc]]:
        """The running LOW units no preemption or cancel is stopping yet (a barrier group's
        tasks are one unit), and the room of attempts being stopped that no claim holds."""
        by_unit: dict[Attempt | GroupRun, list[Attempt]] = {}
        pending: list[Alloc] = []
        stopping: set[GroupRun] = set()
        for att in self._launched.values():
            if att.alloc is None:
                continue
            g = att.task.group
            if att.cancel_reason is not None:
                stopping.add(g)
                if att not in self._claim_of:
                    pending.append(att.alloc)
            elif g.workflow.priority <= LOW and not g.workflow.canceling:
                by_unit.setdefault(g if g.spec.barrier else att, []).append(att)
        units = [
            atts
            for key, atts in by_unit.items()
            if not (isinstance(key, GroupRun) and key in stopping)  # a gang goes whole or not
        ]
        return units, pending

    def _preemption_grace(self: Engine, att: Attempt) -> float:
        wf = att.task.group.workflow
        res = wf.spec.resource_of(att.task.spec)
        return grace_of(res.preemption_grace, self.scheduler.pools[wf.pool].preemption_grace)

    def _claim_keeps(self: Engine, att: Attempt) -> bool:
        """A victim ended: what it held stays taken for the unit that preempted it."""
        claim = self._claim_of.pop(att, None)
        if claim is None or att.alloc is None:
            return False
        claim.victims.discard(att)
        claim.freed.append(att.alloc)
        return True

    def _reclaimed(self: Engine) -> list[tuple[list[Attempt], list[Alloc]]]:
        """The units whose claims' victims have all ended, placed on the room given back, before
        the wait queue's pass can give it to anything else (units out of the queue)."""
        placed: list[tuple[list[Attempt], list[Alloc]]] = []
        for claim in [c for c in self._claims.values() if not c.victims]:
            self._drop_claim(claim)
            unit = claim.unit
            wf = unit.items[0].task.group.workflow
            allocs = self.scheduler.place_gang(
                wf.pool,
                [wf.spec.resource_of(a.task.spec) for a in unit.items],
                priority=unit.priority,
                user=unit.user,
            )
            if allocs is not None:  # else it waits in the queue, for the pass
                atts = list(unit.items)
                for att in atts:
                    self._queue.remove(att)
                placed.append((atts, allocs))
        return placed

    def _settle_claims(self: Engine) -> None:
        """A scheduling pass begins: drop the claims of units placed elsewhere, cancelled or
        emptied (their room is free), and look for victims again."""
        self._victims = None
        for claim in list(self._claims.values()):
            first = claim.unit.items[0] if claim.unit.items else None  # placed: items emptied
            if first is None or first.status != T.SCHEDULING or first.task.group.workflow.canceling:
                self._drop_claim(claim)

    def _drop_claim(self: Engine, claim: Claim) -> None:
        del self._claims[id(claim.unit)]
        for victim in claim.victims:  # still terminating: their room is released as they end
            self._claim_of.pop(victim, None)
        for alloc in claim.freed:
            self.scheduler.release(alloc)
        claim.freed.clear()
        self._queue.dirty = True

    def _preempted_ended(self: Engine, att: Attempt, retry: Attempt | None) -> bool:
        """A victim ended (`retry`: its new attempt, if it gets one). True when preemption
        queues the retry: a preempted unit goes back whole, at the place it had."""
        back = self._requeue_of.pop(att, None)
        if back is None:
            return False
        back.waiting.discard(att)
        if retry is not None:
            back.retries.append(retry)
        if not back.waiting:
            unit = [a for a in back.retries if a.status == T.SCHEDULING]  # not cancelled since
            if unit:
                self._enqueue([unit], seq=back.seq)
        return True
