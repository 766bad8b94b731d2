"""Ended attempts' records, kept in memory until they are durable and acknowledged.

An end goes to the control plane at once, whatever the disk does. Its exit record (exit.json)
is written when the disk lets it: a write that fails (read-only, full or failing: EROFS,
ENOSPC, EIO) is retried with bounded backoff, and the trouble and the recovery are each one
`storage` event, which the control plane shows the user as a `task.storage` event. Until the
record is written and the control plane has acknowledged the end (the `ack` op), `status`
answers from memory, so a control plane that reconnects or restarts meanwhile still learns the
real end. What memory cannot outlive is this agent: one that stops with records unwritten logs
each, and the next agent, finding no exit record, records those attempts as lost (orphans.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .holds import HELD
from .logfile import now
from .workdir import why, write_exit

log = logging.getLogger("osmo_core.agent")

RETRY_FIRST = 0.5  # seconds before the first retry of a failed write; doubled each time
RETRY_MAX = 10.0  # seconds between two retries, at most
RETRY_TRIES = 400  # retries of one record, at most: with the delays above, about an hour
KEEP_WRITTEN = 10_000  # written ends awaiting an ack, at most (they are on disk anyway)


def _write(d: Path, record: dict[str, Any]) -> None:
    (d / HELD).unlink(missing_ok=True)
    write_exit(d, record)


class Ends:
    """One agent's ended attempts: each end in memory until written and acknowledged."""

    def __init__(self, emit: Callable[[dict[str, Any]], None]):
        self.emit = emit
        self.records: dict[str, dict[str, Any]] = {}  # key -> its exit record, oldest first
        self._unwritten: dict[str, tuple[Path, asyncio.Task[None]]] = {}  # key -> folder, retry
        self._acked: set[str] = set()  # unwritten ends the control plane already has

    @property
    def unwritten(self) -> int:
        return len(self._unwritten)

    def trouble(self, key: str, message: str, recovered: bool = False) -> None:
        """Tell the user (a task event), not only agent.log."""
        (log.info if recovered else log.warning)("attempt %s: %s", key, message)
        self.emit(
            {"ev": "storage", "key": key, "message": message, "recovered": recovered, "ts": now()}
        )

    def record(self, key: str, d: Path, record: dict[str, Any]) -> None:
        """Keep the end of attempt `key` and write it to its folder `d`; retry if that fails."""
        self.records[key] = record
        try:
            _write(d, record)
        except OSError as e:
            self.trouble(key, f"storage: exit record not written ({why(e)}), retrying")
            self._unwritten[key] = (d, asyncio.ensure_future(self._retry(key, d, record)))
            return
        if len(self.records) > KEEP_WRITTEN + len(self._unwritten):
            oldest = next(k for k in self.records if k not in self._unwritten)
            del self.records[oldest]

    def ack(self, keys: Iterable[str]) -> None:
        for key in keys:
            if key in self._unwritten:
                self._acked.add(key)  # forgotten once written
            else:
                self.records.pop(key, None)

    async def _retry(self, key: str, d: Path, record: dict[str, Any]) -> None:
        delay = RETRY_FIRST
        try:
            for tries in range(2, RETRY_TRIES + 2):
                await asyncio.sleep(delay)
                try:
                    _write(d, record)
                except OSError as e:
                    last = e
                    delay = min(delay * 2, RETRY_MAX)
                    continue
                self.trouble(key, f"storage: exit record written (try {tries})", recovered=True)
                return
            self.trouble(
                key,
                f"storage: exit record still not written after {RETRY_TRIES} retries "
                f"({why(last)}); the end is kept in this agent's memory only",
            )
        finally:
            del self._unwritten[key]
            if key in self._acked:
                self._acked.discard(key)
                self.records.pop(key, None)

    def stop(self) -> None:
        """The agent stops: a last try for each unwritten record; say which are lost."""
        for key, (d, task) in list(self._unwritten.items()):
            task.cancel()
            try:
                _write(d, self.records[key])
            except OSError as e:
                log.error(
                    "attempt %s: exit record not written (%s); it is lost with this agent "
                    "(the next one records the attempt as lost)",
                    key,
                    why(e),
                )
