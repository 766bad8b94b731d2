"""Pools and machines: what the caller may run on, and what is free."""

from __future__ import annotations

from osmo_core.auth import policy

from .base import OsmoHandler, api


class PoolsHandler(OsmoHandler):
    """The pools the caller may use, with their platforms and machines."""

    @api
    async def get(self) -> None:
        svc = await self.service()
        usable = {n for n, p in svc.pools.items() if policy.may_see_pool(self.who, p)}
        self.reply([p for p in svc.pools_info() if p["name"] in usable])


class ResourcesHandler(OsmoHandler):
    """Every machine with its capacity, what is free, and the pools it serves; a user sees the
    pools they may use only (as `/pools`), and the machines that serve one of them."""

    @api
    async def get(self) -> None:
        svc = await self.service()
        usable = {n for n, p in svc.pools.items() if policy.may_see_pool(self.who, p)}
        rows = [{**r, "pools": [p for p in r["pools"] if p in usable]} for r in svc.resources()]
        self.reply([r for r in rows if r["pools"] or self.who.is_admin])
