"""The wait queue: units of attempts waiting for capacity, and the scheduling pass that places
them and says why each of the others still waits.

Units sit by pool, then priority (a *level*), then user, each user's in submission order. A
pass takes the levels from HIGH to LOW across pools (pools may share machines), at one
priority the pool whose oldest unit waits longest first; within a level the next unit comes
from the user whose head was submitted first (`fifo`) or who holds the smallest weighted
dominant share of the pool (`drf`), so one user's thousands of queued tasks do not starve a
colleague's one. Each level stops after BACKFILL_WINDOW units that could not be placed, or
sooner, at a unit that no machine has room for when nothing in its level asks less (and
preemption cannot make room): a pass costs O(pools x levels x (users + window) + placements),
whatever the queue's length, and a full pool's costs O(pools x levels x users + placements).

A unit the pass looked at gets its specific reason (a user limit, the pool's quota, no room on
any machine, a gang that does not fit); one it did not reach gets a reason derived from what
it waits behind, handed out a slice at a time after the pass (`unreached`). Pure: no engine,
no I/O (engine/placement.py and benchmarks/scheduler.py drive it).
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..config import PRIORITIES
from ..roles import USER
from ..scheduler import Alloc, Scheduler
from ..scheduling_config import Usage
from ..spec.models import Resource

A = TypeVar("A", bound=Hashable)
BACKFILL_WINDOW = 32  # units tried per level past the first that does not fit
NAMES = {v: k for k, v in PRIORITIES.items()}
NORMAL = PRIORITIES["NORMAL"]


def total_of(requests: list[Resource]) -> Resource:
    """What a unit asks in all: what a pool's quota is checked against."""
    if len(requests) == 1:
        return requests[0]
    # a gang's sum (model_construct: these are validated parts)
    return Resource.model_construct(
        cpu=sum(r.cpu for r in requests),
        memory=sum(r.memory or 0 for r in requests),
        gpu=sum(r.gpu for r in requests),
    )


@dataclass(eq=False)
class Unit(Generic[A]):
    """Attempts placed together (a barrier group), or one attempt."""

    items: list[A]
    pool: str
    priority: int
    user: str
    workflow: str
    seq: int  # submission order; unique
    reason: str | None = None  # why it waits, as the pass that last looked at it found
    seen: int = -1  # the pass that last looked at it
    reported: str | None = None  # the reason last announced (the engine's to set)


@dataclass(eq=False)
class _UserUnits(Generic[A]):
    role: str  # the user's auth role, as their latest unit was submitted with (drf's weight)
    units: list[Unit[A]] = field(default_factory=list)
    head: int = 0  # units before it are placed or emptied
    dead: int = 0  # placed or emptied units at or past head (backfilled ones, cancelled ones)

    def compact(self) -> None:
        """Step past gone units at the head; drop gone ones once they are half the list
        (amortised O(1) per unit)."""
        while self.head < len(self.units) and not self.units[self.head].items:
            self.head += 1
            self.dead -= 1
        if (self.head > 64 and self.head * 2 > len(self.units)) or (
            self.dead > 64 and self.dead * 2 > len(self.units) - self.head
        ):
            self.units = [u for u in self.units[self.head :] if u.items]
            self.head = self.dead = 0


@dataclass(eq=False)
class _Level(Generic[A]):
    users: dict[str, _UserUnits[A]] = field(default_factory=dict)
    workflows: Counter[str] = field(default_factory=Counter)  # queued units per workflow
    first_reason: str | None = None  # the first unit this pass could not place, and why
    # What no unit of the level asks less of (cpu, memory, GPUs), and the platforms its units
    # ask for: lowered as units come, reset once the level is empty. A unit asking no more
    # than this, on the only platform, that no machine has room for means none of them fits.
    least: tuple[float, int, int] | None = None
    platforms: set[str | None] = field(default_factory=set)

    def asks(self, r: Resource) -> None:
        cpu, memory, gpu = r.cpu, r.memory or 0, r.gpu
        if self.least is not None:
            cpu, memory, gpu = (
                min(cpu, self.least[0]),
                min(memory, self.least[1]),
                min(gpu, self.least[2]),
            )
        self.least = (cpu, memory, gpu)
        self.platforms.add(r.platform)

    def asks_least(self, r: Resource) -> bool:
        """No unit of the level asks less than `r`, on another platform either."""
        least = self.least
        return (
            least is not None
            and len(self.platforms) == 1
            and r.cpu <= least[0]
            and (r.memory or 0) <= least[1]
            and r.gpu <= least[2]
        )


class WaitQueue(Generic[A]):
    def __init__(
        self,
        scheduler: Scheduler,
        resource_of: Callable[[A], Resource],
        window: int = BACKFILL_WINDOW,
    ):
        self.scheduler = scheduler
        self.resource_of = resource_of
        self.window = window
        self._levels: dict[str, dict[int, _Level[A]]] = {}
        self._unit_of: dict[A, Unit[A]] = {}
        self._waiting: Counter[str] = Counter()  # attempts waiting, per pool
        self._seq = 0
        self.passes = 0
        self.dirty = False
        # Every queued unit in turn, for `unreached` (gone ones are dropped as they come up),
        # and how many to visit before each was met once since the sweep began. A sweep begins
        # after a pass that changed what an unreached unit's reason is derived from
        # (`_background`), not after every pass: a queue of 2,000 behind two busy CPUs would
        # otherwise re-derive ~400 unchanged reasons each time a task ends.
        self._rota: deque[Unit[A]] = deque()
        self._rota_left = 0
        self._background_was: tuple[object, ...] | None = None
        # Units whose reason is due whatever the background: new ones, and those the last pass
        # looked at (a specific reason was announced) that this pass did not.
        self._due: deque[Unit[A]] = deque()
        self._looked: list[Unit[A]] = []

    def __len__(self) -> int:
        """Attempts waiting."""
        return len(self._unit_of)

    def add(
        self,
        items: list[A],
        pool: str,
        priority: int,
        user: str,
        workflow: str,
        seq: int | None = None,
        role: str = USER,
    ) -> Unit[A]:
        """Queue a unit last in its user's order, or, given the `seq` a unit had before (a
        preempted unit going back), at the place that submission order gives it. `role`: the
        submitter's auth role (fair share weighs by it)."""
        if seq is None:
            self._seq += 1
            seq = self._seq
        unit = Unit(list(items), pool, priority, user, workflow, seq)
        level = self._levels.setdefault(pool, {}).setdefault(priority, _Level())
        uu = level.users.setdefault(user, _UserUnits(role))
        uu.role = role
        # Appending keeps the list in seq order; only an old seq needs a search (O(log n)).
        if uu.units and uu.units[-1].seq > seq:
            uu.units.insert(bisect.bisect(uu.units, seq, lo=uu.head, key=lambda u: u.seq), unit)
        else:
            uu.units.append(unit)
        level.workflows[workflow] += 1
        for item in items:
            self._unit_of[item] = unit
            level.asks(self.resource_of(item))
        self._waiting[pool] += len(items)
        self._rota.append(unit)
        self._due.append(unit)
        self.dirty = True
        return unit

    def remove(self, item: A) -> None:
        """It leaves the queue (cancelled, its workflow ended): O(1), never a scan."""
        unit = self._unit_of.pop(item, None)
        if unit is not None:
            unit.items.remove(item)
            self._waiting[unit.pool] -= 1
            if not unit.items:
                self._gone(unit)

    def unit_of(self, item: A) -> Unit[A] | None:
        return self._unit_of.get(item)

    def _gone(self, unit: Unit[A]) -> None:
        level = self._levels[unit.pool][unit.priority]
        level.workflows[unit.workflow] -= 1
        if not level.workflows[unit.workflow]:
            del level.workflows[unit.workflow]
        level.users[unit.user].dead += 1

    # --- the pass ---------------------------------------------------------------------------

    def schedule(
        self,
        skip: Callable[[Unit[A]], bool] = lambda u: False,
        may_stop: Callable[[int], bool] = lambda priority: True,
    ) -> tuple[list[tuple[list[A], list[Alloc]]], list[Unit[A]]]:
        """One pass: the attempts placed (a unit's, with its allocations, in start order) and
        the units looked at and left waiting (with a fresh `reason`). `skip`: units not to place now
        (a workflow being cancelled). `may_stop(priority)`: whether a level may stop at a unit
        that nothing fits, when none of its units asks less; False where looking further
        matters although none fits (the engine's preemption may make room for each)."""
        self.dirty = False
        self.passes += 1
        placed: list[tuple[list[A], list[Alloc]]] = []
        waiting: list[Unit[A]] = []
        # Higher priorities first across pools (pools may share machines); within a priority,
        # the pool whose oldest unit waits longest first.
        order = sorted(
            (-priority, self._oldest(level), pool, priority)
            for pool, levels in self._levels.items()
            for priority, level in levels.items()
        )
        for _, _, pool, priority in order:
            level = self._levels[pool][priority]
            self._pass_level(pool, priority, level, skip, may_stop, placed, waiting)
        background = self._background()
        if background != self._background_was:  # a sweep meets every unit, the due ones too
            self._background_was = background
            self._rota_left = len(self._rota)
            self._due.clear()
        else:
            self._due.extend(u for u in self._looked if u.seen != self.passes)
        self._looked = waiting
        return placed, waiting

    def _background(self) -> tuple[object, ...]:
        """What the reason of a unit no pass looked at is derived from (`reason_of_unit`): per
        level, the first reason and what waits ahead; the held tasks and GPUs of users with a
        limit. O(levels + limited users)."""
        out: list[object] = []
        for pool, levels in self._levels.items():
            limits = self.scheduler.pools[pool].scheduling.limits
            for priority, level in levels.items():
                out.append((pool, priority, level.first_reason, self._ahead(pool, priority)))
                if limits:
                    for user in level.users:
                        tasks, held = self.scheduler.user_held(pool, user)
                        out.append((user, tasks, held.gpu))
        return tuple(out)

    def unreached(self, limit: int) -> list[Unit[A]]:
        """Up to `limit` waiting units the last pass did not look at whose reason may have
        changed: new units and those the pass before looked at first, then, while a sweep is on,
        every unit in turn until each was met once (then none). Their reasons (`reason_of_unit`)
        are brought up to date a slice at a time, as a pass looks at O(window) units of a queue
        of 100,000."""
        out: list[Unit[A]] = []
        steps = 0
        while self._due and len(out) < limit and steps < 4 * limit:
            unit = self._due.popleft()
            steps += 1
            if unit.items and unit.seen != self.passes:
                out.append(unit)
        while self._rota_left > 0 and len(out) < limit and steps < 4 * limit:
            unit = self._rota.popleft()
            self._rota_left -= 1
            steps += 1
            if unit.items:
                self._rota.append(unit)
                if unit.seen != self.passes:
                    out.append(unit)
        return out

    @property
    def sweeping(self) -> bool:
        """Some units are due a reason from `unreached`."""
        return self._rota_left > 0 or bool(self._due)

    @staticmethod
    def _oldest(level: _Level[A]) -> int:
        """The submission order of the level's oldest waiting unit (O(users))."""
        oldest = 2**63
        for uu in level.users.values():
            uu.compact()
            if uu.head < len(uu.units):
                oldest = min(oldest, uu.units[uu.head].seq)
        return oldest

    def _pass_level(
        self,
        pool: str,
        priority: int,
        level: _Level[A],
        skip: Callable[[Unit[A]], bool],
        may_stop: Callable[[int], bool],
        placed: list[tuple[list[A], list[Alloc]]],
        waiting: list[Unit[A]],
    ) -> None:
        sched = self.scheduler
        cfg = sched.pools[pool].scheduling
        drf = cfg.fair_share == "drf"
        level.first_reason = None
        # (share, seq, user, position): the user whose turn it is comes first
        turns: list[tuple[float, int, str, int]] = []
        for user, uu in list(level.users.items()):
            uu.compact()
            if uu.head >= len(uu.units):
                del level.users[user]
                continue
            share = sched.dominant_share(pool, user) / cfg.weight_of(user, uu.role) if drf else 0.0
            turns.append((share, uu.units[uu.head].seq, user, uu.head))
        if not level.users:  # empty: what its next units ask starts afresh
            level.least, level.platforms = None, set()
        heapq.heapify(turns)
        misses = 0
        failed: dict[tuple[float, int, int, str], str] = {}  # shapes that did not fit: why
        while turns and misses <= self.window:
            share, _, user, pos = heapq.heappop(turns)
            uu = level.users[user]
            unit = uu.units[pos]
            nxt = pos + 1
            while nxt < len(uu.units) and not uu.units[nxt].items:
                nxt += 1
            if not unit.items or skip(unit):
                if nxt < len(uu.units):
                    heapq.heappush(turns, (share, uu.units[nxt].seq, user, nxt))
                misses += bool(unit.items)  # skipped units count: a pass stays bounded
                continue
            reason = self._limit(pool, user, unit)
            full = False
            if reason is None:
                reason, allocs, full = self._try(pool, priority, unit, failed)
                if allocs is not None:
                    items, unit.items = unit.items, []
                    placed.append((items, allocs))
                    for item in items:
                        del self._unit_of[item]
                    self._waiting[pool] -= len(items)
                    self._gone(unit)
                    if nxt < len(uu.units):
                        weight = cfg.weight_of(user, uu.role)
                        share = sched.dominant_share(pool, user) / weight if drf else 0
                        heapq.heappush(turns, (share, uu.units[nxt].seq, user, nxt))
                    continue
                if nxt < len(uu.units):
                    heapq.heappush(turns, (share, uu.units[nxt].seq, user, nxt))
            misses += 1
            unit.reason, unit.seen = reason, self.passes
            level.first_reason = level.first_reason or reason
            waiting.append(unit)
            if (
                full
                and len(unit.items) == 1
                and level.asks_least(self.resource_of(unit.items[0]))
                and may_stop(priority)
            ):
                return  # what waits behind it asks as much or more: none of it fits either

    def user_limit(self, unit: Unit[A]) -> str | None:
        """The user's limit that starting this unit would pass (preemption cannot help it)."""
        return self._limit(unit.pool, unit.user, unit)

    def _limit(self, pool: str, user: str, unit: Unit[A]) -> str | None:
        """The user's limit in the pool, if starting this unit would pass it."""
        limit = self.scheduler.pools[pool].scheduling.limit_of(user)
        if limit is None:
            return None
        tasks, held = self.scheduler.user_held(pool, user)
        if limit.max_tasks is not None and tasks + len(unit.items) > limit.max_tasks:
            return f"user limit: {limit.max_tasks} running tasks"
        gpus = sum(self.resource_of(i).gpu for i in unit.items)
        if limit.max_gpus is not None and gpus and held.gpu + gpus > limit.max_gpus:
            return f"user limit: {limit.max_gpus} running GPUs"
        return None

    def _try(
        self,
        pool: str,
        priority: int,
        unit: Unit[A],
        failed: dict[tuple[float, int, int, str], str],
    ) -> tuple[str, list[Alloc] | None, bool]:
        """Place the unit, or say why not (quota first: it is the pool's rule, not its room),
        and whether it was for want of room."""
        sched = self.scheduler
        requests = [self.resource_of(i) for i in unit.items]
        if priority >= NORMAL and sched.pools[pool].scheduling.quota is not None:
            total = total_of(requests)
            if not sched.entitled(pool, priority, total):
                return self._quota_reason(pool, total), None, False
        shape = None
        if len(requests) == 1:  # a shape that did not fit will not fit again this pass
            r = requests[0]
            shape = (r.cpu, r.memory or 0, r.gpu, sched.platform_of(pool, r))
            if shape in failed:
                return failed[shape], None, True
        allocs = sched.place_gang(pool, requests, priority=priority, user=unit.user)
        if allocs is not None:
            return "", allocs, False
        reason = self._behind(pool, priority, sched.why(pool, requests))
        if shape is not None:
            failed[shape] = reason  # the same for the level's other units of this shape
        return reason, None, True

    def _quota_reason(self, pool: str, want: Resource) -> str:
        quota = self.scheduler.pools[pool].scheduling.quota
        assert quota is not None  # entitled() refuses NORMAL/HIGH work only past a quota
        used = self.scheduler.guaranteed(pool)
        over = quota.over(used.plus(want.gpu, want.cpu, want.memory or 0)) or "gpu"
        name = {"gpu": "GPU", "cpu": "CPU", "memory": "memory"}[over]
        have, limit = getattr(used, over), quota.of(over)
        if quota.over(Usage().plus(want.gpu, want.cpu, want.memory or 0)):
            return (
                f"asks more {name} than pool {pool}'s {name} quota holds: "
                "only LOW priority may run it (borrowing)"
            )
        if over == "memory":
            return (
                f"pool {pool} at its memory quota ({have / 2**30:.3g}Gi/"
                f"{(limit or 0) / 2**30:.3g}Gi used by NORMAL/HIGH)"
            )
        return f"pool {pool} at its {name} quota ({have:g}/{limit:g} used by NORMAL/HIGH)"

    def _behind(self, pool: str, priority: int, why: str) -> str:
        """No room: higher-priority work waiting in the pool goes first when room comes."""
        ahead = self._ahead(pool, priority)
        return ahead or why

    def _ahead(self, pool: str, priority: int) -> str | None:
        counts = [
            f"{len(level.workflows)} {NAMES.get(p, p)}"
            for p, level in sorted(self._levels[pool].items(), reverse=True)
            if p > priority and level.workflows
        ]
        if not counts:
            return None
        n = sum(len(lv.workflows) for p, lv in self._levels[pool].items() if p > priority)
        noun = "workflow" if n == 1 else "workflows"
        return f"queued behind {' and '.join(counts)} {noun} in pool {pool}"

    # --- reasons ----------------------------------------------------------------------------

    def reason_of(self, item: A) -> str | None:
        """Why this waiting attempt waits now; None when it is not queued."""
        unit = self._unit_of.get(item)
        if unit is None:
            return None
        return self.reason_of_unit(unit)

    def reason_of_unit(self, unit: Unit[A]) -> str:
        if unit.seen == self.passes and unit.reason:
            return unit.reason
        level = self._levels[unit.pool][unit.priority]
        limit = self._limit(unit.pool, unit.user, unit)
        if limit is not None:
            return limit
        ahead = self._ahead(unit.pool, unit.priority)
        if ahead:
            return ahead
        name = NAMES.get(unit.priority, str(unit.priority))
        if level.first_reason is None:
            return "waiting for the next scheduling pass"
        order = (
            "fair share"
            if self.scheduler.pools[unit.pool].scheduling.fair_share == "drf"
            else "submission order"
        )
        return (
            f"queued behind earlier {name} work in pool {unit.pool} ({order}); "
            f"the first waiting: {level.first_reason}"
        )

    def waiting_in(self, pool: str) -> int:
        """Attempts waiting in the pool."""
        return self._waiting[pool]
