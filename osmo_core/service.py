"""The one façade every front door calls (CLI, REST handlers, magics, widgets).

It owns the store, the backends, the scheduler and the engine, and answers reads from the
store so every front door sees the same persisted truth. One engine per data directory at a
time: `start()` takes an exclusive lock and refuses (Conflict) when another process holds it.
"""

from __future__ import annotations

import asyncio
import builtins
import fcntl
import getpass
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import containers, isolation
from .agent.identity import secure_dir
from .auth import Authenticator, Principal, policy
from .backends.base import Backend
from .backends.registry import make_backend
from .config import PRIORITIES, OsmoConfig
from .data import plan as data_plan
from .data.credentials import without_policy
from .engine import Engine
from .errors import Conflict, Forbidden, NotFound, PlacementError
from .events import EventBus, Subscription
from .interactive import Interactive
from .scheduler import Scheduler
from .spec import LoadedSpec, load_spec
from .states import TaskStatus, WorkflowStatus
from .store import Store
from .wire import LogLine, attempt_key

LAG_LIMIT = 2.0  # seconds of engine lag above which health says "degraded"
STORE_PROBE_TIMEOUT = 2.0  # seconds the store gets to answer the health probe


class Service:
    def __init__(self, config: OsmoConfig | None = None, *, headless: bool = False):
        """`headless`: a team server (`jupyter osmo`), where task isolation is on by default
        (OsmoConfig.task_isolation)."""
        self.config = config or OsmoConfig()
        self.pools = self.config.pool_configs()
        self.limits = self.config.spec_limits()
        self.isolation = isolation.resolve(self.config, headless)
        self.store = Store(self.config.store_url)
        self.bus = EventBus()
        self.scheduler = Scheduler(self.pools)
        self.backends: dict[str, Backend] = {
            name: make_backend(name, spec, self.config.data_dir)
            for name, spec in self.config.backends.items()
        }
        for backend in self.backends.values():  # handed to agents privately (data/credentials)
            backend.credentials = without_policy(self.config.credentials)
            backend.pools = {p.name: p for p in self.pools.values() if p.backend == backend.name}
            if backend.isolates_users:
                backend.isolation = self.isolation
        self.engine = Engine(self.config, self.store, self.backends, self.scheduler, self.bus)
        self.auth = Authenticator(self.store, self.config)
        self.interactive = Interactive(self.config, self.backends, self.store)
        self._lock_fd: int | None = None
        self._umask: int | None = None
        logger = logging.getLogger("osmo_core")
        logger.info("osmo: %s", isolation.describe(self.isolation))
        shared = sorted(n for n, b in self.backends.items() if b.shares_login_user)
        if self.isolation is not None and shared:
            logger.warning(
                "osmo: tasks on the SSH hosts of %s run as the SSH login user, not as their "
                "users: there a task can read the agent's folder (the credentials pushed to "
                "it, other tasks' folders on that host); give those pools to trusted users",
                ", ".join(shared),
            )

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> Service:
        if self.isolation is not None:  # what this process writes is the control plane's
            self._umask = os.umask(0o077)
        secure_dir(Path(self.config.data_dir))
        self._lock()
        try:
            self.store.open()
            await self.interactive.start()  # first: agents the engine starts know where to dial
            await self.engine.start()
        except BaseException:
            await self.interactive.stop()
            self._unlock()
            self._restore_umask()
            raise
        return self

    async def stop(self) -> None:
        await self.engine.stop()
        await self.interactive.stop()
        self.store.close()
        self._unlock()
        self._restore_umask()

    def _restore_umask(self) -> None:
        if self._umask is not None:
            os.umask(self._umask)
            self._umask = None

    async def __aenter__(self) -> Service:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _lock(self) -> None:
        data = Path(self.config.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        path = data / "engine.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise Conflict(
                f"another osmo engine (pid {holder}) is using {data}; wait for it to "
                "finish, or set OSMO_HOME to use another data directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    # --- workflows ------------------------------------------------------------------------

    def load(
        self,
        source: str | Mapping[str, Any],
        *,
        file: str | None = None,
        set_values: dict[str, Any] | None = None,
    ) -> LoadedSpec:
        """Parse and validate a spec within this server's limits (SpecError on any problem)."""
        return load_spec(source, file=file, set_values=set_values, limits=self.limits)

    def check_placement(self, loaded: LoadedSpec, pool: str | None = None) -> str:
        """The pool the workflow would run in; PlacementError when it cannot run there."""
        pool = pool or loaded.workflow.pool or self.config.default_pool
        problems = self.scheduler.check(loaded.workflow, pool)
        if not problems:  # the pool exists and its platforms are known
            problems += containers.placement_problems(
                loaded.workflow,
                self.scheduler.pools[pool],
                self.config.containers,
                lambda res: self.scheduler.platform_of(pool, res),
                lambda platform: self.scheduler.nodes_of(pool, platform),
            )
        problems += data_plan.check(
            loaded.workflow,
            self.config.credentials,
            self.pools.get(pool),
            data_plan.unshared(self.backends),
            self.config.intermediate_url,
        )
        if problems:
            raise PlacementError([loaded.locate(p) for p in problems])
        return pool

    def check_credentials(self, who: Principal, loaded: LoadedSpec, pool: str) -> None:
        """Forbidden, naming each field, when the spec would hand `who` a credential that is
        not open to them (OsmoConfig.credentials allow-lists)."""
        problems = policy.credential_problems(
            who, loaded.workflow, self.config.credentials, pool, self.config.dataset_store
        )
        if problems:
            located = [loaded.locate(p) for p in problems]
            raise Forbidden(
                f"{who.name!r} may not use credentials this spec needs:"
                + "".join(f"\n  {p}" for p in located),
                located,
            )

    async def submit(
        self,
        source: str | dict[str, Any] | LoadedSpec,
        *,
        file: str | None = None,
        set_values: dict[str, Any] | None = None,
        pool: str | None = None,
        user: str | None = None,
        priority: str = "NORMAL",
        who: Principal | None = None,
    ) -> str:
        """`who`: the caller, whose right to the credentials the spec uses is checked (the API
        checks before, to refuse a validation too; in-process callers are the OS user)."""
        loaded = (
            source
            if isinstance(source, LoadedSpec)
            else self.load(source, file=file, set_values=set_values)
        )
        pool = self.check_placement(loaded, pool)
        if who is not None:
            self.check_credentials(who, loaded, pool)
        return await self.engine.submit(
            loaded.workflow,
            pool=pool,
            user=user or getpass.getuser(),
            priority=priority,
            original=loaded.original,
            rendered=loaded.rendered,
            values=loaded.values,
            file=loaded.file,
        )

    async def restart(
        self, wf_id: str, *, user: str | None = None, who: Principal | None = None
    ) -> str:
        """Submit a finished workflow's stored spec again (same values, pool and priority), as
        a new workflow; Conflict while it is still running. `who` as for `submit` (the
        credentials' allow-lists may have changed since)."""
        row = self.store.get_workflow(wf_id)
        if not WorkflowStatus(row["status"]).terminal:
            raise Conflict(f"workflow {wf_id!r} is still {row['status']}; cancel it first")
        priority = next((k for k, v in PRIORITIES.items() if v == row["priority"]), "NORMAL")
        return await self.submit(
            row["spec_original"],
            file=row["file"],
            set_values=json.loads(row["set_values"]),
            pool=row["pool"],
            user=user or row["user"],
            priority=priority,
            who=who,
        )

    async def cancel(self, wf_id: str) -> WorkflowStatus:
        return await self.engine.cancel(wf_id)

    async def done(self, wf_id: str, task: str) -> dict[str, Any]:
        """Mark an interactive task that waits for its user done (Conflict otherwise)."""
        retry_id = await self.engine.done(wf_id, task)
        return {"id": wf_id, "task": task, "retry_id": retry_id, "hold": "done"}

    async def retry(self, wf_id: str, task: str) -> dict[str, Any]:
        """Re-run a task held for debugging as a new attempt (Conflict otherwise)."""
        retry_id = await self.engine.retry(wf_id, task)
        return {"id": wf_id, "task": task, "retry_id": retry_id, "hold": "retry"}

    async def wait(self, wf_id: str) -> WorkflowStatus:
        return await self.engine.wait(wf_id)

    async def record_access(
        self, user: str, wf_id: str, task: str, action: str, **detail: Any
    ) -> None:
        """Audit: a `task.access` event {user, action, ...} on the task's latest attempt."""
        row = self.store.tasks_of(wf_id, task)[-1]
        await self.engine.record(
            "task.access",
            wf_id,
            group=row["group_name"],
            task=task,
            retry_id=row["retry_id"],
            user=user,
            action=action,
            **detail,
        )

    def subscribe(self, workflow_id: str | None = None, *, logs: bool = True) -> Subscription:
        return self.bus.subscribe(workflow_id, logs=logs, maxsize=self.config.subscriber_queue_size)

    def unfinished(self) -> list[str]:
        return self.store.unfinished_workflow_ids()

    # --- reads ------------------------------------------------------------------------------

    def get(self, wf_id: str) -> dict[str, Any]:
        """A workflow with its groups and every task attempt, JSON-ready."""
        wf, group_rows, task_rows = self.store.workflow_detail(wf_id)
        row = dict(wf)
        spec_json = row.pop("spec_json")
        for k in ("spec_original", "spec_rendered"):
            row.pop(k)
        row["set_values"] = json.loads(row["set_values"])
        tasks = [_task_model(r) for r in task_rows]
        order = {name: i for i, name in enumerate(_task_names(spec_json))}
        tasks.sort(key=lambda t: (order.get(t["name"], 0), t["retry_id"]))
        row["groups"] = [dict(g) for g in group_rows]
        row["tasks"] = tasks
        return row

    def task(self, wf_id: str, name: str) -> dict[str, Any]:
        """A task: its latest attempt's fields (with `usage`, the last sample of what its
        running command uses), plus every attempt under `attempts`."""
        self.store.get_workflow(wf_id)  # NotFound names the workflow first
        attempts = [_task_model(r) for r in self.store.tasks_of(wf_id, name)]
        if not attempts:
            raise NotFound(f"workflow {wf_id!r} has no task {name!r}")
        return {**attempts[-1], "usage": self.engine.usage(wf_id, name), "attempts": attempts}

    def list(self, **filters: Any) -> list[dict[str, Any]]:
        rows = self.store.list_workflows(**filters)
        return [{**r, "set_values": json.loads(r["set_values"])} for r in rows]  # as get()

    def spec(self, wf_id: str) -> dict[str, str]:
        row = self.store.get_workflow(wf_id)
        return {
            "original": row["spec_original"],
            "rendered": row["spec_rendered"],
            "spec": row["spec_json"],
        }

    async def logs(
        self,
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
        key = attempt_key(wf_id, task, row["retry_id"])
        if tail is not None:  # the last `tail` lines
            start = max(0, await backend.count_log(key) - tail)
            limit = tail if limit is None else min(limit, tail)
        return await backend.read_log(key, start, limit)

    async def health(self) -> dict[str, Any]:
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

    def resources(self) -> builtins.list[dict[str, Any]]:
        """Every machine: capacity, what is free, and the pools that use it."""
        return [
            {
                **u,
                "pools": sorted(p.name for p in self.pools.values() if u["backend"] in p.backends),
            }
            for u in self.scheduler.usage()
        ]

    def pools_info(self) -> builtins.list[dict[str, Any]]:
        usage = self.scheduler.usage()
        return [
            {
                "name": p.name,
                "backend": p.backend,
                "default_platform": p.default_platform,
                "platforms": {k: asdict(v) for k, v in p.platforms.items()},
                "nodes": [u for u in usage if u["backend"] in p.backends],
            }
            for p in self.pools.values()
        ]


def _task_model(r: Any) -> dict[str, Any]:
    d = dict(r)
    d["alloc"] = json.loads(d["alloc"]) if d["alloc"] else None
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
