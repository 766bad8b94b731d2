"""Following a task's log until its attempt ends.

The server's log-follow WebSocket (`workflows/{id}/tasks/{task}/logs/follow`) does it all; on a
server (or the embedded engine) without it, the same result comes from the events WebSocket:
subscribe first (the replay's first message proves the subscription is live), then the stored
lines, then live `task.log` lines numbered after them, then the lines that raced the end.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from osmo_core.client import ApiError, follow_log, log_lines_of
from osmo_core.states import TaskStatus, WorkflowStatus

if TYPE_CHECKING:
    from .workflow import Workflow

Line = dict[str, Any]


def follow(
    wf: Workflow, task: str, *, retry_id: int | None, start: int, timeout: float | None
) -> Iterator[Line]:
    path = f"workflows/{wf.id}/tasks/{task}/logs/follow"
    params = {"retry_id": retry_id, "start": start}
    stream = follow_log(lambda p: wf.client.transport.messages(path, p), params)
    try:
        for msg in wf.client.iterate(stream, timeout):
            for ln in log_lines_of(msg):
                yield {k: ln.get(k) for k in ("n", "ts", "stream", "text")}
            if msg.get("type") == "end":
                return
        return
    except ApiError as e:
        if e.status != 404:
            raise
    yield from _by_events(wf, task, retry_id=retry_id, start=start, timeout=timeout)


def _by_events(
    wf: Workflow, task: str, *, retry_id: int | None, start: int, timeout: float | None
) -> Iterator[Line]:
    retry = retry_id if retry_id is not None else wf.task(task)["retry_id"]  # 404: no task
    messages = wf.client.iterate(wf.client.events(wf.id, logs=True), timeout)
    first = next(messages, None)  # the subscription is live from here on
    last = start
    for line in wf.log_lines(task, retry_id=retry, start=last):
        yield line
        last = line["n"]
    for msg in itertools.chain([first] if first else [], messages):
        kind = msg.get("type")
        mine = msg.get("task") == task and msg.get("retry_id") == retry
        if kind == "task.log" and mine and msg["payload"]["n"] > last:
            p = msg["payload"]
            yield {"n": p["n"], "ts": msg["ts"], "stream": p["stream"], "text": p["text"]}
            last = p["n"]
        elif _ends(msg, mine):
            break
    yield from wf.log_lines(task, retry_id=retry, start=last)  # lines that raced the end


def _ends(msg: dict[str, Any], mine: bool) -> bool:
    kind = msg.get("type")
    if kind == "task.status" and mine:
        return TaskStatus(msg["status"]).terminal
    return kind == "workflow.status" and WorkflowStatus(msg["status"]).terminal
