"""OSMO's workflow routes: submit (validate, dry run), list, query, cancel, restart, spec.

Each maps onto the Service the native API uses, through the same checks (`checked_spec`,
`policy`); OSMO's answer shapes are built in models.py.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from osmo_core.auth import policy
from osmo_core.errors import InputError, Problem
from osmo_core.spec import parse_assignments, parse_set_values
from osmo_core.states import WorkflowStatus

from ..base import check_page_limit
from ..workflows import checked_spec
from .base import OsmoCliHandler, iso, osmo_route
from .models import (
    CancelQuery,
    GroupEntry,
    ListEntry,
    ListQuery,
    QueryQuery,
    SpecQuery,
    SubmitBody,
    SubmitQuery,
    SubmitResponse,
    TaskEntry,
    WorkflowQuery,
    dump,
    priority_name,
)


def _one(values: list[str], field: str, what: str) -> str | None:
    """OSMO filters by several users or pools; this server's listing by one."""
    if len(values) > 1:
        raise InputError([Problem(f"one {what} at a time on this server", field=field)])
    return values[0] if values else None


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(end - start, 3)


class SubmitHandler(OsmoCliHandler):
    """`POST api/pool/{pool}/workflow`: submit, or `dry_run` (the rendered spec), or
    `validation_only` (every check, nothing stored)."""

    @osmo_route
    async def post(self, pool: str) -> None:
        q = self.query_model(SubmitQuery, lists=("label", "env_vars"))
        env = parse_assignments(q.env_vars, "--set-env")
        labels = parse_assignments(q.label, "--label")
        svc = await self.service()
        if q.workflow_id is not None:  # `osmo workflow submit <workflow id>`: its spec again
            row = svc.store.get_workflow(q.workflow_id)
            policy.check_owner(self.who, row["user"], q.workflow_id)
            source, values = row["spec_original"], json.loads(row["set_values"])
            template = None
        else:
            body = self.body_model(SubmitBody)
            source, template = body.file, body.uploaded_templated_spec
            values = parse_set_values(body.set_variables, body.set_string_variables)
        loaded, pool = await checked_spec(
            svc, self.who, source, values, pool, env=env, labels=labels
        )
        if q.dry_run:
            self.reply(
                dump(
                    SubmitResponse(
                        name="", spec=loaded.rendered, warnings=[str(w) for w in loaded.warnings]
                    )
                )
            )
            return
        if q.validation_only:
            logs = f"Workflow {loaded.workflow.name} is valid; it would run in pool {pool}."
            self.reply(
                dump(SubmitResponse(name="", logs=logs, warnings=[str(w) for w in loaded.warnings]))
            )
            return
        if template is not None:  # the CLI rendered it with our dry run: keep the template
            loaded = dataclasses.replace(loaded, original=template)
        wf_id = await svc.submit(
            loaded, pool=pool, user=self.who.name, role=self.who.role, priority=q.priority
        )
        self.reply(dump(self._submitted(wf_id, [str(w) for w in loaded.warnings])))

    def _submitted(self, wf_id: str, warnings: list[str]) -> SubmitResponse:
        return SubmitResponse(
            name=wf_id,
            overview=self.url(f"api/workflow/{wf_id}"),
            logs=self.url(f"api/workflow/{wf_id}/logs"),
            warnings=warnings,
        )


class RestartHandler(SubmitHandler):
    """`POST api/pool/{pool}/workflow/{id}/restart`: the Service's restart, in the workflow's
    own pool."""

    @osmo_route
    async def post(self, pool: str, wf_id: str) -> None:  # type: ignore[override]
        svc = await self.workflow_for(wf_id)
        own = svc.store.get_workflow(wf_id)["pool"]
        if pool != own:
            raise InputError(
                [Problem(f"{wf_id} ran in pool {own!r}; it restarts there", field="pool")]
            )
        policy.check_pool(self.who, svc.pools[own])
        new_id = await svc.restart(wf_id, user=self.who.name, who=self.who)
        self.reply(dump(self._submitted(new_id, [])))


class WorkflowsHandler(OsmoCliHandler):
    """`GET api/workflow`: a page of workflows, newest first, and whether more follow."""

    @osmo_route
    async def get(self) -> None:
        q = self.query_model(ListQuery, lists=("users", "statuses", "pools"))
        svc = await self.service()
        check_page_limit(q.limit, svc.config.max_page_size, "max_page_size")
        wanted = None if q.all_users else (_one(q.users, "users", "user") or self.who.name)
        rows = svc.list(
            statuses=[s.value for s in q.statuses] or None,
            user=policy.list_filter(self.who, wanted),
            pool=None if q.all_pools else _one(q.pools, "pools", "pool"),
            name=q.name,
            limit=q.limit + 1,  # one more tells whether more follow
            offset=q.offset,
            newest_first=q.order.upper() == "DESC",
        )
        entries = [dump(self._entry(r)) for r in rows[: q.limit]]
        self.reply({"workflows": entries, "more_entries": len(rows) > q.limit})

    def _entry(self, r: dict[str, Any]) -> ListEntry:
        wf = r["id"]
        failed = WorkflowStatus(r["status"]).failed
        return ListEntry(
            user=r["user"],
            name=wf,
            workflow_uuid=wf,
            submit_time=iso(r["submit_time"]) or "",
            start_time=iso(r["start_time"]),
            end_time=iso(r["end_time"]),
            queued_time=round(
                (r["start_time"] or r["end_time"] or r["submit_time"]) - r["submit_time"], 3
            ),
            duration=_span(r["start_time"], r["end_time"]),
            status=r["status"],
            overview=self.url(f"api/workflow/{wf}"),
            logs=self.url(f"api/workflow/{wf}/logs"),
            error_logs=self.url(f"api/workflow/{wf}/error_logs") if failed else None,
            pool=r["pool"],
            priority=priority_name(r["priority"]),
        )


class WorkflowHandler(OsmoCliHandler):
    """`GET api/workflow/{id}`: the workflow with its groups and their tasks (the latest
    attempt of each; `verbose`: every attempt)."""

    @osmo_route
    async def get(self, wf_id: str) -> None:
        q = self.query_model(QueryQuery)
        svc = await self.workflow_for(wf_id)
        wf = svc.get(wf_id)
        leads = _leads(svc.spec(wf_id)["spec"])
        tasks = wf["tasks"]  # in spec order: the groups follow their first task
        first: dict[str, int] = {}
        for i, t in enumerate(tasks):
            first.setdefault(t["group_name"], i)
        if not q.verbose:
            latest = {t["name"]: t for t in tasks}  # attempts come oldest first
            tasks = [t for t in tasks if latest[t["name"]] is t]
        groups = [
            GroupEntry(
                name=g["name"],
                status=g["status"],
                start_time=iso(g["start_time"]),
                end_time=iso(g["end_time"]),
                failure_message=g["message"],
                tasks=[self._task(wf_id, t, leads) for t in tasks if t["group_name"] == g["name"]],
            )
            for g in sorted(wf["groups"], key=lambda g: first.get(g["name"], len(first)))
        ]
        self.reply(
            dump(
                WorkflowQuery(
                    name=wf_id,
                    uuid=wf_id,
                    submitted_by=wf["user"],
                    spec=self.url(f"api/workflow/{wf_id}/spec"),
                    template_spec=self.url(f"api/workflow/{wf_id}/spec?use_template=true"),
                    logs=self.url(f"api/workflow/{wf_id}/logs"),
                    events=self.url(f"api/workflow/{wf_id}/events"),
                    overview=self.url(f"api/workflow/{wf_id}"),
                    submit_time=iso(wf["submit_time"]) or "",
                    start_time=iso(wf["start_time"]),
                    end_time=iso(wf["end_time"]),
                    duration=_span(wf["start_time"], wf["end_time"]),
                    status=wf["status"],
                    pool=wf["pool"],
                    priority=priority_name(wf["priority"]),
                    groups=groups,
                )
            )
        )

    def _task(self, wf_id: str, t: dict[str, Any], leads: set[str]) -> TaskEntry:
        logs = f"api/workflow/{wf_id}/logs?task_name={t['name']}&retry_id={t['retry_id']}"
        failed = t["status"].startswith("FAILED")
        return TaskEntry(
            name=t["name"],
            retry_id=t["retry_id"],
            status=t["status"],
            failure_message=t["message"],
            exit_code=t["exit_code"],
            logs=self.url(logs),
            error_logs=self.url(logs.replace("/logs?", "/error_logs?")) if failed else None,
            events=self.url(f"api/workflow/{wf_id}/events?task_name={t['name']}"),
            scheduling_start_time=iso(t["create_time"]),
            start_time=iso(t["start_time"]),
            end_time=iso(t["end_time"]),
            pod_name="",  # no pods on this server's local and SSH backends
            task_uuid=f"{wf_id}/{t['name']}/{t['retry_id']}",
            node_name=t["node"],
            lead=t["name"] in leads,
        )


class TaskHandler(WorkflowHandler):
    """`GET api/workflow/{id}/task/{task}`: a task's latest attempt."""

    @osmo_route
    async def get(self, wf_id: str, task: str) -> None:  # type: ignore[override]
        svc = await self.workflow_for(wf_id)
        found = svc.task(wf_id, task)  # NotFound names the task
        leads = _leads(svc.spec(wf_id)["spec"])
        self.reply(dump(self._task(wf_id, found, leads)))


def _leads(spec_json: str) -> set[str]:
    """The lead tasks of a stored spec's groups."""
    spec = json.loads(spec_json)
    return {t["name"] for g in spec.get("groups") or [] for t in g["tasks"] if t.get("lead")}


class CancelHandler(OsmoCliHandler):
    """`POST api/workflow/{id}/cancel` → {"name"}."""

    @osmo_route
    async def post(self, wf_id: str) -> None:
        self.query_model(CancelQuery)  # `force` and `message` change nothing here
        await (await self.workflow_for(wf_id)).cancel(wf_id)
        self.reply({"name": wf_id})


class SpecHandler(OsmoCliHandler):
    """`GET api/workflow/{id}/spec`: the rendered spec as text (`use_template`: as written,
    the template a templated submission was rendered from)."""

    @osmo_route
    async def get(self, wf_id: str) -> None:
        q = self.query_model(SpecQuery)
        spec = (await self.workflow_for(wf_id)).spec(wf_id)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(spec["original"] if q.use_template else spec["rendered"])
