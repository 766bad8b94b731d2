"""Events: what the engine announces, and an in-process async pub/sub to deliver them.

Types (each versioned; payload fields listed):
- `workflow.submitted` v1   {name, pool, user, tasks, restarted?, reused?}   restarted: the
                             workflow a restart made this one from; reused: tasks it keeps
- `workflow.status`    v1   {message?}
- `group.status`       v1   {message?}
- `task.pending`       v1   {reason}   why a waiting attempt waits, when that changes
- `task.status`        v1   {exit_code?, node?, message?, reused_from?}   reused_from: a
                             COMPLETED attempt that did not run (restart, task cache)
- `task.hold`          v1   {hold, exit_code?, message, until?}   hold interactive|debug: the
                             attempt's command ended and it waits for its user; done|retry: the
                             user's decision (engine/holds.py)
- `task.cache`         v1   {result: hit|miss|off, key?, reused_from?, reason?}   the task
                             cache's lookup for an attempt (engine/cache.py)
- `task.log`           v1   {n, ts, stream, text}       live only: never stored (log files are)
- `task.transfer`      v1   {direction: download|upload|checkpoint, url (redacted), dataset?,
                             files, bytes, seconds, error?}   one per finished data transfer
- `task.transfer.progress` v1 {direction, url, files, bytes, files_total, bytes_total, seconds}
                             at most once a second while a url transfer runs; live only
- `task.storage`       v1   {message, recovered}   an agent could not write the attempt's records
                             (disk read-only, full, failing) and retries; recovered: written now
- `task.access`        v1   {user, action: exec|terminal|port-forward|proxy|files, ...}
                             audit: someone stepped into a running task (osmo_jupyter/server/)

Persisted events have increasing integer ids; a subscriber that reconnects passes the last id
it saw and gets the stored events after it first. A subscriber too slow to keep up is not
allowed to stall the engine: when its bounded queue is full its backlog is dropped and it
receives one `Overflow` marker, after which it should re-read state from the store (resync).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Event:
    type: str
    workflow_id: str
    ts: float
    id: int | None = None  # None for live-only events (task.log)
    version: int = 1
    group_name: str | None = None
    task: str | None = None
    retry_id: int | None = None
    status: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    _json: str | None = field(default=None, init=False, repr=False, compare=False)

    def to_json(self) -> str:
        """`to_dict()` as JSON text, made once: every subscriber of an event sends the same."""
        if self._json is None:
            self._json = json.dumps(self.to_dict(), default=str)
        return self._json

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies, and this runs for every event.
        return {
            "id": self.id,
            "ts": self.ts,
            "type": self.type,
            "version": self.version,
            "workflow_id": self.workflow_id,
            "group_name": self.group_name,
            "task": self.task,
            "retry_id": self.retry_id,
            "status": self.status,
            "payload": self.payload,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Event:
        return cls(
            **{
                k: row[k]
                for k in (
                    "type",
                    "workflow_id",
                    "ts",
                    "id",
                    "version",
                    "group_name",
                    "task",
                    "retry_id",
                    "status",
                    "payload",
                )
            }
        )


@dataclass
class Overflow:
    """The subscriber fell behind and events were dropped; re-read state, then continue."""

    dropped: int


_LIVE_STREAMS = ("task.log", "task.usage")  # per-task streams: only for `logs` subscribers


class Subscription:
    def __init__(
        self,
        bus: EventBus,
        workflow_id: str | None,
        maxsize: int,
        logs: bool,
        types: frozenset[str] | None = None,
    ):
        self._bus = bus
        self.workflow_id = workflow_id
        self.logs = logs
        self.types = types  # None: every type (the live streams as `logs` says)
        self._queue: asyncio.Queue[Event | Overflow | None] = asyncio.Queue(maxsize)
        self._closed = False

    def wants(self, ev: Event) -> bool:
        if self.workflow_id is not None and ev.workflow_id != self.workflow_id:
            return False
        if self.types is not None:
            return ev.type in self.types
        return self.logs or ev.type not in _LIVE_STREAMS

    def offer(self, ev: Event | None) -> None:
        try:
            self._queue.put_nowait(ev)
        except asyncio.QueueFull:
            dropped = self._queue.qsize()
            while not self._queue.empty():
                self._queue.get_nowait()
            # The end-of-stream marker must never be the one dropped.
            self._queue.put_nowait(None if ev is None else Overflow(dropped))

    @property
    def idle(self) -> bool:
        """Nothing is waiting: the next `get` would wait."""
        return self._queue.empty()

    async def get(self) -> Event | Overflow | None:
        """Next event; None once the bus closed."""
        if self._closed:
            return None
        item = await self._queue.get()
        if item is None:
            self._closed = True
        return item

    def close(self) -> None:
        self._bus._subs.discard(self)
        self._closed = True

    async def __aiter__(self) -> AsyncIterator[Event | Overflow]:
        try:
            while (item := await self.get()) is not None:
                yield item
        finally:
            self.close()


class EventBus:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()

    def subscribe(
        self,
        workflow_id: str | None = None,
        *,
        maxsize: int = 10_000,
        logs: bool = True,
        types: frozenset[str] | None = None,
    ) -> Subscription:
        """Events of `workflow_id` (None: all); `types`: only these (a follower that acts on
        two types of a busy engine's dozen is not woken, nor overflows, for the others)."""
        sub = Subscription(self, workflow_id, maxsize, logs, types)
        self._subs.add(sub)
        return sub

    def publish(self, ev: Event) -> None:
        for sub in list(self._subs):
            if sub.wants(ev):
                sub.offer(ev)

    def close(self) -> None:
        for sub in list(self._subs):
            sub.offer(None)
        self._subs.clear()
