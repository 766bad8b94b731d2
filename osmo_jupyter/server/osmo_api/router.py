"""OSMO's router protocol for `osmo workflow exec` and `osmo workflow port-forward`, onto this
server's exec and forward channels (osmo_core.interactive, as server/exec.py uses them).

OSMO's CLI first asks for a session (`POST api/workflow/{id}/exec/task/{task}`, or
`.../portforward/{task}?task_ports=N`), gets `{router_address, key, cookie}` back, and opens a
WebSocket at `{router_address}/api/router/...` naming the key. Here the router is this server:
a key is a ticket, good once and for `TICKET_TTL` seconds, for the user who asked (the
WebSocket is authenticated again, with the same bearer token); the cookie is empty.

- exec: the client's first binary message is the terminal size `{"Rows", "Cols"}`; then
  binary messages are keystrokes, or `\\x00RESIZE:{"Rows", "Cols"}`; the server sends the
  terminal's output as binary messages and closes when the command ends. A group's exec runs
  the command in each running task of the group, without a terminal.
- port-forward: the key opens a control WebSocket; for each local connection the client sends
  `{"key": "PORTFORWARD-<id>", "cookie"}` on it and opens a data WebSocket with that key,
  whose binary messages are the connection's bytes. UDP is refused (TCP channels only).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shlex
import time
from dataclasses import dataclass
from typing import Any

from tornado import websocket

import osmo_core
from osmo_core.auth import policy
from osmo_core.errors import Conflict, Forbidden, InputError, NotFound, OsmoError, Problem
from osmo_core.interactive import ExecSession
from osmo_core.states import TaskStatus

from ..audit import audit
from ..base import OsmoWebSocket, allow_unauthenticated, from_osmo_error
from .base import CliAuth, OsmoCliHandler, osmo_route, public_route

TICKET_TTL = 60.0  # seconds between asking for a session and opening its WebSocket
MAX_TICKETS = 10_000  # outstanding keys (each expires after TICKET_TTL)
ARRIVAL_WAIT = 5.0  # seconds a data socket waits for its key to come over the control socket
RESIZE_PREFIX = b"\x00RESIZE:"
FRAME = 1 << 20  # port-forward: up to this much per WebSocket message
PORTFORWARD_KEY = "PORTFORWARD-"


@dataclass(frozen=True)
class Ticket:
    kind: str  # "exec", "portforward" (a control socket), "data" (one connection)
    wf_id: str
    task: str
    user: str
    argv: tuple[str, ...] = ()
    pty: bool = True
    port: int = 0
    expires: float = 0.0


class Tickets:
    """Keys handed out for the router's WebSockets: each good once, until it expires."""

    def __init__(self) -> None:
        self._open: dict[str, Ticket] = {}

    def add(self, ticket: Ticket, key: str | None = None) -> str:
        now = time.monotonic()
        self._open = {k: t for k, t in self._open.items() if t.expires > now}
        if len(self._open) >= MAX_TICKETS:
            raise Conflict("too many router sessions are being opened; try again shortly")
        key = key or secrets.token_urlsafe(24)
        if key in self._open:
            raise Conflict(f"router key {key!r} is already in use")
        self._open[key] = Ticket(**{**ticket.__dict__, "expires": now + TICKET_TTL})
        return key

    async def arrival(self, key: str, timeout: float = ARRIVAL_WAIT) -> None:
        """Wait (bounded) for a connection's key: OSMO's CLI sends it on the control socket
        and opens the data socket at once, so the two may arrive in either order."""
        deadline = time.monotonic() + timeout
        while key not in self._open and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def take(self, key: str, wf_id: str, user: str) -> Ticket:
        ticket = self._open.pop(key, None)
        if ticket is None or ticket.expires < time.monotonic() or ticket.wf_id != wf_id:
            raise NotFound("unknown or expired router key; ask for a new session")
        if ticket.user != user:
            raise Forbidden("this router key was given to another user")
        return ticket


def _tickets(handler: Any) -> Tickets:
    found: Tickets = handler.settings.setdefault("osmo_router_tickets", Tickets())
    return found


def _running(svc: Any, wf_id: str, task: str) -> None:
    status = svc.task(wf_id, task)["status"]  # NotFound names the task
    if status != TaskStatus.RUNNING.value:
        raise Conflict(f"task {task!r} of {wf_id} is {status}, not RUNNING")


class _SessionHandler(OsmoCliHandler):
    def session(self, key: str) -> dict[str, str]:
        return {"router_address": self.url("", scheme=self._ws()).rstrip("/"), "key": key,
                "cookie": ""}  # fmt: skip

    def _ws(self) -> str:
        return "wss" if self.request.protocol == "https" else "ws"


class ExecTaskHandler(_SessionHandler):
    """`POST api/workflow/{id}/exec/task/{task}?entry_command=CMD` → a router session."""

    @osmo_route
    async def post(self, wf_id: str, task: str) -> None:
        svc = await self.workflow_for(wf_id)
        _running(svc, wf_id, task)
        argv = _argv(self.get_query_argument("entry_command", "/bin/sh"))
        ticket = Ticket("exec", wf_id, task, self.who.name, argv=argv)
        self.reply(self.session(_tickets(self).add(ticket)))


class ExecGroupHandler(_SessionHandler):
    """`POST api/workflow/{id}/exec/group/{group}` → a session per running task of the group
    (the command runs without a terminal in each)."""

    @osmo_route
    async def post(self, wf_id: str, group: str) -> None:
        svc = await self.workflow_for(wf_id)
        argv = _argv(self.get_query_argument("entry_command", "/bin/sh"))
        rows = svc.store.workflow_detail(wf_id)[2]
        latest = {r["name"]: r for r in rows if r["group_name"] == group}
        running = [n for n, r in latest.items() if r["status"] == TaskStatus.RUNNING.value]
        if not latest:
            raise NotFound(f"workflow {wf_id!r} has no group {group!r}")
        if not running:
            raise Conflict(f"no task of group {group!r} is RUNNING")
        tickets = _tickets(self)
        self.reply(
            {
                name: self.session(
                    tickets.add(Ticket("exec", wf_id, name, self.who.name, argv=argv, pty=False))
                )
                for name in running
            }
        )


class PortForwardHandler(_SessionHandler):
    """`POST api/workflow/{id}/portforward/{task}?task_ports=N[&task_ports=M]` → a router
    session per port (the ports the task declares; any for an admin)."""

    @osmo_route
    async def post(self, wf_id: str, task: str) -> None:
        svc = await self.workflow_for(wf_id)
        if self.get_query_argument("use_udp", "False").lower() == "true":
            raise InputError(
                [Problem("UDP is not forwarded by this server; TCP only", field="use_udp")]
            )
        _running(svc, wf_id, task)
        ports = []
        for text in self.get_query_arguments("task_ports"):
            if not text.isdigit() or not 1 <= int(text) <= 65535:
                raise InputError([Problem(f"{text!r} is not a TCP port", field="task_ports")])
            ports.append(int(text))
        if not ports:
            raise InputError([Problem("name at least one port", field="task_ports")])
        declared = svc.interactive.declared_ports(wf_id, task)
        for port in ports:
            policy.check_port(self.who, port, declared, task)
        tickets = _tickets(self)
        self.reply(
            [
                self.session(
                    tickets.add(Ticket("portforward", wf_id, task, self.who.name, port=port))
                )
                for port in ports
            ]
        )


def _argv(entry_command: str) -> tuple[str, ...]:
    try:
        argv = tuple(shlex.split(entry_command))
    except ValueError as e:
        raise InputError(
            [Problem(f"cannot split the command: {e}", field="entry_command")]
        ) from None
    if not argv:
        raise InputError([Problem("the command is empty", field="entry_command")])
    return argv


class RouterVersionHandler(OsmoCliHandler):
    """`GET api/router/version`: where OSMO's CLI picks up the router's cookie (none here)."""

    @public_route
    async def get(self) -> None:
        self.reply({"version": osmo_core.__version__})


class _RouterWebSocket(CliAuth, OsmoWebSocket):
    """A router WebSocket: authenticated as OSMO's REST routes are, then its ticket taken."""

    @allow_unauthenticated  # checked here, with osmo's own bearer tokens
    async def get(self, *args: Any, **kwargs: Any) -> None:
        try:
            await self.authenticate()
            await self.handshake(*args, **kwargs)
        except OsmoError as e:
            raise from_osmo_error(e) from e
        await super(OsmoWebSocket, self).get(*args, **kwargs)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        OsmoCliHandler.write_error(self, status_code, **kwargs)  # type: ignore[arg-type]


class ExecRouterWebSocket(_RouterWebSocket):
    """`WS api/router/exec/{id}/client/{key}`."""

    _sess: ExecSession | None = None
    _pump: asyncio.Task[None] | None = None
    _sized = False

    async def handshake(self, wf_id: str, key: str) -> None:
        ticket = _tickets(self).take(key, wf_id, self.who.name)
        if ticket.kind != "exec":
            raise NotFound("not an exec key")
        svc = await self.workflow_for(wf_id)
        pty = (80, 24) if ticket.pty else None  # resized by the client's first message
        self._sess = await svc.interactive.exec(wf_id, ticket.task, list(ticket.argv), pty=pty)
        self._sized = not ticket.pty
        self.log.info("osmo: %s exec (OSMO CLI) in %s/%s", self.who.name, wf_id, ticket.task)
        await audit(svc, self.who.name, wf_id, ticket.task, "exec", argv=list(ticket.argv),
                    pty=ticket.pty)  # fmt: skip

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.set_nodelay(True)
        self._pump = asyncio.create_task(self._run(), name="osmo-router-exec")

    async def _run(self) -> None:
        sess = self._sess
        assert sess is not None
        try:
            await asyncio.gather(self._forward(sess, False), self._forward(sess, True))
            await sess.wait()
            self.close(1000, "exited")
        except websocket.WebSocketClosedError:
            sess.close()

    async def _forward(self, sess: ExecSession, stderr: bool) -> None:
        while data := await sess.read(stderr):
            await self.write_message(data, binary=True)

    def on_message(self, message: str | bytes) -> None:
        sess = self._sess
        if sess is None:
            return
        data = message.encode() if isinstance(message, str) else message
        if not self._sized or data.startswith(RESIZE_PREFIX):
            self._sized = True
            self._resize(sess, data.removeprefix(RESIZE_PREFIX))
        else:
            sess.write(data)  # dropped once the command has ended

    def _resize(self, sess: ExecSession, data: bytes) -> None:
        try:
            size = json.loads(data)
            sess.resize(int(size["Cols"]), int(size["Rows"]))
        except (ValueError, KeyError, TypeError) as e:
            self.log.info("osmo: exec: ignored terminal size %r: %s", data[:200], e)

    def on_close(self) -> None:
        if self._sess is not None:
            self._sess.close()
        if self._pump is not None:
            self._pump.cancel()


class PortForwardRouterWebSocket(_RouterWebSocket):
    """`WS api/router/portforward/{id}/client/{key}`: the control socket of a forwarded port
    (its key from the POST), or one connection's bytes (a key sent on the control socket)."""

    _ticket: Ticket
    _pump: asyncio.Task[None] | None = None
    _writer: Any = None

    async def handshake(self, wf_id: str, key: str) -> None:
        tickets = _tickets(self)
        if key.startswith(PORTFORWARD_KEY):
            await tickets.arrival(key)
        self._ticket = ticket = tickets.take(key, wf_id, self.who.name)
        svc = await self.workflow_for(wf_id)
        if ticket.kind == "data":
            self._reader, self._writer = await svc.interactive.open_port(
                wf_id, ticket.task, ticket.port
            )
            await audit(svc, self.who.name, wf_id, ticket.task, "port-forward",
                        window=str(ticket.port), port=ticket.port)  # fmt: skip
        elif ticket.kind != "portforward":
            raise NotFound("not a port-forward key")

    def open(self, *args: Any, **kwargs: Any) -> None:
        if self._ticket.kind == "data":
            self._pump = asyncio.create_task(self._run(), name="osmo-router-forward")

    async def _run(self) -> None:
        try:
            while data := await self._reader.read(FRAME):
                await self.write_message(data, binary=True)
            self.close(1000, "connection closed in the task")
        except websocket.WebSocketClosedError:
            pass
        except OSError as e:  # the agent connection went away
            self.close(1011, str(e)[:120])

    def on_message(self, message: str | bytes) -> None:
        if self._ticket.kind == "data":
            with contextlib.suppress(OSError):  # closed inside the task: the pump ends it
                self._writer.write(message if isinstance(message, bytes) else message.encode())
            return
        try:  # the control socket: a new local connection announces its key
            key = json.loads(message)["key"]
            if not isinstance(key, str) or not key.startswith(PORTFORWARD_KEY):
                raise ValueError(f"a connection key starts with {PORTFORWARD_KEY}")
            t = self._ticket
            data = Ticket("data", t.wf_id, t.task, t.user, port=t.port)
            _tickets(self).add(data, key=key)
        except (ValueError, KeyError, TypeError, OsmoError) as e:
            self.log.info("osmo: port-forward: refused %r: %s", message[:200], e)
            self.close(1008, str(e)[:120])

    def on_close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._pump is not None:
            self._pump.cancel()
