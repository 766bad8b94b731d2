"""`OsmoConfig.task_isolation` resolved for this server: whom local tasks run as.

A team server (`jupyter osmo`) running as root gives each OSMO user's tasks an OS identity of
their own (agent/identity.py); a single-user `jupyter lab` or `osmo workflow run` keeps running
tasks as its user. The data folder is the control plane's alone (0700) either way.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .agent.identity import can_setuid, parse_range
from .config import OsmoConfig
from .errors import ConfigError, Problem

log = logging.getLogger("osmo_core")

DEFAULT_RUNS_BASE = "/var/lib/osmo-tasks"


@dataclass(frozen=True)
class Isolation:
    """Tasks of each user run under a uid of `uids`, in folders under `tasks`."""

    uids: tuple[int, int]
    tasks: Path

    def agent_args(self) -> list[str]:
        return ["--tasks", str(self.tasks), "--uids", f"{self.uids[0]}-{self.uids[1]}"]

    @property
    def label(self) -> str:  # as the agent's hello says it
        return f"user:{self.uids[0]}-{self.uids[1]}:{self.tasks}"


def resolve(config: OsmoConfig, headless: bool) -> Isolation | None:
    """The isolation to use, or None; ConfigError when 'user' cannot be had."""
    mode = config.task_isolation.lower()
    if mode == "none" or (mode == "auto" and not (headless and can_setuid())):
        return None
    if not can_setuid():
        raise ConfigError(
            Problem(
                f"tasks cannot run as their users: this server runs as uid {os.geteuid()} "
                "without CAP_SETUID/CAP_SETGID/CAP_CHOWN",
                field="OsmoConfig.task_isolation",
                hint="run the server as root, or set task_isolation = 'none' (tasks then run "
                "as the server's user and can read its data folder)",
            )
        )
    data = Path(config.data_dir).expanduser().resolve()
    tasks = Path(config.task_runs_dir or _default_runs(data)).expanduser().resolve()
    if tasks == data or data in tasks.parents:
        raise ConfigError(
            Problem(
                f"{tasks} lies in the data folder {data}, which no task may enter",
                field="OsmoConfig.task_runs_dir",
            )
        )
    closed = _closed_parent(tasks)
    if closed is not None:
        raise ConfigError(
            Problem(
                f"tasks cannot reach {tasks}: {closed} is not searchable by others (o+x)",
                field="OsmoConfig.task_runs_dir",
                hint=f"chmod o+x {closed}, or choose another folder",
            )
        )
    return Isolation(parse_range(config.task_uid_range), tasks)


def _default_runs(data: Path) -> Path:
    return Path(DEFAULT_RUNS_BASE) / hashlib.sha256(os.fsencode(data)).hexdigest()[:16]


def _closed_parent(path: Path) -> Path | None:
    """The first existing folder above `path` that others cannot search (those made later
    are made searchable)."""
    for p in reversed(path.parents):
        try:
            st = p.stat()
        except FileNotFoundError:
            return None
        if not st.st_mode & stat.S_IXOTH:
            return p
    return None


def describe(isolation: Isolation | None) -> str:
    if isolation is None:
        return f"tasks run as this server's user (uid {os.geteuid()}): no task isolation"
    lo, hi = isolation.uids
    return f"each user's tasks run as a uid of their own ({lo}-{hi}), in {isolation.tasks}"
