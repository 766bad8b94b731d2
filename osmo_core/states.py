"""Statuses of tasks, groups and workflows, and the one table of legal transitions.

Names are OSMO's, verbatim. Pure: no I/O, no engine. The engine asks `check_task()` /
`check_workflow()` before every change; a refused change is a bug and raises InvalidTransition.

A task *attempt* is one row (workflow, task, retry_id). A new attempt is created (from `None`)
in SUBMITTING for the first try and in PROCESSING for a retry. A *reused* attempt does not run:
a restart that keeps a completed group's outputs moves it SUBMITTING -> COMPLETED, the task
cache PROCESSING -> COMPLETED; its row's `reused_from` names the attempt that ran
(engine/cache.py). An attempt that ended
RESCHEDULED (or in an infrastructure failure that the exit actions reschedule) is followed by a
new attempt; the task's status is its latest attempt's status.

A held attempt (`interactive: true` waiting for its user, `debug: on-failure` kept after a
failure; engine/holds.py) is not a status of its own: it stays RUNNING, because its process
environment and resources are live and interactive access is for RUNNING tasks; the attempt's
`hold` says why. Its end is an ordinary move from RUNNING.
"""

from __future__ import annotations

from enum import Enum

from .errors import InvalidTransition


class TaskStatus(str, Enum):
    SUBMITTING = "SUBMITTING"
    WAITING = "WAITING"
    PROCESSING = "PROCESSING"
    SCHEDULING = "SCHEDULING"
    INITIALIZING = "INITIALIZING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    RESCHEDULED = "RESCHEDULED"
    FAILED = "FAILED"
    FAILED_CANCELED = "FAILED_CANCELED"
    FAILED_SERVER_ERROR = "FAILED_SERVER_ERROR"
    FAILED_BACKEND_ERROR = "FAILED_BACKEND_ERROR"
    FAILED_EXEC_TIMEOUT = "FAILED_EXEC_TIMEOUT"
    FAILED_QUEUE_TIMEOUT = "FAILED_QUEUE_TIMEOUT"
    FAILED_IMAGE_PULL = "FAILED_IMAGE_PULL"
    FAILED_UPSTREAM = "FAILED_UPSTREAM"
    FAILED_EVICTED = "FAILED_EVICTED"
    FAILED_START_ERROR = "FAILED_START_ERROR"
    FAILED_START_TIMEOUT = "FAILED_START_TIMEOUT"
    FAILED_PREEMPTED = "FAILED_PREEMPTED"

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        return self in TASK_TERMINAL

    @property
    def failed(self) -> bool:
        return self.value.startswith("FAILED")


class WorkflowStatus(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    FAILED_SUBMISSION = "FAILED_SUBMISSION"
    FAILED_CANCELED = "FAILED_CANCELED"
    FAILED_SERVER_ERROR = "FAILED_SERVER_ERROR"
    FAILED_EXEC_TIMEOUT = "FAILED_EXEC_TIMEOUT"
    FAILED_QUEUE_TIMEOUT = "FAILED_QUEUE_TIMEOUT"
    FAILED_BACKEND_ERROR = "FAILED_BACKEND_ERROR"
    FAILED_IMAGE_PULL = "FAILED_IMAGE_PULL"
    FAILED_EVICTED = "FAILED_EVICTED"
    FAILED_START_ERROR = "FAILED_START_ERROR"
    FAILED_START_TIMEOUT = "FAILED_START_TIMEOUT"
    FAILED_PREEMPTED = "FAILED_PREEMPTED"

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        return self not in (WorkflowStatus.PENDING, WorkflowStatus.RUNNING, WorkflowStatus.WAITING)

    @property
    def failed(self) -> bool:
        return self.value.startswith("FAILED")


# Groups use the task statuses (OSMO does the same); their moves are checked against the task table.
GroupStatus = TaskStatus

T = TaskStatus
_ACTIVE_FAILURES = {T.FAILED_CANCELED, T.FAILED_SERVER_ERROR, T.FAILED_EXEC_TIMEOUT}
# A task not yet placed ends with its group's lead (OSMO's "Lead task finished": COMPLETED, or
# FAILED) or with a failed non-lead of a strict group (FAILED).
_PEER_ENDS = {T.COMPLETED, T.FAILED}
_RUNTIME_ENDS = {
    T.COMPLETED,
    T.FAILED,
    T.RESCHEDULED,
    T.FAILED_BACKEND_ERROR,
    T.FAILED_EVICTED,
    T.FAILED_PREEMPTED,
}

TASK_TERMINAL: frozenset[TaskStatus] = frozenset(
    s for s in TaskStatus if s == T.COMPLETED or s == T.RESCHEDULED or s.value.startswith("FAILED")
)

#: from-status -> statuses it may move to. `None` is "not yet created".
TASK_TRANSITIONS: dict[TaskStatus | None, frozenset[TaskStatus]] = {
    None: frozenset({T.SUBMITTING, T.PROCESSING}),
    T.SUBMITTING: frozenset(
        {T.WAITING, T.PROCESSING, T.COMPLETED, T.FAILED_UPSTREAM} | _ACTIVE_FAILURES
    ),
    T.WAITING: frozenset({T.PROCESSING, T.FAILED_UPSTREAM} | _ACTIVE_FAILURES),
    T.PROCESSING: frozenset({T.SCHEDULING, T.COMPLETED} | _ACTIVE_FAILURES | _PEER_ENDS),
    T.SCHEDULING: frozenset(
        {T.INITIALIZING, T.FAILED_QUEUE_TIMEOUT} | _ACTIVE_FAILURES | _PEER_ENDS
    ),
    T.INITIALIZING: frozenset(
        {T.RUNNING, T.FAILED_START_ERROR, T.FAILED_START_TIMEOUT, T.FAILED_IMAGE_PULL}
        | _RUNTIME_ENDS
        | _ACTIVE_FAILURES
    ),
    T.RUNNING: frozenset(_RUNTIME_ENDS | _ACTIVE_FAILURES),
    **{s: frozenset() for s in TASK_TERMINAL},
}

#: Group moves: a group is an aggregate of its tasks, so it may skip phases, but only forward
#: (SUBMITTING < WAITING < ... < RUNNING), and it ends once. FAILED_UPSTREAM only before it
#: started; a group is never RESCHEDULED (its tasks are).
_PHASES = [T.SUBMITTING, T.WAITING, T.PROCESSING, T.SCHEDULING, T.INITIALIZING, T.RUNNING]
_GROUP_ENDS = TASK_TERMINAL - {T.RESCHEDULED, T.FAILED_UPSTREAM}
GROUP_TRANSITIONS: dict[TaskStatus | None, frozenset[TaskStatus]] = {
    None: frozenset({T.SUBMITTING}),
    **{
        p: frozenset(_PHASES[i + 1 :])
        | _GROUP_ENDS
        | ({T.FAILED_UPSTREAM} if p in (T.SUBMITTING, T.WAITING) else set())
        for i, p in enumerate(_PHASES)
    },
    **{s: frozenset() for s in TASK_TERMINAL},
}

W = WorkflowStatus
_W_ENDS = frozenset(s for s in WorkflowStatus if s.terminal)
WORKFLOW_TRANSITIONS: dict[WorkflowStatus | None, frozenset[WorkflowStatus]] = {
    None: frozenset({W.PENDING, W.FAILED_SUBMISSION}),
    W.PENDING: frozenset({W.RUNNING, W.WAITING} | _W_ENDS),
    W.RUNNING: frozenset({W.WAITING} | _W_ENDS),
    W.WAITING: frozenset({W.RUNNING} | _W_ENDS),
    **{s: frozenset() for s in _W_ENDS},
}


def check_task(frm: TaskStatus | None, to: TaskStatus, what: str = "task") -> None:
    if to not in TASK_TRANSITIONS[frm]:
        raise InvalidTransition(f"{what}: {frm} -> {to} is not a legal task transition")


def check_group(frm: TaskStatus | None, to: TaskStatus, what: str = "group") -> None:
    if to not in GROUP_TRANSITIONS[frm]:
        raise InvalidTransition(f"{what}: {frm} -> {to} is not a legal group transition")


def check_workflow(frm: WorkflowStatus | None, to: WorkflowStatus, what: str = "workflow") -> None:
    if to not in WORKFLOW_TRANSITIONS[frm]:
        raise InvalidTransition(f"{what}: {frm} -> {to} is not a legal workflow transition")


#: Infrastructure failures that the default exit actions reschedule (OSMO: "if the task is
#: preempted, mark the task as RESCHEDULED"; a lost host or node is treated the same way).
INFRA_RESCHEDULE: frozenset[TaskStatus] = frozenset(
    {T.FAILED_PREEMPTED, T.FAILED_BACKEND_ERROR, T.FAILED_EVICTED}
)


def workflow_outcome(group_statuses: list[TaskStatus]) -> WorkflowStatus:
    """Aggregate the final workflow status once every group has ended, as OSMO's
    workflow.py does: a cancel, a server error or a timeout names it; else, when the failed
    groups (but those blocked upstream) all failed the same way, the workflow fails that way
    (FAILED_EVICTED, FAILED_IMAGE_PULL...); else FAILED."""
    assert all(s.terminal for s in group_statuses), "workflow_outcome needs ended groups"
    if all(s == T.COMPLETED for s in group_statuses):
        return W.COMPLETED
    for special in (
        T.FAILED_CANCELED,
        T.FAILED_SERVER_ERROR,
        T.FAILED_EXEC_TIMEOUT,
        T.FAILED_QUEUE_TIMEOUT,
    ):
        if special in group_statuses:
            return WorkflowStatus(special.value)
    causes = {s for s in group_statuses if s.failed and s != T.FAILED_UPSTREAM}
    if len(causes) == 1:
        (cause,) = causes
        return WorkflowStatus.__members__.get(cause.value, W.FAILED)
    return W.FAILED


def workflow_progress(task_statuses: list[TaskStatus], started: bool) -> WorkflowStatus:
    """Live (non-final) workflow status: RUNNING if any task runs, else PENDING/WAITING."""
    if any(s in (T.RUNNING, T.INITIALIZING) for s in task_statuses):
        return W.RUNNING
    return W.WAITING if started else W.PENDING
