"""The session's check for host agents that a test forgot (tests/conftest.py::agents_left)."""

from __future__ import annotations

import time
from pathlib import Path

from osmo_core.backends.local import LocalBackend
from tests.conftest import agents_left


async def test_a_forgotten_agent_is_named_and_stopped(tmp_path: Path) -> None:
    backend = LocalBackend("local", {"root": str(tmp_path / "osmo"), "idle_timeout": 60})
    await backend.start(lambda ev: None)
    await backend.stop()  # the engine's side goes; the agent stays, as it does by design
    assert backend.agent_running()
    assert agents_left(tmp_path / "elsewhere") == []
    left = agents_left(tmp_path)
    assert len(left) == 1 and left[0].endswith(f"of {tmp_path / 'osmo'}"), left
    deadline = time.monotonic() + 10
    while backend.agent_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not backend.agent_running()  # it took the SIGTERM
    assert agents_left(tmp_path) == []
