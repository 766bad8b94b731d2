"""The folder tree reads as the architecture (issue 19): no layer imports one above it.

osmo_core/wire.py (the types engine, backends and agent share) imports nothing of osmo_core;
the agent, which runs on task hosts and in pods, imports neither the engine, the backends, the
service, the CLI, the store nor the interactive hub; and osmo_core never imports the Jupyter
side. Imports are read from the source (ast), lazy ones inside functions included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "osmo_core"

ABOVE_AGENT = (
    "osmo_core.engine",
    "osmo_core.backends",
    "osmo_core.service",
    "osmo_core.cli",
    "osmo_core.store",
    "osmo_core.scheduler",
    "osmo_core.interactive",
    "osmo_jupyter",
)


def imports_of(source: str, package: str) -> set[str]:
    """Absolute names of every module `source` (a module of `package`) imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from the package, one level up per extra dot
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*parts, module] if module else parts)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def under(names: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden))


def reaching(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    """The imports of `path` (a file of this checkout) that fall under one of `forbidden`."""
    package = ".".join(path.relative_to(ROOT).parts[:-1])
    return [
        f"{path.relative_to(ROOT)}: {n}"
        for n in under(imports_of(path.read_text(), package), forbidden)
    ]


def test_wire_imports_nothing_of_osmo_core() -> None:
    assert reaching(CORE / "wire.py", ("osmo_core", "osmo_jupyter")) == []


@pytest.mark.parametrize("path", sorted((CORE / "agent").glob("*.py")), ids=lambda p: p.name)
def test_the_agent_imports_no_layer_above_it(path: Path) -> None:
    assert reaching(path, ABOVE_AGENT) == []


def test_osmo_core_never_imports_the_jupyter_side() -> None:
    found = [v for p in sorted(CORE.rglob("*.py")) for v in reaching(p, ("osmo_jupyter",))]
    assert found == []


def test_an_upward_import_is_found() -> None:
    """The check itself: relative and lazy imports are resolved and caught."""
    source = (
        "from ..backends.base import Backend\n"
        "from . import host\n"
        "def f():\n"
        "    from osmo_core import service\n"
    )
    assert under(imports_of(source, "osmo_core.agent"), ABOVE_AGENT) == [
        "osmo_core.backends.base",
        "osmo_core.backends.base.Backend",
        "osmo_core.service",
    ]
