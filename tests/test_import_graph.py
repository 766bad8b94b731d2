"""The import graph of osmo_core and osmo_jupyter: no cycles, no upward imports.

The rule, read from the source with `ast` (nothing is imported):

- An edge A -> B is an `import` in A that names B (or a name defined in B). Importing
  `a.b.c` also runs the `__init__` of `a.b`, so it is an edge to that package too (unless A
  is inside it).
- Run-time imports make cycles: those at module level and those inside functions (a lazy
  import still loops at run time, it only hides the loop). Imports under `if TYPE_CHECKING:`
  never run, so they do not count for cycles.
- Layers count the same run-time imports: a module of osmo_core may import only its own layer and
  those below it. A TYPE_CHECKING import may name a type from above (a caller passing itself,
  as the service does to a task kernel): it runs nothing. osmo_core never imports
  osmo_jupyter, not even for a type.

`LAYERS` below is the architecture of osmo_core, bottom first; a new module goes in one.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("osmo_core", "osmo_jupyter")

# osmo_core's layers, bottom first. A module belongs to the longest prefix that names it.
LAYERS: dict[str, int] = {
    # 0: plain types and constants every layer shares
    "osmo_core": 0,  # the package itself: its version
    "osmo_core.errors": 0,
    "osmo_core.states": 0,  # statuses and the one transition table
    "osmo_core.roles": 0,
    "osmo_core.wire": 0,  # events and requests between engine, backends and agent (agent-split)
    "osmo_core.events": 0,
    "osmo_core.gcpause": 0,
    "osmo_core.client": 0,  # the REST client of a remote server: HTTP and JSON only
    "osmo_core.schema": 0,  # the store's tables and where their migrations live
    "osmo_core.store": 0,
    # 1: the workflow as written
    "osmo_core.spec": 1,
    "osmo_core.dag": 1,
    "osmo_core.acyclic": 1,  # the cycle check validation needs, without networkx
    # 2: moving data: storage URLs, transfers, datasets, credentials
    "osmo_core.data": 2,
    # 3: what runs next to a task; knows nothing of engine, scheduler, backends, service
    "osmo_core.agent": 3,
    # 4: the server's configuration, checked with the rules of the layers below; the backend
    # interface and registry are here because config checks each backend's settings through them
    "osmo_core.config": 4,
    "osmo_core.scheduling_config": 4,  # a pool's quota, fair share and limits, read by config
    "osmo_core.isolation": 4,  # config resolved: whom local tasks run as
    "osmo_core.containers": 4,  # config resolved: where an `image` runs (agent/containers.py)
    "osmo_core.backends": 4,  # the package: base.py (the interface), registry.py
    # 5: where tasks run
    "osmo_core.backends.local": 5,
    "osmo_core.backends.agentlink": 5,
    "osmo_core.backends.ssh": 5,
    "osmo_core.backends.kubernetes": 5,
    # 6: what the engine and service lean on
    "osmo_core.scheduler": 6,
    "osmo_core.preemption": 6,  # which LOW work to preempt: pure, on the scheduler's allocations
    "osmo_core.auth": 6,
    "osmo_core.interactive": 6,
    "osmo_core.admission": 6,  # parse, validate, place: what `validate` needs of the service
    # 7: the only writer of workflow state
    "osmo_core.engine": 7,
    # 8: the façade every front door calls
    "osmo_core.service": 8,
    "osmo_core.service_reads": 8,  # a part of Service: its reads
    # 9: the osmo command
    "osmo_core.cli": 9,
}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    type_only: bool  # under `if TYPE_CHECKING:`
    lazy: bool  # inside a function


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package) for every module of PACKAGES."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            # only importable modules: every folder on the way is a package (not migrations/)
            if not all(
                (ROOT.joinpath(*parts[:i]) / "__init__.py").exists() for i in range(1, len(parts))
            ):
                continue
            is_package = parts[-1] == "__init__"
            found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return "TYPE_CHECKING" in ast.unparse(test)


def _imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    """Every import statement, with whether it sits under `if TYPE_CHECKING:` and whether it
    is inside a function."""
    out: list[tuple[ast.Import | ast.ImportFrom, bool, bool]] = []

    def visit(node: ast.AST, type_only: bool, lazy: bool) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append((node, type_only, lazy))
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True, lazy)
            for child in node.orelse:
                visit(child, type_only, lazy)
            return
        inner = lazy or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, type_only, inner)

    visit(tree, False, False)
    return out


def _edges(modules: dict[str, tuple[Path, bool]]) -> list[Edge]:
    def owner(name: str) -> str | None:
        """The module that defines `name` (a module, or a name in one)."""
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[tuple[str, str, bool, bool], Edge] = {}
    for source, (path, is_package) in modules.items():
        here = source.split(".") if is_package else source.split(".")[:-1]
        for node, type_only, lazy in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                base = here[: len(here) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                names = [f"{module}.{alias.name}" for alias in node.names]
            for name in names:
                target = owner(name)
                if target is None or target == source:
                    continue
                # the packages on the way run too, unless the importer is already inside them
                parts = target.split(".")
                for i in range(1, len(parts) + 1):
                    step = ".".join(parts[:i])
                    if step != source and not source.startswith(step + ".") and step in modules:
                        edge = Edge(source, step, node.lineno, type_only, lazy)
                        edges.setdefault((source, step, type_only, lazy), edge)
    return list(edges.values())


MODULES = _modules()
EDGES = _edges(MODULES)


def _where(edge: Edge) -> str:
    where = f"{MODULES[edge.source][0].relative_to(ROOT)}:{edge.line}"
    return f"{where}, in a function" if edge.lazy else where


def _layer(module: str) -> int | None:
    while module:
        if module in LAYERS:
            return LAYERS[module]
        module = module.rpartition(".")[0]
    return None


def test_the_graph_sees_the_packages() -> None:
    """A broken walk would pass every other test: check it finds what is surely there."""
    assert {"osmo_core.engine.loop", "osmo_jupyter.server.base", "osmo_jupyter.app"} <= set(MODULES)
    pairs = {(e.source, e.target) for e in EDGES}
    assert ("osmo_core.engine.loop", "osmo_core.store") in pairs
    assert ("osmo_core.service", "osmo_core.engine") in pairs  # through the package's __init__
    kinds = {(e.source, e.target): (e.type_only, e.lazy) for e in EDGES}
    # Workflow.monitor imports the widgets when called; the widgets name Workflow as a type
    assert kinds["osmo_jupyter.workflow", "osmo_jupyter.widgets"] == (False, True)
    assert kinds["osmo_jupyter.widgets.monitor", "osmo_jupyter.workflow"] == (True, False)


def test_no_import_cycles() -> None:
    graph = nx.DiGraph()
    graph.add_nodes_from(MODULES)
    for e in EDGES:
        if not e.type_only:
            graph.add_edge(e.source, e.target, where=_where(e))
    cycles = []
    for component in nx.strongly_connected_components(graph):
        if len(component) > 1:
            loop = nx.find_cycle(graph.subgraph(component))
            cycles.append(" -> ".join(f"{a} ({graph.edges[a, b]['where']})" for a, b in loop))
    assert not cycles, "import cycles (module (file:line of its import of the next)):\n" + (
        "\n".join(sorted(cycles))
    )


def test_osmo_core_never_imports_osmo_jupyter() -> None:
    bad = [
        f"{_where(e)}: {e.source} imports {e.target}"
        for e in EDGES
        if e.source.startswith("osmo_core") and e.target.startswith("osmo_jupyter")
    ]
    assert not bad, "\n".join(bad)


def test_every_osmo_core_module_has_a_layer() -> None:
    missing = [m for m in MODULES if m.startswith("osmo_core") and _layer(m) is None]
    assert not missing, f"add these to LAYERS in {Path(__file__).name}: {missing}"


def test_osmo_core_imports_only_downward() -> None:
    bad = []
    for e in EDGES:
        if not e.source.startswith("osmo_core") or not e.target.startswith("osmo_core"):
            continue
        low, high = _layer(e.source), _layer(e.target)
        if not e.type_only and low is not None and high is not None and high > low:
            bad.append(f"{_where(e)}: {e.source} (layer {low}) imports {e.target} (layer {high})")
    assert not bad, "upward imports (see LAYERS):\n" + "\n".join(bad)


def test_the_wire_types_import_nothing_of_osmo_core() -> None:
    """osmo_core/wire.py is what engine, backends and agent share: it depends on none of them."""
    assert [e.target for e in EDGES if e.source == "osmo_core.wire"] == []
