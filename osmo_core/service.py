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
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import isolation
from .admission import Admission
from .agent.identity import secure_dir
from .auth import Authenticator, Principal, policy
from .auth.user_credentials import UserCredentials
from .config import PRIORITIES, OsmoConfig, priority_name
from .data import plan as data_plan
from .engine import Engine
from .engine.cache import restart_reuse
from .errors import Conflict, Forbidden, NotFound, PlacementError, Problem
from .events import EventBus, Subscription
from .interactive import Interactive
from .roles import USER
from .spec import LoadedSpec
from .spec.labels import selector_patterns
from .spec.models import task_fields
from .states import TaskStatus, WorkflowStatus
from .store import Store
from .wire import LogLine, attempt_key

if TYPE_CHECKING:
    from sqlalchemy import RowMapping

LAG_LIMIT = 2.0  # seconds of engine lag above which health says "degraded"
STORE_PROBE_TIMEOUT = 2.0  # seconds the store gets to answer the health probe


class Service:
    def __init__(self, config: OsmoConfig | None = None, *, headless: bool = False):
        """`headless`: a team server (`jupyter osmo`), where task isolation is on by default
        (OsmoConfig.task_isolation)."""
        self.config = config or OsmoConfig()
        self.admission = Admission(self.config)
        # Its parts, named as every front door and the engine know them.
        self.pools, self.limits = self.admission.pools, self.admission.limits
        self.scheduler, self.backends = self.admission.scheduler, self.admission.backends
        self.isolation = isolation.resolve(self.config, headless)
        self.store = Store(self.config.store_url)
        self.bus = EventBus()
        for backend in self.backends.values():
            if backend.isolates_users:
                backend.isolation = self.isolation
        self.engine = Engine(self.config, self.store, self.backends, self.scheduler, self.bus)
        self.auth = Authenticator(self.store, self.config)
        self.credentials = UserCredentials(self.store, Path(self.config.data_dir) / "secrets.key")
        self.engine.own_credentials = self.credentials.for_launch
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
        env: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> LoadedSpec:
        return self.admission.load(source, file=file, set_values=set_values, env=env, labels=labels)

    def check_placement(
        self, loaded: LoadedSpec, pool: str | None = None, user: str | None = None
    ) -> str:
        """As Admission's; `user`'s own credentials count beside the admin's (a name the spec
        uses must be one of them: never another user's)."""
        own = self.credentials.views(user) if user else None
        return self.admission.check_placement(loaded, pool, own)

    def check_credentials(self, who: Principal, loaded: LoadedSpec, pool: str) -> None:
        """Forbidden, naming each field, when the spec would hand `who` a credential that is
        not open to them (OsmoConfig.credentials allow-lists; their own are open to them)."""
        creds = {**self.config.credentials, **self.credentials.views(who.name)}
        problems = policy.credential_problems(
            who, loaded.workflow, creds, pool, self.config.dataset_store
        )
        if problems:
            located = [loaded.locate(p) for p in problems]
            raise Forbidden(
                f"{who.name!r} may not use credentials this spec needs:"
                + "".join(f"\n  {p}" for p in located),
                located,
            )

    def check_previous(self, loaded: LoadedSpec, pool: str, who: Principal) -> None:
        """Inputs `task: <workflow_id>:<task>` (OSMO's: a task of an earlier workflow) name a
        COMPLETED task of a workflow `who` may read, whose output folder this pool's task can
        read by its path (both on a backend whose tasks share the disk); PlacementError,
        located at each input that does not."""
        far = data_plan.unshared(self.backends)
        problems = []
        for where, task in task_fields(loaded.workflow):
            for i, inp in enumerate(task.inputs):
                if inp.previous is None:
                    continue
                why = self._previous_problem(*inp.previous, who)
                here = data_plan.backend_of(loaded.workflow, task, self.pools[pool])
                if why is None and here in far:
                    why = f"task {task.name!r} runs on backend {here!r}, apart from its disk"
                if why is not None:
                    problems.append(loaded.locate(Problem(why, field=f"{where}.inputs[{i}].task")))
        if problems:
            raise PlacementError(problems)

    def _previous_problem(self, wf_id: str, name: str, who: Principal) -> str | None:
        """Why `who`'s task cannot read task `name` of the earlier workflow `wf_id`, or None."""
        try:
            owner = self.store.workflow_owner(wf_id)
        except NotFound:
            owner = None
        if owner is None or (owner != who.name and not who.is_admin):
            return f"no workflow {wf_id!r} of yours"  # another's is not even confirmed
        attempts = self.store.tasks_of(wf_id, name)
        if not attempts:
            return f"workflow {wf_id!r} has no task {name!r}"
        last = attempts[-1]
        if last["status"] != TaskStatus.COMPLETED.value:
            return f"task {name!r} of workflow {wf_id!r} is {last['status']}, not COMPLETED"
        if last["backend"] in data_plan.unshared(self.backends) or not last["output_path"]:
            return f"task {name!r} of workflow {wf_id!r} kept no output folder here"
        return None

    async def submit(
        self,
        source: str | dict[str, Any] | LoadedSpec,
        *,
        file: str | None = None,
        set_values: dict[str, Any] | None = None,
        pool: str | None = None,
        user: str | None = None,
        role: str | None = None,
        priority: str = "NORMAL",
        who: Principal | None = None,
        parent: str | None = None,
        reuse: Mapping[str, RowMapping] | None = None,
    ) -> str:
        """`who`: the caller, whose right to the credentials the spec uses is checked (the API
        checks before, to refuse a validation too; in-process callers are the OS user).
        `role`: the submitter's auth role (fair share's `role_weights`), else `who`'s, else
        user. `parent`, `reuse`: a restart's (see `restart`)."""
        loaded = (  # off the loop: a big spec takes seconds to parse and validate
            source
            if isinstance(source, LoadedSpec)
            else await asyncio.to_thread(self.load, source, file=file, set_values=set_values)
        )
        pool = self.check_placement(loaded, pool, user or getpass.getuser())
        if priority in PRIORITIES:  # an unknown one: the engine's check names it
            self.admission.check_quota(loaded, pool, PRIORITIES[priority])
        if who is not None:
            self.check_credentials(who, loaded, pool)
        self.check_previous(loaded, pool, who or Principal(user or getpass.getuser()))
        return await self.engine.submit(
            loaded.workflow,
            pool=pool,
            user=user or getpass.getuser(),
            role=role or (who.role if who is not None else USER),
            priority=priority,
            original=loaded.original,
            rendered=loaded.rendered,
            values=loaded.values,
            file=loaded.file,
            parent=parent,
            reuse=reuse,
            env=loaded.env,
        )

    async def restart(
        self,
        wf_id: str,
        *,
        user: str | None = None,
        who: Principal | None = None,
        from_task: str | None = None,
        rerun_all: bool = False,
    ) -> str:
        """A new workflow from an ended one's stored spec (same values, `--set-env`, labels, pool
        and priority), OSMO's way: it reruns the groups that failed or never ran and reuses the
        completed ones' outputs (engine/cache.py `restart_reuse`); `from_task` reruns that task's
        group and everything downstream too, `rerun_all` reruns everything (`from_task` aside). Any
        ended workflow may be restarted (OSMO: only failed ones); a running one is refused
        (Conflict: cancel it first). A default restart with nothing to rerun (every group completed)
        reruns everything: restarting a completed workflow runs it again, as it always did here.
        `who` as for `submit` (the credentials' allow-lists may have changed since)."""
        row, group_rows, task_rows = self.store.workflow_detail(wf_id)
        if not WorkflowStatus(row["status"]).terminal:
            raise Conflict(f"workflow {wf_id!r} is still {row['status']}; cancel it first")
        loaded = await asyncio.to_thread(  # off the loop, as for submit
            self.load,
            row["spec_original"],
            file=row["file"],
            set_values=json.loads(row["set_values"]),
            env=json.loads(row["set_env"]),  # the submission's --set-env and --label
            labels=self.store.labels_of([wf_id])[wf_id],
        )
        reuse = (
            {} if rerun_all else restart_reuse(loaded.workflow, group_rows, task_rows, from_task)
        )
        if len(reuse) == len(loaded.workflow.all_tasks()):
            reuse = {}  # nothing failed: run it all again
        priority = priority_name(row["priority"])
        return await self.submit(
            loaded,
            pool=row["pool"],
            user=user or row["user"],
            role=row["role"],
            priority=priority,
            who=who,
            parent=wf_id,
            reuse=reuse,
        )

    async def clear_cache(self, *, task: str | None = None, user: str | None = None) -> int:
        """Forget task-cache entries: of task `task` (every task when None), of `user`'s
        workflows (everyone's when None); how many attempts were entries. Through the engine,
        the one writer of task rows."""
        return await self.engine.clear_cache(task=task, user=user)

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

    def task(self, wf_id: str, name: str) -> dict[str, Any]:
        """A task: its latest attempt's fields (with `usage`, the last sample of what its
        running command uses), plus every attempt under `attempts`."""
        self.store.get_workflow(wf_id)  # NotFound names the workflow first
        live = self.engine.pending_reasons(wf_id)
        attempts = [_task_model(r, live) for r in self.store.tasks_of(wf_id, name)]
        if not attempts:
            raise NotFound(f"workflow {wf_id!r} has no task {name!r}")
        return {**attempts[-1], "usage": self.engine.usage(wf_id, name), "attempts": attempts}

    def list(self, *, labels: Sequence[str] = (), **filters: Any) -> list[dict[str, Any]]:
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
