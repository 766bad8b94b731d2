"""OIDC bearer tokens: JWTs signed by a configured issuer, checked against its JWKS.

The keys come from `jwks_url`, or from the issuer's discovery document
(`<issuer>/.well-known/openid-configuration` → `jwks_uri`). They are cached for `cache_ttl`
seconds and fetched again early when a token names an unknown key id (key rotation) — at most
once per `refetch_every` seconds, so forged key ids cannot make us hammer the issuer. Fetches run
in a thread: the server's loop never blocks on the issuer.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import jwt

from ..errors import Unauthorized
from ..roles import ADMIN, USER
from .principal import Principal

FETCH_TIMEOUT = 5.0


def looks_like_jwt(text: str) -> bool:
    return text.count(".") == 2


def _fetch_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as r:
        # a JSON document (Any)
        return json.loads(r.read())  # type: ignore[no-any-return]


def _claim(claims: dict[str, Any], path: str) -> Any:
    """A claim by dotted path (`realm_access.roles` as Keycloak nests it)."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class OIDCVerifier:
    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        jwks_url: str | None = None,
        username_claim: str = "preferred_username",
        roles_claim: str = "roles",
        admin_roles: Sequence[str] = (ADMIN,),
        algorithms: Sequence[str] = ("RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"),
        leeway: float = 30.0,
        cache_ttl: float = 300.0,
        refetch_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.username_claim = username_claim
        self.roles_claim = roles_claim
        self.admin_roles = set(admin_roles)
        self.algorithms = list(algorithms)
        self.leeway = leeway
        self.cache_ttl = cache_ttl
        self.refetch_every = refetch_every
        self.clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise Unauthorized(f"malformed bearer token: {e}") from None
        key = await self._key(header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the OIDC token has expired; sign in again") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized(f"the OIDC token is not for audience {self.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized(f"the OIDC token was not issued by {self.issuer!r}") from None
        except jwt.PyJWTError as e:
            raise Unauthorized(f"invalid OIDC token: {e}") from None
        name = _claim(claims, self.username_claim) or claims.get("sub")
        if not isinstance(name, str) or not name:
            raise Unauthorized(f"the OIDC token has no {self.username_claim!r} or 'sub' claim")
        roles = _claim(claims, self.roles_claim) or []
        if isinstance(roles, str):
            roles = roles.split()
        role = ADMIN if self.admin_roles.intersection(roles) else USER
        return Principal(name, role, via="oidc")

    async def discovery(self) -> dict[str, Any]:
        """The issuer's discovery document (its endpoints), fetched off the loop."""
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        return await asyncio.to_thread(_fetch_json, url)

    async def _key(self, kid: str | None) -> Any:
        async with self._lock:
            now = self.clock()
            stale = self._fetched_at is None or now - self._fetched_at > self.cache_ttl
            unknown = kid not in self._keys if kid else not self._keys
            may_refetch = self._fetched_at is None or now - self._fetched_at > self.refetch_every
            if stale or (unknown and may_refetch):
                await self._refresh()
        if kid:
            found = self._keys.get(kid)
        else:  # no kid: only unambiguous with a single key
            found = next(iter(self._keys.values())) if len(self._keys) == 1 else None
        if found is None:
            raise Unauthorized(f"the OIDC token's key {kid!r} is not one of the issuer's keys")
        return found

    async def _refresh(self) -> None:
        try:
            url = self.jwks_url
            if not url:
                url = (await self.discovery())["jwks_uri"]
            jwks = await asyncio.to_thread(_fetch_json, url)
            keys = {}
            for raw in jwks.get("keys", []):
                try:
                    k = jwt.PyJWK(raw)
                except jwt.PyJWTError:
                    continue  # a key type we cannot use (e.g. an encryption key)
                keys[raw.get("kid") or ""] = k
        except Exception as e:
            if self._keys:  # keep serving with the keys we have; try again later
                self._fetched_at = self.clock()
                return
            raise Unauthorized(f"cannot fetch the OIDC issuer's keys: {e}") from None
        self._keys = keys
        self._fetched_at = self.clock()
