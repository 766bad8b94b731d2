"""The engine's decisions as small pure functions: exit codes and exit actions, the retry budget,
holds, group outcomes, and the messages users read about them.

Each rule takes plain values and returns what to do; the engine (the only writer of state)
applies the answer. No I/O, no clock, no engine state here, so every rule is tested alone
(tests/core/test_engine_policy.py), the way Prefect writes its orchestration rules.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from ..exit_codes import ExitCode
from ..spec.models import ExitAction, Task
from ..states import INFRA_RESCHEDULE, TaskStatus

T = TaskStatus

# StartFailed.reason -> the status it ends in (anything else: FAILED_START_ERROR)
START_FAILURES = {"image_pull": T.FAILED_IMAGE_PULL, "start_timeout": T.FAILED_START_TIMEOUT}
# A group's phase follows the furthest of its tasks along this order.
PHASES = {
    s: i
    for i, s in enumerate(
        [T.SUBMITTING, T.WAITING, T.PROCESSING, T.SCHEDULING, T.INITIALIZING, T.RUNNING]
    )
}
_HELD = {
    "interactive": "waiting for its user",
    "debug": "held for debugging",
    "done": "marked done, finishing",
    "retry": "being retried",
}


# --- exit codes and exit actions ------------------------------------------------------------


def exit_action(spec: Task, code: int) -> ExitAction:
    """What the task's `exitAction` says of `code`; by default 0 completes, the rest fail."""
    action = spec.exit_action(code)
    if action is None:
        action = ExitAction.COMPLETE if code == 0 else ExitAction.FAIL
    return action


def exit_outcome(
    action: ExitAction, code: int, why: str = "", hold: str | None = None
) -> tuple[TaskStatus, str | None]:
    """The status and message an attempt ends with when its command exited as `action` says.
    `why`: the agent's reason when it ended the task itself; `hold`: the user's decision."""
    why = f": {why}" if why else ""
    if action == ExitAction.COMPLETE:
        return T.COMPLETED, "marked done by the user" if hold == "done" else None
    if action == ExitAction.FAIL:
        return T.FAILED, f"exit code {code}{why}"
    return T.RESCHEDULED, f"exit code {code}{why}: {action.value}"


def preempted_outcome(spec: Task, message: str | None) -> tuple[TaskStatus, int, str | None]:
    """How a preempted attempt ends, whatever its process exited with: FAILED_PREEMPTED with
    OSMO's code 3006 (rescheduled as an infrastructure failure), unless its exitActions name
    3006, as OSMO applies them to that code."""
    code = int(ExitCode.FAILED_PREEMPTED)
    action = spec.exit_action(code)
    if action is None:
        return T.FAILED_PREEMPTED, code, message
    status, _ = exit_outcome(action, code)
    return status, code, f"{message}; exit action {action.value} for exit code {code}"


def start_failure_status(reason: str) -> TaskStatus:
    """The status of an attempt whose start failed for `reason` (StartFailed.reason)."""
    return START_FAILURES.get(reason, T.FAILED_START_ERROR)


def lost_status(reason: str) -> TaskStatus:
    """The status of an attempt the backend lost (Lost.reason)."""
    return T.FAILED_EVICTED if reason == "evicted" else T.FAILED_BACKEND_ERROR


# --- retry budget ---------------------------------------------------------------------------


def retry_budget(max_retries: int | None, default: int) -> int:
    """The task's `maxRetries`, else the server's OsmoConfig.max_retries."""
    return default if max_retries is None else max_retries


def retry_or_end(
    status: TaskStatus,
    message: str | None,
    *,
    again: bool,
    stopped_by_us: bool,
    retry_id: int,
    budget: int,
    exit_code: int | None = None,
) -> tuple[bool, TaskStatus, str | None]:
    """Whether an attempt ending as `status` gets a new attempt, and the status and message it
    ends with. A reschedule or an infrastructure failure (unless we stopped the attempt) tries
    again within the budget; past it a reschedule is not applied, as in OSMO's jobs.py: the
    attempt ends as its exit code says without the action (0 COMPLETED, else FAILED). `again`:
    the user asked for a new attempt, outside the budget."""
    retry = again or status == T.RESCHEDULED or (status in INFRA_RESCHEDULE and not stopped_by_us)
    if retry and not again and retry_id >= budget:
        retry = False
        message = f"{message + '; ' if message else ''}retry budget ({budget}) exhausted"
        if status == T.RESCHEDULED:
            status = T.COMPLETED if exit_code == 0 else T.FAILED
    return retry, status, message


# A task's preemptions rescheduled outside its retry budget (a preemption is not the task's
# fault); past this many, each one counts against the budget like any infrastructure failure.
MAX_PREEMPTIONS = 10


def preemption_retry(status: TaskStatus, preempted_before: int) -> bool:
    """Whether an attempt ending `status` gets a new attempt outside the retry budget: one
    ended FAILED_PREEMPTED (its exitActions do not name 3006), while its task was preempted
    fewer than MAX_PREEMPTIONS times before."""
    return status == T.FAILED_PREEMPTED and preempted_before < MAX_PREEMPTIONS


def budget_spent(retry_id: int, preempted_before: int) -> int:
    """The retries of its budget a task spent before attempt `retry_id`: every earlier attempt
    but the preempted ones rescheduled outside the budget (`preemption_retry`)."""
    return retry_id - min(preempted_before, MAX_PREEMPTIONS)


RETRY_BACKOFF = 0.5  # seconds before the first retry after an infrastructure failure
RETRY_BACKOFF_MAX = 30.0  # doubling per retry, at most this


def retry_delay(status: TaskStatus, retry_id: int, *, again: bool = False) -> float:
    """Seconds the new attempt `retry_id` waits before it is queued: after an infrastructure
    failure (a host, an agent or a cluster failing) it backs off, doubling per retry and
    bounded, so a retry budget is not spent in a second on a backend that is still down; a
    reschedule by exit code or a retry the user asked for (`again`) is queued at once."""
    if again or status not in INFRA_RESCHEDULE or retry_id < 1:
        return 0.0
    return min(RETRY_BACKOFF * 2.0 ** (retry_id - 1), RETRY_BACKOFF_MAX)


# --- holds ----------------------------------------------------------------------------------


def launch_hold(interactive: bool, debug: str | None) -> str | None:
    """When the backend keeps a task after its command (LaunchRequest.hold): always, on
    success, on failure, or never."""
    on_failure = debug == "on-failure"
    hold = ("always" if on_failure else "success") if interactive else None
    return hold or ("failure" if on_failure else None)


def hold_kind(spec: Task, action: ExitAction) -> str | None:
    """What a held attempt waits for: its user (interactive), debugging (debug), or nothing
    (None: the exit actions say otherwise, e.g. RESCHEDULE, and it ends as they say)."""
    if action == ExitAction.COMPLETE and spec.interactive:
        return "interactive"
    if action == ExitAction.FAIL and spec.debug == "on-failure":
        return "debug"
    return None


def hold_deadline(
    exec_timeout: float, hold_timeout: float, group_start: float | None, since: float
) -> float | None:
    """Until when a hold lasts: the exec timeout (from the group's start), else
    OsmoConfig.hold_timeout from `since`; None: no limit."""
    if exec_timeout and exec_timeout > 0:
        return (group_start or since) + exec_timeout
    if hold_timeout > 0:
        return since + hold_timeout
    return None


def hold_expiry(
    exec_timeout: float, hold_timeout: float, hold: str | None
) -> tuple[TaskStatus, float, str]:
    """A hold ran out: the status it ends in, the limit it ran past and that limit's name."""
    if exec_timeout and exec_timeout > 0:
        return T.FAILED_EXEC_TIMEOUT, exec_timeout, "exec timeout"
    status = T.FAILED_EXEC_TIMEOUT if hold == "interactive" else T.FAILED
    return status, hold_timeout, "hold timeout"


def hold_timeout_message(
    hold: str | None, exit_code: int | None, secs: float, what: str
) -> str | None:
    """What a held attempt that ran past `what` ends with; None when it was not held."""
    if hold == "interactive":
        return (
            f"{what}: interactive task not marked done within {secs:g}s "
            "(`osmo workflow done WF TASK` ends it)"
        )
    if hold == "debug":
        return f"exit code {exit_code}; held for debugging until the {what} ({secs:g}s)"
    return None


def describe(status: TaskStatus | None, cancel_reason: TaskStatus | None, hold: str | None) -> str:
    """An attempt's status as a user should read it in an error."""
    if cancel_reason is not None and not (status and status.terminal):
        return f"{status}, being stopped ({cancel_reason})"
    if status == T.RUNNING and hold in _HELD:
        return f"RUNNING ({_HELD[hold]})"
    return str(status)


def utc(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


# --- groups ---------------------------------------------------------------------------------


def nonlead_failed(
    ignore_nonlead_status: bool, nonleads: Iterable[tuple[str, TaskStatus | None]]
) -> str | None:
    """The non-lead whose failure fails the group: only with ignoreNonleadStatus: false, and
    not one stopped by a cancel; None when there is none."""
    if ignore_nonlead_status:
        return None
    return next(
        (n for n, s in nonleads if s is not None and s.failed and s != T.FAILED_CANCELED), None
    )


def lead_done(lead: TaskStatus | None) -> bool:
    """The lead's attempt ended for good (a reschedule is not an end)."""
    return lead is not None and lead.terminal and lead != T.RESCHEDULED


LEAD_FINISHED = "Lead task finished"  # OSMO's words (jobs.py)


def restarts_peers(is_lead: bool, ignore_nonlead_status: bool) -> bool:
    """Whether a task rescheduled within its budget restarts its group's other tasks in place,
    as OSMO's jobs.py (UpdateGroup) does: always when it is the lead, otherwise only with
    ignoreNonleadStatus: false. (OSMO's docs say a rescheduled lead leaves its peers running
    under the default ignoreNonleadStatus: true; its code restarts them, and so does this.)"""
    return is_lead or not ignore_nonlead_status


MEET_AGAIN = "restarted in place: waiting, on its room, for its group to start together again"


def restart_message(task: str) -> str:
    """What a peer's attempt stopped for its group's restart ends with (RESCHEDULED)."""
    return f"restarted in place: task {task} of its group was rescheduled"


def peers_end(lead: TaskStatus | None, failed_nonlead: str | None) -> tuple[TaskStatus, str]:
    """How a group's other tasks end once its outcome is decided, as OSMO's jobs.py ends them:
    after a non-lead's failure (ignoreNonleadStatus: false) FAILED, naming it; after the lead,
    the lead's COMPLETED, or FAILED whatever failure the lead had (not its FAILED_EVICTED...)."""
    if failed_nonlead is not None:
        return T.FAILED, f"Task {failed_nonlead} Failed."
    return (T.FAILED if lead is None or lead.failed else T.COMPLETED), LEAD_FINISHED


def group_outcome(
    lead: TaskStatus, failed_nonlead: str | None, lead_message: str | None
) -> tuple[TaskStatus, str | None]:
    """How a group whose tasks all ended ends, and with what message."""
    if failed_nonlead is not None and lead in (T.COMPLETED, T.FAILED_CANCELED):
        return T.FAILED, f"Task {failed_nonlead} Failed."
    if lead != T.COMPLETED:
        return lead, lead_message
    return T.COMPLETED, None


def group_phase(group: TaskStatus, tasks: Iterable[TaskStatus | None]) -> TaskStatus | None:
    """The phase a live group moves forward to, following its furthest task; None: it stays."""
    phase = max((s for s in tasks if s in PHASES), key=PHASES.__getitem__, default=None)
    if phase is not None and PHASES[phase] > PHASES.get(group, -1):
        return phase
    return None
