"""Crash recovery: the engine process is killed with SIGKILL mid-workflow and restarted.

The agent outlives the engine, so the task that was running is adopted (not restarted),
completed tasks never run again, and no log line is lost.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import osmo_cli

SPEC = """
workflow:
  name: crash
  tasks:
  - name: t1
    command: [sh, -c]
    args: ["echo run >> {counter}/t1; echo from-t1 > {{{{output}}}}/x"]
  - name: t2
    inputs: [{{task: t1}}]
    command: [sh, -c]
    args: ["echo run >> {counter}/t2; for i in $(seq 1 {lines}); do echo line $i;
            if [ $i = {half} ]; then n=0; while [ ! -e {counter}/go ] && [ $n -lt 600 ]; do
            sleep 0.1; n=$((n+1)); done; fi; done; cat {{{{input:0}}}}/x > {{{{output}}}}/x"]
  - name: t3
    inputs: [{{task: t2}}]
    command: [sh, -c]
    args: ["echo run >> {counter}/t3; cat {{{{input:0}}}}/x"]
"""


def wait_for(cond, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def task_rows(home: Path) -> list[tuple]:
    try:  # read-only: never create the file before the engine does
        with sqlite3.connect(f"file:{home / 'osmo.db'}?mode=ro", uri=True) as db:
            return db.execute(
                "select name, retry_id, status, exit_code from tasks order by name, retry_id"
            ).fetchall()
    except sqlite3.OperationalError:  # no file or no tables yet: the engine is starting
        return []


def log_lines(home: Path, task: str) -> list[str]:
    log = next((home / "runs").glob(f"crash-*/{task}/0/log"))
    return [line.split(" ", 2)[2] for line in log.read_text().splitlines()]


@pytest.mark.parametrize(
    "restart_after_task_ended", [False, True], ids=["adopt-running", "collect-finished"]
)
def test_sigkill_engine_mid_workflow(
    tmp_path: Path, osmo_env: dict[str, str], restart_after_task_ended: bool
) -> None:
    home = Path(osmo_env["OSMO_HOME"])
    counter = tmp_path / "counter"
    counter.mkdir()
    lines = 30
    spec = tmp_path / "crash.yaml"
    # t2 prints half its lines, then waits for `go` (at most 60 s): the kill lands mid-output
    # however slow the machine is (a fixed sleep here once let t2 finish first under load)
    spec.write_text(SPEC.format(counter=counter, lines=lines, half=lines // 2))

    engine = subprocess.Popen(
        osmo_cli("workflow", "run", str(spec)),
        env=osmo_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: ("t2", 0, "RUNNING", None) in task_rows(home), timeout=30)
    finally:  # also when the wait fails: no engine outlives the test
        engine.send_signal(signal.SIGKILL)
        engine.wait(10)
    assert ("t2", 0, "RUNNING", None) in task_rows(home)

    if restart_after_task_ended:
        (counter / "go").touch()
        wait_for(lambda: any((home / "runs").glob("crash-*/t2/0/exit.json")), timeout=30)

    resumed = subprocess.Popen(
        osmo_cli("workflow", "resume"),
        env=osmo_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if not restart_after_task_ended:  # t2 goes on once the new engine holds the data
            lock = home / "engine.lock"
            wait_for(lambda: lock.exists() and lock.read_text().strip() == str(resumed.pid), 30)
            (counter / "go").touch()
        out, err = resumed.communicate(timeout=60)
    finally:
        resumed.kill()  # a no-op once it has exited; else no engine outlives the test
    assert resumed.returncode == 0, err
    assert "crash-1: COMPLETED" in out

    for name in ("t1", "t2", "t3"):  # each ran exactly once
        assert (counter / name).read_text().splitlines() == ["run"], name
    assert task_rows(home) == [
        ("t1", 0, "COMPLETED", 0),
        ("t2", 0, "COMPLETED", 0),
        ("t3", 0, "COMPLETED", 0),
    ]
    assert log_lines(home, "t2") == [f"line {i}" for i in range(1, lines + 1)]
    assert log_lines(home, "t3") == ["from-t1"]


CONTAINER_SPEC = """
workflow:
  name: crash
  tasks:
  - name: t1
    image: {image}
    command: [sh, -c]
    args: ["echo run >> ran; echo line 1; n=0; while [ ! -e go ] && [ $n -lt 600 ]; do
            sleep 0.1; n=$((n+1)); done; echo line 2; echo end >> ran; echo out > {{{{output}}}}/r"]
    outputs:
    - url: file://{dest}
"""


@pytest.mark.parametrize("agent_too", [False, True], ids=["engine", "engine-and-agent"])
def test_sigkill_engine_under_a_running_container(
    tmp_path: Path, osmo_env: dict[str, str], container_image: str, agent_too: bool
) -> None:
    """The container goes on through the crash; a new engine finds it running (with its
    agent killed too, the new agent adopts the container) and records its end."""
    home = Path(osmo_env["OSMO_HOME"])
    spec = tmp_path / "crash.yaml"
    spec.write_text(CONTAINER_SPEC.format(image=container_image, dest=tmp_path / "dest"))
    engine = subprocess.Popen(
        osmo_cli("workflow", "run", str(spec)),
        env=osmo_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: any((home / "runs").glob("crash-*/t1/0/log")), timeout=60)
    finally:  # also when the wait fails: no engine outlives the test
        engine.send_signal(signal.SIGKILL)
        engine.wait(10)
    if agent_too:
        os.kill(int((home / "agent.pid").read_text()), signal.SIGKILL)
    workdir = next((home / "runs").glob("crash-*/t1/0"))

    resumed = subprocess.Popen(
        osmo_cli("workflow", "resume"),
        env=osmo_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lock = home / "engine.lock"
        wait_for(lambda: lock.exists() and lock.read_text().strip() == str(resumed.pid), 30)
        (workdir / "go").touch()
        out, err = resumed.communicate(timeout=60)
    finally:
        resumed.kill()
    assert resumed.returncode == 0, err
    assert "crash-1: COMPLETED" in out
    assert (workdir / "ran").read_text() == "run\nend\n"  # once, to its end
    assert task_rows(home) == [("t1", 0, "COMPLETED", 0)]
    assert [ln for ln in log_lines(home, "t1") if ln.startswith("line")] == ["line 1", "line 2"]
    assert (tmp_path / "dest" / "r").read_text() == "out\n"  # its outputs went up
