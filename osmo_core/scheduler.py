"""Placement: pools -> platforms -> machines -> capacity (cpu, memory, gpu).

The scheduler only does arithmetic on capacity; it never changes task state (the engine does).
`check()` answers "can this pool ever run this workflow?" at submit time (placement errors,
exit code 3); `place()` answers "where can this task run *now*?" during the run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .config import PRIORITIES, PoolConfig
from .errors import Problem
from .scheduling_config import Usage
from .spec.models import Resource, Workflow, task_fields
from .wire import Node, tolerated

_GI = 2**30
# A shared-CPU machine (the local default) runs CPU requests up to this many times its cores at
# once: OSMO's tutorials fit on a laptop, and 10,000 queued tasks still do not all start.
SHARED_CPU = 4.0
NORMAL = PRIORITIES["NORMAL"]


@dataclass
class Alloc:
    backend: str
    node: str
    cpu: float
    memory: int
    gpus: list[int] = field(default_factory=list)
    # Whose it is, for quotas, per-user limits and fair share (set by place/place_gang).
    pool: str = ""
    priority: int = NORMAL
    user: str = ""


@dataclass(eq=False)  # compared and hashed by identity: machines key the indexes' buckets
class _NodeState:
    """What is taken of one machine. Free room is derived from the node's live totals, so a
    host whose capacity is learnt (or changes) after it was listed is used at once."""

    backend: str
    node: Node
    used_cpu: float = 0.0
    used_memory: int = 0
    used_gpus: set[int] = field(default_factory=set)
    # The placement indexes this machine is in, kept in step as its free GPUs change.
    indexes: list[_Index] = field(default_factory=list, repr=False)

    @property
    def free_gpu_count(self) -> int:
        return len(self.node.gpus) - len(self.used_gpus)

    @property
    def free_cpu(self) -> float:
        return self.node.cpu - self.used_cpu

    @property
    def free_memory(self) -> int:
        return self.node.memory - self.used_memory

    @property
    def free_gpus(self) -> list[int]:
        return [g for g in self.node.gpus if g not in self.used_gpus]

    @property
    def known(self) -> bool:
        """False for a machine never reached: its capacity is not known yet."""
        return self.node.online or self.node.cpu > 0

    def fits_total(self, r: Resource) -> bool:
        return (
            (self.node.cpu_shared or r.cpu <= self.node.cpu)
            and (r.memory or 0) <= self.node.memory
            and r.gpu <= len(self.node.gpus)
        )

    def fits_now(self, r: Resource) -> bool:
        # 1e-9: float cpu sums (0.1 + 0.2) must not refuse an exact fit
        return (
            (
                min(r.cpu, self.node.cpu) <= self.free_cpu + (SHARED_CPU - 1) * self.node.cpu + 1e-9
                if self.node.cpu_shared
                else r.cpu <= self.free_cpu + 1e-9
            )
            and (r.memory or 0) <= self.free_memory
            and r.gpu <= self.free_gpu_count
        )


# A placement looks at this many fitting machines of one free-GPU count for the one with the
# least free CPU, not at all of them: a bounded search on a 1,000-machine pool.
BEST_OF = 4


class _Index:
    """The machines one pool's platform selects, bucketed by free GPU count: a placement looks
    only at machines with enough free GPUs, fewest first (keeps big machines for big tasks).
    Offline machines are kept (they come back); `online` and capacity are read live."""

    def __init__(self, machines: list[_NodeState], arch: str | None):
        self.machines = machines
        self.arch = arch
        self.buckets: dict[int, dict[_NodeState, None]] = {}  # free GPUs -> machines
        self._key: dict[_NodeState, int] = {}
        for m in machines:
            self.put(m)
            m.indexes.append(self)

    def put(self, m: _NodeState) -> None:
        """File `m` under its free GPU count now."""
        old, new = self._key.get(m), m.free_gpu_count
        if old == new:
            return
        if old is not None:
            bucket = self.buckets[old]
            del bucket[m]
            if not bucket:
                del self.buckets[old]
        self.buckets.setdefault(new, {})[m] = None
        self._key[m] = new

    def usable(self, m: _NodeState) -> bool:
        # arch may be learnt after the listing (an SSH host's first probe)
        return m.node.online and (not self.arch or not m.node.arch or m.node.arch == self.arch)

    def best(self, res: Resource) -> _NodeState | None:
        """The machine with the fewest free GPUs that fits `res` now (then least free CPU)."""
        for k in sorted(k for k in self.buckets if k >= res.gpu):
            best, looked, stale = None, 0, []
            for m in self.buckets.get(k, {}):
                if m.free_gpu_count != k:  # its node's GPUs were re-listed in place
                    stale.append(m)
                    continue
                if not (self.usable(m) and m.fits_now(res)):
                    continue
                if best is None or m.free_cpu < best.free_cpu:
                    best = m
                looked += 1
                if looked >= BEST_OF:
                    break
            for m in stale:
                self.put(m)
            if best is not None:
                return best
        return None


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class Simulation:
    """Would `requests` (one queued unit) all fit now were some allocations given back? Asked
    many times for one unit, so the machines it may use, and those with room for a part of it
    now, are found once; each answer copies only those with room and those given back to, and
    changes nothing of the scheduler's."""

    def __init__(self, scheduler: Scheduler, pool: str, requests: list[Resource]):
        self._scheduler, self._pool, self._requests = scheduler, pool, requests
        platforms = {scheduler.platform_of(pool, r) for r in requests}
        self._usable = {
            (m.backend, m.node.name): m for p in platforms for m in scheduler._machines(pool, p)
        }
        # A machine with no room for any part of the unit takes none unless room is given back.
        self._roomy = [m for m in self._usable.values() if any(m.fits_now(r) for r in requests)]

    def helps(self, alloc: Alloc) -> bool:
        """`alloc` is on a machine the unit may use."""
        return (alloc.backend, alloc.node) in self._usable

    def fits(self, freed: list[Alloc]) -> bool:
        copies = {id(m): _copy(m) for m in self._roomy}
        for a in freed:
            m = self._usable.get((a.backend, a.node))
            if m is not None:
                Scheduler._give_back(copies.setdefault(id(m), _copy(m)), a)
        nodes: dict[str, list[_NodeState]] = {}
        for c in copies.values():
            nodes.setdefault(c.backend, []).append(c)
        return self._scheduler.place_gang(self._pool, self._requests, nodes) is not None


def _copy(m: _NodeState) -> _NodeState:
    return _NodeState(m.backend, m.node, m.used_cpu, m.used_memory, set(m.used_gpus))


def _fmt(r: Resource) -> str:
    mem = f", memory {r.memory / _GI:.3g}Gi" if r.memory else ""
    return f"cpu {r.cpu:g}, gpu {r.gpu}{mem}"


class Scheduler:
    def __init__(self, pools: dict[str, PoolConfig]):
        self.pools = pools
        self._nodes: dict[str, list[_NodeState]] = {}  # backend name -> machines
        self._by_name: dict[str, dict[str, _NodeState]] = {}  # backend -> node name -> machine
        # What each pool holds by priority, and each user by pool (running tasks, resources),
        # kept as allocations come and go: no scans.
        self._held: dict[str, dict[int, Usage]] = {p: {} for p in pools}
        self._user_held: dict[tuple[str, str], tuple[int, Usage]] = {}
        self._indexes: dict[tuple[str, str], _Index] = {}  # (pool, platform) -> machines
        self._capacity: dict[str, Usage] = {}  # pool -> what its machines offer in all

    def set_nodes(self, backend: str, nodes: list[Node]) -> None:
        """A backend's machines as (re)listed: capacity and labels follow the listing, what
        runs keeps its reservation; a machine gone from the list while tasks still hold part
        of it stays, offline, until they end."""
        old = {s.node.name: s for s in self._nodes.get(backend, [])}
        states = []
        for n in nodes:
            state = old.pop(n.name, None)
            if state is None:
                state = _NodeState(backend, n)
            state.node = n
            states.append(state)
        for state in old.values():
            if state.used_cpu or state.used_memory or state.used_gpus:
                state.node = replace(state.node, online=False)
                states.append(state)
        self._nodes[backend] = states
        self._by_name[backend] = {s.node.name: s for s in states}
        self._forget_indexes()

    def _forget_indexes(self) -> None:
        """The machine lists changed: indexes and capacities are rebuilt when next asked."""
        for ms in self._nodes.values():
            for m in ms:
                m.indexes.clear()
        self._indexes.clear()
        self._capacity.clear()

    def _index(self, pool: str, platform: str) -> _Index:
        ix = self._indexes.get((pool, platform))
        if ix is None:
            machines = self._machines(pool, platform, offline=True)
            ix = self._indexes[pool, platform] = _Index(
                machines, self.pools[pool].platforms[platform].arch
            )
        return ix

    def capacity(self, pool: str) -> Usage:
        """What the machines of the pool's platforms offer, shared machines included."""
        cap = self._capacity.get(pool)
        if cap is None:
            seen: dict[int, _NodeState] = {}
            for platform in self.pools[pool].platforms:
                for m in self._index(pool, platform).machines:
                    seen[id(m)] = m
            cap = Usage()
            for m in seen.values():
                if m.node.online:
                    cap = cap.plus(len(m.node.gpus), m.node.cpu, m.node.memory)
            self._capacity[pool] = cap
        return cap

    def set_online(self, backend: str, node: str, online: bool) -> None:
        """A node went offline (nothing new is placed there) or came back."""
        state = self._by_name.get(backend, {}).get(node)
        if state is not None:
            state.node.online = online
        self._capacity.clear()

    def platform_of(self, pool: str, res: Resource) -> str:
        return res.platform or self.pools[pool].default_platform

    def nodes_of(self, pool: str, platform: str) -> list[Node]:
        """The machines of a pool's platform, offline ones too."""
        return [s.node for s in self._machines(pool, platform, offline=True)]

    def _machines(
        self,
        pool: str,
        platform: str,
        nodes: dict[str, list[_NodeState]] | None = None,
        offline: bool = False,
    ) -> list[_NodeState]:
        cfg = self.pools[pool]
        plat = cfg.platforms[platform]
        hosts = plat.extra.get("hosts")
        labels = (plat.extra.get("node_selector") or {}).items()  # Kubernetes platforms
        tolerations = plat.extra.get("tolerations") or []
        return [
            s
            for s in (nodes if nodes is not None else self._nodes).get(cfg.backend_of(platform), [])
            if (offline or s.node.online)
            and (not hosts or s.node.name in hosts)
            and (not plat.arch or not s.node.arch or s.node.arch == plat.arch)
            and all(s.node.labels.get(k) == v for k, v in labels)
            and all(tolerated(t, tolerations) for t in s.node.taints)
        ]

    def _tainted(self, pool: str, platform: str) -> str:
        """The platform's machines but for their taints: `name (key=value:Effect, ...)`."""
        cfg = self.pools[pool]
        plat = cfg.platforms[platform]
        tolerations = plat.extra.get("tolerations") or []
        out = []
        for s in self._nodes.get(cfg.backend_of(platform), []):
            bad = [t for t in s.node.taints if not tolerated(t, tolerations)]
            if bad:
                shown = ", ".join(f"{t['key']}={t['value']}:{t['effect']}" for t in bad)
                out.append(f"{s.node.name} ({shown})")
        return "; ".join(out)

    def check(self, workflow: Workflow, pool: str) -> list[Problem]:
        """Every reason this pool can never run this workflow, one Problem each."""
        if pool not in self.pools:
            return [
                Problem(
                    f"pool {pool!r} does not exist",
                    field="workflow.pool",
                    hint=f"pools: {', '.join(sorted(self.pools))}",
                )
            ]
        cfg = self.pools[pool]
        problems: list[Problem] = []
        for _, task in task_fields(workflow):
            res = workflow.resource_of(task)
            platform = self.platform_of(pool, res)
            res_field = f"workflow.resources.{task.resource}"
            if platform not in cfg.platforms:
                problems.append(
                    Problem(
                        f"platform {platform!r} is not in pool {pool!r}",
                        field=f"{res_field}.platform",
                        hint=f"platforms of {pool}: {', '.join(sorted(cfg.platforms))}",
                    )
                )
                continue
            # Offline machines count (they come back); one never reached might fit: accept.
            machines = self._machines(pool, platform, offline=True)
            if not any(m.fits_total(res) or not m.known for m in machines):
                biggest = ", ".join(
                    f"{m.node.name}: cpu {m.node.cpu:g}, gpu {len(m.node.gpus)}, "
                    f"memory {m.node.memory / _GI:.3g}Gi"
                    for m in machines
                )
                hint = f"machines: {biggest or 'none'}"
                if tainted := self._tainted(pool, platform):
                    hint += f"; kept off by taints the platform does not tolerate: {tainted}"
                problems.append(
                    Problem(
                        f"task {task.name!r} asks {_fmt(res)}, more than any machine of platform "
                        f"{platform!r} offers",
                        field=res_field,
                        hint=hint,
                    )
                )
        if not problems:
            problems += self._check_barriers(workflow, pool)
        return problems

    def check_quota(self, workflow: Workflow, pool: str, priority: int) -> list[Problem]:
        """NORMAL/HIGH work asking more than its pool's quota holds could never start: one
        Problem per task (per barrier group: its tasks start together) past it. Refused at
        submit, not queued: the quota changes only with the config, so the user learns now
        (LOW work is never refused: it borrows, past the quota)."""
        quota = self.pools[pool].scheduling.quota
        if priority < NORMAL or quota is None:
            return []
        asks: list[tuple[str, str, Usage]] = []  # (what, field, total)
        for path, task in task_fields(workflow):
            res = workflow.resource_of(task)
            asks.append((f"task {task.name!r}", path, Usage(res.gpu, res.cpu, res.memory or 0)))
        for gi, g in enumerate(workflow.groups or []):
            if g.barrier and len(g.tasks) > 1:
                total = Usage()
                for t in g.tasks:
                    r = workflow.resource_of(t)
                    total = total.plus(r.gpu, r.cpu, r.memory or 0)
                asks.append(
                    (
                        f"group {g.name!r} (barrier: its tasks start together)",
                        f"workflow.groups[{gi}]",
                        total,
                    )
                )
        problems = []
        for what, path, total in asks:
            over = quota.over(total)
            if over is None:
                continue
            limit, want = quota.of(over), getattr(total, over)
            shown = (
                (f"{want / _GI:.3g}Gi", f"{(limit or 0) / _GI:.3g}Gi")
                if over == "memory"
                else (f"{want:g}", f"{limit:g}")
            )
            problems.append(
                Problem(
                    f"{what} asks {over} {shown[0]}, more than pool {pool!r}'s {over} quota "
                    f"({shown[1]}) that NORMAL and HIGH work may hold",
                    field=path,
                    hint="submit it at priority LOW (it borrows idle machines and may be "
                    f"preempted), or ask an admin to raise OsmoConfig.pools.{pool}.quota.{over}",
                )
            )
        return problems

    def _check_barriers(self, workflow: Workflow, pool: str) -> list[Problem]:
        """A group with a barrier starts all its tasks at once: it must fit the empty pool."""
        problems = []
        for gi, g in enumerate(workflow.groups or []):
            if not g.barrier or len(g.tasks) < 2:
                continue
            empty = {
                b: [_NodeState(b, m.node) for m in ms if m.known] for b, ms in self._nodes.items()
            }
            if any(not m.known for ms in self._nodes.values() for m in ms):
                continue  # a machine never reached might make room: cannot tell yet
            requests = [workflow.resource_of(t) for t in g.tasks]
            if self.place_gang(pool, requests, empty) is None:
                total = sum(r.cpu for r in requests)
                problems.append(
                    Problem(
                        f"group {g.name!r} starts its {len(g.tasks)} tasks together (barrier) "
                        f"and needs cpu {total:g}, gpu {sum(r.gpu for r in requests)} at once; "
                        f"pool {pool!r} cannot hold them all",
                        field=f"workflow.groups[{gi}]",
                        hint="lower the tasks' resources, or set barrier: false",
                    )
                )
        return problems

    def held(self, pool: str, priority: int | None = None) -> Usage:
        """What the pool's running tasks hold: of one priority, or of all (None)."""
        by_priority = self._held.get(pool, {})
        if priority is not None:
            return by_priority.get(priority, Usage())
        total = Usage()
        for u in by_priority.values():
            total = total.plus(u.gpu, u.cpu, u.memory)
        return total

    def guaranteed(self, pool: str) -> Usage:
        """What NORMAL and HIGH work of the pool holds: what its quota bounds."""
        total = Usage()
        for priority, u in self._held.get(pool, {}).items():
            if priority >= NORMAL:
                total = total.plus(u.gpu, u.cpu, u.memory)
        return total

    def entitled(self, pool: str, priority: int, res: Resource) -> bool:
        """True when placing `res` for NORMAL/HIGH work keeps `pool` within its quota.

        Always True for a pool with no quota configured; never for LOW work, which only ever
        borrows (it may run past the quota on idle machines, and is what preemption reclaims).
        The preemption pass asks this before it frees room: only entitled work may preempt.
        """
        if priority < NORMAL:
            return False
        quota = self.pools[pool].scheduling.quota
        if quota is None:
            return True
        return quota.over(self.guaranteed(pool).plus(res.gpu, res.cpu, res.memory or 0)) is None

    def simulation(self, pool: str, requests: list[Resource]) -> Simulation:
        """Questions of the kind "would these requests fit were those allocations given
        back?" (what preemption asks before it stops anything)."""
        return Simulation(self, pool, requests)

    def place(
        self, pool: str, res: Resource, priority: int = NORMAL, user: str = ""
    ) -> Alloc | None:
        """Reserve room for one task now, or None when it must wait."""
        allocs = self.place_gang(pool, [res], priority=priority, user=user)
        return allocs[0] if allocs else None

    def place_gang(
        self,
        pool: str,
        requests: list[Resource],
        nodes: dict[str, list[_NodeState]] | None = None,
        priority: int = NORMAL,
        user: str = "",
    ) -> list[Alloc] | None:
        """All-or-nothing placement of several tasks (a group with a barrier). `nodes`: place
        on these machine states instead of the live ones (for "could it ever fit?"), which
        leaves the pool's accounting alone."""
        allocs, _ = self._try_gang(pool, requests, nodes, priority, user)
        if allocs is not None and nodes is None:
            for a in allocs:
                self._account(a, 1)
        return allocs

    def _pick(
        self, pool: str, res: Resource, nodes: dict[str, list[_NodeState]] | None
    ) -> _NodeState | None:
        platform = self.platform_of(pool, res)
        if nodes is None:
            return self._index(pool, platform).best(res)
        # Fewest free GPUs that still fit first: keeps big machines free for big tasks.
        return min(
            (m for m in self._machines(pool, platform, nodes) if m.fits_now(res)),
            key=lambda m: (m.free_gpu_count, m.free_cpu),
            default=None,
        )

    def _try_gang(
        self,
        pool: str,
        requests: list[Resource],
        nodes: dict[str, list[_NodeState]] | None,
        priority: int,
        user: str,
    ) -> tuple[list[Alloc] | None, int]:
        """Place the requests in turn; all of them, or none and how many had fit."""
        taken: list[tuple[_NodeState, Alloc]] = []
        for res in requests:
            m = self._pick(pool, res, nodes)
            if m is None:
                for m, a in taken:
                    self._give_back(m, a)
                return None, len(taken)
            alloc = Alloc(
                m.backend,
                m.node.name,
                res.cpu,
                res.memory or 0,
                m.free_gpus[: res.gpu],
                pool=pool,
                priority=priority,
                user=user,
            )
            self._take(m, alloc)
            taken.append((m, alloc))
        return [a for _, a in taken], len(taken)

    def why(self, pool: str, requests: list[Resource]) -> str:
        """Why these requests cannot be placed now, in words (they just failed to)."""
        if len(requests) > 1:
            _, placeable = self._try_gang(pool, requests, None, NORMAL, "")
            return f"gang: {placeable} of {_n(len(requests), 'task')} placeable"
        res = requests[0]
        platform = self.platform_of(pool, res)
        ix = self._index(pool, platform)
        # free GPU counts with a machine online: one look per bucket, not per machine
        free = [k for k, bucket in ix.buckets.items() if any(ix.usable(m) for m in bucket)]
        if not free:
            return f"platform {platform} has no machine online"
        if res.gpu and max(free) < res.gpu:
            return f"needs {_n(res.gpu, 'GPU')} on one machine; the largest free has {max(free)}"
        online = [m for m in ix.machines if ix.usable(m) and m.free_gpu_count >= res.gpu]
        if not any(m.fits_now(res.model_copy(update={"memory": 0})) for m in online):
            most = max(m.free_cpu for m in online)
            return f"needs cpu {res.cpu:g} on one machine; the most free has {max(most, 0):g}"
        most_mem = max(m.free_memory for m in online)
        return (
            f"needs memory {(res.memory or 0) / _GI:.3g}Gi on one machine; "
            f"the most free has {most_mem / _GI:.3g}Gi"
        )

    def pool_summary(self, pool: str) -> dict[str, Any]:
        """Quota, capacity, what is held per priority and past the quota (borrowed)."""
        cfg = self.pools[pool].scheduling
        quota, held = cfg.quota, self.held(pool)
        borrowed = Usage()
        if quota is not None:  # all the pool holds past its quota is LOW work's
            borrowed = Usage(
                *(
                    max(0, getattr(held, r) - limit) if (limit := quota.of(r)) is not None else 0
                    for r in ("gpu", "cpu", "memory")
                )
            )
        return {
            "quota": asdict(quota) if quota else None,
            "fair_share": cfg.fair_share,
            "capacity": asdict(self.capacity(pool)),
            "used": {name: asdict(self.held(pool, p)) for name, p in PRIORITIES.items()},
            "borrowed": asdict(borrowed),
        }

    def user_held(self, pool: str, user: str) -> tuple[int, Usage]:
        """The user's running tasks in the pool, and what they hold."""
        return self._user_held.get((pool, user), (0, Usage()))

    def dominant_share(self, pool: str, user: str) -> float:
        """The largest fraction of any one resource of the pool the user holds (DRF)."""
        _, held = self.user_held(pool, user)
        if not (held.gpu or held.cpu or held.memory):
            return 0.0
        cap = self.capacity(pool)
        return max(
            held.gpu / cap.gpu if cap.gpu else 0.0,
            held.cpu / cap.cpu if cap.cpu else 0.0,
            held.memory / cap.memory if cap.memory else 0.0,
        )

    def adopt(self, alloc: Alloc) -> None:
        """Account for an attempt that was already running (after an engine restart)."""
        m = self._find(alloc)
        if m is not None:
            self._take(m, alloc)
            self._account(alloc, 1)

    def release(self, alloc: Alloc) -> None:
        m = self._find(alloc)
        if m is not None:
            self._give_back(m, alloc)
            self._account(alloc, -1)

    def _account(self, a: Alloc, sign: int) -> None:
        if a.pool not in self._held:
            return  # a pool since removed from the configuration: nothing bounds it now
        by_priority = self._held[a.pool]
        by_priority[a.priority] = by_priority.get(a.priority, Usage()).plus(
            len(a.gpus), a.cpu, a.memory, sign
        )
        tasks, held = self.user_held(a.pool, a.user)
        self._user_held[a.pool, a.user] = (
            tasks + sign,
            held.plus(len(a.gpus), a.cpu, a.memory, sign),
        )

    def usage(self) -> list[dict[str, object]]:
        return [
            {
                "backend": m.backend,
                "node": m.node.name,
                "cpu": m.node.cpu,
                "free_cpu": round(m.free_cpu, 6),
                "memory": m.node.memory,
                "free_memory": m.free_memory,
                "gpus": list(m.node.gpus),
                "free_gpus": list(m.free_gpus),
                "arch": m.node.arch,
                "online": m.node.online,
            }
            for ms in self._nodes.values()
            for m in ms
        ]

    def _find(self, alloc: Alloc) -> _NodeState | None:
        return self._by_name.get(alloc.backend, {}).get(alloc.node)

    @staticmethod
    def _take(m: _NodeState, a: Alloc) -> None:
        m.used_cpu += a.cpu
        m.used_memory += a.memory
        m.used_gpus |= set(a.gpus)
        for ix in m.indexes:
            ix.put(m)

    @staticmethod
    def _give_back(m: _NodeState, a: Alloc) -> None:
        m.used_cpu = max(0.0, m.used_cpu - a.cpu)
        m.used_memory = max(0, m.used_memory - a.memory)
        m.used_gpus -= set(a.gpus)
        for ix in m.indexes:
            ix.put(m)
