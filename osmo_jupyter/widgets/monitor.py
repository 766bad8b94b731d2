"""`WorkflowMonitor`: one workflow's DAG, live.

State lives in synced traits (so it is testable without a browser, and a front end only draws
it): `status`, `tasks` (one row per task: status, attempt, exit code, times, upstream tasks,
DAG level, last log lines), `selected` and `log_lines` (the log pane). Updates come from the
server's events WebSocket, applied in place as each event arrives (no polling, no re-read);
`{"type": "resync"}` re-reads the workflow. The front end sends `{"action": "cancel" |
"restart" | "select", "task"?}`; restart switches the monitor to the new workflow.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from osmo_core.errors import OsmoError
from osmo_core.states import TaskStatus, WorkflowStatus

from ..records import latest_attempts
from ..render import COLOURS, FAILED_COLOUR, UNKNOWN_COLOUR, upstream_of

if TYPE_CHECKING:  # a widget is handed a Workflow; Workflow.monitor makes the widget
    from ..client import Client
    from ..watch import Watch
    from ..workflow import Workflow

LAST_LINES = 3  # per task, in the table
PANE_LINES = 200  # in the log pane


class WorkflowMonitor(anywidget.AnyWidget):
    _esm = Path(__file__).with_name("monitor.js")
    _css = Path(__file__).with_name("monitor.css")

    workflow_id = traitlets.Unicode("").tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    tasks = traitlets.List(traitlets.Dict()).tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    log_lines = traitlets.List(traitlets.Unicode()).tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    colours = traitlets.Dict({**COLOURS, "FAILED": FAILED_COLOUR, "UNKNOWN": UNKNOWN_COLOUR}).tag(
        sync=True
    )
    updated = traitlets.Float(0.0).tag(sync=True)  # time.time() of the last applied event

    workflow: Workflow  # the one followed (restart switches to the new one)

    def __init__(self, workflow: Workflow, *, live: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self._lock = threading.RLock()
        self._watch: Watch | None = None
        self._pane_at = (0, 1)
        self._live = live
        self.on_msg(self._on_frontend_msg)
        self._follow(workflow)

    @property
    def client(self) -> Client:
        return self.workflow.client

    # --- loading and following --------------------------------------------------------------

    def _follow(self, workflow: Workflow) -> None:
        if self._watch is not None:
            self._watch.stop()
        previous: Workflow | None = self.__dict__.get("workflow")
        if previous is not None and previous.id != workflow.id:
            self.tasks = []  # nothing of the old workflow's rows carries over
        self.workflow = workflow
        if workflow._monitor is None:
            workflow._monitor = self  # so workflow.wait() returns once this shows the end
        self._upstream = upstream_of(workflow.validated_spec())
        self._load(workflow.refresh())
        if self._live:
            self._watch = self.client.watch(
                workflow.id, self._on_event, logs=True, on_error=self._on_error
            )

    @staticmethod
    def _spec_json(workflow: Workflow) -> str:
        return str(
            workflow.client.transport.request("GET", f"workflows/{workflow.id}/spec")["spec"]
        )

    def _load(self, data: dict[str, Any]) -> None:
        with self._lock:
            old = {t["name"]: t for t in self.tasks}
            levels = _levels(self._upstream)
            rows = []
            for t in latest_attempts(data["tasks"]):
                rows.append(
                    {
                        "name": t["name"],
                        "status": t["status"],
                        "retry_id": t["retry_id"],
                        "exit_code": t.get("exit_code"),
                        "start_time": t.get("start_time"),
                        "end_time": t.get("end_time"),
                        "message": t.get("message") or "",
                        "pending_reason": t.get("pending_reason") or "",
                        "after": self._upstream.get(t["name"], []),
                        "level": levels.get(t["name"], 0),
                        "last_lines": old.get(t["name"], {}).get("last_lines") or self._tail(t),
                    }
                )
            self.workflow_id = data["id"]
            self.status = data["status"]
            self.tasks = rows
            if not self.selected or self.selected not in {r["name"] for r in rows}:
                self.select(rows[0]["name"] if rows else "")

    def _tail(self, task: dict[str, Any]) -> list[str]:
        """The last lines a started task already wrote (live lines arrive as events)."""
        if not task.get("start_time"):
            return []
        try:
            lines = self.workflow.log_lines(task["name"], retry_id=task["retry_id"])
        except OsmoError:
            return []
        return [self.workflow.annotate(ln["text"]) for ln in lines[-LAST_LINES:]]

    def _on_event(self, ev: dict[str, Any]) -> None:
        """Apply one event (runs on the client's background thread)."""
        kind = ev.get("type")
        with self._lock:
            if kind == "resync":
                self._load(self.workflow.refresh())
            elif kind == "workflow.status":
                if not _wf_ended(self.status):  # replayed history never undoes the end
                    self.status = ev["status"]
            elif kind == "task.status":
                if not self._apply_task_status(ev):
                    return
                if TaskStatus(ev["status"]).terminal:
                    self.updated = time.time()
                    self._complete_lines(ev["task"], ev["retry_id"])
            elif kind == "task.pending":
                if not self._apply_pending(ev):
                    return
            elif kind == "task.log":
                self._apply_log(ev)
            else:
                return
            self.updated = time.time()

    def _apply_task_status(self, ev: dict[str, Any]) -> bool:
        """Apply a task's status change; False when it is old news (the replay of stored
        events, from before this monitor read the workflow, about an attempt that ended)."""
        rows = [dict(r) for r in self.tasks]
        row = next((r for r in rows if r["name"] == ev["task"]), None)
        if row is None or ev["retry_id"] < row["retry_id"]:
            return False
        if ev["retry_id"] == row["retry_id"] and TaskStatus(row["status"]).terminal:
            return False  # an attempt's end is final
        for r in rows:
            if r["name"] != ev["task"]:
                continue
            if ev["retry_id"] > r["retry_id"]:  # a new attempt: its own times and exit code
                r.update(retry_id=ev["retry_id"], exit_code=None, start_time=None, end_time=None)
            status = TaskStatus(ev["status"])
            r["status"] = status.value
            if status != TaskStatus.SCHEDULING:
                r["pending_reason"] = ""  # only a waiting task has a reason to wait
            payload = ev.get("payload") or {}
            if "exit_code" in payload:
                r["exit_code"] = payload["exit_code"]
            if payload.get("message"):
                r["message"] = payload["message"]
            if status == TaskStatus.RUNNING and r["start_time"] is None:
                r["start_time"] = ev["ts"]
            if status.terminal:
                r["end_time"] = ev["ts"]
        self.tasks = rows
        return True

    def _apply_pending(self, ev: dict[str, Any]) -> bool:
        """Why a waiting task waits, as the scheduler last said; False for another attempt's."""
        rows = [dict(r) for r in self.tasks]
        row = next((r for r in rows if r["name"] == ev["task"]), None)
        if row is None or ev["retry_id"] != row["retry_id"]:
            return False
        row["pending_reason"] = (ev.get("payload") or {}).get("reason") or ""
        self.tasks = rows
        return True

    def _complete_lines(self, name: str, retry_id: int) -> None:
        """An attempt ended: its log is complete, so fill in lines written before we listened."""
        try:
            got = self.workflow.log_lines(name, retry_id=retry_id)
            lines = [self.workflow.annotate(ln["text"]) for ln in got]
        except OsmoError:
            return
        rows = [dict(r) for r in self.tasks]
        for r in rows:
            if r["name"] == name and r["retry_id"] == retry_id:
                r["last_lines"] = lines[-LAST_LINES:]
        self.tasks = rows
        if name == self.selected:
            self.log_lines = lines[-PANE_LINES:]

    def _apply_log(self, ev: dict[str, Any]) -> None:
        text = self.workflow.annotate(ev["payload"]["text"])
        rows = [dict(r) for r in self.tasks]
        for r in rows:
            if r["name"] == ev["task"]:
                r["last_lines"] = [*r.get("last_lines", []), text][-LAST_LINES:]
        self.tasks = rows
        if ev["task"] == self.selected:
            self._pane_add(ev["retry_id"], ev["payload"]["n"], text)

    def _pane_add(self, retry_id: int, n: int, text: str) -> None:
        """A live line for the pane, in order and once: lines the pane's read already had are
        skipped, and lines written between that read and the subscription (live lines are not
        replayed) are read from the log first."""
        if retry_id != self._pane_at[0]:  # a new attempt's log starts at line 1
            self._pane_at = (retry_id, 1)
        expected = self._pane_at[1]
        if n < expected:
            return
        missed: list[str] = []
        if n > expected:
            first = max(expected, n - PANE_LINES)  # what the pane can show of the gap
            try:
                got = self.workflow.log_lines(  # `start` is 0-based, line numbers 1-based
                    self.selected, retry_id=retry_id, start=first - 1, limit=n - first
                )
                missed = [self.workflow.annotate(ln["text"]) for ln in got if ln["n"] < n]
            except OsmoError:
                pass  # the pane shows a gap rather than nothing
        self._pane_at = (retry_id, n + 1)
        self.log_lines = [*self.log_lines, *missed, text][-PANE_LINES:]

    def _on_error(self, e: BaseException) -> None:
        self.error = f"live updates stopped: {e}"

    # --- actions (buttons, or from Python) --------------------------------------------------

    def select(self, task: str) -> None:
        """Show `task`'s log in the pane (its stored lines, then live ones)."""
        with self._lock:
            self.selected = task
            got: list[dict[str, Any]] = []
            if task:
                try:  # the end of the log: one page from the start may not reach it
                    got = self.workflow.log_lines(task, tail=PANE_LINES)
                except OsmoError as e:
                    self.error = str(e)
            row = next((r for r in self.tasks if r["name"] == task), None)
            # (attempt, next line number) the pane has reached: live lines continue from there
            self._pane_at = (row["retry_id"] if row else 0, got[-1]["n"] + 1 if got else 1)
            self.log_lines = [self.workflow.annotate(ln["text"]) for ln in got]

    def cancel(self) -> None:
        try:
            self.workflow.cancel()
        except OsmoError as e:
            self.error = str(e)

    def restart(self) -> Workflow | None:
        """Run the workflow again and follow the new one."""
        try:
            new = self.workflow.restart()
        except OsmoError as e:
            self.error = str(e)
            return None
        self.error = ""
        self._follow(new)
        return new

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until the monitor has applied the workflow's last event (it stops listening at
        the end); False if it still listens after `timeout` s."""
        return self._watch is None or self._watch.done.wait(timeout)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        super().close()

    def _on_frontend_msg(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        action = content.get("action")
        if action == "cancel":
            self.cancel()
        elif action == "restart":
            self.restart()
        elif action == "select":
            self.select(str(content.get("task", "")))


def _wf_ended(status: str) -> bool:
    try:
        return WorkflowStatus(status).terminal
    except ValueError:
        return False


def _levels(upstream: dict[str, list[str]]) -> dict[str, int]:
    """Each task's column in the drawing: the longest chain of upstream tasks before it."""
    levels: dict[str, int] = {}

    def level(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name not in levels:
            ups = [u for u in upstream.get(name, []) if u in upstream and u not in seen]
            levels[name] = 1 + max((level(u, seen | {name}) for u in ups), default=-1)
        return levels[name]

    for name in upstream:
        level(name)
    return levels
