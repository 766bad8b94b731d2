"""Workflows: list, submit (or validate, or dry-run), get, cancel, restart, their spec; the
task cache (clear)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from osmo_core.auth import Principal, policy
from osmo_core.errors import Forbidden, SpecError
from osmo_core.spec.localfiles import localpath_problems

from ..schemas import CacheClearRequest, ListQuery, RestartRequest, SubmitRequest
from .base import API_PREFIX, OsmoHandler, api, check_page_limit

if TYPE_CHECKING:
    from osmo_core.service import Service
    from osmo_core.spec import LoadedSpec


async def checked_spec(
    svc: Service,
    who: Principal,
    spec: str | dict[str, Any],
    set_values: dict[str, Any],
    pool: str | None,
    *,
    env: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> tuple[LoadedSpec, str]:
    """A spec loaded for `who` with every check a submit makes (templates, placement, the
    pool's and the credentials' allow-lists), and the pool it runs in; raises on any problem.
    Both front doors that submit (this API and OSMO's, osmo_api/) call it. `env` and `labels`:
    the submit's `--set-env` and `--label`, over the spec's."""
    # Off the loop: a big spec or a template at its render budget must not stall others.
    loaded = await asyncio.to_thread(svc.load, spec, set_values=set_values, env=env, labels=labels)
    if problems := localpath_problems(loaded):  # never read here, for anyone
        raise SpecError(problems)
    pool = svc.check_placement(loaded, pool, who.name)
    policy.check_pool(who, svc.pools[pool])
    svc.check_credentials(who, loaded, pool)
    return loaded, pool


class WorkflowsHandler(OsmoHandler):
    @api
    async def get(self) -> None:
        q = self.query_model(ListQuery, lists=("status", "label"))
        svc = await self.service()
        check_page_limit(q.limit, svc.config.max_page_size, "max_page_size")
        rows = svc.list(
            statuses=[s.value for s in q.status] or None,
            user=policy.list_filter(self.who, q.user),
            pool=q.pool,
            name=q.name,
            labels=q.label,
            limit=q.limit,
            offset=q.offset,
        )
        self.reply(rows)

    @api
    async def post(self) -> None:
        req = self.body_model(SubmitRequest)
        svc = await self.service()
        loaded, pool = await checked_spec(
            svc, self.who, req.spec, req.set_values, req.pool, env=req.env, labels=req.labels
        )
        if req.validation_only:
            self.reply({"valid": True, "pool": pool})
        elif req.dry_run:
            self.reply({"pool": pool, "rendered": loaded.rendered, "values": loaded.values})
        else:
            wf_id = await svc.submit(
                loaded, pool=pool, user=self.who.name, role=self.who.role, priority=req.priority
            )
            self.set_header("Location", self.request.path.rstrip("/") + f"/{wf_id}")
            self.reply({"id": wf_id}, status=201)


class WorkflowHandler(OsmoHandler):
    @api
    async def get(self, wf_id: str) -> None:
        self.reply((await self.workflow_for(wf_id)).get(wf_id))


class CancelHandler(OsmoHandler):
    @api
    async def post(self, wf_id: str) -> None:
        status = await (await self.workflow_for(wf_id)).cancel(wf_id)
        self.reply({"id": wf_id, "status": status.value})


class RestartHandler(OsmoHandler):
    @api
    async def post(self, wf_id: str) -> None:
        svc = await self.workflow_for(wf_id)
        # no body: the default restart (the panel's button)
        req = self.body_model(RestartRequest) if self.request.body else RestartRequest()
        policy.check_pool(self.who, svc.pools[svc.store.get_workflow(wf_id)["pool"]])
        new_id = await svc.restart(
            wf_id, user=self.who.name, who=self.who, from_task=req.from_task, rerun_all=req.all
        )
        reused = [t["name"] for t in svc.get(new_id)["tasks"] if t["reused_from"]]
        self.set_header("Location", f"/{API_PREFIX}/workflows/{new_id}")
        self.reply({"id": new_id, "restarted": wf_id, "reused": reused}, status=201)


class CacheClearHandler(OsmoHandler):
    @api
    async def post(self) -> None:
        req = self.body_model(CacheClearRequest)
        svc = await self.service()
        user = req.user if self.who.is_admin else self.who.name  # users: their own entries
        if req.user not in (None, user):
            raise Forbidden(f"{self.who.name!r} may only clear their own workflows' cache entries")
        self.reply({"cleared": await svc.clear_cache(task=req.task, user=user)})


class SpecHandler(OsmoHandler):
    @api
    async def get(self, wf_id: str) -> None:
        self.reply((await self.workflow_for(wf_id)).spec(wf_id))
