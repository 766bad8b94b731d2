"""The workflow's group graph (networkx): build, name a cycle, order, ready set, blocked set.

Nodes are group names (a top-level task is a group of its own). An edge A -> B means some task
of B takes an input from a task of A. Tasks of one group start together, so the graph is over
groups, as in OSMO.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import networkx as nx

from .gcpause import gc_paused

if TYPE_CHECKING:  # only for annotations: spec.validate imports this module
    from .spec.models import Workflow


class WorkflowDAG:
    def __init__(self, graph: nx.DiGraph[str], task_group: dict[str, str]):
        self.graph = graph
        self.task_group = task_group  # task name -> group name

    @classmethod
    def build(cls, workflow: Workflow) -> WorkflowDAG:
        """Build the graph. Inputs naming unknown tasks are skipped (validation reports them)."""
        with gc_paused():
            return cls._build(workflow)

    @classmethod
    def _build(cls, workflow: Workflow) -> WorkflowDAG:
        graph: nx.DiGraph[str] = nx.DiGraph()
        task_group: dict[str, str] = {}
        # Groups as (name, tasks) without building Group models: this runs for 10,000 tasks.
        groups = [(g.name, g.tasks) for g in workflow.groups or []]
        groups += [(t.name, [t]) for t in workflow.tasks or []]
        for name, tasks in groups:
            graph.add_node(name)
            for t in tasks:
                task_group.setdefault(t.name, name)
        edges = []
        for name, tasks in groups:
            for t in tasks:
                for inp in t.inputs:
                    src = task_group.get(inp.task) if inp.task else None
                    if src is not None and src != name:
                        edges.append((src, name))
        graph.add_edges_from(edges)
        return cls(graph, task_group)

    def find_cycle(self) -> list[str] | None:
        """One cycle as [a, b, ..., a], or None when the graph is acyclic."""
        try:
            edges = nx.find_cycle(self.graph)
        except nx.NetworkXNoCycle:
            return None
        return [u for u, _ in edges] + [edges[0][0]]

    def topo_order(self) -> list[str]:
        return list(nx.topological_sort(self.graph))

    def topo_iter(self) -> Iterator[str]:
        """topo_order, lazily (a bulk change walks it a slice at a time)."""
        return iter(nx.topological_sort(self.graph))

    def upstream(self, group: str) -> set[str]:
        return set(self.graph.predecessors(group))

    def downstream(self, group: str) -> set[str]:
        """Every group that (transitively) depends on `group`: what a failure blocks."""
        return set(nx.descendants(self.graph, group))

    def ready(self, completed: set[str], candidates: Iterable[str]) -> list[str]:
        """The candidates all of whose upstream groups have completed."""
        pred = self.graph.pred
        return [g for g in candidates if all(u in completed for u in pred[g])]

    def roots(self) -> list[str]:
        return [g for g in self.graph if self.graph.in_degree(g) == 0]
