"""An attempt's log file as the agent writes it: lines the disk refuses are kept, not lost.

Lines are gathered in memory and written with one unbuffered write per batch, so the agent knows
exactly which bytes reached the file. A write the disk refuses (read-only, full or failing:
EROFS, ENOSPC, EIO) leaves the rest in memory, up to BACKLOG_MAX bytes; lines past that are
dropped and counted. The backlog is written, in order, when the disk takes it again: tried with
the exit records' bounded backoff (ends.py), and the trouble and the recovery (with the count
written from memory and the count dropped) are each one `storage` event for the user. Dropped
lines leave one `system` line in the file where they were. The lines themselves go to the
control plane as events whatever the disk does (attempt.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from .ends import RETRY_FIRST, RETRY_MAX, RETRY_TRIES
from .logfile import format_line, now
from .workdir import why

BACKLOG_MAX = 2 * 2**20  # bytes of lines kept per attempt while its log cannot be written

Tell = Callable[[str, bool], None]  # (message, recovered): a `storage` event


class LogWriter:
    """One attempt's log: `add` lines, `flush` them to the file; a refused write is retried."""

    def __init__(self, path: Path, tell: Tell):
        self.path = path
        self._tell = tell
        self._fd: int | None = None  # opened at the first write: `true` writes none
        self._pending = bytearray()  # lines not in the file yet (the backlog while it fails)
        self._closed = False
        # the trouble, while there is one
        self._error: OSError | None = None
        self._kept = 0  # lines kept in memory since it began
        self._dropped = 0  # lines dropped (the backlog was full) since the last mark
        self._dropped_all = 0  # lines dropped since it began
        self._retry: asyncio.TimerHandle | None = None
        self._delay = RETRY_FIRST
        self._tries = 0

    def add(self, ts: float, stream: str, text: str) -> None:
        line = format_line(ts, stream, text)
        if self._error is not None:
            if len(self._pending) + len(line) > BACKLOG_MAX:
                self._dropped += 1
                self._dropped_all += 1
                return
            self._kept += 1
        self._pending += line

    def flush(self) -> None:
        """Write what is pending; while in trouble, the retry timer does that."""
        if self._retry is None:
            self._write()

    def close(self) -> None:
        """The attempt has ended: the file is closed once all of it is written."""
        self._closed = True
        self.flush()

    def _write(self) -> None:
        try:
            self._drain()
            if self._dropped:  # where the dropped lines were: one line that says how many
                mark = f"osmo: {self._dropped} log lines dropped here: storage failed " + (
                    f"while more than {BACKLOG_MAX // 2**20} MiB of lines waited"
                )
                self._pending += format_line(now(), "system", mark)
                self._dropped = 0
                self._drain()
        except OSError as e:
            self._failed(e)
            return
        if self._error is not None:
            dropped = f", {self._dropped_all} dropped" if self._dropped_all else ""
            self._tell(f"storage: log written again: {self._kept} lines from memory{dropped}", True)
            self._error = None
        if self._closed:
            self._close_fd()

    def _drain(self) -> None:
        if self._pending and self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        while self._pending:
            assert self._fd is not None
            done = os.write(self._fd, self._pending)  # short on a filling disk: the rest waits
            del self._pending[:done]

    def _failed(self, e: OSError) -> None:
        self._close_fd()  # reopened on the next try: a fresh descriptor after a remount
        if self._error is None:
            self._kept, self._dropped_all, self._tries = self._pending.count(b"\n"), 0, 0
            self._delay = RETRY_FIRST
            self._tell(
                f"storage: log lines not written ({why(e)}); kept in memory (at most "
                f"{BACKLOG_MAX // 2**20} MiB) and written when storage is back",
                False,
            )
        self._error = e
        self._tries += 1
        if self._tries > RETRY_TRIES:
            self._tell(
                f"storage: log still not written after {RETRY_TRIES} retries ({why(e)}); "
                f"{self._kept + self._dropped_all} lines are only in the task's events",
                False,
            )
            self._pending.clear()
            self._dropped = 0
            self._error = None
            return
        self._retry = asyncio.get_running_loop().call_later(self._delay, self._retried)
        self._delay = min(self._delay * 2, RETRY_MAX)

    def _retried(self) -> None:
        self._retry = None
        self._write()

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):  # a late write error: the next write says it
                os.close(self._fd)
            self._fd = None
