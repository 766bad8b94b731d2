"""WebSockets into running tasks: exec (terminals, commands) and port-forward.

Both are authorized like every workflow route (the owner or an admin), checked before the
upgrade so a refusal is an HTTP status with the JSON error body: 404 unknown task, 403 another
user's task or an undeclared port, 409 the task is not RUNNING, 502 its agent is unreachable.

Exec: `GET .../workflows/{id}/tasks/{task}/exec?cmd=sh&cmd=-c&cmd=...&pty=1&cols=80&rows=24`
(`cmd` repeats, one argv entry each; default `/bin/sh`). Binary frames carry bytes with a
one-byte channel prefix, as Kubernetes' exec does: 0 stdin (client → server), 1 stdout,
2 stderr (with a PTY all output is on 1). Text frames are JSON control messages:

    client → server   {"type": "resize", "cols": N, "rows": N}   {"type": "signal", "signal": "INT"}
                      {"type": "eof"}   (closes the command's stdin)
    server → client   {"type": "exit", "exit_code": N | null, "signal": NAME | null}
                      {"type": "error", "message": ...}  (the agent connection was lost)

Port-forward: `GET .../tasks/{task}/port-forward?port=N` bridges binary frames to and from
127.0.0.1:N on the task's host; `{"type": "eof"}` half-closes in either direction, and the
socket closes when the connection inside the task does. Only ports the task declares (`ports:`)
unless the caller is an admin.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError
from tornado import web, websocket

from osmo_core.auth import policy
from osmo_core.interactive import ExecSession
from osmo_core.interactive.terminals import SHELL, Terminal

from .handlers import _ID, _TASK, ApiError, OsmoHandler, _OsmoWebSocket, _route, api
from .schemas import TerminalRequest

if TYPE_CHECKING:
    from osmo_core.service import Service

STDIN, STDOUT, STDERR = 0, 1, 2
AUDIT_EVERY = 60.0  # seconds: proxy requests and file reads/writes are audited once per window
_audited: dict[tuple[str, ...], float] = {}


async def audit(
    svc: Service,
    user: str,
    wf_id: str,
    task: str,
    action: str,
    *,
    every: bool = True,
    **detail: Any,
) -> None:
    """A `task.access` event; with every=False at most one per AUDIT_EVERY seconds for the same
    user, task and action (a web page is dozens of requests, an rsync one per file)."""
    if not every:
        key = (user, wf_id, task, action, *map(str, detail.values()))
        now = time.monotonic()
        if now - _audited.get(key, -AUDIT_EVERY) < AUDIT_EVERY:
            return
        _audited[key] = now
        if len(_audited) > 10_000:  # forget old windows
            for k in [k for k, t in _audited.items() if now - t >= AUDIT_EVERY]:
                del _audited[k]
    await svc.record_access(user, wf_id, task, action, **detail)


class ExecQuery(BaseModel):
    cmd: list[str] = Field(default_factory=lambda: ["/bin/sh"], min_length=1)
    pty: bool = False
    cols: int = Field(80, ge=1, le=1000)
    rows: int = Field(24, ge=1, le=1000)


class PortQuery(BaseModel):
    port: int = Field(ge=1, le=65535)


class ExecWebSocket(_OsmoWebSocket):
    _sess: ExecSession | None = None
    _pump: asyncio.Task[None] | None = None

    async def handshake(self, wf_id: str, task: str) -> None:
        q = self.query_model(ExecQuery, lists=("cmd",))
        svc = await self.workflow_for(wf_id)
        svc.task(wf_id, task)  # 404 names the task
        pty = (q.cols, q.rows) if q.pty else None
        self._sess = await svc.interactive.exec(wf_id, task, q.cmd, pty=pty)
        self.log.info("osmo: %s exec in %s/%s: %s (pty=%s)", self.who.name, wf_id, task, q.cmd, pty)
        await audit(svc, self.who.name, wf_id, task, "exec", argv=q.cmd, pty=q.pty)

    def open(self, *args: Any, **kwargs: Any) -> None:
        self._pump = asyncio.create_task(self._run(), name="osmo-exec-ws")

    async def _run(self) -> None:
        sess = self._sess
        assert sess is not None
        try:
            await asyncio.gather(self._forward(sess, False), self._forward(sess, True))
            status = await sess.wait()
            if status["exit_code"] is None and status["signal"] is None:
                await self._send(
                    {"type": "error", "message": "the connection to the agent was lost"}
                )
            await self._send({"type": "exit", **status})
            self.close(1000, "exited")
        except websocket.WebSocketClosedError:
            sess.close()

    async def _forward(self, sess: ExecSession, stderr: bool) -> None:
        prefix = bytes([STDERR if stderr else STDOUT])
        while data := await sess.read(stderr):
            await self.write_message(prefix + data, binary=True)  # awaited: backpressure

    def on_message(self, message: str | bytes) -> None:
        sess = self._sess
        if sess is None:
            return
        if isinstance(message, bytes):
            if message[:1] == bytes([STDIN]):
                with contextlib.suppress(OSError):  # the command has ended: drop its input
                    sess.write(message[1:])
            return
        try:
            msg = json.loads(message)
            kind = msg.get("type")
            if kind == "resize":
                sess.resize(int(msg["cols"]), int(msg["rows"]))
            elif kind == "signal":
                sess.signal(str(msg["signal"]))
            elif kind == "eof":
                sess.write_eof()
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as e:
            self.log.info("osmo: exec: ignored control message %r: %s", message[:200], e)

    def on_close(self) -> None:
        if self._sess is not None:
            self._sess.close()  # the user left: the agent stops what they started
        if self._pump is not None:
            self._pump.cancel()


class PortForwardWebSocket(_OsmoWebSocket):
    _pump: asyncio.Task[None] | None = None
    _writer: Any = None

    async def handshake(self, wf_id: str, task: str) -> None:
        try:
            port = PortQuery.model_validate({"port": self.get_query_argument("port", "")}).port
        except ValidationError as e:
            raise ApiError(
                400, "port: a TCP port number (1-65535) is required", "bad request"
            ) from e
        svc = await self.workflow_for(wf_id)
        svc.task(wf_id, task)
        policy.check_port(self.who, port, svc.interactive.declared_ports(wf_id, task), task)
        self._reader, self._writer = await svc.interactive.open_port(wf_id, task, port)
        self.log.info("osmo: %s port-forward to %s/%s:%d", self.who.name, wf_id, task, port)
        await audit(svc, self.who.name, wf_id, task, "port-forward", port=port)

    def open(self, *args: Any, **kwargs: Any) -> None:
        self._pump = asyncio.create_task(self._run(), name="osmo-port-forward-ws")

    async def _run(self) -> None:
        try:
            while data := await self._reader.read(65536):
                await self.write_message(data, binary=True)
            await self._send({"type": "eof"})
            self.close(1000, "connection closed in the task")
        except websocket.WebSocketClosedError:
            pass
        except OSError as e:  # the agent connection went away
            self.close(1011, str(e)[:120])

    def on_message(self, message: str | bytes) -> None:
        with contextlib.suppress(OSError):  # closed inside the task: the pump ends the socket
            if isinstance(message, bytes):
                self._writer.write(message)
            elif json.loads(message).get("type") == "eof":
                self._writer.write_eof()

    def on_close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._pump is not None:
            self._pump.cancel()


# --- terminals: jupyter_server's terminals API under a task's own base URL --------------------


class TerminalsHandler(OsmoHandler):
    @api
    async def get(self, wf_id: str, task: str) -> None:
        svc = await self.workflow_for(wf_id)
        svc.task(wf_id, task)
        self.reply([t.model() for t in svc.interactive.terminals.list(wf_id, task)])

    @api
    async def post(self, wf_id: str, task: str) -> None:
        body = self.body_model(TerminalRequest) if self.request.body else TerminalRequest()
        svc = await self.workflow_for(wf_id)
        svc.task(wf_id, task)

        def start(size: tuple[int, int]) -> Any:
            return svc.interactive.exec(wf_id, task, SHELL, pty=size)

        term = await svc.interactive.terminals.create(
            wf_id, task, self.who.name, start, name=body.name
        )
        self.log.info("osmo: %s opened terminal %s in %s/%s", self.who.name, term.name, wf_id, task)
        await audit(svc, self.who.name, wf_id, task, "terminal", terminal=term.name)
        self.reply(term.model())


class TerminalHandler(OsmoHandler):
    async def _find(self, wf_id: str, task: str, name: str) -> tuple[Service, Terminal]:
        svc = await self.workflow_for(wf_id)
        return svc, svc.interactive.terminals.get(wf_id, task, name)

    @api
    async def get(self, wf_id: str, task: str, name: str) -> None:
        self.reply((await self._find(wf_id, task, name))[1].model())

    @api
    async def delete(self, wf_id: str, task: str, name: str) -> None:
        svc, term = await self._find(wf_id, task, name)
        await svc.interactive.terminals.terminate(term)
        self.set_status(204)
        self.finish()


class TerminalWebSocket(_OsmoWebSocket):
    """terminado's protocol: JSON arrays ["stdin", text], ["set_size", rows, cols, ...] in;
    ["setup", {}], ["stdout", text], ["disconnect", 1] out."""

    _term: Terminal | None = None

    async def handshake(self, wf_id: str, task: str, name: str) -> None:
        svc = await self.workflow_for(wf_id)
        self._terms = svc.interactive.terminals
        self._term = self._terms.get(wf_id, task, name)

    def open(self, *args: Any, **kwargs: Any) -> None:
        assert self._term is not None
        self.write_message(json.dumps(["setup", {}]))
        self._terms.attach(self._term, self)

    def output(self, text: str) -> None:
        with contextlib.suppress(websocket.WebSocketClosedError):
            self.write_message(json.dumps(["stdout", text]))

    def ended(self) -> None:
        with contextlib.suppress(websocket.WebSocketClosedError):
            self.write_message(json.dumps(["disconnect", 1]))
        self.close(1000, "the terminal ended")

    def on_message(self, message: str | bytes) -> None:
        term = self._term
        try:
            msg = json.loads(message)
            if term is None or not isinstance(msg, list) or not msg:
                return
            if msg[0] == "stdin" and isinstance(msg[1], str):
                term.write(msg[1])
            elif msg[0] == "set_size":
                term.resize(self, int(msg[1]), int(msg[2]))
        except (ValueError, IndexError, TypeError) as e:
            self.log.info("osmo: terminal: ignored message %r: %s", message[:200], e)

    def on_close(self) -> None:
        if self._term is not None:
            self._terms.detach(self._term, self)
            self._term = None


_TASK_BASE = f"workflows/{_ID}/tasks/{_TASK}"
_NAME = r"(?P<name>\w+)"

interactive_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (_route(f"workflows/{_ID}/tasks/{_TASK}/exec"), ExecWebSocket),
    (_route(f"workflows/{_ID}/tasks/{_TASK}/port-forward"), PortForwardWebSocket),
    (_route(f"{_TASK_BASE}/api/terminals"), TerminalsHandler),
    (_route(f"{_TASK_BASE}/api/terminals/{_NAME}"), TerminalHandler),
    (_route(f"{_TASK_BASE}/terminals/websocket/{_NAME}"), TerminalWebSocket),
]
