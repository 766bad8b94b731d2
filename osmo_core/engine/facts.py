"""What the backends report (start, exit, hold, loss, logs, transfers, usage, storage) applied
to runs.

An exit ends the attempt as the task's exit actions say and, within the retry budget, starts a
new one (`policy.retry_or_end`); a preempted attempt gets one outside the budget, up to
`policy.MAX_PREEMPTIONS` per task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from ..events import Event
from ..states import TaskStatus
from ..wire import (
    Exited,
    Held,
    LaunchInfo,
    LogLine,
    Lost,
    NodeOnline,
    Started,
    StartFailed,
    StorageTrouble,
    Transfer,
    Usage,
)
from . import policy
from .runs import LAUNCHED, Attempt

if TYPE_CHECKING:
    from .loop import Engine

T = TaskStatus


class BackendFacts:
    """The Engine's handling of what its backends report.

    A part of `Engine` (engine/loop.py): methods only, on the engine's state, run in its loop.
    """

    def _handle(self: Engine, item: Any) -> None:
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
            elif kind == "request_failed":  # the server could not turn the spec into a launch
                item[1].launching = False
                self._end_attempt(
                    item[1], T.FAILED_SERVER_ERROR, message=f"cannot launch: {item[2]}"
                )
            elif kind == "requeue":
                self._requeue(item[1])
            # "reasons": nothing to apply; the round's _schedule reports the next slice
            elif kind == "cache_checked":
                self._on_cache_checked(item[1], item[2])
            return
        if isinstance(item, NodeOnline):
            self.scheduler.set_online(item.backend, item.node, item.online)
            self._queue.dirty = True  # a node back: what waits may fit now
            return
        att = self._attempts.get(item.key)
        if isinstance(item, StorageTrouble):  # also after its end, even its workflow's
            self._storage_event(item, att)
            return
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
            failed = policy.start_failure_status(item.reason)
            self._end_attempt(att, failed, message=item.message)
        elif isinstance(item, Lost):
            if att.cancel_reason is not None:  # stopped by us and gone: it ended as asked
                self._end_attempt(att, att.cancel_reason)
            else:
                self._end_attempt(att, policy.lost_status(item.reason), message=item.message)

    def _publish_log(self: Engine, att: Attempt, line: LogLine) -> None:
        payload = {"n": line.n, "stream": line.stream, "text": line.text}
        self._publish_live(att, "task.log", line.ts, payload)

    def _publish_live(
        self: Engine, att: Attempt, type_: str, ts: float, payload: dict[str, Any]
    ) -> None:
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

    def _transfer_event(self: Engine, att: Attempt, t: Transfer) -> None:
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

    def _storage_event(self: Engine, t: StorageTrouble, att: Attempt | None) -> None:
        """The agent could not write the attempt's records (its end is safe in its memory):
        the user sees it in the workflow's events, not only in agent.log. A recovery comes
        when the disk is back, often after the workflow has ended and left memory."""
        wf_id, task, retry_id = t.key.split("/")  # "<workflow_id>/<task>/<retry_id>"
        if att is None:
            try:
                self.store.get_workflow(wf_id)  # rare: a read is cheap enough here
            except NotFound:
                return  # not a workflow of this store
        self._event(
            "task.storage",
            wf_id,
            group=att.task.group.name if att is not None else None,
            task=task,
            retry_id=int(retry_id),
            message=t.message,
            recovered=t.recovered,
        )

    def _on_launched(self: Engine, att: Attempt, info: LaunchInfo) -> None:
        att.launching = False
        att.info = info
        self._save(att, workdir=info.workdir, output_path=info.output, log_path=info.log)
        if att.cancel_reason is not None and not (att.status and att.status.terminal):
            self._cancels.append(att)
        if att.pending_end is not None:
            pending, att.pending_end = att.pending_end, None
            self._handle(pending)

    def _on_exit(self: Engine, att: Attempt, code: int, why: str = "") -> None:
        """`why`: the agent's reason when it ended the task itself (a failed transfer)."""
        if att.cancel_reason is not None:
            self._end_attempt(att, att.cancel_reason, exit_code=code)
            return
        if att.hold == "retry":
            message: str | None = f"exit code {code}; retried by the user"
            self._end_attempt(att, T.FAILED, exit_code=code, message=message, again=True)
            return
        action = policy.exit_action(att.task.spec, code)
        status, message = policy.exit_outcome(action, code, why, att.hold)
        self._end_attempt(att, status, exit_code=code, message=message)

    def _end_attempt(
        self: Engine,
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
        if status == T.RESCHEDULED and att.cancel_reason == T.RESCHEDULED and exit_code is not None:
            # its group restarts it on the same room (engine/groups.py); one that was lost
            # instead (its host or agent gone) is queued again like any retry
            self._restart_in_place(att, exit_code)
            return
        if att.status not in LAUNCHED:  # e.g. a failed launch of an attempt not yet placed
            self._unqueue(att)
        self._release(att)
        if att.cancel_reason == T.FAILED_PREEMPTED:  # however its process ended
            status, exit_code, message = policy.preempted_outcome(att.task.spec, att.message)
        preempted = sum(a.status == T.FAILED_PREEMPTED for a in att.task.attempts if a is not att)
        # a preemption is not the task's fault: it is rescheduled outside the budget (bounded)
        free = policy.preemption_retry(status, preempted)
        retry, status, message = policy.retry_or_end(
            status,
            message,
            again=again or free,
            # a preemption is not a stop its user asked for: it is rescheduled
            stopped_by_us=att.cancel_reason not in (None, T.FAILED_PREEMPTED),
            # the budget spent: not preemptions (bounded), nor its group's restarts in place
            retry_id=policy.budget_spent(att.retries, preempted),
            budget=policy.retry_budget(att.task.spec.max_retries, self.config.max_retries),
            exit_code=exit_code,
        )
        self._set_task(
            att,
            status,
            exit_code=exit_code,
            follow=False,
            message=message if message is not None else att.message,
        )
        nxt = None
        if retry:  # the new attempt exists before the group looks, so the group goes on
            nxt = self._new_attempt(att.task, T.PROCESSING)
            if att.cache_key is not None:  # same inputs: its completion is a cache entry too
                nxt.cache_key = att.cache_key
                self._save(nxt, cache_key=att.cache_key)
            self._set_task(nxt, T.SCHEDULING, follow=False)
        if not self._preempted_ended(att, nxt) and nxt is not None:
            delay = policy.retry_delay(status, nxt.retry_id, again=again or free)
            self._enqueue_after(nxt, delay, status)
        if retry and not again and att.cancel_reason is None:  # not a preemption's victim
            self._restart_peers(att)
        self._group_follows(att.task.group)
