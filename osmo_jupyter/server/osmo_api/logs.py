"""OSMO's log routes: a workflow's or a task's log as a chunked `text/plain` stream that stays
open until what it shows has ended, a task's error log, and a workflow's events.

A line reads `2026/01/02 03:04:05 [task] text` (`[task retry-N]` for a rescheduled attempt),
as OSMO writes it. The stream sends the stored lines first, then live ones from the event bus,
each exactly once (by line number); a slow reader gets what it missed re-read from the log.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import TYPE_CHECKING, Any

from tornado.iostream import StreamClosedError

from osmo_core.events import Overflow, Subscription
from osmo_core.states import TaskStatus, WorkflowStatus

from .base import OsmoCliHandler, osmo_route
from .models import LogsQuery

if TYPE_CHECKING:
    from osmo_core.service import Service

# How long a quiet stream waits before it checks that its reader is still there.
IDLE_CHECK = 15.0


def log_text(ts: float, task: str, retry_id: int, text: str) -> str:
    who = task if retry_id == 0 else f"{task} retry-{retry_id}"
    return f"{time.strftime('%Y/%m/%d %H:%M:%S', time.gmtime(ts))} [{who}] {text}\n"


class _Stream:
    """The log of one workflow's tasks (or one task, or one attempt) for one request."""

    def __init__(
        self, handler: LogsHandler, svc: Service, wf_id: str, q: LogsQuery, sub: Subscription
    ):
        self.handler, self.svc, self.wf_id, self.q, self.sub = handler, svc, wf_id, q, sub
        self.sent: dict[tuple[str, int], int] = {}  # (task, retry) → last line number sent
        self.first: dict[str, int] = {}  # task → the first attempt shown

    def _rows(self) -> list[Any]:
        rows = self.svc.store.workflow_detail(self.wf_id)[2]
        return [r for r in rows if self.q.task_name in (None, r["name"])]

    def _wants(self, task: str | None, retry: int | None) -> bool:
        """A live line of this attempt belongs in the stream."""
        if task is None or retry is None or self.q.task_name not in (None, task):
            return False
        return self._in_scope(task, retry)

    def _in_scope(self, task: str, retry: int) -> bool:
        if self.q.retry_id is not None:
            return retry == self.q.retry_id
        return retry >= self.first.get(task, retry)

    async def run(self) -> None:
        rows = self._rows()
        for r in rows:  # start at each task's latest attempt (or the one asked for)
            if self.q.retry_id is None:
                self.first[r["name"]] = r["retry_id"]
        await self._catch_up(rows, tail=self.q.last_n_lines)
        while not self._ended(rows):
            try:
                item = await asyncio.wait_for(self.sub.get(), IDLE_CHECK)
            except TimeoutError:
                await self.handler.flush()  # raises once the reader has gone
                continue
            if item is None:
                return  # the server is stopping
            if isinstance(item, Overflow) or item.type.endswith(".status"):
                rows = self._rows()
                await self._catch_up(rows)
            elif item.type == "task.log" and self._wants(item.task, item.retry_id):
                assert item.task is not None and item.retry_id is not None  # _wants checked
                await self._send(item.task, item.retry_id, [item.payload | {"ts": item.ts}])
        await self._catch_up(self._rows())  # lines that raced the last status

    def _ended(self, rows: list[Any]) -> bool:
        if self.q.task_name is None:
            status = self.svc.store.get_workflow(self.wf_id)["status"]
            return WorkflowStatus(status).terminal
        shown = [r for r in rows if self._in_scope(r["name"], r["retry_id"])]
        return bool(shown) and TaskStatus(shown[-1]["status"]).terminal

    async def _catch_up(self, rows: list[Any], tail: int | None = None) -> None:
        """Send the stored lines not sent yet of every attempt in scope, a page at a time."""
        page = self.svc.config.log_page_size
        for r in rows:
            task, retry = r["name"], r["retry_id"]
            if not self._in_scope(task, retry):
                continue
            first_page = True
            while True:
                last = self.sent.get((task, retry), 0)
                lines = await self.svc.logs(
                    self.wf_id,
                    task,
                    retry_id=retry,
                    start=last,
                    limit=page,
                    tail=tail if first_page else None,  # each attempt's last lines
                )
                first_page = False
                await self._send(task, retry, [vars(ln) for ln in lines])
                if len(lines) < page or self.sent.get((task, retry), 0) == last:
                    break

    async def _send(self, task: str, retry: int, lines: list[dict[str, Any]]) -> None:
        last = self.sent.get((task, retry), 0)
        out = [log_text(ln["ts"], task, retry, ln["text"]) for ln in lines if ln["n"] > last]
        if out:
            self.sent[(task, retry)] = max(ln["n"] for ln in lines)
            self.handler.write("".join(out))
            await self.handler.flush()


class LogsHandler(OsmoCliHandler):
    """`GET api/workflow/{id}/logs[?task_name=&retry_id=&last_n_lines=]`."""

    @osmo_route
    async def get(self, wf_id: str) -> None:
        q = self.query_model(LogsQuery)
        svc = await self.workflow_for(wf_id)
        if q.task_name is not None:
            svc.task(wf_id, q.task_name)  # 404 before the stream starts
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        sub = svc.subscribe(wf_id, logs=True)  # first: every line is then in the log, here, or both
        try:
            await _Stream(self, svc, wf_id, q, sub).run()
        except StreamClosedError:
            return  # the reader went away
        finally:
            sub.close()
        self.finish()


class ErrorLogsHandler(OsmoCliHandler):
    """`GET api/workflow/{id}/error_logs?task_name=[&retry_id=&last_n_lines=]`: what an attempt
    wrote to stderr, and why it ended when it failed."""

    @osmo_route
    async def get(self, wf_id: str) -> None:
        q = self.query_model(LogsQuery)
        svc = await self.workflow_for(wf_id)
        task = q.task_name
        if task is None:
            rows = svc.store.workflow_detail(wf_id)[2]
            failed = [r for r in rows if r["status"].startswith("FAILED")]
            task = failed[-1]["name"] if failed else rows[-1]["name"] if rows else None
        if task is None:
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.finish("")
            return
        attempt = svc.task(wf_id, task)
        retry = attempt["retry_id"] if q.retry_id is None else q.retry_id
        row = next((a for a in attempt["attempts"] if a["retry_id"] == retry), attempt)
        page, start = svc.config.log_page_size, 0
        out: collections.deque[Any] = collections.deque(maxlen=q.last_n_lines)
        while True:  # the whole stored log, a page at a time, keeping (the last of) stderr
            lines = await svc.logs(wf_id, task, retry_id=retry, start=start, limit=page)
            out.extend(ln for ln in lines if ln.stream == "stderr")
            start += len(lines)
            if len(lines) < page:
                break
        text = "".join(log_text(ln.ts, task, retry, ln.text) for ln in out)
        if row["status"].startswith("FAILED"):
            exit_code = row["exit_code"]
            text += f"[{task}] {row['status']} (exit code {exit_code}): {row['message'] or ''}\n"
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(text)


class EventsHandler(OsmoCliHandler):
    """`GET api/workflow/{id}/events[?task_name=&retry_id=]`: the workflow's stored events
    (statuses, holds, access), one per line, oldest first."""

    @osmo_route
    async def get(self, wf_id: str) -> None:
        q = self.query_model(LogsQuery)
        svc = await self.workflow_for(wf_id)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        after = 0
        while True:
            page = svc.store.events_since(after, workflow_id=wf_id, limit=1000)
            for ev in page:
                if q.task_name not in (None, ev["task"]):
                    continue
                if q.retry_id is not None and ev["retry_id"] != q.retry_id:
                    continue
                self.write(_event_line(ev))
            if len(page) < 1000:
                break
            after = page[-1]["id"]
            await self.flush()
        self.finish()


def _event_line(ev: dict[str, Any]) -> str:
    where = ev["task"] or ev["group_name"] or ev["workflow_id"]
    if ev["retry_id"]:
        where += f" retry-{ev['retry_id']}"
    detail = ev["payload"].get("message") or ""
    status = ev["status"] or ""
    stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.gmtime(ev["ts"]))
    return f"{stamp} [{where}] {ev['type']} {status} {detail}".rstrip() + "\n"
