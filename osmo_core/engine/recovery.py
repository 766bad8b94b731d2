"""Restart: reload unfinished workflows and reconcile their attempts with the backends.

Launch is idempotent per attempt key, so an attempt persisted as INITIALIZING is launched again
only if the backend never heard of it: a task is never run twice, a completed task never again.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..states import TASK_TERMINAL, TaskStatus, workflow_outcome
from ..wire import Exited, Held, Lost, StartFailed, attempt_key
from .runs import LAUNCHED, Attempt, WorkflowRun, run_from_rows

if TYPE_CHECKING:
    from sqlalchemy import RowMapping

    from .loop import Engine

log = logging.getLogger("osmo.engine")
T = TaskStatus
ENDED = {s.value for s in TASK_TERMINAL}


class Recovery:
    """The Engine's restart: reload from the store, ask the backends, resume.

    A part of `Engine` (engine/loop.py): methods only, on the engine's state, run in its loop.
    """

    async def _recover(self: Engine) -> None:
        """Reload unfinished workflows and reconcile their attempts with the backends."""
        ids = []
        to_ask: dict[str, list[Attempt]] = {}
        for wf_id in self.store.unfinished_workflow_ids():
            rows = self.store.get_workflow(wf_id)
            group_rows, task_rows = self.store.groups_of(wf_id), self.store.tasks_of(wf_id)
            loaded: dict[str, Attempt] = {}
            try:
                wf = run_from_rows(rows, group_rows, task_rows, loaded)
            except Exception as e:  # e.g. a spec an older validator let through: it fails alone
                log.exception("recovery: cannot load workflow %s", wf_id)
                reason = f"cannot load the stored workflow: {type(e).__name__}: {e}"
                self._fail_unloadable(wf_id, group_rows, task_rows, reason)
                continue
            gone = self._unconfigured(wf)
            if gone is not None:  # the config changed under it: it fails alone
                log.error("recovery: workflow %s: %s", wf_id, gone)
                self._fail_unloadable(wf_id, group_rows, task_rows, gone)
                continue
            ids.append(wf_id)
            self._attempts.update(loaded)
            self.workflows[wf.id] = wf
            for t in wf.tasks.values():
                att = t.current
                if att.status in LAUNCHED and att.alloc is not None:
                    self.scheduler.adopt(att.alloc)
                    self._launched[att.key] = att
                    to_ask.setdefault(att.alloc.backend, []).append(att)
                elif att.parked:  # it keeps the room its group's restart kept for it
                    assert att.alloc is not None
                    self.scheduler.adopt(att.alloc)
        for backend_name, atts in to_ask.items():
            states = await self.backends[backend_name].status([a.key for a in atts])
            for att in atts:
                st = states.get(att.key)
                if st is not None and st.info is not None and att.info is None:
                    self._on_launched(att, st.info)
                if st is None or st.state == "unknown":
                    if att.status == T.INITIALIZING:
                        att.launching = True
                        self._launches.append(att)  # never reached the backend: launch now
                    else:
                        self._post(Lost(att.key, "the backend does not know this attempt"))
                    continue
                state = st.state
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
                    self._post(StartFailed(att.key, st.message, reason=st.reason))
                elif state == "lost":
                    self._post(Lost(att.key, st.message or "the backend lost this attempt"))
        for wf_id in ids:
            wf = self.workflows[wf_id]
            self._resume(wf)
        self._schedule()
        self._flush()

    def _unconfigured(self: Engine, wf: WorkflowRun) -> str | None:
        """Why a stored workflow cannot go on under this configuration (its pool, or the
        backend one of its attempts was launched on, was removed); None when it can."""
        if wf.pool not in self.scheduler.pools:
            return (
                f"its pool {wf.pool!r} is no longer configured (OsmoConfig.pools has "
                f"{sorted(self.scheduler.pools)})"
            )
        for t in wf.tasks.values():
            alloc = t.current.alloc
            held = t.current.status in LAUNCHED or t.current.parked
            if held and alloc and alloc.backend not in self.backends:
                return (
                    f"task {t.name!r} was launched on backend {alloc.backend!r}, which is no "
                    "longer configured: its process, if any, cannot be reached"
                )
        return None

    def _fail_unloadable(
        self: Engine,
        wf_id: str,
        group_rows: list[RowMapping],
        task_rows: list[RowMapping],
        reason: str,
    ) -> None:
        """End, in the store, a workflow the engine cannot load or carry on: its unfinished
        tasks, groups and itself FAILED_SERVER_ERROR with `reason`; attempts a configured
        backend may still run are cancelled (by key: their records are all that is left).
        Statuses are compared as text: the rows may be what could not be loaded."""
        F = T.FAILED_SERVER_ERROR.value
        now = time.time()
        for g in group_rows:
            if g["status"] not in ENDED:
                self._batch.update(
                    "groups",
                    {"workflow_id": wf_id, "name": g["name"], "status": F, "end_time": now},
                )
                self._event("group.status", wf_id, group=g["name"], status=F, message=reason)
        for r in task_rows:
            if r["status"] in ENDED:
                continue
            key = {"workflow_id": wf_id, "name": r["name"], "retry_id": r["retry_id"]}
            self._batch.update("tasks", {**key, "status": F, "end_time": now, "message": reason})
            self._event(
                "task.status",
                wf_id,
                group=r["group_name"],
                task=r["name"],
                retry_id=r["retry_id"],
                status=F,
                message=reason,
            )
            if r["backend"] in self.backends:
                backend = self.backends[r["backend"]]
                att_key = attempt_key(wf_id, r["name"], r["retry_id"])
                self._spawn(
                    backend.cancel(att_key, self.config.cancel_grace), f"cancel of {att_key}"
                )
        self._batch.update(
            "workflows", {"id": wf_id, "status": F, "end_time": now, "message": reason}
        )
        self._event("workflow.status", wf_id, status=F, message=reason)

    def _resume(self: Engine, wf: WorkflowRun) -> None:
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
                    (s := wf.groups[u].status) is not None and s.terminal and s != T.COMPLETED
                    for u in upstream
                ):
                    for t in g.tasks:
                        self._set_task(
                            t.current, T.FAILED_UPSTREAM, message="upstream failed", follow=False
                        )
                    self._group_follows(g)
                continue
            if statuses == {T.PROCESSING} and self._group_cached(g):
                self._check_cache(g)  # the lookup a crash interrupted
                continue
            units = []
            for t in g.tasks:
                att = t.current
                if att.status == T.PROCESSING:
                    self._set_task(att, T.SCHEDULING)
                if att.status == T.SCHEDULING and not att.parked:
                    units.append(att)
            if units:
                self._enqueue(
                    [units] if g.spec.barrier and g.status == T.SCHEDULING else [[a] for a in units]
                )
            self._meet(g)  # parked by a restart in place: they launch once the group meets
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
        if wf.groups_left == 0 and wf.status is not None and not wf.status.terminal:
            self._set_workflow(
                wf, workflow_outcome([g.status for g in wf.groups.values() if g.status is not None])
            )
