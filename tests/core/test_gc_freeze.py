"""The control plane freezes what exists when it starts (gc.freeze) so the cyclic collector's
full passes skip it, and still collects what a run makes. In a fresh process: the test runner's
own is frozen by whichever Service a test started first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, gc, sys
from osmo_core.config import OsmoConfig
from osmo_core.service import Service

async def main():
    assert gc.get_freeze_count() == 0
    async with Service(OsmoConfig(data_dir=sys.argv[1])) as first:
        frozen = gc.get_freeze_count()
        async with Service(OsmoConfig(data_dir=sys.argv[2])) as second:
            again = gc.get_freeze_count()
            await second.backends["local"].shutdown_agent(force=True)
        cycle = [];  cycle.append(cycle)
        del cycle
        print(frozen, again, gc.collect())
        await first.backends["local"].shutdown_agent(force=True)

asyncio.run(main())
"""


def test_a_started_control_plane_freezes_its_start_once_and_still_collects_a_runs_cycles(
    tmp_path: Path,
) -> None:
    env = dict(os.environ, OSMO_HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.pop("OSMO_STORE_URL", None)
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "a"), str(tmp_path / "b")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    frozen, again, collected = map(int, out)
    assert frozen > 10_000  # the modules, classes and configuration of a started server
    assert again == frozen  # once per process: a second start freezes nothing more
    assert collected >= 1  # a cycle made after the start is still collected
