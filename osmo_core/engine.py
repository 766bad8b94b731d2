"""The engine: the only writer of workflow, group and task state.

Everything that changes state runs inside one asyncio task (`_run`), fed by an inbox: backend
events, user commands (submit, cancel), timer fires and launch results. Each round drains the
inbox, applies the changes in memory (every move checked against `states`), places what can
run now, then commits the round's rows and events to the store in ONE transaction and only then
announces the events and starts the launches. So nothing is announced or launched that a crash
could forget, and a crash loses at most a round that nobody saw.

Holds (`interactive: true`, `debug: on-failure`): when the command ends and the task holds,
the backend reports `Held` and the attempt stays RUNNING (its resources and a process to exec
into are kept) with `hold` = interactive (waiting for the user: `done()`) or debug (failed, kept
for debugging: `retry()` or cancel), until `hold_until` (the exec timeout, else
OsmoConfig.hold_timeout). `done()` records hold=done and asks the backend to release (outputs,
then Exited 0 -> COMPLETED); `retry()` records hold=retry and cancels the hold (Exited -> FAILED
and a new attempt). Both decisions are persisted before they are sent, so a restart resends them.

Restart: `start()` reloads unfinished workflows and asks the backends what became of attempts
that were INITIALIZING or RUNNING. Launch is idempotent per attempt key, so an attempt persisted
as INITIALIZING is launched again only if the backend never heard of it: a task is never run
twice, a completed task never again.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backends.base import (
    Backend,
    BackendEvent,
    CheckpointSpec,
    Exited,
    FileSpec,
    Held,
    InputSpec,
    LaunchInfo,
    LaunchRequest,
    LogLine,
    Lost,
    Node,
    OutputSpec,
    Started,
    StartFailed,
    Transfer,
    Usage,
    attempt_key,
)
from .config import PRIORITIES, OsmoConfig
from .dag import WorkflowDAG
from .data.credentials import match as credential_for
from .data.credentials import match_resolved
from .errors import Conflict, NotFound, Problem, SpecError, StoreError
from .events import Event, EventBus
from .scheduler import Alloc, Scheduler, task_fields
from .spec.models import ExitAction, Group, Task, Workflow
from .states import (
    INFRA_RESCHEDULE,
    TaskStatus,
    WorkflowStatus,
    check_group,
    check_task,
    check_workflow,
    workflow_outcome,
)
from .store import Batch, Store

log = logging.getLogger("osmo.engine")
T = TaskStatus
W = WorkflowStatus
_LAUNCHED = (T.INITIALIZING, T.RUNNING)
_UNPLACED = (T.SUBMITTING, T.WAITING, T.PROCESSING, T.SCHEDULING)
_TOKEN_INPUT_NAME = re.compile(r"\{\{\s*input:([A-Za-z][A-Za-z0-9_.-]*)\s*\}\}")
_TOKEN_WF_ID = re.compile(r"\{\{\s*workflow_id\s*\}\}")
_TOKEN_HOST = re.compile(r"\{\{\s*host:([A-Za-z0-9_.-]+)\s*\}\}")
# StartFailed.reason -> the status it ends in (anything else: FAILED_START_ERROR)
_START_FAILURES = {"image_pull": T.FAILED_IMAGE_PULL, "start_timeout": T.FAILED_START_TIMEOUT}
_BACKFILL_WINDOW = 32  # queue units tried past the first that does not fit
_PHASE = {
    s: i
    for i, s in enumerate(
        [T.SUBMITTING, T.WAITING, T.PROCESSING, T.SCHEDULING, T.INITIALIZING, T.RUNNING]
    )
}


# --- in-memory model ---------------------------------------------------------------------------


@dataclass(eq=False)
class Attempt:
    task: TaskRun
    retry_id: int
    status: TaskStatus | None = None
    create_time: float = 0.0
    start_time: float | None = None
    end_time: float | None = None
    exit_code: int | None = None
    alloc: Alloc | None = None
    info: LaunchInfo | None = None
    cancel_reason: TaskStatus | None = None
    message: str | None = None
    launching: bool = False
    pending_end: BackendEvent | None = None  # an end that arrived before the launch answer
    hold: str | None = None  # interactive | debug while held; done | retry once decided
    hold_until: float | None = None
    hold_timer: asyncio.TimerHandle | None = None
    usage: Usage | None = None  # the agent's last sample while the command runs

    @property
    def key(self) -> str:
        return attempt_key(self.task.group.workflow.id, self.task.name, self.retry_id)


@dataclass(eq=False)
class TaskRun:
    spec: Task
    group: GroupRun
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def current(self) -> Attempt:
        return self.attempts[-1]


@dataclass(eq=False)
class GroupRun:
    spec: Group
    workflow: WorkflowRun
    status: TaskStatus | None = None
    tasks: list[TaskRun] = field(default_factory=list)
    scheduling_time: float | None = None
    start_time: float | None = None
    end_time: float | None = None
    message: str | None = None
    timer: asyncio.TimerHandle | None = None  # queue or exec timeout
    grace_timer: asyncio.TimerHandle | None = None  # peers' time to finish after the lead

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def lead(self) -> TaskRun:
        return next((t for t in self.tasks if t.spec.lead), self.tasks[0])


@dataclass(eq=False)
class WorkflowRun:
    id: str
    spec: Workflow
    dag: WorkflowDAG
    pool: str
    user: str
    priority: int
    submit_time: float
    status: WorkflowStatus | None = None
    start_time: float | None = None
    end_time: float | None = None
    message: str | None = None
    groups: dict[str, GroupRun] = field(default_factory=dict)
    tasks: dict[str, TaskRun] = field(default_factory=dict)
    groups_left: int = 0
    active: int = 0  # attempts INITIALIZING or RUNNING
    canceling: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class _Call:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]


# --- the engine -----------------------------------------------------------------------------


class Engine:
    def __init__(
        self,
        config: OsmoConfig,
        store: Store,
        backends: dict[str, Backend],
        scheduler: Scheduler,
        bus: EventBus,
    ):
        self.config = config
        self.store = store
        self.backends = backends
        self.scheduler = scheduler
        self.bus = bus
        self.workflows: dict[str, WorkflowRun] = {}
        self._attempts: dict[str, Attempt] = {}
        # Placement units (a barrier group is one unit), kept sorted by rank.
        self._queue: list[tuple[tuple[int, int], list[Attempt]]] = []
        self._queue_dirty = False
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._batch = Batch()
        self._announce: list[Event] = []
        self._launches: list[Attempt] = []
        self._cancels: list[Attempt] = []
        self._releases: list[Attempt] = []  # held attempts the user is done with
        self._progress_due: set[WorkflowRun] = set()  # RUNNING/WAITING is settled per round
        self._next_event_id = 1
        self._seq = 0
        self._runner: asyncio.Task[None] | None = None
        self.failure: Exception | None = None  # set when the engine had to stop
        self._bg: set[asyncio.Task[Any]] = set()

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._next_event_id = self.store.max_event_id() + 1
        for name, backend in self.backends.items():
            await backend.start(self._on_backend_event)
            self.scheduler.set_nodes(name, await backend.nodes())
        await self._recover()
        self._runner = asyncio.create_task(self._run(), name="osmo-engine")
        for name, backend in self.backends.items():
            if backend.node_refresh:
                self._spawn(self._refresh_nodes(name, backend, backend.node_refresh))

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        for t in list(self._bg):
            t.cancel()
        await asyncio.gather(*self._bg, return_exceptions=True)
        for wf in self.workflows.values():
            for g in wf.groups.values():
                if g.timer:
                    g.timer.cancel()
        for att in self._attempts.values():
            if att.hold_timer:
                att.hold_timer.cancel()
        for backend in self.backends.values():
            await backend.stop()
        self.bus.close()

    # --- read-only gauges (osmo_jupyter.metrics reads them on scrape) -----------------------

    @property
    def queue_length(self) -> int:
        """Task attempts waiting for capacity."""
        return sum(len(unit) for _, unit in self._queue)

    @property
    def inbox_length(self) -> int:
        """Commands and backend events not yet taken by a round."""
        return self._inbox.qsize()

    @property
    def attempt_counts(self) -> Counter[str]:
        """Task attempts per status, of the workflows in memory (the unfinished ones)."""
        return Counter(a.status.value for a in self._attempts.values() if a.status is not None)

    @property
    def usage_by_pool(self) -> dict[str, tuple[float, int]]:
        """(CPU cores, resident bytes) the running commands use, per pool, as last sampled."""
        out: dict[str, tuple[float, int]] = {}
        for a in self._attempts.values():
            if a.usage is not None and a.status == T.RUNNING and not a.hold:
                pool = a.task.group.workflow.pool
                cpu, mem = out.get(pool, (0.0, 0))
                out[pool] = (cpu + a.usage.cpu, mem + a.usage.memory)
        return out

    # --- commands (any coroutine may call these; they run inside the engine's loop) --------

    async def submit(
        self,
        spec: Workflow,
        *,
        pool: str | None = None,
        user: str = "local",
        priority: str = "NORMAL",
        original: str = "",
        rendered: str = "",
        values: dict[str, Any] | None = None,
        file: str | None = None,
    ) -> str:
        """Start a workflow whose placement the caller has checked (Service.check_placement)."""
        pool = pool or spec.pool or self.config.default_pool
        n_tasks = len(spec.all_tasks())
        if n_tasks > self.config.max_tasks_per_workflow:
            raise SpecError(
                f"workflow has {n_tasks} tasks; this server allows at most "
                f"{self.config.max_tasks_per_workflow} (OsmoConfig."
                f"max_tasks_per_workflow)"
            )
        if priority not in PRIORITIES:
            raise SpecError(f"priority {priority!r} is not one of {', '.join(PRIORITIES)}")
        spec = _inline_localpaths(spec, Path(file).parent if file else Path.cwd())
        return await self._call(
            self._submit,
            spec,
            pool,
            user,
            PRIORITIES[priority],
            original,
            rendered,
            values or {},
            file,
        )

    async def cancel(self, wf_id: str) -> WorkflowStatus:
        return await self._call(self._cancel_workflow, wf_id)

    async def done(self, wf_id: str, task: str) -> int:
        """An interactive task waiting for its user is done: its outputs are persisted and its
        downstream starts. Returns the attempt's retry_id; Conflict unless it is waiting."""
        return await self._call(self._done, wf_id, task)

    def usage(self, wf_id: str, task: str) -> dict[str, Any] | None:
        """The last usage sample of the task's running command (None when there is none)."""
        wf = self.workflows.get(wf_id)
        run = wf.tasks.get(task) if wf else None
        att = run.attempts[-1] if run and run.attempts else None
        if att is None or att.usage is None or att.hold or (att.status and att.status.terminal):
            return None
        return {"ts": att.usage.ts, **att.usage.summary()}

    async def retry(self, wf_id: str, task: str) -> int:
        """A task held for debugging runs again (a new attempt); returns its retry_id."""
        return await self._call(self._retry, wf_id, task)

    async def record(
        self, type_: str, wf_id: str, *, group: str | None, task: str, retry_id: int, **payload: Any
    ) -> Event:
        """An event that changes no state (an interactive session's audit record): persisted
        and announced in order with the others, from inside the engine's loop."""
        return await self._call(
            lambda: self._event(type_, wf_id, group=group, task=task, retry_id=retry_id, **payload)
        )

    async def wait(self, wf_id: str) -> WorkflowStatus:
        wf = self.workflows.get(wf_id)
        if wf is None:
            return WorkflowStatus(self.store.get_workflow(wf_id)["status"])
        await wf.done.wait()
        if self.failure is not None and not (wf.status and wf.status.terminal):
            raise self.failure
        assert wf.status is not None
        return wf.status

    async def _refresh_nodes(self, name: str, backend: Backend, every: float) -> None:
        """Nodes added, removed or resized (a cluster's autoscaler, one unreachable at start)
        reach the scheduler; waiting tasks are placed again."""
        while True:
            await asyncio.sleep(every)
            try:
                nodes = await backend.nodes()
                await self._call(self._set_nodes, name, nodes)
            except asyncio.CancelledError:
                raise
            except Exception:  # the next listing may work; the engine must not stop for it
                log.exception("listing the nodes of backend %s failed", name)

    def _set_nodes(self, name: str, nodes: list[Node]) -> None:
        self.scheduler.set_nodes(name, nodes)
        self._queue_dirty = True

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.failure is not None:
            raise self.failure
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(_Call(fn, args, fut))
        return await fut

    def _on_backend_event(self, ev: BackendEvent) -> None:
        self._inbox.put_nowait(ev)

    # --- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._rounds()
        except Exception as e:
            # A round could not be persisted (or an engine bug): memory may now be ahead of the
            # store. Stop rather than announce or launch what a restart would not know; a
            # restart reloads from the store and reconciles with the agents.
            log.critical("engine stopped: %s", e, exc_info=not isinstance(e, StoreError))
            self.failure = e
            while not self._inbox.empty():
                item = self._inbox.get_nowait()
                if isinstance(item, _Call) and not item.future.done():
                    item.future.set_exception(e)
            for wf in self.workflows.values():
                wf.done.set()

    async def _rounds(self) -> None:
        while True:
            items = [await self._inbox.get()]
            # One more turn of the loop lets what arrived together (a launch answer and its
            # task's start, a burst of exits) land in this round: one commit instead of many.
            await asyncio.sleep(0)
            while not self._inbox.empty() and len(items) < 1000:
                items.append(self._inbox.get_nowait())
            done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
            for item in items:
                try:
                    if isinstance(item, _Call):
                        done.append((item.future, item.fn(*item.args), None))
                    else:
                        self._handle(item)
                except Exception as e:  # a bad command must not kill the engine
                    if isinstance(item, _Call):
                        done.append((item.future, None, e))
                    else:
                        log.exception("engine: failed to handle %r", item)
            self._schedule()
            try:
                self._flush()
            except Exception as e:
                for fut, _, _ in done:
                    if not fut.done():
                        fut.set_exception(e)
                raise
            for fut, result, exc in done:
                if fut.done():
                    continue
                if exc is not None:
                    fut.set_exception(exc)
                else:
                    fut.set_result(result)

    def _flush(self) -> None:
        """Persist the round, then announce it, then act on it (launch, cancel)."""
        due, self._progress_due = self._progress_due, set()
        for wf in due:
            self._workflow_progress(wf)
        batch, self._batch = self._batch, Batch()
        for attempt in range(4):  # a database restarting: ~1.5 s of retries, then give up
            try:
                self.store.commit(batch)
                break
            except StoreError as e:
                if attempt == 3:
                    raise
                log.warning("commit failed (%s); retrying", e)
                time.sleep(0.1 * 2**attempt)
        announce, self._announce = self._announce, []
        for ev in announce:
            self.bus.publish(ev)
        launches, self._launches = self._launches, []
        for att in launches:
            self._spawn(self._launch(att, self._launch_request(att)))
        cancels, self._cancels = self._cancels, []
        for att in cancels:
            backend = self.backends[att.alloc.backend if att.alloc else "local"]
            self._spawn(backend.cancel(att.key, self.config.cancel_grace))
        releases, self._releases = self._releases, []
        for att in releases:
            assert att.alloc is not None
            self._spawn(self.backends[att.alloc.backend].release(att.key))

    def _spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)

    def _post(self, item: Any) -> None:
        self._inbox.put_nowait(item)

    # --- events ---------------------------------------------------------------------------

    def _event(
        self,
        type_: str,
        wf: WorkflowRun | str,
        *,
        group: str | None = None,
        task: str | None = None,
        retry_id: int | None = None,
        status: str | None = None,
        **payload: Any,
    ) -> Event:
        ev = Event(
            type=type_,
            workflow_id=wf if isinstance(wf, str) else wf.id,
            ts=time.time(),
            id=self._next_event_id,
            group_name=group,
            task=task,
            retry_id=retry_id,
            status=status,
            payload={k: v for k, v in payload.items() if v is not None},
        )
        self._next_event_id += 1
        row = ev.to_dict()
        self._batch.events.append(row)
        self._announce.append(ev)
        return ev

    # --- state changes (the only places statuses change) ----------------------------------

    def _set_task(
        self, att: Attempt, to: TaskStatus, *, follow: bool = True, **fields: Any
    ) -> None:
        """Move an attempt. `follow=False` defers the group's reaction (bulk changes call
        `_group_follows` once when the whole group has moved)."""
        task = att.task
        wf = task.group.workflow
        check_task(att.status, to, f"{wf.id}/{task.name}/{att.retry_id}")
        was_active = att.status in _LAUNCHED
        att.status = to
        now = time.time()
        if to == T.RUNNING and att.start_time is None:
            att.start_time = now
        if to.terminal:
            att.end_time = now
            if att.hold_timer:
                att.hold_timer.cancel()
                att.hold_timer = None
        for k, v in fields.items():
            setattr(att, k, v)
        wf.active += (to in _LAUNCHED) - was_active
        self._save(
            att,
            status=to.value,
            start_time=att.start_time,
            end_time=att.end_time,
            exit_code=att.exit_code,
            message=att.message,
        )
        self._event(
            "task.status",
            wf,
            group=task.group.name,
            task=task.name,
            retry_id=att.retry_id,
            status=to.value,
            exit_code=att.exit_code,
            node=att.alloc.node if att.alloc else None,
            message=att.message,
            # what the command used, as last sampled: kept with its end (the samples are not)
            usage=att.usage.summary() if to.terminal and att.usage else None,
        )
        if follow:
            self._group_follows(task.group)
        self._progress_due.add(wf)

    def _save(self, att: Attempt, **columns: Any) -> None:
        """Queue an update of the attempt's row for this round's commit."""
        wf = att.task.group.workflow
        key = {"workflow_id": wf.id, "name": att.task.name, "retry_id": att.retry_id}
        self._batch.update("tasks", {**key, **columns})

    def _new_attempt(self, task: TaskRun, status: TaskStatus) -> Attempt:
        wf = task.group.workflow
        retry_id = task.attempts[-1].retry_id + 1 if task.attempts else 0
        check_task(None, status)
        att = Attempt(task, retry_id, status, create_time=time.time())
        task.attempts.append(att)
        self._attempts[att.key] = att
        row = {
            "workflow_id": wf.id,
            "name": task.name,
            "retry_id": retry_id,
            "group_name": task.group.name,
            "status": status.value,
            "create_time": att.create_time,
        }
        self._batch.insert("tasks", row)
        if retry_id:
            self._event(
                "task.status",
                wf,
                group=task.group.name,
                task=task.name,
                retry_id=retry_id,
                status=status.value,
            )
        return att

    def _set_group(self, g: GroupRun, to: TaskStatus, message: str | None = None) -> None:
        wf = g.workflow
        check_group(g.status, to, f"{wf.id}/group {g.name}")
        g.status = to
        now = time.time()
        if to == T.SCHEDULING:
            g.scheduling_time = now
            self._arm_timer(
                g,
                wf.spec.timeout.queue_timeout or self.config.default_queue_timeout,
                "queue_timeout",
                now,
            )
        elif to == T.RUNNING:
            g.start_time = now
            self._arm_timer(
                g,
                wf.spec.timeout.exec_timeout or self.config.default_exec_timeout,
                "exec_timeout",
                now,
            )
        if to.terminal:
            g.end_time = now
            for handle in (g.timer, g.grace_timer):
                if handle:
                    handle.cancel()
            g.timer = g.grace_timer = None
        if message:
            g.message = message
        self._batch.update(
            "groups",
            {
                "workflow_id": wf.id,
                "name": g.name,
                "status": to.value,
                "scheduling_time": g.scheduling_time,
                "start_time": g.start_time,
                "end_time": g.end_time,
                "message": g.message,
            },
        )
        self._event("group.status", wf, group=g.name, status=to.value, message=message)
        if to.terminal:
            self._group_ended(g)

    def _set_workflow(
        self, wf: WorkflowRun, to: WorkflowStatus, message: str | None = None
    ) -> None:
        if wf.status == to:
            return
        check_workflow(wf.status, to, wf.id)
        wf.status = to
        now = time.time()
        if to == W.RUNNING and wf.start_time is None:
            wf.start_time = now
        if to.terminal:
            wf.end_time = now
        if message:
            wf.message = message
        self._batch.update(
            "workflows",
            {
                "id": wf.id,
                "status": to.value,
                "start_time": wf.start_time,
                "end_time": wf.end_time,
                "message": wf.message,
            },
        )
        self._event("workflow.status", wf, status=to.value, message=message)
        if to.terminal:
            wf.done.set()
            self._forget(wf)

    def _forget(self, wf: WorkflowRun) -> None:
        """A finished workflow leaves memory; the store keeps it."""
        for t in wf.tasks.values():
            for a in t.attempts:
                self._attempts.pop(a.key, None)
        self.workflows.pop(wf.id, None)

    # --- submit --------------------------------------------------------------------------

    def _submit(
        self,
        spec: Workflow,
        pool: str,
        user: str,
        priority: int,
        original: str,
        rendered: str,
        values: dict[str, Any],
        file: str | None,
    ) -> str:
        now = time.time()
        wf = WorkflowRun(
            id="",
            spec=spec,
            dag=WorkflowDAG.build(spec),
            pool=pool,
            user=user,
            priority=priority,
            submit_time=now,
            status=W.PENDING,
        )
        self._flush()  # the submission is its own transaction (it allocates the id)
        batch = Batch()
        for g_spec in spec.all_groups():
            g = GroupRun(g_spec, wf, status=T.SUBMITTING)
            wf.groups[g.name] = g
            batch.insert("groups", {"name": g.name, "status": T.SUBMITTING.value})
            for t_spec in g_spec.tasks:
                t = TaskRun(t_spec, g)
                t.attempts.append(Attempt(t, 0, T.SUBMITTING, create_time=now))
                g.tasks.append(t)
                wf.tasks[t.name] = t
                batch.insert(
                    "tasks",
                    {
                        "name": t.name,
                        "retry_id": 0,
                        "group_name": g.name,
                        "status": T.SUBMITTING.value,
                        "create_time": now,
                    },
                )
        wf.groups_left = len(wf.groups)
        row = {
            "name": spec.name,
            "user": user,
            "pool": pool,
            "status": W.PENDING.value,
            "priority": priority,
            "file": file,
            "spec_original": original or "",
            "spec_rendered": rendered or "",
            "spec_json": spec.model_dump_json(by_alias=True),
            "set_values": json.dumps(values, default=str),
            "submit_time": now,
        }
        ev_id = self._next_event_id
        self._next_event_id += 1
        ev_row = {
            "id": ev_id,
            "ts": now,
            "type": "workflow.submitted",
            "version": 1,
            "status": W.PENDING.value,
            "payload": {"name": spec.name, "pool": pool, "user": user, "tasks": len(wf.tasks)},
        }
        batch.events.append(ev_row)
        wf.id = self.store.create_workflow(row, batch)
        self._seq += 1
        self.workflows[wf.id] = wf
        for t in wf.tasks.values():
            self._attempts[t.current.key] = t.current
        self.bus.publish(
            Event.from_row(
                {**ev_row, "workflow_id": wf.id, "group_name": None, "task": None, "retry_id": None}
            )
        )
        roots = set(wf.dag.roots())
        for g in wf.groups.values():
            if g.name in roots:
                self._start_group(g)
            else:
                for t in g.tasks:
                    self._set_task(t.current, T.WAITING)
        return wf.id

    # --- groups ------------------------------------------------------------------------------

    def _start_group(self, g: GroupRun) -> None:
        """Upstream done: the group's tasks go PROCESSING -> SCHEDULING and join the queue."""
        for t in g.tasks:
            self._set_task(t.current, T.PROCESSING)
        for t in g.tasks:
            self._set_task(t.current, T.SCHEDULING)
        units = [[t.current for t in g.tasks]] if g.spec.barrier else [[t.current] for t in g.tasks]
        self._enqueue(units)

    def _group_follows(self, g: GroupRun) -> None:
        """Move the group's phase forward with its tasks; end it when its tasks say so."""
        if g.status is None or g.status.terminal:
            return
        currents = [t.current.status for t in g.tasks]
        lead = g.lead.current.status
        # A non-lead counts as failed for the group only with ignoreNonleadStatus: false, and
        # not when it was stopped by us (cancel, a finished lead).
        failed_nonlead = not g.spec.ignore_nonlead_status and any(
            s is not None and s.failed and s != T.FAILED_CANCELED
            for t, s in zip(g.tasks, currents, strict=True)
            if t is not g.lead
        )
        lead_done = lead is not None and lead.terminal and lead != T.RESCHEDULED
        if lead_done or failed_nonlead:
            # The group's outcome is decided; whatever still runs in it is stopped: at once
            # after a failure, after a grace period when the lead simply finished (its peers
            # are often just finishing too).
            grace = self.config.group_stop_grace if not failed_nonlead else 0.0
            reason = "group lead finished" if lead_done else "a task of the group failed"
            for t in g.tasks:
                att = t.current
                if grace > 0 and att.status in _LAUNCHED:
                    if g.grace_timer is None:
                        g.grace_timer = asyncio.get_running_loop().call_later(
                            grace, self._post, ("timer", "lead_grace", g)
                        )
                    continue
                self._stop(att, T.FAILED_CANCELED, reason, follow=False)
            if all(t.current.status is not None and t.current.status.terminal for t in g.tasks):
                if failed_nonlead and lead in (T.COMPLETED, T.FAILED_CANCELED):
                    self._set_group(g, T.FAILED, "a non-lead task failed")
                elif lead != T.COMPLETED:
                    assert lead is not None
                    self._set_group(g, lead, g.lead.current.message)
                else:
                    self._set_group(g, T.COMPLETED)
            return
        phase = max((s for s in currents if s in _PHASE), key=_PHASE.__getitem__, default=None)
        if phase is not None and _PHASE[phase] > _PHASE.get(g.status, -1):
            self._set_group(g, phase)

    def _group_ended(self, g: GroupRun) -> None:
        wf = g.workflow
        wf.groups_left -= 1
        if g.status == T.COMPLETED:
            for succ in wf.dag.graph.successors(g.name):
                nxt = wf.groups[succ]
                if nxt.status == T.WAITING and all(
                    wf.groups[p].status == T.COMPLETED for p in wf.dag.upstream(succ)
                ):
                    self._start_group(nxt)
        else:
            blocked = T.FAILED_CANCELED if wf.canceling else T.FAILED_UPSTREAM
            for name in wf.dag.downstream(g.name):
                d = wf.groups[name]
                if d.status is not None and d.status.terminal:
                    continue
                for t in d.tasks:
                    if not t.current.status.terminal:  # type: ignore[union-attr]
                        self._set_task(
                            t.current,
                            blocked,
                            follow=False,
                            message=f"upstream group {g.name} ended {g.status}",
                        )
                self._group_follows(d)
        if wf.groups_left == 0:
            self._set_workflow(
                wf, workflow_outcome([x.status for x in wf.groups.values() if x.status is not None])
            )

    def _workflow_progress(self, wf: WorkflowRun) -> None:
        if wf.status is None or wf.status.terminal or not wf.id:
            return
        if wf.active:
            self._set_workflow(wf, W.RUNNING)
        elif wf.start_time is not None:
            self._set_workflow(wf, W.WAITING)

    # --- timers ------------------------------------------------------------------------------

    def _arm_timer(self, g: GroupRun, seconds: float, kind: str, since: float) -> None:
        if g.timer:
            g.timer.cancel()
            g.timer = None
        if seconds and seconds > 0:
            delay = max(0.0, since + seconds - time.time())
            g.timer = asyncio.get_running_loop().call_later(delay, self._post, ("timer", kind, g))

    def _on_timer(self, kind: str, g: GroupRun) -> None:
        if g.status is None or g.status.terminal:
            return
        if kind == "lead_grace":
            g.grace_timer = None
            for t in g.tasks:
                self._stop(t.current, T.FAILED_CANCELED, "group lead finished", follow=False)
            self._group_follows(g)
            return
        g.timer = None
        if kind == "queue_timeout" and g.status == T.SCHEDULING:
            msg = f"queue timeout: not placed within {g.workflow.spec.timeout.queue_timeout}s"
            for t in g.tasks:
                self._stop(t.current, T.FAILED_QUEUE_TIMEOUT, msg, follow=False)
            self._group_follows(g)
        elif kind == "exec_timeout":
            secs = g.workflow.spec.timeout.exec_timeout or self.config.default_exec_timeout
            for t in g.tasks:
                self._stop(
                    t.current,
                    T.FAILED_EXEC_TIMEOUT,
                    _hold_timeout_message(t.current, secs, "exec timeout")
                    or f"exec timeout: ran past {secs:g}s",
                    follow=False,
                )
            self._group_follows(g)

    # --- stopping ------------------------------------------------------------------------------

    def _stop(self, att: Attempt, reason: TaskStatus, message: str, *, follow: bool = True) -> None:
        """End an attempt for a reason of ours (cancel, timeout). Launched ones end when their
        process exits; the rest end now."""
        if att.status is None or att.status.terminal:
            return
        if att.status in _UNPLACED:
            self._unqueue(att)
            self._set_task(att, reason, message=message, follow=follow)
            return
        if att.cancel_reason is None:
            att.cancel_reason = reason
            att.message = message
            self._save(att, cancel_reason=reason.value, message=message)
            if not att.launching:
                self._cancels.append(att)

    def _cancel_workflow(self, wf_id: str) -> WorkflowStatus:
        wf = self.workflows.get(wf_id)
        if wf is None:
            status = WorkflowStatus(self.store.get_workflow(wf_id)["status"])
            raise Conflict(f"workflow {wf_id} already ended {status}")
        wf.canceling = True
        for name in wf.dag.topo_order():
            g = wf.groups[name]
            for t in g.tasks:
                self._stop(t.current, T.FAILED_CANCELED, "canceled by user", follow=False)
            self._group_follows(g)
        assert wf.status is not None
        return wf.status

    # --- holds (interactive: true, debug: on-failure) ---------------------------------------

    def _on_held(self, att: Attempt, ev: Held) -> None:
        """The command ended and the backend keeps the attempt: decide what it waits for."""
        if att.hold is not None or att.cancel_reason is not None:
            return  # a repeat (resync, recovery), or a cancel that ends the hold anyway
        if att.status == T.INITIALIZING:
            self._set_task(att, T.RUNNING)
        spec, code, wf = att.task.spec, ev.exit_code, att.task.group.workflow
        action = spec.exit_action(code) or (ExitAction.COMPLETE if code == 0 else ExitAction.FAIL)
        if action == ExitAction.COMPLETE and spec.interactive:
            kind = "interactive"
        elif action == ExitAction.FAIL and spec.debug == "on-failure":
            kind = "debug"
        else:  # the exit actions say otherwise (e.g. RESCHEDULE): end it as they say
            (self._releases if action == ExitAction.COMPLETE else self._cancels).append(att)
            return
        att.hold_until = self._hold_deadline(att, time.time())
        until = f" until {_utc(att.hold_until)}" if att.hold_until else ""
        ref = f"{wf.id} {att.task.name}"
        if kind == "interactive":
            message = f"waiting for the user{until}; `osmo workflow done {ref}` when finished"
        else:
            att.exit_code = code
            message = (
                f"exit code {code}; held for debugging{until}; "
                f"`osmo workflow retry {ref}` re-runs it"
            )
        att.hold, att.message = kind, message
        self._save(
            att, hold=kind, hold_until=att.hold_until, exit_code=att.exit_code, message=message
        )
        self._hold_event(att, message, until=att.hold_until)
        self._arm_hold(att)

    def _hold_event(self, att: Attempt, message: str, **payload: Any) -> None:
        assert att.status is not None
        self._event(
            "task.hold",
            att.task.group.workflow,
            group=att.task.group.name,
            task=att.task.name,
            retry_id=att.retry_id,
            status=att.status.value,
            hold=att.hold,
            exit_code=att.exit_code,
            message=message,
            **payload,
        )

    def _hold_deadline(self, att: Attempt, since: float) -> float | None:
        """The exec timeout (from the group's start), else OsmoConfig.hold_timeout from now."""
        g = att.task.group
        secs = g.workflow.spec.timeout.exec_timeout or self.config.default_exec_timeout
        if secs and secs > 0:
            return (g.start_time or since) + secs
        if self.config.hold_timeout > 0:
            return since + self.config.hold_timeout
        return None

    def _arm_hold(self, att: Attempt) -> None:
        if att.hold_timer:
            att.hold_timer.cancel()
            att.hold_timer = None
        if att.hold_until is not None:
            delay = max(0.0, att.hold_until - time.time())
            att.hold_timer = asyncio.get_running_loop().call_later(
                delay, self._post, ("hold_timeout", att)
            )

    def _on_hold_timeout(self, att: Attempt) -> None:
        att.hold_timer = None
        if att.status != T.RUNNING or att.hold not in ("interactive", "debug"):
            return
        wf = att.task.group.workflow
        secs = wf.spec.timeout.exec_timeout or self.config.default_exec_timeout
        if secs and secs > 0:
            status, what = T.FAILED_EXEC_TIMEOUT, "exec timeout"
        else:  # OsmoConfig.hold_timeout
            secs, what = self.config.hold_timeout, "hold timeout"
            status = T.FAILED_EXEC_TIMEOUT if att.hold == "interactive" else T.FAILED
        self._stop(att, status, _hold_timeout_message(att, secs, what) or what)

    def _held(self, wf_id: str, task: str, kind: str, verb: str) -> Attempt:
        """The attempt `verb` acts on: Conflict unless it is held as `kind`."""
        wf = self.workflows.get(wf_id)
        if wf is None:
            status = self.store.get_workflow(wf_id)["status"]  # NotFound for an unknown id
            raise Conflict(f"workflow {wf_id} already ended {status}; there is nothing to {verb}")
        t = wf.tasks.get(task)
        if t is None:
            raise NotFound(f"workflow {wf_id!r} has no task {task!r}")
        att = t.current
        if att.status != T.RUNNING or att.hold != kind or att.cancel_reason is not None:
            want = (
                "an interactive task waiting for its user"
                if kind == "interactive"
                else "a task held for debugging (debug: on-failure, failed)"
            )
            raise Conflict(f"task {task!r} of {wf_id} is {_describe(att)}; {verb} needs {want}")
        return att

    def _decide(self, att: Attempt, hold: str, message: str) -> None:
        """Record the user's decision before acting on it: a restart resends it."""
        att.hold = hold
        if att.hold_timer:
            att.hold_timer.cancel()
            att.hold_timer = None
        self._save(att, hold=hold)
        self._hold_event(att, message)

    def _done(self, wf_id: str, task: str) -> int:
        att = self._held(wf_id, task, "interactive", "done")
        self._decide(att, "done", "marked done by the user")
        self._releases.append(att)
        return att.retry_id

    def _retry(self, wf_id: str, task: str) -> int:
        att = self._held(wf_id, task, "debug", "retry")
        self._decide(att, "retry", "retry requested by the user")
        self._cancels.append(att)
        return att.retry_id + 1

    # --- placement and launch ------------------------------------------------------------------

    def _enqueue(self, units: list[list[Attempt]]) -> None:
        """Queue order: workflow priority, then first come first served."""
        for unit in units:
            self._seq += 1  # unique, so ranks never tie and units are never compared
            rank = (-unit[0].task.group.workflow.priority, self._seq)
            bisect.insort(self._queue, (rank, unit))
        self._queue_dirty = True

    def _unqueue(self, att: Attempt) -> None:
        for _, unit in self._queue:
            if att in unit:
                unit.remove(att)
        self._queue = [q for q in self._queue if q[1]]

    def _schedule(self) -> None:
        if not self._queue_dirty or not self._queue:
            return
        self._queue_dirty = False
        kept: list[tuple[tuple[int, int], list[Attempt]]] = []
        misses = 0
        for i, (rank, unit) in enumerate(self._queue):
            if misses > _BACKFILL_WINDOW:
                kept.extend(self._queue[i:])
                break
            wf = unit[0].task.group.workflow
            allocs = self.scheduler.place_gang(
                wf.pool, [wf.spec.resource_of(a.task.spec) for a in unit]
            )
            if allocs is None:
                kept.append((rank, unit))
                misses += 1
                continue
            for att, alloc in zip(unit, allocs, strict=True):
                att.alloc = alloc
                att.launching = True
                self._save(
                    att,
                    backend=alloc.backend,
                    node=alloc.node,
                    alloc=json.dumps(
                        {"cpu": alloc.cpu, "memory": alloc.memory, "gpus": alloc.gpus}
                    ),
                )
                self._set_task(att, T.INITIALIZING)
                self._launches.append(att)
        self._queue = kept

    def _release(self, att: Attempt) -> None:
        if att.alloc is not None:
            self.scheduler.release(att.alloc)
            self._queue_dirty = True

    def _launch_request(self, att: Attempt) -> LaunchRequest:
        task = att.task
        wf = task.group.workflow
        spec = task.spec
        input_index = {inp.task: i for i, inp in enumerate(spec.inputs) if inp.task}

        def resolve(text: str) -> str:
            text = _TOKEN_WF_ID.sub(wf.id, text)
            text = _TOKEN_INPUT_NAME.sub(
                lambda m: (
                    f"{{{{input:{input_index[m.group(1)]}}}}}"
                    if m.group(1) in input_index
                    else m.group(0)
                ),
                text,
            )
            return _TOKEN_HOST.sub(lambda m: self._host_of(wf, m.group(1)), text)

        creds, store = self.config.credentials, self.config.dataset_store
        store_cred = credential_for(creds, store)
        inputs = []
        for i, inp in enumerate(spec.inputs):
            if inp.task:
                up = wf.tasks[inp.task].current
                inputs.append(
                    InputSpec(i, path=up.info.output if up.info else None, regex=inp.regex)
                )
            elif inp.url:
                url = resolve(inp.url)
                cred = match_resolved(creds, inp.url, url)
                inputs.append(InputSpec(i, url=url, regex=inp.regex, credential=cred))
            elif inp.dataset:
                ds = inp.dataset
                inputs.append(
                    InputSpec(
                        i,
                        dataset=resolve(ds.name),
                        store=store,
                        regex=ds.regex or inp.regex,
                        credential=store_cred,
                    )
                )
        outputs = []
        for i, out in enumerate(spec.outputs):
            if out.url:
                url = resolve(out.url)
                cred = match_resolved(creds, out.url, url)
                outputs.append(OutputSpec(i, url=url, regex=out.regex, credential=cred))
            elif out.dataset:
                ds = out.dataset
                outputs.append(
                    OutputSpec(
                        i,
                        dataset=resolve(ds.name),
                        store=store,
                        regex=ds.regex or out.regex,
                        path=ds.path,
                        credential=store_cred,
                    )
                )
        checkpoints = [
            CheckpointSpec(
                c.path,
                resolve(c.url),
                c.frequency,
                c.regex,
                match_resolved(creds, c.url, resolve(c.url)),
            )
            for c in spec.checkpoint
        ]
        files = []
        for f in spec.files:
            data = (
                base64.b64decode(f.contents or "")
                if f.base64
                else resolve(f.contents or "").encode()
            )
            files.append(FileSpec(f.path, data, 0o755 if f.path.endswith(".sh") else 0o644))
        env = {k: resolve(v) for k, v in spec.environment.items()}
        env.update(
            OSMO_WORKFLOW_ID=wf.id,
            OSMO_TASK_NAME=task.name,
            OSMO_GROUP_NAME=task.group.name,
            OSMO_RETRY_ID=str(att.retry_id),
        )
        res = wf.spec.resource_of(spec)
        assert att.alloc is not None
        on_failure = spec.debug == "on-failure"
        hold = ("always" if on_failure else "success") if spec.interactive else None
        return LaunchRequest(
            hold=hold or ("failure" if on_failure else None),
            key=att.key,
            argv=[resolve(a) for a in [*spec.command, *spec.args]],
            env=env,
            files=files,
            inputs=inputs,
            image=spec.image,
            gpus=list(att.alloc.gpus),
            cpu=res.cpu,
            memory=res.memory,
            storage=res.storage,
            node=att.alloc.node,
            pool=wf.pool,
            platform=self.scheduler.platform_of(wf.pool, res),
            user=wf.user,
            group_size=len(task.group.tasks) if task.group.spec.barrier else 1,
            outputs=outputs,
            checkpoints=checkpoints,
            credentials=dict(spec.credentials),
        )

    def _host_of(self, wf: WorkflowRun, task: str) -> str:
        alloc = wf.tasks[task].current.alloc if task in wf.tasks else None
        if alloc is None or self.backends[alloc.backend].kind == "local":
            return "localhost"  # local tasks share this machine's network
        return self.backends[alloc.backend].host_of(wf.tasks[task].current.key, alloc.node)

    async def _launch(self, att: Attempt, req: LaunchRequest) -> None:
        assert att.alloc is not None
        backend = self.backends[att.alloc.backend]
        if req.hold and not backend.supports_hold:
            self._post(
                (
                    "start_refused",
                    att,
                    f"the {backend.kind} backend cannot hold tasks yet "
                    "(interactive: true, debug: on-failure)",
                )
            )
            return
        try:
            info = await backend.launch(req)
        except Exception as e:
            self._post(("launch_failed", att, f"{type(e).__name__}: {e}"))
            return
        self._post(("launched", att, info))

    # --- backend facts -------------------------------------------------------------------------

    def _handle(self, item: Any) -> None:
        if isinstance(item, tuple):
            kind = item[0]
            if kind == "timer":
                self._on_timer(item[1], item[2])
            elif kind == "launched":
                self._on_launched(item[1], item[2])
            elif kind == "hold_timeout":
                self._on_hold_timeout(item[1])
            elif kind == "start_refused":
                item[1].launching = False
                self._end_attempt(item[1], T.FAILED_START_ERROR, message=item[2])
            elif kind == "launch_failed":
                att = item[1]
                att.launching = False
                self._end_attempt(att, T.FAILED_BACKEND_ERROR, message=f"launch failed: {item[2]}")
            return
        att = self._attempts.get(item.key)
        if att is None or att.status is None or att.status.terminal:
            if isinstance(item, LogLine) and att is not None:
                self._publish_log(att, item)
            return  # a repeat or an attempt we no longer track
        if isinstance(item, LogLine):
            self._publish_log(att, item)
        elif isinstance(item, Transfer):
            self._transfer_event(att, item)
        elif isinstance(item, Usage):
            att.usage = item
            self._publish_live(att, "task.usage", item.ts, item.summary())
        elif isinstance(item, Started):
            if att.status == T.INITIALIZING:
                self._set_task(att, T.RUNNING)
        elif isinstance(item, Held):
            self._on_held(att, item)
        elif att.info is None and att.launching:
            att.pending_end = item  # wait for the launch answer: downstream needs the paths
        elif isinstance(item, Exited):
            self._on_exit(att, item.exit_code, item.message)
        elif isinstance(item, StartFailed):
            failed = _START_FAILURES.get(item.reason, T.FAILED_START_ERROR)
            self._end_attempt(att, failed, message=item.message)
        elif isinstance(item, Lost):
            lost = T.FAILED_EVICTED if item.reason == "evicted" else T.FAILED_BACKEND_ERROR
            self._end_attempt(att, lost, message=item.message)

    def _publish_log(self, att: Attempt, line: LogLine) -> None:
        payload = {"n": line.n, "stream": line.stream, "text": line.text}
        self._publish_live(att, "task.log", line.ts, payload)

    def _publish_live(self, att: Attempt, type_: str, ts: float, payload: dict[str, Any]) -> None:
        """An event for the live streams only (not stored): log lines, usage samples."""
        self.bus.publish(
            Event(
                type=type_,
                workflow_id=att.task.group.workflow.id,
                ts=ts,
                group_name=att.task.group.name,
                task=att.task.name,
                retry_id=att.retry_id,
                payload=payload,
            )
        )

    def _transfer_event(self, att: Attempt, t: Transfer) -> None:
        """A finished transfer is persisted like a status change (byte counts and durations
        outlive the logs); a progress report is live only, like a log line."""
        wf = att.task.group.workflow
        if not t.final:
            self.bus.publish(
                Event(
                    type="task.transfer.progress",
                    workflow_id=wf.id,
                    ts=t.ts,
                    group_name=att.task.group.name,
                    task=att.task.name,
                    retry_id=att.retry_id,
                    payload={
                        "direction": t.direction,
                        "url": t.url,
                        "files": t.files,
                        "bytes": t.bytes,
                        "files_total": t.files_total,
                        "bytes_total": t.bytes_total,
                        "seconds": round(t.seconds, 3),
                    },
                )
            )
            return
        self._event(
            "task.transfer",
            wf,
            group=att.task.group.name,
            task=att.task.name,
            retry_id=att.retry_id,
            direction=t.direction,
            url=t.url,
            dataset=t.dataset,
            files=t.files,
            bytes=t.bytes,
            seconds=round(t.seconds, 3),
            error=t.error,
        )

    def _on_launched(self, att: Attempt, info: LaunchInfo) -> None:
        att.launching = False
        att.info = info
        self._save(att, workdir=info.workdir, output_path=info.output, log_path=info.log)
        if att.cancel_reason is not None and not (att.status and att.status.terminal):
            self._cancels.append(att)
        if att.pending_end is not None:
            pending, att.pending_end = att.pending_end, None
            self._handle(pending)

    def _on_exit(self, att: Attempt, code: int, why: str = "") -> None:
        """`why`: the agent's reason when it ended the task itself (a failed transfer)."""
        if att.cancel_reason is not None:
            self._end_attempt(att, att.cancel_reason, exit_code=code)
            return
        if att.hold == "retry":
            message = f"exit code {code}; retried by the user"
            self._end_attempt(att, T.FAILED, exit_code=code, message=message, again=True)
            return
        action = att.task.spec.exit_action(code)
        if action is None:
            action = ExitAction.COMPLETE if code == 0 else ExitAction.FAIL
        why = f": {why}" if why else ""
        if action == ExitAction.COMPLETE:
            done = "marked done by the user" if att.hold == "done" else None
            self._end_attempt(att, T.COMPLETED, exit_code=code, message=done)
        elif action == ExitAction.FAIL:
            self._end_attempt(att, T.FAILED, exit_code=code, message=f"exit code {code}{why}")
        else:
            self._end_attempt(
                att,
                T.RESCHEDULED,
                exit_code=code,
                message=f"exit code {code}{why}: {action.value}",
            )

    def _end_attempt(
        self,
        att: Attempt,
        status: TaskStatus,
        *,
        exit_code: int | None = None,
        message: str | None = None,
        again: bool = False,
    ) -> None:
        """Final status of an attempt, and a new attempt when the task may try again (`again`:
        the user asked for one, outside the retry budget)."""
        if att.status is None or att.status.terminal:
            return
        if att.status not in _LAUNCHED:  # e.g. a failed launch of an attempt not yet placed
            self._unqueue(att)
        self._release(att)
        retry = (
            again
            or status == T.RESCHEDULED
            or (status in INFRA_RESCHEDULE and att.cancel_reason is None)
        )
        budget = att.task.spec.max_retries
        if budget is None:
            budget = self.config.max_retries
        if retry and not again and att.retry_id >= budget:
            retry = False
            message = f"{message + '; ' if message else ''}retry budget ({budget}) exhausted"
            if status == T.RESCHEDULED:
                status = T.FAILED
        self._set_task(
            att,
            status,
            exit_code=exit_code,
            follow=False,
            message=message if message is not None else att.message,
        )
        if retry:  # the new attempt exists before the group looks, so the group goes on
            nxt = self._new_attempt(att.task, T.PROCESSING)
            self._set_task(nxt, T.SCHEDULING, follow=False)
            self._enqueue([[nxt]])
        self._group_follows(att.task.group)

    # --- recovery --------------------------------------------------------------------------

    async def _recover(self) -> None:
        """Reload unfinished workflows and reconcile their attempts with the backends."""
        ids = self.store.unfinished_workflow_ids()
        to_ask: dict[str, list[Attempt]] = {}
        for wf_id in ids:
            wf = self._load(wf_id)
            self.workflows[wf.id] = wf
            for t in wf.tasks.values():
                att = t.current
                if att.status in _LAUNCHED and att.alloc is not None:
                    self.scheduler.adopt(att.alloc)
                    to_ask.setdefault(att.alloc.backend, []).append(att)
        for backend_name, atts in to_ask.items():
            states = await self.backends[backend_name].status([a.key for a in atts])
            for att in atts:
                st = states.get(att.key)
                if st is not None and st.info is not None and att.info is None:
                    self._on_launched(att, st.info)
                state = st.state if st else "unknown"
                if state == "unknown":
                    if att.status == T.INITIALIZING:
                        att.launching = True
                        self._launches.append(att)  # never reached the backend: launch now
                    else:
                        self._post(Lost(att.key, "the backend does not know this attempt"))
                    continue
                if state in ("running", "held", "exited") and att.status == T.INITIALIZING:
                    self._set_task(att, T.RUNNING)
                if state in ("running", "held"):  # decisions a crash may have kept from it
                    if att.cancel_reason is not None or att.hold == "retry":
                        self._cancels.append(att)
                    elif att.hold == "done":
                        self._releases.append(att)
                if state == "held":
                    if att.hold is None:  # held before the crash, but we never heard
                        self._post(Held(att.key, st.exit_code or 0, signal=st.signal))
                    elif att.hold in ("interactive", "debug"):
                        self._arm_hold(att)
                if state == "exited":
                    code = st.exit_code or 0
                    self._post(Exited(att.key, code, signal=st.signal, message=st.message))
                elif state == "failed_start":
                    self._post(StartFailed(att.key, st.message))
                elif state == "lost":
                    self._post(Lost(att.key, st.message or "the backend lost this attempt"))
        for wf_id in ids:
            wf = self.workflows[wf_id]
            self._resume(wf)
        self._schedule()
        self._flush()

    def _load(self, wf_id: str) -> WorkflowRun:
        row = self.store.get_workflow(wf_id)
        spec = Workflow.model_validate_json(row["spec_json"])
        wf = WorkflowRun(
            id=wf_id,
            spec=spec,
            dag=WorkflowDAG.build(spec),
            pool=row["pool"],
            user=row["user"],
            priority=row["priority"],
            submit_time=row["submit_time"],
            status=W(row["status"]),
            start_time=row["start_time"],
            message=row["message"],
        )
        group_rows = {r["name"]: r for r in self.store.groups_of(wf_id)}
        by_task: dict[str, list[Any]] = {}
        for r in self.store.tasks_of(wf_id):
            by_task.setdefault(r["name"], []).append(r)
        for g_spec in spec.all_groups():
            gr = group_rows[g_spec.name]
            g = GroupRun(
                g_spec,
                wf,
                status=T(gr["status"]),
                scheduling_time=gr["scheduling_time"],
                start_time=gr["start_time"],
                end_time=gr["end_time"],
                message=gr["message"],
            )
            wf.groups[g.name] = g
            if not g.status.terminal:
                wf.groups_left += 1
            for t_spec in g_spec.tasks:
                t = TaskRun(t_spec, g)
                for r in sorted(by_task[t_spec.name], key=lambda r: r["retry_id"]):
                    alloc = None
                    if r["alloc"]:
                        a = json.loads(r["alloc"])
                        alloc = Alloc(r["backend"], r["node"], a["cpu"], a["memory"], a["gpus"])
                    info = (
                        LaunchInfo(t.name, r["workdir"], r["output_path"], r["log_path"])
                        if r["workdir"]
                        else None
                    )
                    att = Attempt(
                        t,
                        r["retry_id"],
                        T(r["status"]),
                        create_time=r["create_time"],
                        start_time=r["start_time"],
                        end_time=r["end_time"],
                        exit_code=r["exit_code"],
                        alloc=alloc,
                        info=info,
                        cancel_reason=T(r["cancel_reason"]) if r["cancel_reason"] else None,
                        message=r["message"],
                        hold=r["hold"],
                        hold_until=r["hold_until"],
                    )
                    t.attempts.append(att)
                    self._attempts[att.key] = att
                    if att.status in _LAUNCHED:
                        wf.active += 1
                g.tasks.append(t)
                wf.tasks[t.name] = t
        return wf

    def _resume(self, wf: WorkflowRun) -> None:
        """Carry on from where the store says we were (crash between two rounds)."""
        completed = {n for n, g in wf.groups.items() if g.status == T.COMPLETED}
        for name in wf.dag.topo_order():
            g = wf.groups[name]
            if g.status is None or g.status.terminal:
                continue
            statuses = {t.current.status for t in g.tasks}
            if statuses <= {T.SUBMITTING, T.WAITING}:
                upstream = wf.dag.upstream(name)
                if upstream <= completed:
                    self._start_group(g)
                elif any(
                    wf.groups[u].status.terminal and wf.groups[u].status != T.COMPLETED
                    for u in upstream
                ):  # type: ignore[union-attr]
                    for t in g.tasks:
                        self._set_task(
                            t.current, T.FAILED_UPSTREAM, message="upstream failed", follow=False
                        )
                    self._group_follows(g)
                continue
            units = []
            for t in g.tasks:
                att = t.current
                if att.status == T.PROCESSING:
                    self._set_task(att, T.SCHEDULING)
                if att.status == T.SCHEDULING:
                    units.append(att)
            if units:
                self._enqueue(
                    [units] if g.spec.barrier and g.status == T.SCHEDULING else [[a] for a in units]
                )
            if g.status == T.SCHEDULING:
                self._arm_timer(
                    g,
                    wf.spec.timeout.queue_timeout or self.config.default_queue_timeout,
                    "queue_timeout",
                    g.scheduling_time or time.time(),
                )
            elif g.status == T.RUNNING:
                self._arm_timer(
                    g,
                    wf.spec.timeout.exec_timeout or self.config.default_exec_timeout,
                    "exec_timeout",
                    g.start_time or time.time(),
                )
            self._group_follows(g)
        if wf.groups_left == 0 and not wf.status.terminal:  # type: ignore[union-attr]
            self._set_workflow(
                wf, workflow_outcome([g.status for g in wf.groups.values() if g.status is not None])
            )


def _inline_localpaths(spec: Workflow, base: Path) -> Workflow:
    """`files: [{localpath}]` are read at submission (as OSMO uploads them), so a run never
    depends on the submitter's files later."""
    if not any(f.localpath for t in spec.all_tasks() for f in t.files):
        return spec
    spec = spec.model_copy(deep=True)
    problems: list[Problem] = []
    for where, task in task_fields(spec):
        for i, f in enumerate(task.files):
            if f.localpath:
                path = (base / f.localpath).expanduser()
                try:
                    data = path.read_bytes()
                except OSError as e:
                    problems.append(
                        Problem(
                            f"cannot read {path}: {e.strerror}",
                            field=f"{where}.files[{i}].localpath",
                        )
                    )
                    continue
                f.contents, f.localpath, f.base64 = base64.b64encode(data).decode(), None, True
    if problems:
        raise SpecError(problems)
    return spec


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _describe(att: Attempt) -> str:
    """An attempt's status as a user should read it in an error."""
    if att.cancel_reason is not None and not (att.status and att.status.terminal):
        return f"{att.status}, being stopped ({att.cancel_reason})"
    held = {
        "interactive": "waiting for its user",
        "debug": "held for debugging",
        "done": "marked done, finishing",
        "retry": "being retried",
    }
    if att.status == T.RUNNING and att.hold in held:
        return f"RUNNING ({held[att.hold]})"
    return str(att.status)


def _hold_timeout_message(att: Attempt, secs: float, what: str) -> str | None:
    if att.hold == "interactive":
        return (
            f"{what}: interactive task not marked done within {secs:g}s "
            "(`osmo workflow done WF TASK` ends it)"
        )
    if att.hold == "debug":
        return f"exit code {att.exit_code}; held for debugging until the {what} ({secs:g}s)"
    return None
