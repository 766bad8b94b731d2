"""The group graph: edges from task inputs, order, ready set, what a failure blocks."""

from __future__ import annotations

from osmo_core.dag import WorkflowDAG
from osmo_core.spec.models import Workflow


def wf(tasks: list[dict], groups: list[dict] | None = None) -> Workflow:
    return Workflow.model_validate({"name": "w", "tasks": tasks, "groups": groups})


def t(name: str, *inputs: str, **kw) -> dict:
    return {"name": name, "command": ["true"], "inputs": [{"task": i} for i in inputs], **kw}


def test_groups_are_nodes_and_inputs_are_edges() -> None:
    dag = WorkflowDAG.build(
        wf(
            [t("prep"), t("eval", "lead")],
            groups=[
                {"name": "train", "tasks": [t("lead", "prep", lead=True), t("worker", "prep")]}
            ],
        )
    )
    assert set(dag.graph.nodes) == {"prep", "train", "eval"}
    assert set(dag.graph.edges) == {("prep", "train"), ("train", "eval")}
    assert dag.task_group["worker"] == "train"
    assert dag.topo_order().index("prep") < dag.topo_order().index("train")


def test_ready_roots_and_downstream() -> None:
    dag = WorkflowDAG.build(wf([t("a"), t("b", "a"), t("c", "a"), t("d", "b", "c"), t("e")]))
    assert sorted(dag.roots()) == ["a", "e"]
    assert dag.ready(set(), ["b", "c", "e"]) == ["e"]
    assert dag.ready({"a", "b"}, ["c", "d"]) == ["c"]
    assert dag.ready({"a", "b", "c"}, ["d"]) == ["d"]
    assert dag.downstream("a") == {"b", "c", "d"}
    assert dag.downstream("e") == set()
    assert dag.upstream("d") == {"b", "c"}


def test_cycle_is_named() -> None:
    dag = WorkflowDAG.build(wf([t("a", "c"), t("b", "a"), t("c", "b"), t("free")]))
    cycle = dag.find_cycle()
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert WorkflowDAG.build(wf([t("a"), t("b", "a")])).find_cycle() is None


def test_unknown_inputs_are_left_to_validation() -> None:
    dag = WorkflowDAG.build(wf([t("a", "ghost")]))
    assert list(dag.graph.edges) == []
