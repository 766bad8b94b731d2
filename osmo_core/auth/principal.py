"""The authenticated caller."""

from __future__ import annotations

from dataclasses import dataclass

from ..roles import ADMIN, USER


@dataclass(frozen=True)
class Principal:
    name: str
    role: str = USER
    # How they proved it: "jupyter" (the server's own identity), "token" (a personal access
    # token), "oidc" (a JWT), "local" (in-process: CLI, embedded Client).
    via: str = "local"
    # Groups the identity provider vouches for (JupyterHub's): pools' `groups` allow-lists. A
    # tuple, so the principal stays JSON-ready (jupyter_server's /api/me writes the user out).
    groups: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN
