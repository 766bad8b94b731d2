"""Start-up paths import only what they need: a heavy package (the store's SQLAlchemy, asyncssh,
networkx, the Jupyter server) on the path of `osmo --version`, `osmo workflow validate` or
`%load_ext osmo_jupyter` costs every user 50-300 ms per command, and one on the in-pod agent's
costs every Kubernetes task. benchmarks/startup.py times
these; this test keeps the import boundary (the same table, FORBIDDEN)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from startup import (  # noqa: E402
    FORBIDDEN,
    FORBIDDEN_CLI,
    FORBIDDEN_LOAD_EXT,
    FORBIDDEN_POD,
    FORBIDDEN_VALIDATE,
    LOAD_EXT,
    POD_AGENT,
    creeping,
)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, OSMO_HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("OSMO_STORE_URL", None)
    return env


@pytest.mark.parametrize(
    ("argv", "forbidden"),
    [
        (["--version"], FORBIDDEN_CLI),
        (["workflow", "validate", str(REPO / "examples" / "hello.yaml")], FORBIDDEN_VALIDATE),
    ],
    ids=["version", "validate"],
)
def test_cli_start_up_imports_no_engine_server_or_ssh(
    argv: list[str], forbidden: tuple[str, ...], env: dict[str, str]
):
    assert creeping([sys.executable, "-m", "osmo_core.cli", *argv], forbidden, env) == []


def test_load_ext_imports_no_engine_ssh_or_spec_models(env: dict[str, str]):
    assert creeping([sys.executable, "-c", LOAD_EXT], FORBIDDEN_LOAD_EXT, env) == []


def test_the_check_sees_a_heavy_import(env: dict[str, str]):
    """The check itself: a command that imports the Service is caught, and its importer named."""
    found = creeping([sys.executable, "-c", "import osmo_core.service"], FORBIDDEN, env)
    assert any(line.startswith("sqlalchemy (imported by osmo_core.") for line in found), found


def test_the_in_pod_agent_imports_only_what_it_runs(env: dict[str, str]):
    assert creeping(POD_AGENT, FORBIDDEN_POD, env) == []


def test_the_check_sees_a_module_too(env: dict[str, str]):
    """A forbidden module, not only a package, is caught."""
    argv = [sys.executable, "-c", "import osmo_core.agent.pod, osmo_core.data.datasets"]
    found = creeping(argv, FORBIDDEN_POD, env)
    assert [line.split(" (")[0] for line in found] == ["osmo_core.data.datasets"], found
