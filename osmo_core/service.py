"""The one façade every front door calls (CLI, REST handlers, magics, widgets).

It owns the store, the backends, the scheduler and the engine, and answers reads from the
store (service_reads.py) so every front door sees the same persisted truth. One engine per data
directory at a time: `start()` takes an exclusive lock and refuses (Conflict) when another
process holds it.
"""

from __future__ import annotations

import asyncio
import fcntl
import getpass
import json
import logging
import os
from collections.abc import Mapping
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
from .gcpause import freeze_startup_objects
from .interactive import Interactive
from .interactive.spares import KernelSpares
from .roles import USER
from .service_reads import ServiceReads
from .spec import LoadedSpec
from .spec.models import task_fields
from .states import TaskStatus, WorkflowStatus
from .store import Store

if TYPE_CHECKING:
    from sqlalchemy import RowMapping


class Service(ServiceReads):
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
        self.kernel_spares = KernelSpares(self)
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
            freeze_startup_objects()
            await self.interactive.start()  # first: agents the engine starts know where to dial
            await self.engine.start()
            await self.kernel_spares.start()
        except BaseException:
            await self.interactive.stop()
            self._unlock()
            self._restore_umask()
            raise
        return self

    async def stop(self) -> None:
        await self.kernel_spares.stop()
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

    def subscribe(
        self,
        workflow_id: str | None = None,
        *,
        logs: bool = True,
        types: frozenset[str] | None = None,
    ) -> Subscription:
        size = self.config.subscriber_queue_size
        return self.bus.subscribe(workflow_id, logs=logs, maxsize=size, types=types)

    def unfinished(self) -> list[str]:
        return self.store.unfinished_workflow_ids()
