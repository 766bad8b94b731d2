"""The server itself: health (no credentials; its detail for admins), version, the caller
(`me`). The OpenAPI document's handler is in routes.py, with the table it is built from."""

from __future__ import annotations

import osmo_core
from osmo_core.errors import Forbidden

from .base import OsmoHandler, allow_unauthenticated, api


class HealthHandler(OsmoHandler):
    @allow_unauthenticated
    def get(self) -> None:
        self.reply({"status": "ok"})  # liveness only: cheap for any probe


class HealthDetailHandler(OsmoHandler):
    @api
    async def get(self) -> None:
        if not self.who.is_admin:  # hosts, agents and store state are the operator's
            raise Forbidden("the detailed health is for admins")
        self.reply(await (await self.service()).health())


class VersionHandler(OsmoHandler):
    @api
    async def get(self) -> None:
        self.reply({"version": osmo_core.__version__, "api": "v1"})


class MeHandler(OsmoHandler):
    @api
    async def get(self) -> None:
        self.reply({"name": self.who.name, "role": self.who.role, "via": self.who.via})
