"""Fixtures of the fault-injection suite: a run on throw-away folders, torn down whatever
happened (engine, agents, mounts, folders), and the matrix written at the end of the session."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from osmo_core.backends.local import LocalBackend
from tests.conftest import REPO, make_config
from tests.faults.harness import (
    FULL,
    MATRIX,
    SEED,
    Moment,
    Run,
    agent_processes,
    mounts_under,
    settled,
    task_processes,
    write_matrix,
)

RunFactory = Callable[..., Run]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MATRIX:
        target = Path(os.environ.get("OSMO_TEST_ARTIFACTS", REPO / "test-artifacts"))
        text = write_matrix(target / "faults-matrix.md")
        terminalreporter.write_sep("-", f"fault matrix (seed {SEED}, full={FULL})")
        terminalreporter.write(text)


async def _shutdown(run: Run) -> None:
    """Stop the control plane and every agent it used, with their tasks."""
    run.kill_engine_process()
    if run.service is not None:
        for backend in run.service.backends.values():
            for name in ("shutdown_agent", "shutdown_agents"):
                stop = getattr(backend, name, None)
                if stop is not None:
                    with contextlib.suppress(Exception):  # already gone, or its host is down
                        await asyncio.wait_for(stop(), 15)
        with contextlib.suppress(Exception):  # a half-started engine
            await asyncio.wait_for(run.service.stop(), 15)
        run.service = None
    if run.data_dir.exists():  # an agent no service knew
        cleaner = LocalBackend("cleanup", {"root": str(run.data_dir)})
        await asyncio.wait_for(cleaner.shutdown_agent(force=True), 30)


FAULT_RETRIES = 3  # a fault is survived by a retry; OSMO's default budget (0) would end the run


def fault_config(data_dir: Path, **overrides: Any) -> Any:
    """The suite's OsmoConfig: make_config's, with a retry budget."""
    return make_config(data_dir, max_retries=FAULT_RETRIES, **overrides)


@pytest.fixture
async def fault_run(tmp_path: Path) -> AsyncIterator[RunFactory]:
    """Make the run of a cell; at teardown nothing of it may be left: no engine, agent, task
    process or mount (the test fails if one was, after killing it)."""
    made: list[tuple[Run, Any]] = []

    def factory(
        workflow: str, moment: Moment, fault: Any, config: Callable[..., Any] = fault_config
    ) -> Run:
        """`config(data_dir, store_url)`: the OsmoConfig of each control plane it starts."""
        # world-writable and outside pytest's private tmp: SSH hosts' users write markers here
        tmp = Path(tempfile.mkdtemp(prefix="osmo-faults-"))
        data_dir = tmp_path / "osmo"
        store = f"sqlite:///{tmp_path / 'osmo.db'}" if fault.in_process else None
        run = Run(
            tmp=tmp,
            data_dir=data_dir,
            store_url=store or f"sqlite:///{data_dir / 'osmo.db'}",
            workflow=workflow,
            moment=moment,
            config=lambda: config(data_dir, store_url=run.store_url),
        )
        run.prepare()
        made.append((run, fault))
        return run

    yield factory
    for run, fault in made:
        for gate in run.markers.glob("*.pid"):  # let every waiting task end
            (run.gates / gate.name.removesuffix(".pid")).touch()
        await _shutdown(run)
        with contextlib.suppress(Exception):
            await fault.teardown(run)
        root = run.data_dir
        left = await settled(lambda r=root: task_processes(r) + agent_processes(r))
        for p in left:
            with contextlib.suppress(Exception):
                p.kill()
        mounts = mounts_under(tmp_path) | mounts_under(run.tmp)
        for m in sorted(mounts, reverse=True):
            os.system(f"umount -l '{m}'")
        shutil.rmtree(run.tmp, ignore_errors=True)
        assert not left, f"processes left behind: {[p.pid for p in left]} {run.where}"
        assert not mounts, f"mounts left behind: {mounts} {run.where}"
