"""Session tokens: short-lived JWTs this server signs itself (HS256), for OSMO's CLI.

OSMO's `osmo login --method token` sends a long-lived token (here: a personal access token, or
the Jupyter server's own token) to `api/auth/jwt/access_token` and gets a short-lived JWT back,
which it sends as `Authorization: Bearer` and refreshes the same way before it expires. The JWT
carries the user and role the long-lived token resolved to at exchange time; a revoked token
stops at the next refresh, at most `ttl` later.

The key is 256 random bits in `<data dir>/session.key` (0600), made on first use; removing the
file ends every session at once. A JWT of ours is told apart from an OIDC issuer's by its
header's key id (`kid`), before anything is verified.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import jwt

from ..errors import Unauthorized
from ..roles import ROLES
from .keyfile import load_key
from .principal import Principal

KID = "osmo-session"
ISSUER = "osmo-jupyter"
_ALGORITHM = "HS256"


def looks_like_session(text: str) -> bool:
    """Whether `text` is a JWT signed by this kind of server (unverified: only routes it)."""
    if text.count(".") != 2:
        return False
    try:
        return bool(jwt.get_unverified_header(text).get("kid") == KID)
    except jwt.InvalidTokenError:
        return False


class SessionTokens:
    """Issue and verify this server's session JWTs."""

    def __init__(self, key_path: Path, ttl: float, clock: Callable[[], float] = time.time):
        self.key_path = key_path
        self.ttl = ttl
        self.clock = clock
        self._key: bytes | None = None

    @property
    def key(self) -> bytes:
        if self._key is None:  # read on first use: a server that never issues one makes none
            try:
                self._key = load_key(self.key_path)
            except ValueError as e:
                raise Unauthorized(f"{e}; remove it") from None
        return self._key

    def issue(self, who: Principal) -> tuple[str, float]:
        """A JWT for `who` and when it expires (seconds since the epoch)."""
        now = self.clock()
        expires = now + self.ttl
        claims = {
            "iss": ISSUER,
            "sub": who.name,
            "name": who.name,  # OSMO's CLI greets the user by this claim
            "role": who.role,
            "iat": int(now),
            "exp": int(expires),
        }
        return jwt.encode(claims, self.key, _ALGORITHM, headers={"kid": KID}), expires

    def verify(self, text: str) -> Principal:
        try:
            claims = jwt.decode(
                text,
                self.key,
                algorithms=[_ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized(
                "the session token has expired; `osmo login` again (OSMO's CLI refreshes it "
                "by itself while its access token is valid)"
            ) from None
        except jwt.InvalidTokenError as e:
            raise Unauthorized(f"invalid session token: {e}") from None
        role = claims.get("role")
        if role not in ROLES or not isinstance(claims["sub"], str):
            raise Unauthorized("invalid session token: bad subject or role")
        return Principal(claims["sub"], role, via="session")
