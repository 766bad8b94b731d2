"""Client mode: a single-user JupyterLab whose OSMO is a shared control plane (a JupyterHub
service, hub.py), not an engine of its own.

`OsmoApp.service_url` (default `$OSMO_SERVICE_URL`, which the Hub's spawner sets) names the
service; `OsmoApp.service_token` (default `$JUPYTERHUB_API_TOKEN`, the token the Hub gave this
user's server, scoped to reach the service) is who this Lab is there. Then:

- every `/osmo/api/v1/...` request of this server (the panel, the widgets, task terminals, the
  port proxy; HTTP and WebSocket upgrades alike) is forwarded to the same path of the service
  with the user's token in place of this server's credentials (`ForwardHandler`). The browser
  keeps talking to one origin, its Lab; the service never sees the Lab's cookies. A browser's
  request (not token-authenticated here) is marked `X-Osmo-Browser: 1`, so the service sends a
  task's web app to an app link, as it does for its own browsers;
- kernels this server starts get `OSMO_SERVER_URL` (this server) and `OSMO_SERVER_TOKEN` (the
  user's token, which this server accepts too): `Client()` and `%osmo` go through the
  forwarder (kernel_env.py);
- task kernels ("OSMO: WF/TASK") are listed from the service and started there; their ZMQ
  channels travel as WebSockets to the service, which carries them over its agents' tunnels
  (kernels.py, _attach.ServerKernel).
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from typing import Any

import httpcore
from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.utils import url_path_join

from osmo_core.client import API_PATH
from osmo_core.client import Client as RestClient

from ._transport import RestTransport
from .server.base import AUTH_RESOURCE, ApiError, OsmoHandler
from .server.proxy import _HOP, BROWSER_HEADER, splice

ENV_SERVICE_URL = "OSMO_SERVICE_URL"
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 600.0  # a long answer (a file download) still ends
# What authenticates the caller here, never passed to the service.
_CREDENTIALS = {"authorization", "cookie", "x-xsrftoken", "x-csrftoken", BROWSER_HEADER.lower()}


class Upstream:
    """The shared service, as this Lab's user."""

    def __init__(self, url: str, token: str):
        if not token:
            raise ValueError(
                f"OsmoApp.service_url is {url!r} but there is no token to reach it: set "
                "OsmoApp.service_token (default $JUPYTERHUB_API_TOKEN)"
            )
        self.rest = RestClient(url, token, timeout=CONNECT_TIMEOUT)
        self.url, self.token = self.rest.url, token
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"OsmoApp.service_url {url!r}: give http(s)://host[:port][/path]")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.netloc = parts.netloc
        self.path = parts.path.rstrip("/")
        self.pool = httpcore.AsyncConnectionPool(max_connections=64)

    def transport(self) -> RestTransport:
        return RestTransport(self.url, self.token, CONNECT_TIMEOUT)

    def running_tasks(self) -> list[tuple[str, str]]:
        """(workflow, task) of every RUNNING task the service lets this user reach."""
        found = []
        for wf in self.rest.get("workflows", status="RUNNING", limit=1000):
            for t in self.rest.get(f"workflows/{wf['id']}")["tasks"]:
                if t["status"] == "RUNNING":
                    found.append((str(wf["id"]), str(t["name"])))
        return found

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        context = ssl.create_default_context() if self.tls else None
        return await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, ssl=context), CONNECT_TIMEOUT
        )

    async def close(self) -> None:
        await self.pool.aclose()


class ForwardHandler(JupyterHandler):
    """`{any method} /osmo/api/v1/{path}` → the service's `/osmo/api/v1/{path}`, as this Lab's
    user. Authenticated and authorized as this server's other APIs are (for a Hub's
    single-user server: its owner); answers and errors are the service's own."""

    auth_resource = AUTH_RESOURCE
    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")

    @property
    def upstream(self) -> Upstream:
        return self.settings["osmo_upstream"]  # type: ignore[no-any-return]

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # OsmoHandler's error page on another tornado handler class
        OsmoHandler.write_error(self, status_code, **kwargs)  # type: ignore[arg-type]

    async def _check(self) -> None:
        if self.current_user is None:
            raise ApiError(401, "authentication required (this Jupyter server's)", "unauthorized")
        allowed = self.authorizer.is_authorized(self, self.current_user, "write", AUTH_RESOURCE)
        if asyncio.iscoroutine(allowed):
            allowed = await allowed
        if not allowed:
            raise ApiError(403, "not authorized to use osmo on this server", "forbidden")

    def _target(self) -> str:
        """The service's path for this request: from the raw path, so escapes pass as sent."""
        ours = url_path_join(self.base_url, API_PATH.lstrip("/"))
        rest = self.request.path[len(ours) :]
        query = f"?{self.request.query}" if self.request.query else ""
        return f"{self.upstream.path}{API_PATH}{rest}{query}"

    def _upstream_headers(self) -> list[tuple[str, str]]:
        out = [
            (k, v)
            for k, v in self.request.headers.get_all()
            if k.lower() not in _HOP
            and k.lower() not in _CREDENTIALS
            and not k.lower().startswith("x-forwarded-")
        ]
        out += [("Host", self.upstream.netloc), ("Authorization", f"token {self.upstream.token}")]
        if not self.token_authenticated:  # a browser: the service treats it as one
            out.append((BROWSER_HEADER, "1"))
        return out

    def _location(self, value: str) -> str:
        """A redirect into the service's API comes back here; one to an app link (served by
        the service on the Hub's origin) stays as it is."""
        up = self.upstream
        for prefix in (up.url + API_PATH, up.path + API_PATH):
            if value.startswith(prefix) and not value[len(prefix) :].startswith("/apps/"):
                return url_path_join(self.base_url, API_PATH.lstrip("/")) + value[len(prefix) :]
        return value

    async def _forward(self) -> None:
        await self._check()
        if self.request.headers.get("Upgrade"):
            await self._upgrade()
            return
        up = self.upstream
        scheme = "https" if up.tls else "http"
        timeouts = {"connect": CONNECT_TIMEOUT, "read": READ_TIMEOUT, "write": READ_TIMEOUT}
        try:
            async with up.pool.stream(
                self.request.method or "GET",
                f"{scheme}://{up.netloc}{self._target()}",
                headers=self._upstream_headers(),
                content=self.request.body or None,
                extensions={"timeout": timeouts},
            ) as resp:
                reason = resp.extensions.get("reason_phrase", b"").decode("latin-1")
                self.set_status(resp.status, reason=reason or "Unknown")
                self.clear_header("Content-Type")
                for raw_k, raw_v in resp.headers:
                    k, v = raw_k.decode("latin-1"), raw_v.decode("latin-1")
                    if k.lower() in _HOP:
                        continue
                    self.add_header(k, self._location(v) if k.lower() == "location" else v)
                async for chunk in resp.aiter_stream():
                    self.write(chunk)
                    await self.flush()
        except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
            raise ApiError(
                502, f"the OSMO service at {up.url} is unreachable: {e}", "bad gateway"
            ) from e
        except httpcore.ProtocolError as e:
            raise ApiError(502, f"the OSMO service at {up.url}: {e}", "bad gateway") from e
        self.finish()

    async def _upgrade(self) -> None:
        """A WebSocket (events, terminals, exec, port-forward, a task app's): the upgrade is
        sent on to the service, then bytes pass both ways untouched."""
        if not self.token_authenticated and not self.check_origin():
            raise ApiError(403, "a WebSocket from another site's page", "forbidden")
        try:
            reader, writer = await self.upstream.open()
        except (OSError, asyncio.TimeoutError) as e:
            raise ApiError(
                502, f"the OSMO service at {self.upstream.url} is unreachable: {e}", "bad gateway"
            ) from e
        upgrade = self.request.headers["Upgrade"]
        headers = [*self._upstream_headers(), ("Connection", "Upgrade"), ("Upgrade", upgrade)]
        head = f"{self.request.method} {self._target()} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
        writer.write(head.encode("latin-1"))
        await splice(self, reader, writer)

    @allow_unauthenticated  # checked in _check: a JSON 401, not a login redirect
    async def get(self, path: str) -> None:
        await self._forward()

    head = post = put = delete = patch = options = get


def handlers() -> list[tuple[str, Any]]:
    return [(rf"{API_PATH}(?P<path>/.*)?", ForwardHandler)]
