"""Personal access tokens: list, create, revoke."""

from __future__ import annotations

from ..schemas import TokenListQuery, TokenRequest
from .base import OsmoHandler, api


class TokensHandler(OsmoHandler):
    """Personal access tokens: a user manages their own; an admin anyone's."""

    @api
    async def get(self) -> None:
        q = self.query_model(TokenListQuery)
        self.reply((await self.service()).auth.tokens.list(self.who, q.user))

    @api
    async def post(self) -> None:
        req = self.body_model(TokenRequest)
        text, record = (await self.service()).auth.tokens.create(
            self.who,
            name=req.name,
            user=req.user,
            role=req.role,
            expires_in=req.expires_in_days * 86400 if req.expires_in_days else None,
        )
        self.reply({**record, "token": text}, status=201)


class TokenHandler(OsmoHandler):
    @api
    async def delete(self, token_id: str) -> None:
        self.reply((await self.service()).auth.tokens.revoke(token_id, self.who))
