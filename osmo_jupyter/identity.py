"""Who the caller is, in osmo's terms (a `Principal`), from the Jupyter server's identity.

Two sources:
- **The Jupyter server's own identity** (JupyterLab mode). With jupyter_server's single-user
  identity providers (its token, or a password) whoever is authenticated is the server's owner —
  the OS user it runs as — and an admin: jupyter_server makes up an anonymous name per session
  there, which must not split one person's workflows across names. With any other provider
  (JupyterHub's, a custom one) the user is `User.username`, an admin if listed in
  `OsmoConfig.admin_users`.
- **`OsmoIdentityProvider`** (headless, `jupyter osmo`; or set
  `c.ServerApp.identity_provider_class = "osmo_jupyter.identity.OsmoIdentityProvider"`):
  additionally accepts `Authorization: Bearer <token>` with an osmo personal access token or an
  OIDC JWT, and, run as a JupyterHub service, the Hub's tokens and login cookie (hub.py).
  Requests with a token in a header count as token-authenticated (no XSRF cookie, no origin
  check), exactly like jupyter_server's own token. The server's token still works and means the
  owner.
  Without valid credentials, every request a browser's login page cannot serve — an API or
  WebSocket route, a method other than GET/HEAD, or one with a rejected `Authorization` — gets
  401 with `WWW-Authenticate: Bearer` and the reason, before jupyter_server's XSRF check (which
  guards cookies; a request with none has nothing to forge), unless its method is marked
  `@allow_unauthenticated`. Pages without credentials still go to the login page; run as a
  JupyterHub service, a browser opening any route that needs credentials (a page or the API)
  goes through the Hub's OAuth flow instead and comes back logged in. A user who
  is not an admin reaches only what `OsmoAuthorizer.admits` lets them (403 elsewhere) when the
  server's authorizer is `OsmoAuthorizer`.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
from typing import Any, NoReturn, Protocol, runtime_checkable

from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider, User
from jupyter_server.base.handlers import APIHandler
from tornado import web, websocket

from osmo_core.auth import Principal
from osmo_core.errors import Unauthorized
from osmo_core.roles import ADMIN, USER

_BEARER_SCHEMES = ("bearer", "token")


@dataclasses.dataclass
class OsmoUser(User):
    """A Jupyter user that carries the osmo principal it was authenticated as."""

    principal: Principal | None = None


CHALLENGE = 'Bearer realm="osmo"'


@runtime_checkable
class Admission(Protocol):
    """An authorizer that closes whole handlers to a user (authorizer.OsmoAuthorizer): the
    identity provider asks it once it knows who asks. A protocol here, because the authorizer
    builds on this module and must not be imported back."""

    def admits(self, handler: Any, user: User) -> bool: ...


def who_is(handler: Any, user: User) -> Principal:
    """The caller as OSMO sees them (principal_of), cached on the request."""
    found: Principal | None = getattr(handler, "_osmo_who", None)
    if found is None:
        app = handler.settings.get("osmo_app")
        service = getattr(app, "service", None)
        admins = service.config.admin_users if service is not None else set()
        found = principal_of(user, handler.identity_provider, admins)
        handler._osmo_who = found
    return found


class OsmoIdentityProvider(IdentityProvider):
    async def get_user(self, handler: Any) -> User | None:
        user = await self._identify(handler)
        if user is None:
            hub = getattr(handler.settings.get("osmo_app"), "hub_users", None)
            if hub is not None and _browser_visit(handler):
                # as Hub services do: the Hub's OAuth flow, back here logged in (hub.py)
                hub.login_redirect(handler, handler.request.uri)
            if _needs_credentials(handler):
                reason = getattr(handler, "_osmo_auth_error", None)
                if reason is None:
                    sent = handler.request.headers.get("Authorization")
                    reason = (
                        "authentication required: "
                        + ("the token sent is not this server's" if sent else "no credentials")
                        + "; send `Authorization: Bearer <token>`"
                    )
                _refuse(handler, 401, reason, "unauthorized")
            return None
        authorizer = handler.authorizer
        if isinstance(authorizer, Admission) and not authorizer.admits(handler, user):
            who = who_is(handler, user)
            _refuse(
                handler,
                403,
                f"{who.name!r} (role {who.role}) may use the osmo API and the kernels of their "
                "own tasks on this server, not this; ask an admin",
                "forbidden",
            )
        return user

    async def _identify(self, handler: Any) -> User | None:
        scheme, _, text = handler.request.headers.get("Authorization", "").partition(" ")
        text = text.strip()
        osmo_app = handler.settings.get("osmo_app")
        if scheme.lower() in _BEARER_SCHEMES and text and osmo_app is not None:
            svc = await osmo_app.ready()
            if svc.auth.is_ours(text):
                # A credential in a header cannot be forged cross-site: XSRF and origin rules
                # are those of jupyter_server's token — also when it fails, so the caller gets
                # our 401 with its reason rather than a complaint about a missing XSRF cookie.
                handler._token_authenticated = True
                try:
                    who = await svc.auth.authenticate(text)
                except Unauthorized as e:
                    handler._osmo_auth_error = str(e)  # the 401's reason
                    return None
                return _user(who)
        hub = getattr(osmo_app, "hub_users", None)
        if hub is not None:  # a JupyterHub service: the Hub's tokens and login cookie (hub.py)
            try:
                found = await hub.principal(handler)
            except Unauthorized as e:
                handler._osmo_auth_error = str(e)
                return None
            if found is not None:
                return _user((await osmo_app.ready()).auth.with_config_role(found))
        return await super()._get_user(handler)


def _user(who: Principal) -> OsmoUser:
    return OsmoUser(who.name, who.name, who.name, who.name[:1].upper(), principal=who)


def _public(handler: Any) -> bool:
    """The route answers without credentials, or checks them itself (osmo's WebSockets,
    /metrics)."""
    method = getattr(handler, (handler.request.method or "").lower(), None)
    return method is None or getattr(method, "__allow_unauthenticated", False)


def _needs_credentials(handler: Any) -> bool:
    """No login page can serve this request: answer 401 rather than a redirect or 403."""
    if _public(handler):
        return False
    request = handler.request
    api = isinstance(handler, (APIHandler, websocket.WebSocketHandler))
    return api or request.method not in ("GET", "HEAD") or "Authorization" in request.headers


def _browser_visit(handler: Any) -> bool:
    """A browser opening a route that needs credentials (a page, or an API answer to show),
    with none sent and none refused: a login can serve it. Scripts send a token, or no
    `Accept: text/html`, and keep their 401."""
    request = handler.request
    return (
        request.method == "GET"
        and "Authorization" not in request.headers
        and "text/html" in request.headers.get("Accept", "")
        and getattr(handler, "_osmo_auth_error", None) is None
        and not isinstance(handler, websocket.WebSocketHandler)
        and not _public(handler)
    )


def _refuse(handler: Any, status: int, message: str, reason: str) -> NoReturn:
    """Answer now, with the JSON error body (and the challenge on a 401): raising an HTTPError
    would go through `send_error`, which drops the headers set so far."""
    # as jupyter_server's own prepare() does when it refuses before knowing the user
    handler.current_user = handler._jupyter_current_user = None
    handler.set_status(status)
    if status == 401:
        handler.set_header("WWW-Authenticate", CHALLENGE)
    handler.set_header("Content-Type", "application/json")
    raise web.Finish(json.dumps({"message": message, "reason": reason, "details": []}))


_SINGLE_USER = (IdentityProvider, PasswordIdentityProvider, OsmoIdentityProvider)


def principal_of(user: User, identity_provider: IdentityProvider, admins: set[str]) -> Principal:
    if isinstance(user, OsmoUser) and user.principal is not None:
        return user.principal
    if type(identity_provider) in _SINGLE_USER:
        return Principal(getpass.getuser(), ADMIN, via="jupyter")
    name = user.username
    return Principal(name, ADMIN if name in admins else USER, via="jupyter")
