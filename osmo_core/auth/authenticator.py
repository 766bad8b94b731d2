"""A bearer token → Principal, whichever kind it is."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import OsmoConfig
from ..errors import Unauthorized
from ..roles import ADMIN, USER
from ..store import Store
from .oidc import OIDCVerifier, looks_like_jwt
from .principal import Principal
from .sessions import SessionTokens, looks_like_session
from .tokens import TokenManager, looks_like_pat


class Authenticator:
    def __init__(self, store: Store, config: OsmoConfig):
        self.config = config
        self.tokens = TokenManager(store)
        self.sessions = SessionTokens(
            Path(config.data_dir) / "session.key", config.session_token_minutes * 60
        )
        self.oidc = (
            OIDCVerifier(
                config.oidc_issuer,
                config.oidc_audience,
                jwks_url=config.oidc_jwks_url or None,
                username_claim=config.oidc_username_claim,
                roles_claim=config.oidc_roles_claim,
                admin_roles=config.oidc_admin_roles,
            )
            if config.oidc_issuer
            else None
        )

    def is_ours(self, text: str) -> bool:
        """Whether a bearer token is one this server issues or verifies (else: Jupyter's)."""
        return (
            looks_like_pat(text)
            or looks_like_session(text)
            or (self.oidc is not None and looks_like_jwt(text))
        )

    async def authenticate(self, text: str) -> Principal:
        if looks_like_pat(text):
            who = self.tokens.verify(text)
        elif looks_like_session(text):
            return self.sessions.verify(text)  # its role was settled when it was issued
        elif self.oidc is not None and looks_like_jwt(text):
            who = await self.oidc.verify(text)
        else:
            raise Unauthorized("unknown bearer token")
        return self.with_config_role(who)

    def with_config_role(self, who: Principal) -> Principal:
        """`admin_users` are admins however they signed in."""
        if who.role == USER and who.name in self.config.admin_users:
            return dataclasses.replace(who, role=ADMIN)
        return who
