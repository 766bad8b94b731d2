"""The base of every OSMO-compatible handler: who asks, and errors as OSMO's CLI reads them.

Authentication (`osmo_route`): the caller is who the server's identity provider says (the
Jupyter token, a personal access token, an OIDC JWT), or else whoever the bearer token names
when it is one of osmo's (a session JWT from `api/auth/jwt/access_token`, a personal access
token) — so OSMO's CLI works under JupyterLab's own identity provider too — or, with
`OsmoConfig.osmo_cli_dev_login`, the server's owner named in `x-osmo-user`. Nobody else: 401.
Authorization is the native API's: the same `Principal`, the same `policy` checks.

Errors are `{"message", "error_code", "details"}` with a 4xx status: OSMO's CLI shows
`message`, and treats the codes USAGE and RESOURCE as a failed submission.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import getpass
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tornado import web

from osmo_core.auth import Principal
from osmo_core.errors import OsmoError, Unauthorized
from osmo_core.roles import ADMIN

from ...identity import CHALLENGE
from ..base import (
    AUTH_RESOURCE,
    ApiError,
    OsmoHandler,
    OsmoMixin,
    allow_unauthenticated,
    from_osmo_error,
)

PREFIX = "osmo"  # OSMO's CLI logs in to {base_url}osmo and calls {that}/api/...
DEV_USER_HEADER = "x-osmo-user"
# The native error reasons (base._STATUS) as OSMO's error codes
_ERROR_CODES = {
    "invalid spec": "USAGE",
    "invalid input": "USAGE",
    "placement": "RESOURCE",
    "not found": "NOTFOUND",
}

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def route(path: str) -> str:
    """The URL pattern of OSMO's `api/<path>` under this server's prefix; `/+` because some
    of OSMO's calls produce `//api/...`."""
    return rf"/{PREFIX}/+api/{path}"


def iso(ts: float | None) -> str | None:
    """A timestamp as OSMO writes one: UTC, ISO 8601 without an offset (its CLI parses that)."""
    if ts is None:
        return None
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).replace(tzinfo=None).isoformat()


def osmo_route(method: F) -> F:
    """An OSMO API method: the caller authenticated (module docstring), osmo_core's errors as
    OSMO's error body."""
    return _wrap(method, authenticate=True)


def public_route(method: F) -> F:
    """An OSMO API method anyone may call (login: it checks what it is given itself)."""
    return _wrap(method, authenticate=False)


def _wrap(method: F, *, authenticate: bool) -> F:
    @allow_unauthenticated  # checked here: OSMO's 401 body, and osmo's own bearer tokens
    @functools.wraps(method)
    async def wrapper(self: OsmoCliHandler, *args: Any, **kwargs: Any) -> Any:
        self.take_body()
        try:
            if authenticate:
                await self.authenticate()
            return await method(self, *args, **kwargs)
        except OsmoError as e:
            raise from_osmo_error(e) from e

    return wrapper  # type: ignore[return-value]


class CliAuth(OsmoMixin):
    """Who asks, for the REST handlers and the router's WebSockets (module docstring)."""

    _osmo_who: Principal

    async def authenticate(self) -> Principal:
        handler: Any = self  # a JupyterHandler: current_user, authorizer
        if handler.current_user is not None:
            allowed = handler.authorizer.is_authorized(
                self, handler.current_user, "read", AUTH_RESOURCE
            )
            if asyncio.iscoroutine(allowed):
                allowed = await allowed
            if not allowed:
                raise ApiError(403, "not authorized to use osmo", "forbidden")
            return self.who
        svc = await self.service()
        scheme, _, text = self.request.headers.get("Authorization", "").partition(" ")
        text = text.strip()
        if scheme.lower() == "bearer" and text:
            if not svc.auth.is_ours(text):
                raise Unauthorized("the bearer token is not one this server issued or knows")
            self._osmo_who = await svc.auth.authenticate(text)
        elif dev := self.request.headers.get(DEV_USER_HEADER):
            self._osmo_who = _dev_login(dev, svc.config.osmo_cli_dev_login)
        else:
            raise Unauthorized(
                getattr(self, "_osmo_auth_error", None)
                or "authentication required: `osmo login URL --method token --token TOKEN`"
            )
        return self._osmo_who

    def url(self, path: str, scheme: str | None = None) -> str:
        """An absolute URL of this server's OSMO API (`path` under `{base_url}osmo/`)."""
        handler: Any = self
        base = handler.base_url.rstrip("/")
        return f"{scheme or self.request.protocol}://{self.request.host}{base}/{PREFIX}/{path}"


def _dev_login(name: str, allowed: bool) -> Principal:
    """OSMO's `--method dev`: a name and no credential, so only the server's owner, and only
    when the admin said this server is single-user."""
    owner = getpass.getuser()
    if not allowed:
        raise Unauthorized(
            "`osmo login --method dev` is refused: this server needs a credential "
            "(`--method token --token TOKEN`); a single-user server may allow it with "
            "OsmoConfig.osmo_cli_dev_login"
        )
    if name != owner:
        raise Unauthorized(f"`--method dev` is for this server's owner, {owner!r}, only")
    return Principal(owner, ADMIN, via="dev")


class OsmoCliHandler(CliAuth, OsmoHandler):
    """A handler of OSMO's API shapes (module docstring)."""

    # Set on a handler that authenticates by its body alone (the token exchange).
    reads_no_cookie = False

    def check_xsrf_cookie(self) -> None:
        # A header a cross-site form cannot send means the request carries its own credential
        # (and the browser's cookie is not what authenticates it): no XSRF token to check.
        headers = self.request.headers
        if self.reads_no_cookie or "Authorization" in headers or DEV_USER_HEADER in headers:
            return
        super().check_xsrf_cookie()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        reply: dict[str, Any] = {"message": self._reason, "error_code": "USER", "details": []}
        if isinstance(exc, ApiError):
            code = _ERROR_CODES.get(exc.reason or "", "USER")
            reply.update(message=exc.message, error_code=code, details=exc.details)
        elif isinstance(exc, web.HTTPError):
            reply["message"] = exc.log_message or self._reason
        else:
            reply["message"] = "Unhandled error"
        if status_code >= 500:
            reply["error_code"] = "SERVER"
        if status_code == 401:
            reply["error_code"] = "UNAUTHORIZED"
            self.set_header("WWW-Authenticate", CHALLENGE)
        self.set_header("Content-Type", "application/json")
        self.log.warning("osmo (OSMO API): wrote error %s: %s", status_code, reply["message"])
        self.finish(json.dumps(reply))
