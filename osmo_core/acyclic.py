"""Whether a graph's edges form no cycle: Kahn's algorithm on plain dicts, without networkx, whose
import (~70 ms) every `osmo workflow validate` would pay; the engine's graphs (dag.py) use
networkx, which names a cycle when there is one."""

from __future__ import annotations

from collections.abc import Iterable


def acyclic(edges: Iterable[tuple[str, str]]) -> bool:
    """True when `edges` have no cycle (networkx is built only to name one: it is slower)."""
    succ: dict[str, list[str]] = {}
    indegree: dict[str, int] = {}
    for src, dst in edges:
        succ.setdefault(src, []).append(dst)
        indegree[dst] = indegree.get(dst, 0) + 1
    ready = [n for n in succ if n not in indegree]
    removed = 0
    while ready:
        for dst in succ.get(ready.pop(), ()):
            indegree[dst] -= 1
            if not indegree[dst]:
                ready.append(dst)
                removed += 1
    return removed == len(indegree)
