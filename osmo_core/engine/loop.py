"""The engine: the only writer of workflow, group and task state, and its loop.

Everything that changes state runs inside one asyncio task (`_run`), fed by an inbox: backend
events, user commands (submit, cancel), timer fires and launch results. Each round drains the
inbox, applies the changes in memory (every move checked against `states`), places what can
run now, then commits the round's rows and events to the store in ONE transaction and only then
announces the events and starts the launches. So nothing is announced or launched that a crash
could forget, and a crash loses at most a round that nobody saw.

The Engine is assembled from one part per concept, each a class of methods in its own module:
transitions (state changes), submit, groups, placement (queue and launch), facts (what the
backends report), holds, cancel, cache (the task cache and reuse), recovery and reconcile (the
periodic check that every launched attempt still has a process behind it); the decisions they
apply are pure functions in policy.py, the records they change are in runs.py.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..backends.base import Backend
from ..config import OsmoConfig
from ..errors import StoreError
from ..events import Event, EventBus
from ..scheduler import Scheduler
from ..states import TaskStatus, WorkflowStatus
from ..store import Batch, Store
from ..wire import BackendEvent, NodeOnline
from .cache import TaskCache
from .cancel import Cancelling
from .facts import BackendFacts
from .groups import GroupProgress
from .holds import Holds
from .launch import launch_request, previous_output
from .placement import Placement, resource_of
from .preempt import Claim, Preempting, Requeue
from .reconcile import ReconcileStats, Reconciling
from .recovery import Recovery
from .runs import Attempt, WorkflowRun
from .submit import Submission
from .transitions import Transitions
from .waitqueue import WaitQueue

log = logging.getLogger("osmo.engine")
T = TaskStatus
R = TypeVar("R")


@dataclass
class _Call:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]


# --- the engine -----------------------------------------------------------------------------


def _none(user: str) -> dict[str, tuple[str, dict[str, str]]]:
    return {}


class Engine(
    Transitions,
    Submission,
    GroupProgress,
    Placement,
    Preempting,
    BackendFacts,
    Holds,
    Cancelling,
    Recovery,
    Reconciling,
    TaskCache,
):
    """Runs workflows: commands and backend events go through its inbox, one round at a time."""

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
        # A user's own credentials, opened at launch (the Service sets UserCredentials')
        self.own_credentials: Callable[[str], dict[str, tuple[str, dict[str, str]]]] = _none
        self._attempts: dict[str, Attempt] = {}
        # Placement units (a barrier group is one unit) waiting for capacity.
        self._queue: WaitQueue[Attempt] = WaitQueue(scheduler, resource_of)
        # Preemption (engine/preempt.py): claims by id of the waiting unit, victim -> its claim,
        # victim -> how its retry goes back to the queue.
        self._claims: dict[int, Claim] = {}
        self._claim_of: dict[Attempt, Claim] = {}
        self._requeue_of: dict[Attempt, Requeue] = {}
        # whether this scheduling pass found LOW work to preempt (None: not looked yet)
        self._victims: bool | None = None
        self._launched: dict[str, Attempt] = {}  # INITIALIZING or RUNNING (transitions.py)
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._batch = Batch()
        self._announce: list[Event] = []
        self._launches: list[Attempt] = []
        self._cancels: list[Attempt] = []
        self._releases: list[Attempt] = []  # held attempts the user is done with
        self._progress_due: set[WorkflowRun] = set()  # RUNNING/WAITING is settled per round
        self._next_event_id: int = 1
        self._runner: asyncio.Task[None] | None = None
        self.failure: Exception | None = None  # set when the engine had to stop
        self._bg: set[asyncio.Task[Any]] = set()
        self.reconciled = ReconcileStats()
        self.lag = 0.0  # the tick's measures: declared in Reconciling, which sets them
        self.tick_at = None
        self.tick_started = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._next_event_id = self.store.max_event_id() + 1
        for name, backend in self.backends.items():
            await backend.start(self._on_backend_event)
            self.scheduler.set_nodes(name, await backend.nodes())
        await self._recover()
        self._runner = asyncio.create_task(self._run(), name="osmo-engine")
        self._spawn(self._tick_forever(), "the lag tick")
        if self.config.reconcile_interval > 0:
            every = self.config.reconcile_interval
            self._spawn(self._reconcile_forever(every), "the reconciliation")
        for name, backend in self.backends.items():
            if backend.node_refresh:
                every = backend.node_refresh
                self._spawn(self._refresh_nodes(name, backend, every), f"{name}'s node listing")

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
        return len(self._queue)

    def queued_in(self, pool: str) -> int:
        """Task attempts waiting for capacity in the pool."""
        return self._queue.waiting_in(pool)

    @property
    def inbox_length(self) -> int:
        """Commands and backend events not yet taken by a round."""
        return self._inbox.qsize()

    @property
    def attempt_counts(self) -> Counter[str]:
        """Task attempts per status, of the workflows in memory (the unfinished ones)."""
        return Counter(a.status.value for a in self._attempts.values() if a.status is not None)

    @property
    def lag_now(self) -> float:
        """Seconds a no-op last took through the inbox, or has been waiting there so far (a
        stuck engine never answers the tick: its lag grows)."""
        started = self.tick_started
        return max(self.lag, 0.0 if started is None else time.monotonic() - started)

    def launched_by_backend(self) -> Counter[str]:
        """INITIALIZING or RUNNING attempts per backend."""
        return Counter(a.alloc.backend for a in self._launched.values() if a.alloc)

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

    # --- commands (any coroutine may call these; they run inside the engine's loop; submit,
    # cancel, done and retry live with their concept: submit.py, cancel.py, holds.py) --------

    def usage(self, wf_id: str, task: str) -> dict[str, Any] | None:
        """The last usage sample of the task's running command (None when there is none)."""
        wf = self.workflows.get(wf_id)
        run = wf.tasks.get(task) if wf else None
        att = run.attempts[-1] if run and run.attempts else None
        if att is None or att.usage is None or att.hold or (att.status and att.status.terminal):
            return None
        return {"ts": att.usage.ts, **att.usage.summary()}

    def pending_reasons(self, wf_id: str) -> dict[str, str]:
        """Why each waiting task of the workflow waits now, by task name."""
        wf = self.workflows.get(wf_id)
        if wf is None:
            return {}
        out = {}
        for name, run in wf.tasks.items():
            reason = self.pending_reason(run.current)
            if reason is not None:
                out[name] = reason
        return out

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

    async def _call(self, fn: Callable[..., R], *args: Any) -> R:
        if self.failure is not None:
            raise self.failure
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(_Call(fn, args, fut))
        return await fut

    def _on_backend_event(self, ev: BackendEvent | NodeOnline) -> None:
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
            try:
                req = launch_request(
                    att,
                    self.config,
                    self.scheduler,
                    self.backends,
                    functools.partial(previous_output, self.store),
                    functools.partial(self.own_credentials, att.task.group.workflow.user),
                )
            except Exception as e:  # this task's spec cannot be launched: it fails, not the engine
                log.exception("engine: cannot build the launch of %s", att.key)
                self._post(("request_failed", att, f"{type(e).__name__}: {e}"))
                continue
            self._spawn(self._launch(att, req), f"launch of {att.key}")
        cancels, self._cancels = self._cancels, []
        for att in cancels:
            self._spawn(self._stop_process(att), f"cancel of {att.key}")
        releases, self._releases = self._releases, []
        for att in releases:
            assert att.alloc is not None
            self._spawn(self.backends[att.alloc.backend].release(att.key), f"release of {att.key}")

    def _spawn(self, coro: Any, name: str) -> None:
        """Run `coro` beside the engine's loop; its failure is logged under `name` (asyncio
        would only say "exception never retrieved", at garbage collection, if at all)."""
        t = asyncio.create_task(coro, name=name)
        self._bg.add(t)
        t.add_done_callback(self._background_done)

    def _background_done(self, t: asyncio.Task[Any]) -> None:
        self._bg.discard(t)
        if not t.cancelled() and (e := t.exception()) is not None:
            log.error("engine: %s failed: %s: %s", t.get_name(), type(e).__name__, e, exc_info=e)

    def _post(self, item: Any) -> None:
        self._inbox.put_nowait(item)
