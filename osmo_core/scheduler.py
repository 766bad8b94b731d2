"""Placement: pools -> platforms -> machines -> capacity (cpu, memory, gpu).

The scheduler only does arithmetic on capacity; it never changes task state (the engine does).
`check()` answers "can this pool ever run this workflow?" at submit time (placement errors,
exit code 3); `place()` answers "where can this task run *now*?" during the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .config import PRIORITIES, PoolConfig
from .errors import Problem
from .spec.models import Resource, Workflow, task_fields
from .wire import Node, tolerated

_GI = 2**30
# A shared-CPU machine (the local default) runs CPU requests up to this many times its cores at
# once: OSMO's tutorials fit on a laptop, and 10,000 queued tasks still do not all start.
SHARED_CPU = 4.0


@dataclass
class Alloc:
    backend: str
    node: str
    cpu: float
    memory: int
    gpus: list[int] = field(default_factory=list)


@dataclass
class _NodeState:
    """What is taken of one machine. Free room is derived from the node's live totals, so a
    host whose capacity is learnt (or changes) after it was listed is used at once."""

    backend: str
    node: Node
    used_cpu: float = 0.0
    used_memory: int = 0
    used_gpus: set[int] = field(default_factory=set)

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
            and r.gpu <= len(self.free_gpus)
        )


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

    def set_online(self, backend: str, node: str, online: bool) -> None:
        """A node went offline (nothing new is placed there) or came back."""
        for s in self._nodes.get(backend, []):
            if s.node.name == node:
                s.node.online = online

    def platform_of(self, pool: str, res: Resource) -> str:
        return res.platform or self.pools[pool].default_platform

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

    def entitled(self, pool: str, priority: int, res: Resource) -> bool:
        """Whether placing `res` for work of `priority` keeps the pool within its quota (no
        quota: True); LOW work is never entitled. A stub until quotas land: NORMAL and HIGH
        are always entitled."""
        return priority > PRIORITIES["LOW"]

    def simulation(self, pool: str, requests: list[Resource]) -> Simulation:
        """Questions of the kind "would these requests fit were those allocations given
        back?" (what preemption asks before it stops anything)."""
        return Simulation(self, pool, requests)

    def place(self, pool: str, res: Resource) -> Alloc | None:
        """Reserve room for one task now, or None when it must wait."""
        allocs = self.place_gang(pool, [res])
        return allocs[0] if allocs else None

    def place_gang(
        self,
        pool: str,
        requests: list[Resource],
        nodes: dict[str, list[_NodeState]] | None = None,
    ) -> list[Alloc] | None:
        """All-or-nothing placement of several tasks (a group with a barrier). `nodes`: place
        on these machine states instead of the live ones (for "could it ever fit?")."""
        taken: list[tuple[_NodeState, Alloc]] = []
        for res in requests:
            platform = self.platform_of(pool, res)
            # Fewest free GPUs that still fit first: keeps big machines free for big tasks.
            candidates = sorted(
                (m for m in self._machines(pool, platform, nodes) if m.fits_now(res)),
                key=lambda m: (len(m.free_gpus), m.free_cpu),
            )
            if not candidates:
                for m, a in taken:
                    self._give_back(m, a)
                return None
            m = candidates[0]
            alloc = Alloc(m.backend, m.node.name, res.cpu, res.memory or 0, m.free_gpus[: res.gpu])
            self._take(m, alloc)
            taken.append((m, alloc))
        return [a for _, a in taken]

    def adopt(self, alloc: Alloc) -> None:
        """Account for an attempt that was already running (after an engine restart)."""
        m = self._find(alloc)
        if m is not None:
            self._take(m, alloc)

    def release(self, alloc: Alloc) -> None:
        m = self._find(alloc)
        if m is not None:
            self._give_back(m, alloc)

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
        return next(
            (m for m in self._nodes.get(alloc.backend, []) if m.node.name == alloc.node), None
        )

    @staticmethod
    def _take(m: _NodeState, a: Alloc) -> None:
        m.used_cpu += a.cpu
        m.used_memory += a.memory
        m.used_gpus |= set(a.gpus)

    @staticmethod
    def _give_back(m: _NodeState, a: Alloc) -> None:
        m.used_cpu = max(0.0, m.used_cpu - a.cpu)
        m.used_memory = max(0, m.used_memory - a.memory)
        m.used_gpus -= set(a.gpus)
