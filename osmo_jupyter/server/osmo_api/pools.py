"""OSMO's capacity routes: pools (`pool list`, `pool_quota`), resources, and `task list`.

Counts are GPUs, as OSMO's `pool list` shows them. A pool's GPU quota (its `quota.gpu`) is what
NORMAL and HIGH work may hold, so `quota_used` counts theirs and `total_usage` everything (LOW
work borrows past the quota); a pool without one has its capacity as its quota.
"""

from __future__ import annotations

from typing import Any

from osmo_core.auth import policy

from .base import OsmoCliHandler, iso, osmo_route
from .models import PoolQuery, TaskListQuery, priority_name

GIB = 2**30


def _usage(nodes: list[dict[str, Any]], pool: dict[str, Any] | None = None) -> dict[str, int]:
    """OSMO's `resource_usage` of these machines; `pool`: a pool's summary (its quota and what
    each priority holds, Scheduler.pool_summary) for the quota columns."""
    capacity = sum(len(n["gpus"]) for n in nodes)
    free = sum(len(n["free_gpus"]) for n in nodes if n["online"])
    used = capacity - sum(len(n["free_gpus"]) for n in nodes)
    limit, quota_used, quota_free = capacity, used, free
    if pool is not None and (pool.get("quota") or {}).get("gpu") is not None:
        limit = int(pool["quota"]["gpu"])
        quota_used = sum(int(pool["used"][p]["gpu"]) for p in ("HIGH", "NORMAL"))
        quota_free = max(0, limit - quota_used)
    return {
        "quota_used": quota_used,
        "quota_free": quota_free,
        "quota_limit": limit,
        "total_usage": used,
        "total_capacity": capacity,
        "total_free": free,
    }


class PoolsHandler(OsmoCliHandler):
    """`GET api/pool` and `api/pool_quota`: the pools open to the caller, with their GPUs."""

    @osmo_route
    async def get(self) -> None:
        q = self.query_model(PoolQuery, lists=("pools", "platforms"))
        svc = await self.service()
        pools = []
        for info in svc.pools_info():
            pool = svc.pools[info["name"]]
            if not policy.may_see_pool(self.who, pool):
                continue
            if q.pools and not q.all_pools and pool.name not in q.pools:
                continue
            online = any(n["online"] for n in info["nodes"])
            pools.append(
                {
                    "name": pool.name,
                    "description": pool.description,
                    "status": "ONLINE" if online else "OFFLINE",
                    "backend": pool.backend,
                    "default_platform": pool.default_platform,
                    "platforms": sorted(pool.platforms),
                    "resource_usage": _usage(info["nodes"], info),
                }
            )
        nodes = {(n["backend"], n["node"]): n for i in svc.pools_info() for n in i["nodes"]}
        self.reply(
            {
                "node_sets": [{"pools": pools}],
                "resource_sum": _usage(list(nodes.values())),
                # `resource list` checks pool names against this
                "pools": {p["name"]: p for p in pools},
            }
        )


class ResourcesHandler(OsmoCliHandler):
    """`GET api/resources`: every machine of the pools open to the caller."""

    @osmo_route
    async def get(self) -> None:
        q = self.query_model(PoolQuery, lists=("pools", "platforms"))
        svc = await self.service()
        visible = [p for p in svc.pools.values() if policy.may_see_pool(self.who, p)]
        if q.pools and not q.all_pools:
            visible = [p for p in visible if p.name in q.pools]
        resources = []
        for m in svc.resources():
            places = [
                f"{p.name}/{platform}"
                for p in visible
                for platform in p.platforms
                if p.backend_of(platform) == m["backend"]
                and (not q.platforms or platform in q.platforms)
            ]
            if not places:
                continue
            resources.append(
                {
                    "hostname": m["node"],
                    "backend": m["backend"],
                    "resource_type": "SHARED",
                    "exposed_fields": {"node": m["node"], "pool/platform": places},
                    "allocatable_fields": {
                        "cpu": m["cpu"],
                        "memory": f"{m['memory'] / GIB:.0f}Gi",
                        "gpu": len(m["gpus"]),
                    },
                    "usage_fields": {
                        "cpu": round(m["cpu"] - m["free_cpu"], 3),
                        "memory": f"{(m['memory'] - m['free_memory']) / GIB:.0f}Gi",
                        "gpu": len(m["gpus"]) - len(m["free_gpus"]),
                    },
                }
            )
        self.reply({"resources": resources})


class TasksHandler(OsmoCliHandler):
    """`GET api/task` (`osmo task list`): the latest attempt of each task of the caller's
    workflows (admins with `all_users`: everyone's), oldest workflow first (`order=DESC`:
    newest first)."""

    @osmo_route
    async def get(self) -> None:
        lists = ("users", "statuses", "pools", "nodes", "priority")
        q = self.query_model(TaskListQuery, lists=lists)
        svc = await self.service()
        wanted = None if q.all_users else (q.users[0] if len(q.users) == 1 else self.who.name)
        rows: list[Any]
        if q.workflow_id is not None:
            policy.check_owner(self.who, svc.store.workflow_owner(q.workflow_id), q.workflow_id)
            rows = [svc.store.get_workflow(q.workflow_id)]
        else:
            rows = svc.list(
                user=policy.list_filter(self.who, wanted), limit=svc.config.max_page_size
            )
        if q.order == "ASC":  # oldest workflow first; each one's tasks in spec order
            rows = rows[::-1]
        users = set(q.users)
        statuses = {s.value for s in q.statuses}
        tasks: list[dict[str, Any]] = []
        for row in rows:
            if (q.pools and row["pool"] not in q.pools) or (users and row["user"] not in users):
                continue
            if q.priority and priority_name(row["priority"]) not in q.priority:
                continue
            latest = {t["name"]: t for t in svc.get(row["id"])["tasks"]}
            for t in latest.values():
                if (statuses and t["status"] not in statuses) or (
                    q.nodes and t["node"] not in q.nodes
                ):
                    continue
                alloc = t["alloc"] or {}
                tasks.append(
                    {
                        "user": row["user"],
                        "workflow_id": row["id"],
                        "task_name": t["name"],
                        "retry_id": t["retry_id"],
                        "status": t["status"],
                        "pool": row["pool"],
                        "priority": priority_name(row["priority"]),
                        "node": t["node"],
                        "start_time": iso(t["start_time"]),
                        "cpu": alloc.get("cpu", 0),
                        "memory": round(alloc.get("memory", 0) / GIB, 3),
                        "gpu": len(alloc.get("gpus", [])),
                        "storage": 0,
                    }
                )
        if q.summary or q.aggregate_by_workflow:
            sums = _summaries(tasks, q.aggregate_by_workflow)
            self.reply({"summaries": sums[q.offset : q.offset + q.limit]})
            return
        self.reply({"tasks": tasks[q.offset : q.offset + q.limit]})


_SUMMED = ("cpu", "memory", "gpu", "storage")


def _summaries(tasks: list[dict[str, Any]], by_workflow: bool) -> list[dict[str, Any]]:
    """OSMO's `task list --summary` (`--aggregate-by-workflow`): the tasks' resources added up
    per user, pool and priority (and workflow), in the tasks' order."""
    keys = ("user", "pool", "priority", *(("workflow_id",) if by_workflow else ()))
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for t in tasks:
        entry = groups.setdefault(
            tuple(t[k] for k in keys), {**{k: t[k] for k in keys}, **dict.fromkeys(_SUMMED, 0)}
        )
        for k in _SUMMED:
            entry[k] += t[k]
    for entry in groups.values():
        entry["memory"] = round(entry["memory"], 3)
    return list(groups.values())
