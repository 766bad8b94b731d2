"""A restarted agent's first duty: the attempts its predecessor left without an exit record.

Their pipes broke with the agent that started them, so nobody can collect a host command's
output or exit any more: what is left of it is killed (found by the OSMO_OUTPUT in its
environment, never by an old pid that may have been reused) and the attempt is recorded as
lost, so the engine's `status` learns its fate. An attempt that ran in a container is different:
the container outlives its runtime client and keeps its log and exit code, so it is handed
back to the caller, which adopts it (adopt.py) or, failing that, records it lost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

import psutil

from .logfile import count_lines, now
from .workdir import ATTEMPT, EXIT, LOG, OUTPUT, why, write_exit

log = logging.getLogger("osmo_core.agent")


def recover(root: Path, workspace: Callable[[str], Path]) -> list[tuple[Path, str]]:
    """Kill what is left of the processes of a previous agent's attempts that never got an
    exit record (a container's runtime client among them), and record the host ones lost.
    Returns the others' (attempt folder, container name), for the caller to adopt or record
    lost (`record_lost`)."""
    orphans = {
        str(workspace("/".join(rec.parent.parts[-3:])) / OUTPUT): rec.parent
        for rec in root.glob(f"runs/*/*/*/{ATTEMPT}")
        if not (rec.parent / EXIT).exists()
    }
    if not orphans:
        return []
    _kill_groups_with_output(set(orphans))
    containers = []
    for d in orphans.values():
        with contextlib.suppress(OSError, ValueError):
            if name := json.loads((d / ATTEMPT).read_bytes()).get("container"):
                containers.append((d, str(name)))
                continue
        record_lost(d)
    return containers


def record_lost(d: Path) -> None:
    """The attempt of folder `d` is lost: its agent died while it ran."""
    key = "/".join(d.parts[-3:])
    log.warning("attempt %s lost: its agent died while it ran", key)
    try:
        write_exit(
            d,
            {
                "state": "lost",
                "message": "the agent supervising this attempt died; the task was stopped",
                "exit_code": None,
                "signal": None,
                "ts": now(),
                "log_lines": count_lines(d / LOG),
            },
        )
    except OSError as e:  # a read-only or full disk: `status` says lost all the same
        log.warning("attempt %s: lost record not written (%s)", key, why(e))


def _kill_groups_with_output(outputs: set[str]) -> None:
    """SIGKILL the process group of every process whose OSMO_OUTPUT is one of `outputs`.

    Matching the environment (rather than trusting an old pid file) cannot hit an unrelated
    process that reused the pid."""
    own = os.getpgrp()
    for proc in psutil.process_iter(["environ"]):
        env = proc.info.get("environ") or {}
        if env.get("OSMO_OUTPUT") not in outputs:
            continue
        try:
            pgid = os.getpgid(proc.pid)
            if pgid != own:
                os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
