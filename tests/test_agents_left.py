"""The session's check for host agents that a test forgot (tests/conftest.py::agents_left)."""

from __future__ import annotations

import time
from pathlib import Path

from osmo_core.backends.local import LocalBackend
from tests.conftest import agents_left


async def test_a_forgotten_agent_is_named_and_stopped(tmp_path: Path) -> None:
    backend = LocalBackend("local", {"root": str(tmp_path / "osmo"), "idle_timeout": 120})
    await backend.start(lambda ev: None)
    await backend.stop()  # the engine's side goes; the agent stays, as it does by design
    assert backend.agent_running()
    assert agents_left(tmp_path / "elsewhere", grace=0) == []
    left = agents_left(tmp_path, grace=0)
    assert len(left) == 1 and left[0].endswith(f"of {tmp_path / 'osmo'}"), left
    deadline = time.monotonic() + 10
    while backend.agent_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not backend.agent_running()  # it took the SIGTERM
    assert agents_left(tmp_path, grace=0) == []


async def test_an_agent_with_a_short_idle_timeout_is_left_to_end_alone(tmp_path: Path) -> None:
    backend = LocalBackend("local", {"root": str(tmp_path / "osmo"), "idle_timeout": 30})
    await backend.start(lambda ev: None)
    try:
        assert backend.agent_running()
        assert agents_left(tmp_path, grace=0) == []
    finally:
        await backend.shutdown_agent(force=True)
        await backend.stop()
