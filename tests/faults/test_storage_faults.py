"""An end is never lost to storage: a task that ends while the data folder is read-only or
full ends with its real exit, the user is told why its record is missing (a `task.storage`
event), and the record is written once the disk is back. Log lines written meanwhile are kept
and written then too (or counted, when more than the agent keeps). A launch that cannot write
fails, saying why. Real mounts (root only), a real agent and the embedded Service.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from osmo_core.agent import ends as ends_module
from osmo_core.agent import logwriter
from osmo_core.agent.ends import Ends
from osmo_core.agent.logfile import count_lines, format_line, read_lines
from osmo_core.agent.logwriter import LogWriter
from osmo_core.service import Service
from tests.faults.conftest import RunFactory
from tests.faults.harness import Fault, Moment, Run, is_terminal
from tests.faults.test_faults import DiskFull, ReadOnly, _mount, _needs_root

SPEC = """\
workflow:
  name: storage
  tasks:
  - name: t
    command: [sh, -c]
    args: ["echo t > {{output}}/x && sh {{ step }} t; exit 3"]
    exitActions: {COMPLETE: 3}
"""
BOUND = 30.0  # seconds for anything below to happen


async def _until(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + BOUND
    while not (got := check()):
        assert time.monotonic() < deadline, f"not within {BOUND:.0f} s: {what}"
        await asyncio.sleep(0.05)
    return got


def _ended(svc: Service, run: Run) -> dict[str, Any] | None:
    """The task's (first) attempt once it has ended."""
    assert run.wf_id is not None
    task: dict[str, Any] = svc.get(run.wf_id)["tasks"][0]
    return task if is_terminal(task["status"]) else None


def _storage_events(svc: Service, run: Run) -> list[dict[str, Any]]:
    events = svc.store.events_since(workflow_id=run.wf_id)
    return [e["payload"] for e in events if e["type"] == "task.storage"]


def _attempt_dir(run: Run) -> Path:
    return run.data_dir / "runs" / f"{run.wf_id}/t/0"


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """`path` read-only (a read-only bind over itself) until the block ends."""
    _mount("--bind", str(path), str(path))
    try:
        _mount("-o", "remount,bind,ro", str(path))
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True, timeout=10)


async def _at_gate(run: Run, fault: Fault) -> Service:
    """The workflow submitted, its task waiting at its gate."""
    await fault.setup(run)
    svc = await run.start_service()
    run.wf_id = await svc.submit(SPEC, set_values=run.values)
    await _until("the task waits at its gate", (run.markers / "t.pid").exists)
    return svc


async def _ends_while_broken(fault: Fault, fault_run: RunFactory, errno_name: str) -> None:
    _needs_root()
    run = fault_run("storage", Moment("ending", 0, 0.0), fault)
    svc = await _at_gate(run, fault)
    exit_json = _attempt_dir(run) / "exit.json"
    await fault.inject(run)
    try:
        (run.gates / "t").touch()
        # the end reaches the control plane at once, from the agent's memory
        task = await _until("the task ends", lambda: _ended(svc, run))
        assert (task["status"], task["exit_code"]) == ("COMPLETED", 3), task
        told = await _until("the user is told", lambda: _storage_events(svc, run))
        assert "exit record not written" in told[0]["message"], told
        assert errno_name in told[0]["message"] and not told[0]["recovered"], told
        assert not exit_json.exists()
    finally:  # the fixture's teardown needs a writable folder
        await fault.recover(run)
    record = await _until("the record is written", lambda: exit_json.exists())
    record = json.loads(exit_json.read_text())
    assert (record["state"], record["exit_code"]) == ("exited", 3), record
    recovered = await _until(
        "the recovery is told", lambda: [e for e in _storage_events(svc, run) if e["recovered"]]
    )
    assert len(recovered) == 1 and "exit record written" in recovered[0]["message"]
    assert svc.get(run.wf_id or "")["status"] == "COMPLETED"


async def test_an_end_while_read_only_is_recorded_once_writable(fault_run: RunFactory) -> None:
    await _ends_while_broken(ReadOnly(), fault_run, "EROFS")


async def test_an_end_on_a_full_disk_is_recorded_once_freed(fault_run: RunFactory) -> None:
    await _ends_while_broken(DiskFull(), fault_run, "ENOSPC")


LINES = """\
workflow:
  name: lines
  tasks:
  - name: t
    command: [sh, -c]
    args: ["echo before; sh {{ step }} t; pad=$(printf %0100d 0);
            for i in $(seq 1 100); do echo during-$i-$pad; done; sh {{ step }} u; echo after"]
"""  # 100 lines: more than the page the log's first line left room in


async def test_log_lines_written_on_a_full_disk_reach_the_log_once_freed(
    fault_run: RunFactory,
) -> None:
    fault = DiskFull()
    run = fault_run("storage", Moment("running", 0, 0.0), fault)
    await fault.setup(run)
    svc = await run.start_service()
    run.wf_id = await svc.submit(LINES, set_values=run.values)
    await _until("the task waits at its first gate", (run.markers / "t.pid").exists)
    await fault.inject(run)
    try:
        (run.gates / "t").touch()
        await _until("the task waits at its second gate", (run.markers / "u.pid").exists)
        told = await _until("the user is told", lambda: _storage_events(svc, run))
        assert "log lines not written (ENOSPC" in told[0]["message"], told
        assert "kept in memory" in told[0]["message"] and not told[0]["recovered"], told
        on_disk = count_lines(_attempt_dir(run) / "log")  # the rest waits in memory
        assert on_disk < 101
    finally:
        await fault.recover(run)
    recovered = await _until(
        "the recovery is told", lambda: [e for e in _storage_events(svc, run) if e["recovered"]]
    )
    message = f"storage: log written again: {101 - on_disk} lines from memory"
    assert [e["message"] for e in recovered] == [message]
    (run.gates / "u").touch()
    task = await _until("the task ends", lambda: _ended(svc, run))
    assert task["status"] == "COMPLETED", task
    lines = [ln.text for ln in await svc.logs(run.wf_id, "t") if ln.stream == "stdout"]
    pad = "0" * 100
    assert lines == ["before", *(f"during-{i}-{pad}" for i in range(1, 101)), "after"]


async def test_log_lines_past_the_backlog_are_dropped_counted_and_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More lines than the agent keeps while the log's folder is read-only."""
    _needs_root()
    monkeypatch.setattr(ends_module, "RETRY_FIRST", 0.05)
    monkeypatch.setattr(logwriter, "RETRY_FIRST", 0.05)
    monkeypatch.setattr(logwriter, "BACKLOG_MAX", 2**20)
    told: list[tuple[str, bool]] = []
    d = tmp_path / "attempt"
    d.mkdir()
    log = LogWriter(d / "log", lambda message, recovered: told.append((message, recovered)))
    text = "x" * 1000
    fit = 2**20 // len(format_line(0.0, "stdout", f"0000 {text}"))  # 1007
    with _read_only(d):
        for i in range(1500):
            log.add(float(i), "stdout", f"{i:04d} {text}")
            log.flush()
        assert told == [
            (
                "storage: log lines not written (EROFS: Read-only file system); kept in "
                "memory (at most 1 MiB) and written when storage is back",
                False,
            )
        ]
    await _until("the backlog is written", lambda: len(told) == 2)
    message = f"storage: log written again: {fit} lines from memory, {1500 - fit} dropped"
    assert told[1] == (message, True)
    log.add(2000.0, "stdout", "later")
    log.close()
    got = read_lines(d / "log", "k")
    assert [ln.text.split()[0] for ln in got[:fit]] == [f"{i:04d}" for i in range(fit)]
    assert got[fit].stream == "system", got[fit]
    assert got[fit].text.startswith(f"osmo: {1500 - fit} log lines dropped here"), got[fit]
    assert [ln.text for ln in got[fit + 1 :]] == ["later"]


async def test_a_launch_that_cannot_write_fails_clearly(fault_run: RunFactory) -> None:
    """After the agent's few seconds of retries (supervisor.LAUNCH_RETRIES)."""
    _needs_root()
    run = fault_run("storage", Moment("running", 0, 0.0), ReadOnly())
    (run.gates / "t").touch()  # once it runs, it ends
    svc = await run.start_service()
    with _read_only(run.data_dir):
        run.wf_id = await svc.submit(SPEC, set_values=run.values)
        first = await _until("the first attempt fails", lambda: _ended(svc, run))
    assert first["status"] == "FAILED_BACKEND_ERROR", first
    assert "cannot record attempt" in first["message"], first
    assert "EROFS: Read-only file system" in first["message"], first
    assert not (run.markers / "t").exists(), "the command ran"


async def test_an_unwritten_end_survives_a_control_plane_restart(fault_run: RunFactory) -> None:
    """The agent still runs: a new control plane learns the real end from its memory."""
    _needs_root()
    run = fault_run("storage", Moment("ending", 0, 0.0), ReadOnly())
    await _at_gate(run, ReadOnly())
    pid = int((run.markers / "t.pid").read_text())
    await run.stop_service()
    folder = _attempt_dir(run)
    with _read_only(folder):
        (run.gates / "t").touch()
        await _until("the task's command ends", lambda: not psutil.pid_exists(pid))
        svc = await run.start_service()
        task = await _until("the task ends", lambda: _ended(svc, run))
        assert (task["status"], task["exit_code"]) == ("COMPLETED", 3), task
        assert not (folder / "exit.json").exists()
    await _until("the record is written", (folder / "exit.json").exists)


async def test_cancel_ends_a_task_whose_records_cannot_be_written(
    fault_run: RunFactory,
) -> None:
    _needs_root()
    run = fault_run("storage", Moment("running", 0, 0.0), ReadOnly())
    svc = await _at_gate(run, ReadOnly())
    with _read_only(_attempt_dir(run)):
        await svc.cancel(run.wf_id or "")
        task = await _until("the task ends", lambda: _ended(svc, run))
        assert task["status"] == "FAILED_CANCELED", task
        assert _storage_events(svc, run), "the user was not told"
    free = await _until(
        "its CPU is free",
        lambda: all(r["free_cpu"] == r["cpu"] for r in svc.resources()),
    )
    assert free


_RECORD = {"state": "exited", "exit_code": 3, "signal": None, "ts": 0.0, "log_lines": 0}


async def test_an_end_is_kept_until_written_and_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _needs_root()
    monkeypatch.setattr(ends_module, "RETRY_FIRST", 0.05)
    told: list[dict[str, Any]] = []
    ends = Ends(told.append)
    d = tmp_path / "attempt"
    d.mkdir()
    with _read_only(d):
        ends.record("wf/t/0", d, dict(_RECORD))
        ends.ack(["wf/t/0"])  # the control plane has it, the disk not yet: kept
        assert ends.records["wf/t/0"]["exit_code"] == 3 and ends.unwritten == 1
    await _until("the record is written", lambda: not ends.unwritten)
    assert json.loads((d / "exit.json").read_text())["exit_code"] == 3
    assert "wf/t/0" not in ends.records  # written and acknowledged: forgotten
    assert [t["recovered"] for t in told] == [False, True], told

    ends.record("wf/t/1", d, dict(_RECORD))  # written at once, not acknowledged: kept
    assert "wf/t/1" in ends.records
    ends.ack(["wf/t/1"])
    assert "wf/t/1" not in ends.records


async def test_the_retries_of_a_write_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _needs_root()
    monkeypatch.setattr(ends_module, "RETRY_FIRST", 0.01)
    monkeypatch.setattr(ends_module, "RETRY_TRIES", 3)
    told: list[dict[str, Any]] = []
    ends = Ends(told.append)
    d = tmp_path / "attempt"
    d.mkdir()
    with _read_only(d):
        ends.record("wf/t/0", d, dict(_RECORD))
        await _until("the retries end", lambda: not ends.unwritten)
    assert "still not written after 3 retries (EROFS" in told[-1]["message"], told
    assert ends.records["wf/t/0"]["exit_code"] == 3  # the end is still answered from memory
    assert not (d / "exit.json").exists()
