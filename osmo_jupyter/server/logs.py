"""A task's log: a page of lines (REST), and the log-follow WebSocket.

The log-follow WebSocket sends a task's stored log lines from `start`, then live ones, one
`{"type": "log", ...}` per line, each exactly once (by line number); when the task's attempt is
rescheduled it continues with the next (`{"type": "attempt", "retry_id": N}`), and it ends with
`{"type": "end", "status": S}` when the task's last attempt has finished. A slow client gets the
lines it missed re-read from the log, never a gap.

With `batch=true` the lines come as `{"type": "lines", "lines": [...]}` instead: a stored page,
or the live lines that arrived together, in one message (a message per line costs the server
a JSON encoding, a frame and a flush each: a long log took a minute to catch up). One line per
message stays the default so that older clients keep working.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tornado import websocket

from osmo_core.errors import OsmoError
from osmo_core.events import Overflow
from osmo_core.states import TaskStatus

from ..schemas import LogFollowQuery, LogsQuery
from .base import OsmoHandler, OsmoWebSocket, api, check_page_limit


class LogsHandler(OsmoHandler):
    @api
    async def get(self, wf_id: str, task: str) -> None:
        q = self.query_model(LogsQuery)
        svc = await self.workflow_for(wf_id)
        limit = q.limit or svc.config.log_page_size  # a page, never the whole log
        check_page_limit(limit, svc.config.max_log_page_size, "max_log_page_size")
        lines = await svc.logs(
            wf_id, task, retry_id=q.retry_id, start=q.start, limit=limit, tail=q.tail
        )
        self.reply([log_line(ln) for ln in lines])


def log_line(ln: Any) -> dict[str, Any]:
    return {"n": ln.n, "ts": ln.ts, "stream": ln.stream, "text": ln.text}


class LogFollowWebSocket(OsmoWebSocket):
    """A task's log from `start`, then live, across its attempts, until it has finished."""

    _pump: asyncio.Task[None] | None = None
    _sub: Any = None
    _pending: list[dict[str, Any]]  # lines not sent yet (batch mode)

    async def handshake(self, wf_id: str, task: str) -> None:
        self._query = self.query_model(LogFollowQuery)
        self._svc = await self.workflow_for(wf_id)
        self._svc.task(wf_id, task)  # 404 now, not after the upgrade
        self._wf_id, self._task = wf_id, task
        self._pending = []

    def open(self, *args: Any, **kwargs: Any) -> None:
        # Subscribe first: every line is then in the file, the queue, or both (skipped by n).
        self._sub = self._svc.subscribe(self._wf_id, logs=True)
        self._pump = asyncio.create_task(self._run(), name="osmo-log-follow")

    async def _run(self) -> None:
        q = self._query
        try:
            retry = q.retry_id if q.retry_id is not None else self._attempts()[0]["retry_id"]
            last = await self._catch_up(retry, q.start)
            # The store is read again only when this task's state may have moved: at the start,
            # after one of its status events, or after an overflow that may have dropped one —
            # never per log line.
            moved = True
            while True:
                if moved:
                    rows = self._attempts()
                    row = next((r for r in rows if r["retry_id"] == retry), None)
                    if row is not None and TaskStatus(row["status"]).terminal:
                        last = await self._catch_up(retry, last)  # lines that raced the status
                        later = [r["retry_id"] for r in rows if r["retry_id"] > retry]
                        await self._flush()
                        if q.retry_id is None and later:
                            retry = later[0]
                            await self._send({"type": "attempt", "retry_id": retry})
                            last = await self._catch_up(retry, 0)
                            continue
                        await self._send(
                            {"type": "end", "status": row["status"], "retry_id": retry}
                        )
                        break
                if self._sub.idle:  # send what arrived together before waiting for more
                    await self._flush()
                item = await self._sub.get()
                if item is None:
                    await self._flush()  # what came before the shutdown still goes
                    self.close(1001, "server shutting down")
                    return
                moved = isinstance(item, Overflow) or (
                    item.type == "task.status" and item.task == self._task
                )
                if isinstance(item, Overflow):
                    last = await self._catch_up(retry, last)
                elif (
                    item.type == "task.log"
                    and (item.task, item.retry_id) == (self._task, retry)
                    and item.payload["n"] > last
                ):
                    await self._emit([{**item.payload, "ts": item.ts}])
                    last = item.payload["n"]
            self.close(1000, "task finished")
        except websocket.WebSocketClosedError:
            pass
        except OsmoError as e:
            self.log.warning("osmo: log follow of %s/%s ended: %s", self._wf_id, self._task, e)
            self.close(1011, str(e)[:120])
        finally:
            self._sub.close()

    def _attempts(self) -> list[Any]:
        return self._svc.store.tasks_of(self._wf_id, self._task)

    async def _catch_up(self, retry: int, last: int) -> int:
        """Send the stored lines after line `last` (0-based `start` = lines already seen), a
        page at a time: a 1 GiB log is never held in memory."""
        page = self._svc.config.log_page_size
        while True:
            lines = await self._svc.logs(
                self._wf_id, self._task, retry_id=retry, start=last, limit=page
            )
            before = last
            await self._emit([log_line(ln) for ln in lines if ln.n > last])
            last = max([last, *(ln.n for ln in lines)])
            await self._flush()
            if len(lines) < page or last == before:
                return last

    async def _emit(self, lines: list[dict[str, Any]]) -> None:
        if not self._query.batch:
            for ln in lines:
                await self._send({"type": "log", **ln})
            return
        self._pending += lines
        if len(self._pending) >= self._svc.config.log_page_size:
            await self._flush()

    async def _flush(self) -> None:
        if self._pending:
            lines, self._pending = self._pending, []
            await self._send({"type": "lines", "lines": lines})

    def on_close(self) -> None:
        if self._sub is not None:
            self._sub.close()
        if self._pump is not None:
            self._pump.cancel()
