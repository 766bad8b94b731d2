"""The Service's reads: a workflow, a task, a list, a spec, a log, the machines and pools,
health. Answered from the store (and, for what only it knows now, the engine: waiting reasons,
usage, lag), so every front door sees the same persisted truth.

A part of `Service` (service.py): methods only, on its state.
"""

from __future__ import annotations

import asyncio
import builtins
import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from .config import priority_name
from .errors import NotFound
from .spec.labels import selector_patterns
from .states import TaskStatus
from .wire import LogLine, attempt_key

if TYPE_CHECKING:
    from .service import Service

LAG_LIMIT = 2.0  # seconds of engine lag above which health says "degraded"
STORE_PROBE_TIMEOUT = 2.0  # seconds the store gets to answer the health probe


class ServiceReads:
    def get(self: Service, wf_id: str) -> dict[str, Any]:
        """A workflow with its groups and every task attempt, JSON-ready."""
        last_event = self.store.max_event_id()  # read first: the snapshot holds all up to it
        wf, group_rows, task_rows = self.store.workflow_detail(wf_id)
        row = dict(wf)
        row["last_event_id"] = last_event
        spec_json = row.pop("spec_json")
        for k in ("spec_original", "spec_rendered", "role"):  # role: the scheduler's
            row.pop(k)
        row["set_values"] = json.loads(row["set_values"])
        row.pop("set_env")  # kept for a restart; the environment's values are not shown
        row["priority"] = priority_name(row["priority"])
        row["labels"] = self.store.labels_of([wf_id])[wf_id]
        live = self.engine.pending_reasons(wf_id)  # the queue's current word, when it has one
        tasks = [_task_model(r, live) for r in task_rows]
        order = {name: i for i, name in enumerate(_task_names(spec_json))}
        tasks.sort(key=lambda t: (order.get(t["name"], 0), t["retry_id"]))
        row["groups"] = [dict(g) for g in group_rows]
        row["tasks"] = tasks
        return row

    def task(self: Service, wf_id: str, name: str) -> dict[str, Any]:
        """A task: its latest attempt's fields (with `usage`, the last sample of what its
        running command uses), plus every attempt under `attempts`."""
        self.store.get_workflow(wf_id)  # NotFound names the workflow first
        live = self.engine.pending_reasons(wf_id)
        attempts = [_task_model(r, live) for r in self.store.tasks_of(wf_id, name)]
        if not attempts:
            raise NotFound(f"workflow {wf_id!r} has no task {name!r}")
        return {**attempts[-1], "usage": self.engine.usage(wf_id, name), "attempts": attempts}

    def list(self: Service, *, labels: Sequence[str] = (), **filters: Any) -> list[dict[str, Any]]:
        """`labels`: OSMO's `KEY=SELECTOR` filters, all to match (one no label can match
        matches nothing; the CLI checks them first, as OSMO's does)."""
        selectors = [selector_patterns(s) for s in labels]
        rows = self.store.list_workflows(labels=selectors, **filters)
        labelled = self.store.labels_of([r["id"] for r in rows])
        return [  # as get()
            {
                **r,
                "set_values": json.loads(r["set_values"]),
                "priority": priority_name(r["priority"]),
                "labels": labelled[r["id"]],
            }
            for r in rows
        ]

    def spec(self: Service, wf_id: str) -> dict[str, str]:
        row = self.store.get_workflow(wf_id)
        return {
            "original": row["spec_original"],
            "rendered": row["spec_rendered"],
            "spec": row["spec_json"],
        }

    async def logs(
        self: Service,
        wf_id: str,
        task: str,
        retry_id: int | None = None,
        start: int = 0,
        limit: int | None = None,
        tail: int | None = None,
    ) -> builtins.list[LogLine]:
        rows = self.store.tasks_of(wf_id, task)
        if not rows:
            raise NotFound(f"workflow {wf_id!r} has no task {task!r}")
        row = (
            rows[-1]
            if retry_id is None
            else next((r for r in rows if r["retry_id"] == retry_id), None)
        )
        if row is None:
            raise NotFound(f"task {task!r} of {wf_id!r} has no attempt {retry_id}")
        backend = self.backends.get(row["backend"] or "")
        if backend is None:
            return []  # never placed: no log yet
        # a reused attempt did not run: the log is the one of the attempt that did, after a
        # line that says so
        key = row["reused_from"] or attempt_key(wf_id, task, row["retry_id"])
        if tail is not None:  # the last `tail` lines
            start = max(0, await backend.count_log(key) - tail)
            limit = tail if limit is None else min(limit, tail)
        lines = await backend.read_log(key, start, limit)
        if row["reused_from"] and start == 0 and tail is None:
            note = f"osmo: not run ({row['message']}); the log of {key} follows"
            lines.insert(0, LogLine(key, 0, row["end_time"] or 0.0, "system", note))
        return lines

    async def health(self: Service) -> dict[str, Any]:
        """What an operator's probe needs to tell "up" from "up but stuck": the engine's lag
        (a timestamped tick through its inbox), each backend's link and its launched tasks,
        the hosts, the reconciliation, the store. `status` is "degraded" with `problems`."""
        eng, problems = self.engine, []
        lag = eng.lag_now
        if eng.failure is not None:
            problems.append(f"the engine stopped: {eng.failure}")
        elif lag > LAG_LIMIT:
            problems.append(f"the engine lags {lag:.1f} s behind (limit {LAG_LIMIT:.0f} s)")
        launched = eng.launched_by_backend()
        backends = []
        for name, b in self.backends.items():
            connected = getattr(b, "connected_now", None)  # agent links say; others do not
            if connected is False and launched[name]:
                problems.append(
                    f"backend {name!r} is not connected; {launched[name]} task(s) on it"
                )
            backends.append(
                {"name": name, "kind": b.kind, "connected": connected, "tasks": launched[name]}
            )
        hosts = [
            {"backend": u["backend"], "node": u["node"], "online": u["online"]}
            for u in self.scheduler.usage()
        ]
        store: dict[str, Any] = {"reachable": True, "pending_writes": eng.inbox_length}
        try:
            store["schema_version"] = await asyncio.wait_for(
                asyncio.to_thread(self.store.schema_version), STORE_PROBE_TIMEOUT
            )
        except Exception as e:  # unreachable, or too slow to count as up
            store.update(reachable=False, error=str(e) or type(e).__name__)
            problems.append(f"the store does not answer: {store['error']}")
        rec = eng.reconciled
        return {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "loop_lag": round(lag, 4),
            "last_tick": eng.tick_at,
            "backends": backends,
            "hosts": hosts,
            "reconcile": {
                "interval": self.config.reconcile_interval,
                "checking": len(rec.checking),
                "passes": rec.passes,
                "last_at": rec.last_at,
                "last_seconds": round(rec.last_seconds, 4),
                "settled": rec.settled,
            },
            "store": store,
        }

    def resources(self: Service) -> builtins.list[dict[str, Any]]:
        """Every machine: capacity, what is free, and the pools that use it."""
        return [
            {
                **u,
                "pools": sorted(p.name for p in self.pools.values() if u["backend"] in p.backends),
            }
            for u in self.scheduler.usage()
        ]

    def pools_info(self: Service) -> builtins.list[dict[str, Any]]:
        usage = self.scheduler.usage()
        return [
            {
                "name": p.name,
                "backend": p.backend,
                "default_platform": p.default_platform,
                "platforms": {k: asdict(v) for k, v in p.platforms.items()},
                "nodes": [u for u in usage if u["backend"] in p.backends],
                **self.scheduler.pool_summary(p.name),
                "queued": self.engine.queued_in(p.name),
            }
            for p in self.pools.values()
        ]


def _task_model(r: Any, pending: dict[str, str]) -> dict[str, Any]:
    """A task row, JSON-ready; `pending`: the live reasons of waiting tasks, by name (the
    stored one is the last announced: current after a restart until the first pass)."""
    d = dict(r)
    d["alloc"] = json.loads(d["alloc"]) if d["alloc"] else None
    waiting = d["status"] == TaskStatus.SCHEDULING.value
    d["pending_reason"] = pending.get(d["name"], d["pending_reason"]) if waiting else None
    running = d["status"] == TaskStatus.RUNNING.value and not d["cancel_reason"]
    d["waiting_for_user"] = running and d["hold"] == "interactive"
    d["held_for_debugging"] = running and d["hold"] == "debug"
    return d


def _task_names(spec_json: str) -> list[str]:
    """Task names in spec order, from the stored JSON (no model validation on a read path);
    none from a stored spec that does not parse: its workflow stays readable (it failed)."""
    try:
        spec = json.loads(spec_json)
        names = [t["name"] for g in spec.get("groups") or [] for t in g["tasks"]]
        return names + [t["name"] for t in spec.get("tasks") or []]
    except (ValueError, TypeError, KeyError, AttributeError):
        return []
