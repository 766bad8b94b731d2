"""A pool's scheduling settings: quota, fair share, user weights and limits (issue 17).

Kept apart from config.py, which reads them from each `OsmoConfig.pools.<name>` dict:

    quota:      {gpu: 8, cpu: 64, memory: 512Gi}  # guaranteed to NORMAL/HIGH work; absent = none
    fair_share: fifo | drf                         # order between users within a priority
    weights:    {alice: 2}                         # drf: a user's share counts 1/weight
    role_weights: {admin: 2}                       # drf: the same per auth role (roles.py),
                                                   # for users `weights` does not name
    limits:     {"*": {max_tasks: 4}, bob: {max_gpus: 8}}  # running at once, per user

A pool's *capacity* is every machine its platforms select, machines shared with other pools
included; its *quota* is what NORMAL/HIGH work may hold. LOW work may go past the quota onto
idle machines (borrowing) and is the work that gets reclaimed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .errors import Problem
from .roles import ROLES

SCHEDULING_KEYS = frozenset({"quota", "fair_share", "weights", "role_weights", "limits"})
FAIR_SHARES = ("fifo", "drf")
ANY_USER = "*"  # the key in `limits` that applies to every user not named


@dataclass(frozen=True)
class Usage:
    """Resources held: a sum of allocations."""

    gpu: int = 0
    cpu: float = 0.0
    memory: int = 0

    def plus(self, gpu: int, cpu: float, memory: int, sign: int = 1) -> Usage:
        return Usage(self.gpu + sign * gpu, self.cpu + sign * cpu, self.memory + sign * memory)


@dataclass(frozen=True)
class Quota:
    """What NORMAL/HIGH work of a pool may hold at once; None = that resource is not bounded."""

    gpu: int | None = None
    cpu: float | None = None
    memory: int | None = None

    def over(self, used: Usage) -> str | None:
        """The first resource `used` exceeds ("gpu", "cpu", "memory"), or None."""
        # 1e-9: float cpu sums (0.1 + 0.2) must not refuse an exact fit
        if self.gpu is not None and used.gpu > self.gpu:
            return "gpu"
        if self.cpu is not None and used.cpu > self.cpu + 1e-9:
            return "cpu"
        if self.memory is not None and used.memory > self.memory:
            return "memory"
        return None

    def of(self, resource: str) -> float | int | None:
        return {"gpu": self.gpu, "cpu": self.cpu, "memory": self.memory}[resource]


@dataclass(frozen=True)
class UserLimit:
    max_tasks: int | None = None
    max_gpus: int | None = None


@dataclass(frozen=True)
class PoolScheduling:
    quota: Quota | None = None
    fair_share: str = "fifo"
    weights: dict[str, float] = field(default_factory=dict)
    limits: dict[str, UserLimit] = field(default_factory=dict)
    role_weights: dict[str, float] = field(default_factory=dict)

    def weight_of(self, user: str, role: str) -> float:
        """The user's weight, else their role's (the submitter's auth role), else 1."""
        weight = self.weights.get(user)
        return weight if weight is not None else self.role_weights.get(role, 1.0)

    def limit_of(self, user: str) -> UserLimit | None:
        return self.limits.get(user) or self.limits.get(ANY_USER)


def _positive_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _quota(raw: Any, where: str, problems: list[Problem]) -> Quota | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw or set(raw) - {"gpu", "cpu", "memory"}:
        problems.append(
            Problem(
                f"expected a dict of gpu, cpu, memory, got {raw!r}",
                field=where,
                hint="e.g. {'gpu': 8, 'cpu': 64, 'memory': '512Gi'}",
            )
        )
        return None
    # here, not at the top: the CLI's argument parsing imports config, never the spec package
    from .spec.quantities import parse_bytes, parse_cpu

    gpu, cpu, memory = raw.get("gpu"), raw.get("cpu"), raw.get("memory")
    if gpu is not None and not _count(gpu):
        problems.append(Problem(f"expected a whole number >= 0, got {gpu!r}", field=f"{where}.gpu"))
        gpu = None
    try:
        cpu = None if cpu is None else parse_cpu(cpu)
    except (ValueError, TypeError) as e:
        problems.append(Problem(str(e), field=f"{where}.cpu", hint="e.g. 64 or '500m'"))
        cpu = None
    try:
        memory = None if memory is None else parse_bytes(memory)
    except (ValueError, TypeError) as e:
        problems.append(Problem(str(e), field=f"{where}.memory", hint="e.g. '512Gi'"))
        memory = None
    return Quota(gpu, cpu, memory)


def _limits(raw: Any, where: str, problems: list[Problem]) -> dict[str, UserLimit]:
    if not isinstance(raw, dict):
        problems.append(
            Problem(
                f"expected a dict of user -> limits, got {raw!r}",
                field=where,
                hint="e.g. {'*': {'max_tasks': 4}, 'bob': {'max_gpus': 8}}",
            )
        )
        return {}
    out = {}
    for user, lim in raw.items():
        at = f"{where}.{user}"
        if not isinstance(lim, dict) or not lim or set(lim) - {"max_tasks", "max_gpus"}:
            problems.append(
                Problem(
                    f"expected a dict of max_tasks, max_gpus, got {lim!r}",
                    field=at,
                    hint="e.g. {'max_tasks': 4, 'max_gpus': 8}",
                )
            )
            continue
        bad = [k for k, v in lim.items() if not _count(v)]
        for k in bad:
            problems.append(
                Problem(f"expected a whole number >= 0, got {lim[k]!r}", field=f"{at}.{k}")
            )
        if not bad:
            out[str(user)] = UserLimit(lim.get("max_tasks"), lim.get("max_gpus"))
    return out


def pool_scheduling(raw: dict[str, Any], where: str) -> tuple[PoolScheduling, list[Problem]]:
    """The scheduling settings of one pool's dict; `where` is its trait path, for errors."""
    problems: list[Problem] = []
    quota = _quota(raw.get("quota"), f"{where}.quota", problems)
    fair_share = raw.get("fair_share", "fifo")
    if fair_share not in FAIR_SHARES:
        problems.append(
            Problem(
                f"unknown fair_share {fair_share!r}",
                field=f"{where}.fair_share",
                hint=f"valid: {', '.join(FAIR_SHARES)}",
            )
        )
        fair_share = "fifo"
    weights = _weights(raw.get("weights"), f"{where}.weights", "user", "alice", problems)
    role_weights = _weights(
        raw.get("role_weights"), f"{where}.role_weights", "role", "admin", problems
    )
    for role in sorted(set(role_weights) - set(ROLES)):
        problems.append(
            Problem(
                f"unknown role {role!r}",
                field=f"{where}.role_weights.{role}",
                hint=f"roles: {', '.join(ROLES)} (OsmoConfig.hub_group_roles maps Hub groups "
                "to them)",
            )
        )
        del role_weights[role]
    limits = _limits(raw.get("limits") or {}, f"{where}.limits", problems)
    return PoolScheduling(quota, fair_share, weights, limits, role_weights), problems


def _weights(
    raw: Any, where: str, key: str, example: str, problems: list[Problem]
) -> dict[str, float]:
    """A dict of name -> weight (a number > 0); {} and a Problem at `where` otherwise."""
    raw = raw or {}
    if not isinstance(raw, dict) or not all(_positive_number(w) for w in raw.values()):
        problems.append(
            Problem(
                f"expected a dict of {key} -> a number > 0, got {raw!r}",
                field=where,
                hint=f"e.g. {{'{example}': 2}}",
            )
        )
        return {}
    return {str(k): float(w) for k, w in raw.items()}
