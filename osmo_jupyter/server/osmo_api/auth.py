"""OSMO's auth routes: the token exchange, login discovery, personal access tokens.

`osmo login URL --method token --token T` posts T to `api/auth/jwt/access_token` and keeps it
to refresh with; T is a personal access token of this server or the Jupyter server's own token
(its owner). The answer is a session JWT (osmo_core.auth.sessions) naming the same user and
role, which every route here and the native API accept.
"""

from __future__ import annotations

import calendar
import datetime
import hmac
from typing import TYPE_CHECKING, Any

from osmo_core.auth import Principal
from osmo_core.auth.sessions import looks_like_session
from osmo_core.auth.tokens import looks_like_pat
from osmo_core.errors import Conflict, InputError, NotFound, Problem, Unauthorized
from osmo_core.roles import ROLES, USER

from ...identity import principal_of
from .base import OsmoCliHandler, iso, osmo_route, public_route
from .models import AccessTokenQuery, TokenExchange

if TYPE_CHECKING:
    from osmo_core.service import Service


class AccessTokenExchangeHandler(OsmoCliHandler):
    """`POST api/auth/jwt/access_token` {"token"} → {"token": <session JWT>, "expires_at"}."""

    reads_no_cookie = True  # authenticated by the token in its body, nothing else

    @public_route
    async def post(self) -> None:
        req = self.body_model(TokenExchange)
        svc = await self.service()
        who = await self._holder(req.token)
        token, expires = svc.auth.sessions.issue(who)
        self.reply({"token": token, "expires_at": iso(expires)})

    async def _holder(self, text: str) -> Principal:
        svc = await self.service()
        if looks_like_pat(text):
            return await svc.auth.authenticate(text)
        if looks_like_session(text):
            raise Unauthorized(
                "that is a session token; log in with a personal access token "
                "(`osmo token set` on this server) or the Jupyter server's token"
            )
        idp = self.identity_provider
        server_token = getattr(idp, "token", "") or ""
        if server_token and hmac.compare_digest(text.encode(), server_token.encode()):
            # whom the identity provider makes of its own token, as on the native API
            user = idp.generate_anonymous_user(self)
            return principal_of(user, idp, svc.config.admin_users)
        raise Unauthorized(
            "unknown token: give a personal access token of this server or its Jupyter token"
        )


class LoginInfoHandler(OsmoCliHandler):
    """`GET api/auth/login`: the OIDC endpoints OSMO's CLI uses for `--method code|password|
    pkce`, from the configured issuer's discovery document (404 with none configured)."""

    @public_route
    async def get(self) -> None:
        svc = await self.service()
        oidc = svc.auth.oidc
        if oidc is None:
            raise NotFound(
                "this server has no OIDC issuer (OsmoConfig.oidc_issuer); log in with "
                "`--method token --token TOKEN`"
            )
        found = await oidc.discovery()
        client = svc.config.oidc_audience  # the issuer's client for osmo is its audience
        self.reply(
            {
                "issuer": oidc.issuer,
                "token_endpoint": found.get("token_endpoint"),
                "device_endpoint": found.get("device_authorization_endpoint"),
                "device_client_id": client,
                "browser_endpoint": found.get("authorization_endpoint"),
                "browser_client_id": client,
                "logout_endpoint": found.get("end_session_endpoint"),
            }
        )


def _token_entry(record: dict[str, Any]) -> dict[str, Any]:
    """A personal access token as OSMO lists one."""
    return {
        "token_name": record["name"],
        "description": "",
        "user": record["user"],
        # to the second: the expiry is a day's start, give or take the clock's drift
        "expires_at": iso(record["expires_at"] and round(record["expires_at"])),
        "roles": [record["role"]],
        "id": record["id"],
    }


class AccessTokensHandler(OsmoCliHandler):
    """`GET api/auth/access_token` (yours) or `api/auth/user/{user}/access_token` (admins)."""

    @osmo_route
    async def get(self, user: str | None = None) -> None:
        svc = await self.service()
        records = svc.auth.tokens.list(self.who, user)
        self.reply([_token_entry(r) for r in records if r["revoked_at"] is None])


class AccessTokenHandler(OsmoCliHandler):
    """`POST|DELETE api/auth/access_token/{name}` (and under `api/auth/user/{user}/`): OSMO's
    tokens have names unique per user, so one live token per name here too."""

    @osmo_route
    async def post(self, name: str, user: str | None = None) -> None:
        q = self.query_model(AccessTokenQuery, lists=("roles",))
        svc = await self.service()
        owner = user or self.who.name
        if self._live(svc, owner, name) is not None:
            raise Conflict(f"{owner!r} already has a token named {name!r}; delete it first")
        text, _ = svc.auth.tokens.create(
            self.who, name=name, user=owner, role=_role(q.roles), expires_in=_until(q.expires_at)
        )
        self.reply(text)  # OSMO answers the token alone, a JSON string

    @osmo_route
    async def delete(self, name: str, user: str | None = None) -> None:
        owner = user or self.who.name
        svc = await self.service()
        found = self._live(svc, owner, name)
        if found is None:
            raise NotFound(f"{owner!r} has no token named {name!r}")
        self.reply(_token_entry(svc.auth.tokens.revoke(found["id"], self.who)))

    def _live(self, svc: Service, owner: str, name: str) -> dict[str, Any] | None:
        rows = svc.auth.tokens.list(self.who, owner)  # Forbidden: another's, for a non-admin
        return next((r for r in rows if r["name"] == name and r["revoked_at"] is None), None)


def _role(roles: list[str]) -> str:
    """OSMO names several roles per token; here a token has one: `user` or `admin`."""
    if not roles:
        return USER
    if len(roles) > 1 or roles[0] not in ROLES:
        raise InputError([Problem(f"roles {roles}: give one of {list(ROLES)}", field="roles")])
    return roles[0]


def _until(date: datetime.date | None) -> float | None:
    """Seconds from now to `date` (its start, UTC): OSMO's `--expires-at YYYY-MM-DD`, which
    its `token list` shows as expired from that day on."""
    if date is None:
        return None
    end = calendar.timegm(date.timetuple())
    left = end - datetime.datetime.now(datetime.UTC).timestamp()
    if left <= 0:
        raise InputError([Problem(f"{date} is in the past", field="expires_at")])
    return left
