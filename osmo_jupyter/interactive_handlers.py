r"""Into running tasks: exec, port-forward, terminals, files, and an HTTP proxy to task ports.

All are authorized like every workflow route (the owner or an admin), checked before any
upgrade so a refusal is an HTTP status with the JSON error body: 404 unknown task, 403 another
user's task or an undeclared port, 409 the task is not RUNNING, 502 its agent is unreachable.
Each is audited: a persisted `task.access` event {user, action, ...} in the workflow's event
stream (exec, terminal, port-forward: one per session; proxy and file reads/writes: at most one
per minute per user, task and port or kind; a files listing: one each).

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

Terminals (for JupyterLab's Terminal widget): jupyter_server's terminals API and terminado's
WebSocket, with the task's URL as the base URL, so @jupyterlab/services' TerminalManager and
TerminalConnection work unchanged when given ServerConnection settings whose `baseUrl` and
`wsUrl` end in `osmo/api/v1/workflows/{id}/tasks/{task}/`:

    GET    {task}/api/terminals                 [{"name", "last_activity", "workflow_id",
                                                  "task", "user"}]
    POST   {task}/api/terminals   {"name"?: \w+} → the model; the task's shell (bash -i, else
                                                  sh -i) starts on a PTY (409 name taken)
    GET    {task}/api/terminals/{name}          the model (404 when gone)
    DELETE {task}/api/terminals/{name}          204; the shell gets SIGHUP
    WS     {task}/terminals/websocket/{name}    ["setup", {}] first; then ["stdin", text] and
           ["set_size", rows, cols, ...] in, ["stdout", text] out, ["disconnect", 1] at the end

In TypeScript (the side panel):

    const base = URLExt.join(app.serviceManager.serverSettings.baseUrl,
                             'osmo/api/v1/workflows', wf, 'tasks', task) + '/';
    const settings = ServerConnection.makeSettings({
      ...app.serviceManager.serverSettings, baseUrl: base, wsUrl: base.replace(/^http/, 'ws')
    });
    const manager = new TerminalManager({ serverSettings: settings });
    const session = await manager.startNew();            // or manager.connectTo({ model })
    const widget = new MainAreaWidget({ content: new Terminal(session) });

A terminal outlives its viewers (a reloaded tab re-attaches and is sent recent output) until
its shell exits, it is deleted, the task's agent connection is lost, or 10 minutes pass with no
viewer (osmo_core/interactive/terminals.py).

Files (`osmo workflow rsync`; paths relative to the task's workdir, SFTP on the agent):

    GET  {task}/files?path=P                    P and everything under it (FilesListing)
    GET  {task}/files/content?path=P            the bytes; X-Osmo-Mtime, X-Osmo-Mode
    PUT  {task}/files/content?path=P&mtime=T&mode=M   the body (streamed) becomes the file
    POST {task}/files/dirs  {"paths": [...]}    folders, with parents

HTTP proxy (a task's web app in a browser tab): any method on
`{task}/proxy/{port}/{path}` goes to http://127.0.0.1:{port}/{path} inside the task (`Upgrade`
requests, e.g. WebSockets, are tunnelled); declared ports only, unless the caller is an admin.
Programs (a credential in `Authorization`) are proxied there; a browser is sent to the app's
link `/osmo/api/v1/apps/{ticket}/{path}`, on a separate origin or in a sandbox (app_proxy.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

import httpcore
from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join
from pydantic import BaseModel, Field, ValidationError
from tornado import web, websocket
from tornado.iostream import StreamClosedError

from osmo_core.auth import policy
from osmo_core.errors import Conflict, OsmoError
from osmo_core.interactive import ExecSession, files
from osmo_core.interactive.terminals import SHELL, Terminal

from .app_proxy import (
    APP_COOKIE,
    APP_ROUTE,
    APPS_PREFIX,
    DROPPED_REPLY,
    HOST_KEY,
    LINK_TO_COOKIE,
    REFERRER_POLICY,
    SANDBOX,
    app_host_pattern,
    app_origin,
    host_key,
    make_ticket,
    read_ticket,
    unsafe_target,
)
from .handlers import (
    _ID,
    _TASK,
    AUTH_RESOURCE,
    ApiError,
    OsmoHandler,
    _from_osmo,
    _OsmoMixin,
    _OsmoWebSocket,
    _route,
    api,
)
from .schemas import FilesQuery, MkdirRequest, PutFileQuery, TerminalRequest

if TYPE_CHECKING:
    from osmo_core.service import Service

STDIN, STDOUT, STDERR = 0, 1, 2
FRAME = 1 << 20  # port-forward: up to this much per WebSocket message (fewer, bigger frames)
AUDIT_EVERY = 60.0  # seconds: proxy requests and file reads/writes are audited once per window
_audited: dict[tuple[str, ...], float] = {}
_closing: set[asyncio.Future[None]] = set()  # clean-ups of broken uploads still running


async def audit(
    svc: Service,
    user: str,
    wf_id: str,
    task: str,
    action: str,
    *,
    window: str | None = None,
    **detail: Any,
) -> None:
    """A `task.access` event. With a `window` (e.g. the port), at most one per AUDIT_EVERY
    seconds for the same user, task, action and window: a web page is dozens of requests, an
    rsync one request per file."""
    if window is not None:
        key = (user, wf_id, task, action, window)
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
        self.set_nodelay(True)  # a keystroke's echo is one small message: no Nagle delay
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


# --- HTTP proxy to a declared port of a task, for the browser ---------------------------------

# In the sandbox, cookies would be the server origin's, and CORS is answered by the proxy.
_SANDBOX_OURS = ("set-cookie", "access-control-allow-")
_CREDENTIALS = {"authorization", "cookie", "x-xsrftoken", "x-csrftoken", "forwarded", "x-real-ip"}
_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "host",
}  # fmt: skip


class _TaskStream(httpcore.AsyncNetworkStream):
    """An SSH direct-tcpip channel as httpcore's network stream."""

    def __init__(self, reader: Any, writer: Any):
        self._r, self._w = reader, writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._r.read(max_bytes)  # type: ignore[no-any-return]

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._w.write(buffer)
        await self._w.drain()

    async def aclose(self) -> None:
        self._w.close()


class _TaskNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's connections open channels to the task's port instead of TCP sockets."""

    def __init__(self, open_port: Any):
        self._open = open_port

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, **kwargs: Any
    ) -> httpcore.AsyncNetworkStream:
        return _TaskStream(*await self._open())

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ProxyHandler(_OsmoMixin, JupyterHandler):
    """`{any method} .../tasks/{task}/proxy/{port}/{path}` → http://127.0.0.1:{port}/{path} in
    the task. Authorized like port-forward (owner or admin; declared ports, any for an admin).

    Only a program (a credential in `Authorization`, which no page can make a browser send) is
    proxied here. A browser, authenticated by Jupyter's cookie, is redirected to an app link
    (`AppHandler`, osmo_jupyter/app_proxy.py): a page written by the task's owner must never run
    on this origin with the viewer's cookies. The caller's Jupyter credentials (Authorization,
    `token=`, Jupyter's cookies and XSRF header) are not passed on; XSRF is the proxied app's
    business, as in jupyter-server-proxy. An `Upgrade` request (a WebSocket) becomes a byte
    tunnel after the app's answer. A control character in the path or query is a 400."""

    auth_resource = AUTH_RESOURCE
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
    _ROUTE = re.compile(r"(.*?/tasks/[^/]+/proxy/[0-9]+)(/.*)?$")
    _prefix = ""  # the URL path where the app's "/" is (Location, X-Forwarded-Prefix)
    _link = False  # served to a browser through an app link
    _sandbox = False  # ... on the server's own origin: an opaque origin, no cookies
    _root = False  # ... on its own origin, at its root

    def check_xsrf_cookie(self) -> None:
        pass

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        OsmoHandler.write_error(self, status_code, **kwargs)  # type: ignore[arg-type]

    def _split(self) -> tuple[str, str | None, str]:
        """(prefix, raw rest of the path or None, target for the app): from the raw path, so
        an escaped `/` or `?` reaches the app as sent. 400 on control characters."""
        match = self._ROUTE.match(self.request.path)
        assert match is not None  # the route matched
        prefix, rest = match.group(1), match.group(2)
        why = unsafe_target(rest or "", self.request.query)
        if why is not None:
            raise ApiError(400, f"{why}: it would reach the task's app as a header", "bad request")
        query = self.request.query  # on an app's own origin a `token=` is the app's
        if not self._root:  # elsewhere it is Jupyter's
            pairs = urllib.parse.parse_qsl(query, True)
            query = urllib.parse.urlencode([(k, v) for k, v in pairs if k != "token"])
        return prefix, rest, (rest or "/") + (f"?{query}" if query else "")

    async def _allowed(self, wf_id: str, task: str, port: int) -> Service:
        if not 0 < port < 65536:
            raise ApiError(400, f"port {port}: ports are 1-65535", "bad request")
        svc = await self.workflow_for(wf_id)
        svc.task(wf_id, task)
        policy.check_port(self.who, port, svc.interactive.declared_ports(wf_id, task), task)
        svc.interactive.placement(wf_id, task)  # 409 now; a Conflict later is the port's
        return svc

    async def _proxy(self, wf_id: str, task: str, port_text: str, path: str | None) -> None:
        port = int(port_text)
        prefix, rest, target = self._split()
        svc = await self._allowed(wf_id, task, port)
        if not (self.token_authenticated and "Authorization" in self.request.headers):
            self._to_app_link(svc, wf_id, task, port, target)
            return
        if rest is None:  # the app's root is "/": relative links need the slash
            query = f"?{self.request.query}" if self.request.query else ""
            self.redirect(f"{self.request.path}/{query}")
            return
        self._prefix = prefix
        await self._forward(svc, wf_id, task, port, target)

    def _to_app_link(self, svc: Service, wf_id: str, task: str, port: int, target: str) -> None:
        """A browser: to the app link, for a plain navigation from here or typed in only (a
        page elsewhere must not open another task's app with the viewer's rights)."""
        method = self.request.method
        if method not in ("GET", "HEAD") or self.request.headers.get("Upgrade"):
            raise ApiError(
                403,
                f"{method} {self.request.path}: a browser reaches a task's web app through "
                "its app link; open this URL (GET) to be sent there",
                "forbidden",
            )
        if self.request.headers.get("Sec-Fetch-Site", "none") not in ("none", "same-origin"):
            raise ApiError(
                403,
                "a task's web app opens from JupyterLab or a link typed in, not from another "
                "site's page",
                "forbidden",
            )
        cfg = svc.config
        # An app's own origin exchanges its link for a cookie at once: the link need not last.
        ttl = min(cfg.app_link_ttl, LINK_TO_COOKIE) if HOST_KEY in cfg.app_proxy_url else None
        ticket = make_ticket(self._secret(), self.who, wf_id, task, port, ttl or cfg.app_link_ttl)
        origin = app_origin(cfg.app_proxy_url, host_key(wf_id, task, port))
        self.set_header("Referrer-Policy", "no-referrer")
        self.redirect(origin + url_path_join(self.base_url, APPS_PREFIX, ticket) + target)

    def _secret(self) -> bytes:
        secret = self.settings["cookie_secret"]
        return secret if isinstance(secret, bytes) else str(secret).encode()

    async def _forward(self, svc: Service, wf_id: str, task: str, port: int, target: str) -> None:
        await audit(svc, self.who.name, wf_id, task, "proxy", window=str(port), port=port)

        async def open_port() -> Any:
            try:
                return await svc.interactive.open_port(wf_id, task, port)
            except Conflict as e:  # refused inside the task: nothing listens there
                raise ApiError(502, str(e), "bad gateway") from e

        if self.request.headers.get("Upgrade"):
            await self._tunnel(open_port, port, target)
            return
        headers = self._forwarded_headers(port)
        async with httpcore.AsyncConnectionPool(network_backend=_TaskNetwork(open_port)) as pool:
            try:
                async with pool.stream(
                    self.request.method or "GET",
                    f"http://127.0.0.1:{port}{target}",
                    headers=headers,
                    content=self.request.body or None,
                ) as resp:
                    self._start_reply(resp, port)
                    async for chunk in resp.aiter_stream():
                        self.write(chunk)
                        await self.flush()
            except httpcore.ProtocolError as e:
                raise ApiError(502, f"port {port} of {wf_id}/{task}: {e}", "bad gateway") from e
        self.finish()

    def _forwarded_headers(self, port: int) -> list[tuple[str, str]]:
        out = [
            (k, v)
            for k, v in self.request.headers.get_all()
            if k.lower() not in _HOP and k.lower() not in _CREDENTIALS
            and not k.lower().startswith("x-forwarded-")
        ]  # fmt: skip
        cookies = [
            f"{name}={morsel.value}"
            for name, morsel in self.request.cookies.items()
            if name != APP_COOKIE
            and (self._root or (name != "_xsrf" and not name.startswith("username-")))
        ]  # on an app's own origin, `_xsrf` and `username-*` are the app's (a Jupyter)
        if cookies and not self._sandbox:  # on this origin, every cookie is the viewer's
            out.append(("Cookie", "; ".join(cookies)))
        out += [
            ("Host", f"127.0.0.1:{port}"),
            ("X-Forwarded-Host", self.request.host),
            ("X-Forwarded-Proto", self.request.protocol),
        ]
        if self._prefix:
            out.append(("X-Forwarded-Prefix", self._prefix))
        return out

    def _start_reply(self, resp: httpcore.Response, port: int) -> None:
        reason = resp.extensions.get("reason_phrase", b"").decode("latin-1") or None
        self.set_status(resp.status, reason=reason or "Unknown")
        self.clear_header("Content-Type")
        dropped = _HOP | (DROPPED_REPLY if self._link else set())
        for raw_k, raw_v in resp.headers:
            k, v = raw_k.decode("latin-1"), raw_v.decode("latin-1")
            if k.lower() in dropped or (self._sandbox and k.lower().startswith(_SANDBOX_OURS)):
                continue
            if k.lower() == "location":
                for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
                    if v.startswith(origin):
                        v = self._prefix + v[len(origin) :]
            self.add_header(k, v)

    async def _tunnel(self, open_port: Any, port: int, target: str) -> None:
        """The upgrade request to the app, then bytes both ways until either side closes."""
        reader, writer = await open_port()
        head = f"{self.request.method} {target} HTTP/1.1\r\n"
        keep = [(k, v) for k, v in self._forwarded_headers(port)]
        keep += [("Connection", "Upgrade"), ("Upgrade", self.request.headers["Upgrade"])]
        head += "".join(f"{k}: {v}\r\n" for k, v in keep) + "\r\n"
        writer.write(head.encode("latin-1"))
        self._auto_finish = False
        stream = self.request.connection.detach()

        async def up() -> None:
            with contextlib.suppress(StreamClosedError, OSError):
                while data := await stream.read_bytes(65536, partial=True):
                    writer.write(data)
                    await writer.drain()
            writer.write_eof()

        pump = asyncio.ensure_future(up())
        try:
            while data := await reader.read(65536):
                await stream.write(data)
        except (StreamClosedError, OSError):
            pass
        finally:
            pump.cancel()
            writer.close()
            stream.close()

    @api
    async def get(self, wf_id: str, task: str, port: str, path: str | None) -> None:
        await self._proxy(wf_id, task, port, path)

    head = post = put = delete = patch = get

    @api
    async def options(self, wf_id: str, task: str, port: str, path: str | None) -> None:
        await self._proxy(wf_id, task, port, path)


class AppHandler(ProxyHandler):
    """`{any method} /osmo/api/v1/apps/{ticket}/{path}`: a task's web app for a browser (see
    osmo_jupyter/app_proxy.py). The signed ticket in the link is the only credential: whoever
    Jupyter's cookies say the caller is does not matter here, and they are not passed on. The
    ticket's user must still be allowed at the task port, checked like the proxy route. With an
    app origin configured this answers on that host name only; without, on the server's own
    origin inside a CSP sandbox."""

    _ROUTE = re.compile(rf"(.*?/{APPS_PREFIX}/[^/]+)(/.*)?$")

    async def _app(self, ticket_text: str) -> None:
        prefix, rest, target = self._split()
        svc = await self.service()
        ticket = read_ticket(self._secret(), ticket_text)
        if ticket is None:
            raise ApiError(
                403,
                "this app link is not valid or has expired: open the app again from "
                "JupyterLab or its .../proxy/{port}/ URL",
                "forbidden",
            )
        template = svc.config.app_proxy_url
        key = host_key(ticket.wf_id, ticket.task, ticket.port)
        if (
            template
            and self.request.host_name != urllib.parse.urlsplit(app_origin(template, key)).hostname
        ):
            raise ApiError(404, "this app link is served on the app origin only", "not found")
        self._link, self._sandbox = True, not template
        self._osmo_who = ticket.principal
        await self._allowed(ticket.wf_id, ticket.task, ticket.port)
        if HOST_KEY in template:  # the app's own origin: a cookie for it, the app at its root
            if not _spend(ticket_text, ticket.expires):
                raise ApiError(
                    403, "this app link was used already: open the app again", "forbidden"
                )
            ttl = svc.config.app_link_ttl
            lasting = make_ticket(self._secret(), ticket.principal, *ticket.where, ttl)
            self.set_cookie(
                APP_COOKIE, lasting, path="/", httponly=True, samesite="Lax",
                secure=self.request.protocol == "https", expires=time.time() + ttl,
            )  # fmt: skip
            self.set_header("Referrer-Policy", "no-referrer")
            self.redirect(target)
            return
        if rest is None:
            query = f"?{self.request.query}" if self.request.query else ""
            self.redirect(f"{self.request.path}/{query}")
            return
        self._prefix = prefix
        self.set_header("Referrer-Policy", REFERRER_POLICY)  # the link must not leak
        if self._sandbox:
            self.set_header("Content-Security-Policy", SANDBOX)
            if self.request.headers.get("Origin") == "null":  # the sandboxed page itself
                self.set_header("Access-Control-Allow-Origin", "null")
                if self._preflight():
                    return
        await self._forward(svc, ticket.wf_id, ticket.task, ticket.port, target)

    def _preflight(self) -> bool:
        """The sandboxed page's CORS preflight, answered here: the link is the credential, so
        its own requests may use any method and header; no cookie is ever allowed."""
        want = self.request.headers.get("Access-Control-Request-Method")
        if self.request.method != "OPTIONS" or not want:
            return False
        self.set_header("Access-Control-Allow-Methods", want)
        if headers := self.request.headers.get("Access-Control-Request-Headers"):
            self.set_header("Access-Control-Allow-Headers", headers)
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()
        return True

    @allow_unauthenticated
    async def get(self, ticket: str, path: str | None) -> None:  # type: ignore[override]
        try:
            await self._app(ticket)
        except OsmoError as e:
            raise _from_osmo(e) from e

    head = post = put = delete = patch = options = get  # type: ignore[assignment]


class AppRootHandler(AppHandler):
    """`{any method} /{path}` on an app's own origin (`{app}` in app_proxy_url): the app at
    the origin's root, as it runs inside the task (absolute links, its own cookies and
    storage work), for the holder of the origin's cookie, which its app link was exchanged
    for. The cookie is the only thing not passed on."""

    _ROUTE = re.compile(r"()(/.*)$")
    _link = _root = True

    async def _serve(self) -> None:
        _, _, target = self._split()
        svc = await self.service()
        ticket = read_ticket(self._secret(), self.get_cookie(APP_COOKIE) or "")
        template = svc.config.app_proxy_url
        if (
            ticket is None
            or self.request.host_name
            != urllib.parse.urlsplit(app_origin(template, host_key(*ticket.where))).hostname
        ):
            raise ApiError(
                403,
                "this host serves one task's web app: open it from JupyterLab or its "
                ".../proxy/{port}/ URL (the app link sets a cookie for it)",
                "forbidden",
            )
        self._osmo_who = ticket.principal
        await self._allowed(*ticket.where)
        self.set_header("Referrer-Policy", REFERRER_POLICY)
        await self._forward(svc, *ticket.where, target)

    @allow_unauthenticated
    async def get(self, *args: Any) -> None:  # type: ignore[override]
        try:
            await self._serve()
        except OsmoError as e:
            raise _from_osmo(e) from e

    head = post = put = delete = patch = options = get  # type: ignore[assignment]


_spent: dict[str, float] = {}  # app links exchanged for a cookie, until they expire


def _spend(link: str, expires: float) -> bool:
    """Whether `link` was not exchanged before (and is now): one cookie per link."""
    now = time.time()
    if len(_spent) > 10_000:
        for k in [k for k, t in _spent.items() if t < now]:
            del _spent[k]
    if link in _spent:
        return False
    _spent[link] = expires
    return True


class AppHostOnly(web.RequestHandler):
    """Anything but an app link on the app origin: 404 (Jupyter's own routes must not answer
    there, or a page on it would be same-origin with them)."""

    def check_xsrf_cookie(self) -> None:  # a 404 for every method, not tornado's XSRF 403
        pass

    def prepare(self) -> None:
        self.set_status(404)
        self.set_header("Content-Type", "application/json")
        message = "this host name serves tasks' web apps only (app links)"
        self.finish(json.dumps({"message": message, "reason": "not found", "details": []}))


def install_app_host(web_app: web.Application, base_url: str, template: str) -> None:
    """With an app origin, its host name routes to app links only, ahead of every other rule
    (Jupyter's own and other extensions' routes match any host)."""
    pattern = app_host_pattern(template)
    if pattern is None:
        return
    route = url_path_join(base_url, APP_ROUTE)
    rest = AppRootHandler if HOST_KEY in template else AppHostOnly
    web_app.add_handlers(pattern, [(route, AppHandler), (r".*", rest)])
    rules = web_app.default_router.rules
    (ours,) = [r for r in rules if getattr(r.matcher, "host_pattern", None) == re.compile(pattern)]
    rules.remove(ours)
    rules.insert(0, ours)


# --- files of a task's workdir (`osmo workflow rsync`), over the agent's SFTP -----------------


async def task_sftp(
    handler: OsmoHandler, wf_id: str, task: str, *, window: str | None = None, **what: Any
) -> Any:
    """An SFTP session in the task's workdir for its owner (or an admin), audited as `files`."""
    svc = await handler.workflow_for(wf_id)
    svc.task(wf_id, task)  # 404 for a task the workflow does not have
    await audit(svc, handler.who.name, wf_id, task, "files", window=window, **what)
    return await svc.interactive.sftp(wf_id, task)


class FilesHandler(OsmoHandler):
    @api
    async def get(self, wf_id: str, task: str) -> None:
        q = self.query_model(FilesQuery)
        async with await task_sftp(self, wf_id, task, op="list", path=q.path) as sftp:
            self.reply(await files.listing(sftp, q.path))


class DirsHandler(OsmoHandler):
    @api
    async def post(self, wf_id: str, task: str) -> None:
        body = self.body_model(MkdirRequest)
        async with await task_sftp(self, wf_id, task, window="write", op="write") as sftp:
            await files.makedirs(sftp, body.paths)
        self.reply({"paths": body.paths}, 201)


@web.stream_request_body
class FileContentHandler(OsmoHandler):
    """GET: the file's bytes (`X-Osmo-Mtime`, `X-Osmo-Mode`); PUT: the body becomes the file
    (streamed: the SFTP file is opened before the body arrives, each chunk written as it
    comes), with `mtime` and `mode` set, parents made."""

    _upload: files.Upload | None = None
    _sftp: Any = None

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method != "PUT" or self._finished:
            return
        try:
            self.require_user()
            allowed = self.authorizer.is_authorized(self, self.current_user, "write", AUTH_RESOURCE)
            if asyncio.iscoroutine(allowed):
                allowed = await allowed
            if not allowed:
                raise ApiError(403, "not authorized to write osmo", "forbidden")
            wf_id, task = self.path_kwargs["wf_id"], self.path_kwargs["task"]
            q = self.query_model(PutFileQuery)
            self._sftp = await task_sftp(self, wf_id, task, window="write", op="write")
            self._upload = await files.Upload(self._sftp, q.path, q.mtime, q.mode).open()
        except OsmoError as e:
            raise _from_osmo(e) from e

    async def data_received(self, chunk: bytes) -> None:
        if self._upload is not None:
            await self._upload.write(chunk)

    @api
    async def put(self, wf_id: str, task: str) -> None:
        assert self._upload is not None
        await self._upload.done()
        up, self._upload = self._upload, None
        self.reply({"path": up.path, "size": up.size}, 201)

    @api
    async def get(self, wf_id: str, task: str) -> None:
        q = self.query_model(FilesQuery)
        async with await task_sftp(self, wf_id, task, window="read", op="read") as sftp:
            info, chunks = await files.read(sftp, q.path)
            self.set_header("Content-Length", str(info["size"]))
            self.set_header("X-Osmo-Mtime", str(info["mtime"]))
            self.set_header("X-Osmo-Mode", oct(info["mode"]))
            self.set_header("Content-Type", "application/octet-stream")
            async for data in chunks:
                self.write(data)
                await self.flush()
        self.finish(set_content_type="application/octet-stream")

    def on_finish(self) -> None:
        self._cleanup()

    def on_connection_close(self) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        up, sftp = self._upload, self._sftp
        self._upload = self._sftp = None

        async def close() -> None:
            if up is not None:
                await up.abort()  # the body never finished: no half file is left
            if sftp is not None:
                sftp.exit()

        if up is not None or sftp is not None:
            task = asyncio.ensure_future(close())
            _closing.add(task)
            task.add_done_callback(_closing.discard)


_TASK_BASE = f"workflows/{_ID}/tasks/{_TASK}"
_NAME = r"(?P<name>[^/]+)"  # any: an unknown name is a JSON 404, not an HTML one

interactive_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (_route(f"workflows/{_ID}/tasks/{_TASK}/exec"), ExecWebSocket),
    (_route(f"workflows/{_ID}/tasks/{_TASK}/port-forward"), PortForwardWebSocket),
    (_route(f"{_TASK_BASE}/api/terminals"), TerminalsHandler),
    (_route(f"{_TASK_BASE}/api/terminals/{_NAME}"), TerminalHandler),
    (_route(f"{_TASK_BASE}/terminals/websocket/{_NAME}"), TerminalWebSocket),
    (_route(f"{_TASK_BASE}/files"), FilesHandler),
    (_route(f"{_TASK_BASE}/files/content"), FileContentHandler),
    (_route(f"{_TASK_BASE}/files/dirs"), DirsHandler),
    (_route(f"{_TASK_BASE}/proxy/(?P<port>[0-9]{{1,5}})(?P<path>/.*)?"), ProxyHandler),
    (APP_ROUTE, AppHandler),
]
