"""Users' own credentials (osmo_core/auth/user_credentials.py): list, create, replace, delete.
Secrets go in; only names, types and public fields come out."""

from __future__ import annotations

from osmo_core.errors import Conflict

from ..schemas import CredentialCreate, CredentialQuery, CredentialRequest
from .base import OsmoHandler, api


class CredentialsHandler(OsmoHandler):
    """The caller's credentials; an admin may list anyone's (`?user=NAME` or `*`)."""

    @api
    async def get(self) -> None:
        q = self.query_model(CredentialQuery)
        self.reply((await self.service()).credentials.list(self.who, q.user))

    @api
    async def post(self) -> None:
        req = self.body_model(CredentialCreate)
        creds = (await self.service()).credentials
        if any(r["name"] == req.name for r in creds.list(self.who)):
            raise Conflict(f"you have a credential {req.name!r} already; PUT replaces it")
        self.reply(creds.set(self.who, req.name, req.type, req.payload, "payload"), status=201)


class CredentialHandler(OsmoHandler):
    @api
    async def put(self, name: str) -> None:
        req = self.body_model(CredentialRequest)
        creds = (await self.service()).credentials
        self.reply(creds.set(self.who, name, req.type, req.payload, "payload"))

    @api
    async def delete(self, name: str) -> None:
        q = self.query_model(CredentialQuery)
        self.reply((await self.service()).credentials.delete(self.who, name, q.user))
