r"""Exec and port-forward WebSockets into a running task.

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
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from tornado import websocket

from osmo_core.auth import policy
from osmo_core.interactive import ExecSession

from .audit import audit
from .base import ApiError, OsmoWebSocket

STDIN, STDOUT, STDERR = 0, 1, 2
FRAME = 1 << 20  # port-forward: up to this much per WebSocket message (fewer, bigger frames)


class ExecQuery(BaseModel):
    cmd: list[str] = Field(default_factory=lambda: ["/bin/sh"], min_length=1)
    pty: bool = False
    cols: int = Field(80, ge=1, le=1000)
    rows: int = Field(24, ge=1, le=1000)


class PortQuery(BaseModel):
    port: int = Field(ge=1, le=65535)


class ExecWebSocket(OsmoWebSocket):
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
        self.set_nodelay(True)  # keystrokes and their echo are small messages
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
                sess.write(message[1:])  # dropped once the command has ended
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


class PortForwardWebSocket(OsmoWebSocket):
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
            while data := await self._reader.read(FRAME):
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
