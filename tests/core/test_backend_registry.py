"""The backend registry: kinds map to classes (a third-party one through the `osmo.backends`
entry-point group), each class checks its own config when the config loads, and loading a
config imports no backend it does not name."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from osmo_core.backends.base import Backend
from osmo_core.backends.registry import backend_class
from osmo_core.config import OsmoConfig
from osmo_core.errors import ConfigError

ACME = """
from osmo_core.backends.base import Backend
from osmo_core.errors import Problem


class AcmeBackend(Backend):
    kind = "acme"

    @classmethod
    def check_config(cls, name, spec):
        if "endpoint" in spec:
            return []
        return [Problem("needs an endpoint", field=f"OsmoConfig.backends.{name}.endpoint")]

    @classmethod
    def host_names(cls, spec):
        return ["rack-a", "rack-b"]

    async def start(self, sink): ...
    async def stop(self): ...
    async def nodes(self, *, runtimes=True): return []
    async def launch(self, req): raise NotImplementedError
    async def cancel(self, key, grace=5.0): ...
    async def status(self, keys): return {}
    async def read_log(self, key, start=0, limit=None): return []
"""


@pytest.fixture
def acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Backend]]:
    """A third-party package, installed as pip would: a module and its dist-info."""
    (tmp_path / "acme_osmo.py").write_text(ACME)
    info = tmp_path / "acme_osmo-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-osmo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[osmo.backends]\nacme = acme_osmo:AcmeBackend\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield backend_class("acme")
    sys.modules.pop("acme_osmo", None)


def test_a_third_party_backend_checks_its_own_config(acme: type[Backend]) -> None:
    assert acme.__module__ == "acme_osmo" and acme.kind == "acme"
    with pytest.raises(ConfigError, match=r"OsmoConfig\.backends\.far\.endpoint"):
        OsmoConfig(backends={"far": {"kind": "acme"}})
    with pytest.raises(ConfigError, match="needs an endpoint"):
        acme("far", {})  # built without OsmoConfig: the same check
    config = OsmoConfig(
        backends={"far": {"kind": "acme", "endpoint": "x"}},
        pools={"far": {"backend": "far", "platforms": {"p": {"hosts": ["rack-c"]}}}},
        default_pool="far",
    )
    with pytest.raises(ConfigError, match="its hosts: rack-a, rack-b"):
        config.pool_configs()  # platforms pin hosts the backend declares (host_names)


def test_an_unknown_kind_fails_when_the_config_loads() -> None:
    with pytest.raises(ConfigError) as e:
        OsmoConfig(backends={"hpc": {"kind": "slurm"}})
    assert "OsmoConfig.backends.hpc.kind" in str(e.value)
    assert "known kinds: kubernetes, local, ssh" in str(e.value)


def test_backends_without_host_names_let_platforms_name_none() -> None:
    assert backend_class("local").host_names({}) is None
    assert backend_class("ssh").host_names({"hosts": {"gpu1": {}}}) == ["gpu1"]


def test_loading_a_config_imports_only_the_backends_it_names() -> None:
    probe = textwrap.dedent(
        """
        import sys
        from osmo_core.config import OsmoConfig
        OsmoConfig().pool_configs()
        heavy = (
            "asyncssh", "kubernetes", "osmo_core.backends.ssh", "osmo_core.backends.kubernetes"
        )
        print(sorted(m for m in sys.modules if m.startswith(heavy)))
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
