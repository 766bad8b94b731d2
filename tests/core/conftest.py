"""Fixtures for the agent and local-backend tests: real agents on a throw-away root, each one
shut down (with its tasks) at teardown, and a check that no process of the root survives."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import psutil
import pytest

from osmo_core.backends.local import LocalBackend
from osmo_core.wire import BackendEvent, Exited, LaunchRequest, Lost, StartFailed


class Events:
    """An event sink that records what a backend delivers and lets a test wait for it."""

    def __init__(self) -> None:
        self.items: list[BackendEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, ev: BackendEvent) -> None:
        self.items.append(ev)
        self._changed.set()

    def of(self, key: str, kind: type | tuple[type, ...] | None = None) -> list[BackendEvent]:
        return [e for e in self.items if e.key == key and (kind is None or isinstance(e, kind))]

    async def wait(
        self, key: str, kind: type | tuple[type, ...], timeout: float = 10.0
    ) -> BackendEvent:
        deadline = time.monotonic() + timeout
        while not (found := self.of(key, kind)):
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), deadline - time.monotonic())
        return found[0]

    async def end(self, key: str, timeout: float = 10.0) -> Exited | StartFailed | Lost:
        ev = await self.wait(key, (Exited, StartFailed, Lost), timeout)
        assert isinstance(ev, (Exited, StartFailed, Lost))
        return ev


BackendFactory = Callable[..., Awaitable[tuple[LocalBackend, Events]]]


def gone(pid: int) -> bool:
    """The process no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not gone(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return gone(pid)


def processes_of(root: Path) -> list[psutil.Process]:
    """Agents serving `root` and tasks running under it."""
    found = []
    for p in psutil.process_iter(["cmdline", "environ"]):
        cmd = p.info["cmdline"] or []
        env = p.info["environ"] or {}
        if p.pid == os.getpid() or p.info["cmdline"] is None:
            continue
        if str(root) in env.get("OSMO_OUTPUT", "") or (
            "osmo_core.agent" in cmd and str(root) in cmd
        ):
            found.append(p)
    return [p for p in found if not gone(p.pid)]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "osmo"


@pytest.fixture
async def backends(root: Path) -> AsyncIterator[BackendFactory]:
    """Start LocalBackends (on `root` unless told otherwise); at teardown all are stopped,
    every agent they used is force-shut down, and no process of those roots may be left."""
    started: list[LocalBackend] = []

    async def factory(on: Path | None = None, **config: object) -> tuple[LocalBackend, Events]:
        events = Events()
        backend = LocalBackend("local", {"root": str(on or root), "idle_timeout": 60, **config})
        await backend.start(events)
        started.append(backend)
        return backend, events

    yield factory
    for backend in started:
        await backend.stop()
    for r in {b.root for b in started}:
        await LocalBackend("cleanup", {"root": str(r)}).shutdown_agent(force=True)
        deadline = time.monotonic() + 5
        while (left := processes_of(r)) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for p in left:  # fail the test, but leave nothing running
            p.kill()
        assert not left, f"processes left behind: {[p.info['cmdline'] for p in left]}"


@pytest.fixture
async def local(backends: BackendFactory) -> tuple[LocalBackend, Events]:
    return await backends()


def req(key: str, *argv: str, **kw: object) -> LaunchRequest:
    return LaunchRequest(key=key, argv=list(argv), **kw)  # type: ignore[arg-type]


def sh(key: str, script: str, **kw: object) -> LaunchRequest:
    return req(key, "sh", "-c", script, **kw)
