"""The HTTP proxy to a task's port, and the app links a browser is sent to.

HTTP proxy (a task's web app in a browser tab): any method on
`{task}/proxy/{port}/{path}` goes to http://127.0.0.1:{port}/{path} inside the task (`Upgrade`
requests, e.g. WebSockets, are tunnelled); declared ports only, unless the caller is an admin.
Programs (a credential in `Authorization`) are proxied there; a browser is sent to the app's
link `/osmo/api/v1/apps/{ticket}/{path}`, on a separate origin or in a sandbox (app_links.py).
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
from tornado import web
from tornado.iostream import StreamClosedError

from osmo_core.auth import policy
from osmo_core.errors import Conflict, OsmoError

from .app_links import (
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
from .audit import audit
from .base import AUTH_RESOURCE, ApiError, OsmoHandler, OsmoMixin, api, from_osmo_error

if TYPE_CHECKING:
    from osmo_core.service import Service


# In the sandbox, cookies would be the server origin's, and CORS is answered by the proxy.
_SANDBOX_OURS = ("set-cookie", "access-control-allow-")
# A user's own Lab in client mode (remote.py) forwards a browser's request with its user's token
# and this header: it is a browser all the same, and goes to an app link.
BROWSER_HEADER = "X-Osmo-Browser"
_CREDENTIALS = {
    "authorization", "cookie", "x-xsrftoken", "x-csrftoken", "forwarded", "x-real-ip",
    BROWSER_HEADER.lower(),
}  # fmt: skip
_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "content-length", "host",
}  # fmt: skip


class _TaskStream(httpcore.AsyncNetworkStream):
    """An SSH direct-tcpip channel as httpcore's network stream."""

    def __init__(self, reader: Any, writer: Any):
        self._r, self._w = reader, writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        # the SSH channel's reader is typed Any here
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

    # httpcore passes local_address and socket_options by name; a channel has no use for them
    async def connect_tcp(  # type: ignore[override]
        self, host: str, port: int, timeout: float | None = None, **kwargs: Any
    ) -> httpcore.AsyncNetworkStream:
        return _TaskStream(*await self._open())

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ProxyHandler(OsmoMixin, JupyterHandler):
    """`{any method} .../tasks/{task}/proxy/{port}/{path}` → http://127.0.0.1:{port}/{path} in
    the task. Authorized like port-forward (owner or admin; declared ports, any for an admin).

    Only a program (a credential in `Authorization`, which no page can make a browser send) is
    proxied here. A browser, authenticated by Jupyter's cookie, is redirected to an app link
    (`AppHandler`, app_links.py): a page written by the task's owner must never run
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
        # OsmoHandler's error page on another tornado handler class
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
        program = self.token_authenticated and "Authorization" in self.request.headers
        if not program or self.request.headers.get(BROWSER_HEADER):
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
        await splice(self, reader, writer)

    @api
    async def get(self, wf_id: str, task: str, port: str, path: str | None) -> None:
        await self._proxy(wf_id, task, port, path)

    head = post = put = delete = patch = get

    @api
    async def options(self, wf_id: str, task: str, port: str, path: str | None) -> None:
        await self._proxy(wf_id, task, port, path)


async def splice(handler: web.RequestHandler, reader: Any, writer: Any) -> None:
    """Bytes both ways between the handler's client (its connection taken from tornado) and
    `reader`/`writer` (the upgrade request already sent there), until either side closes."""
    handler._auto_finish = False
    connection: Any = handler.request.connection  # tornado's HTTP1ServerConnection
    stream = connection.detach()

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


class AppHandler(ProxyHandler):
    """`{any method} /osmo/api/v1/apps/{ticket}/{path}`: a task's web app for a browser (see
    app_links.py). The signed ticket in the link is the only credential: whoever
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
    # tornado passes the route's groups as arguments
    async def get(self, ticket: str, path: str | None) -> None:  # type: ignore[override]
        try:
            await self._app(ticket)
        except OsmoError as e:
            raise from_osmo_error(e) from e

    # every HTTP verb goes through the one proxying method
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
    async def get(self, *args: Any) -> None:
        try:
            await self._serve()
        except OsmoError as e:
            raise from_osmo_error(e) from e

    # every HTTP verb goes through the one proxying method
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
