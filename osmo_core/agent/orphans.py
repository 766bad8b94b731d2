"""A restarted agent's first duty: the attempts its predecessor left without an exit record.

Their pipes broke with the agent that started them, so nobody can collect their output or
their exit any more: what is left of them is killed (found by the OSMO_OUTPUT in their
environment, never by an old pid that may have been reused; a container by the name in its
attempt record) and each is recorded as lost, so the engine's `status` learns their fate.
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


def recover(root: Path, workspace: Callable[[str], Path]) -> list[str]:
    """Attempts of a previous agent that never got an exit record are lost: their pipes
    broke with that agent, so nobody can collect their output. Kill what is left of them
    and record it. Returns the containers they ran in (for the caller to remove: the
    runtime keeps a container whose client was killed)."""
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
        key = "/".join(d.parts[-3:])
        with contextlib.suppress(OSError, ValueError):
            if name := json.loads((d / ATTEMPT).read_bytes()).get("container"):
                containers.append(str(name))
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
    return containers


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
