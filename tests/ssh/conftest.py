"""Fixtures for the SSH backend: services over the three real hosts (namespaces + sshd) of the
session-wide `hosts` fixture (tests/conftest.py, shared with tests/faults/)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sshhosts import Hosts

from osmo_core.config import OsmoConfig
from osmo_core.service import Service

SshService = Callable[..., Awaitable[Service]]


@pytest.fixture
async def ssh_service(tmp_path: Path, hosts: Hosts) -> AsyncIterator[SshService]:
    """Services with a local backend and an ssh backend `lab` over the test hosts; pools
    `local` and `lab` (platforms given by the test, default: all hosts). Each `home` is one
    control plane (its data folder and store)."""
    started: list[Service] = []

    async def factory(
        platforms: dict[str, Any] | None = None,
        pools: dict[str, dict[str, Any]] | None = None,
        *,
        home: str = "osmo",
        **backend: Any,
    ) -> Service:
        """`pools`: the ssh backend's pools (name -> settings), the first the default,
        instead of `lab`."""
        lab = {"backend": "lab", "platforms": platforms or {"any": {"hosts": ["h1", "h2"]}}}
        ssh_pools = {name: {**lab, **p} for name, p in (pools or {"lab": {}}).items()}
        config = OsmoConfig(
            data_dir=str(tmp_path / home),
            store_url=f"sqlite:///{tmp_path / f'{home}.db'}",
            max_retries=3,  # these tests reschedule after a lost host (OSMO's default is 0)
            backends={
                "local": {"kind": "local", "idle_timeout": 60},
                "lab": hosts.backend(**backend),
            },
            pools={"local": {"backend": "local", "platforms": {"local": {}}}, **ssh_pools},
            **({"default_pool": next(iter(ssh_pools))} if pools else {}),
        )
        svc = Service(config)
        await svc.start()
        started.append(svc)
        return svc

    yield factory
    for svc in reversed(started):
        for backend in svc.backends.values():
            for name in ("shutdown_agent", "shutdown_agents"):
                stop = getattr(backend, name, None)
                if stop is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(stop(), 15)
        await svc.stop()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder the hosts' users can read (tmp_path is root's only)."""
    base = Path(tempfile.mkdtemp(prefix="osmo-gates-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)
