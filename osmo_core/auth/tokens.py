"""Personal access tokens.

A token is `osmo_<id>_<secret>`: the id finds the row, and only the SHA-256 of the whole token
is stored. The secret is 256 random bits, so a fast hash is enough (a slow password hash
protects guessable secrets, which these are not); the comparison is constant-time. The token
text is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

from ..errors import Forbidden, InputError, NotFound, Problem, Unauthorized
from ..roles import ROLES, USER
from ..store import Store
from .principal import Principal

PREFIX = "osmo_"
_TOKEN = re.compile(r"^osmo_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})$")
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")
# last_used_at is bookkeeping, not security: write it at most once a minute per token.
_TOUCH_EVERY = 60.0


def looks_like_pat(text: str) -> bool:
    return text.startswith(PREFIX)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class TokenManager:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time):
        self.store = store
        self.clock = clock

    def create(
        self,
        who: Principal,
        *,
        name: str,
        user: str | None = None,
        role: str = USER,
        expires_in: float | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """A new token for `user` (default: `who`): (the token text, shown once; its public
        record). Only an admin creates tokens for others or with the admin role."""
        user = user or who.name
        if not who.is_admin and (user != who.name or role != USER):
            raise Forbidden("only an admin may create tokens for other users or admin tokens")
        problems = []
        if not _USER.match(user):
            problems.append(
                Problem(
                    f"invalid user name {user!r}",
                    field="user",
                    hint="letters, digits and . _ @ + -, up to 128",
                )
            )
        if role not in ROLES:
            problems.append(Problem(f"unknown role {role!r}", field="role", hint=f"one of {ROLES}"))
        if not name or len(name) > 128:
            problems.append(Problem("a token needs a name of 1-128 characters", field="name"))
        if expires_in is not None and expires_in <= 0:
            problems.append(Problem("must be positive (seconds)", field="expires_in"))
        if problems:
            raise InputError(problems)
        token_id = secrets.token_hex(6)
        text = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
        now = self.clock()
        row = {
            "id": token_id,
            "user": user,
            "name": name,
            "role": role,
            "hash": _digest(text),
            "created_by": who.name,
            "created_at": now,
            "expires_at": now + expires_in if expires_in else None,
            "revoked_at": None,
            "last_used_at": None,
        }
        self.store.add_token(row)
        return text, {k: v for k, v in row.items() if k != "hash"}

    def verify(self, text: str) -> Principal:
        m = _TOKEN.match(text)
        row = self.store.get_token(m.group(1)) if m else None
        if row is None or not hmac.compare_digest(row["hash"], _digest(text)):
            raise Unauthorized("unknown personal access token")
        now = self.clock()
        if row["revoked_at"] is not None:
            raise Unauthorized(f"personal access token {row['id']} has been revoked")
        if row["expires_at"] is not None and row["expires_at"] <= now:
            raise Unauthorized(
                f"personal access token {row['id']} expired at "
                f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(row['expires_at']))}; "
                "create a new one"
            )
        if row["last_used_at"] is None or now - row["last_used_at"] > _TOUCH_EVERY:
            self.store.update_token(row["id"], last_used_at=now)
        return Principal(row["user"], row["role"], via="token")

    def list(self, who: Principal, user: str | None = None) -> list[dict[str, Any]]:
        """Tokens visible to `who`: their own; an admin sees all (or one user's)."""
        if not who.is_admin:
            if user not in (None, who.name):
                raise Forbidden(f"{who.name!r} may only list their own tokens")
            user = who.name
        return [dict(r) for r in self.store.list_tokens(user)]

    def revoke(self, token_id: str, who: Principal) -> dict[str, Any]:
        row = self.store.get_token(token_id)
        if row is None:
            raise NotFound(f"token {token_id!r} not found")
        if not who.is_admin and row["user"] != who.name:
            raise Forbidden(f"token {token_id!r} belongs to another user")
        if row["revoked_at"] is None:
            self.store.update_token(token_id, revoked_at=self.clock())
        return {k: v for k, v in dict(self.store.get_token(token_id) or {}).items() if k != "hash"}
