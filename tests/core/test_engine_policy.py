"""The engine's decisions, each rule alone: exit actions, retry budget, holds, group outcomes.

tests/core/test_engine.py runs the same rules end to end through real workflows; here every
branch is one call with plain values.
"""

from __future__ import annotations

from typing import Any

import pytest

from osmo_core.engine import policy
from osmo_core.spec.models import ExitAction, Task
from osmo_core.states import INFRA_RESCHEDULE, TaskStatus

T = TaskStatus
A = ExitAction


def task(**fields: Any) -> Task:
    return Task.model_validate({"name": "t", "command": ["true"], **fields})


# --- exit codes and exit actions ------------------------------------------------------------


@pytest.mark.parametrize(("code", "action"), [(0, A.COMPLETE), (1, A.FAIL), (137, A.FAIL)])
def test_exit_action_default_rule(code: int, action: ExitAction) -> None:
    assert policy.exit_action(task(), code) == action


def test_exit_action_from_the_spec_wins() -> None:
    spec = task(exitActions={"COMPLETE": "0,16", "RESCHEDULE": "3-5"})
    assert policy.exit_action(spec, 16) == A.COMPLETE
    assert policy.exit_action(spec, 4) == A.RESCHEDULE
    assert policy.exit_action(spec, 7) == A.FAIL  # not listed: the default rule
    assert policy.exit_action(task(exitActions={"FAIL": "0"}), 0) == A.FAIL


def test_exit_outcome() -> None:
    assert policy.exit_outcome(A.COMPLETE, 0) == (T.COMPLETED, None)
    assert policy.exit_outcome(A.COMPLETE, 0, hold="done") == (
        T.COMPLETED,
        "marked done by the user",
    )
    assert policy.exit_outcome(A.FAIL, 2) == (T.FAILED, "exit code 2")
    assert policy.exit_outcome(A.FAIL, 1, "output upload failed") == (
        T.FAILED,
        "exit code 1: output upload failed",
    )
    assert policy.exit_outcome(A.RESCHEDULE, 3) == (T.RESCHEDULED, "exit code 3: RESCHEDULE")
    assert policy.exit_outcome(A.RESCHEDULE, 3, "x") == (
        T.RESCHEDULED,
        "exit code 3: x: RESCHEDULE",
    )


def test_start_failures_and_losses() -> None:
    assert policy.start_failure_status("image_pull") == T.FAILED_IMAGE_PULL
    assert policy.start_failure_status("start_timeout") == T.FAILED_START_TIMEOUT
    assert policy.start_failure_status("anything else") == T.FAILED_START_ERROR
    assert policy.lost_status("evicted") == T.FAILED_EVICTED
    assert policy.lost_status("node gone") == T.FAILED_BACKEND_ERROR


# --- retry budget ---------------------------------------------------------------------------


def test_retry_budget_task_before_server() -> None:
    assert policy.retry_budget(None, 3) == 3
    assert policy.retry_budget(0, 3) == 0
    assert policy.retry_budget(5, 3) == 5


def retry_or_end(
    status: TaskStatus,
    message: str | None = None,
    *,
    again: bool = False,
    stopped_by_us: bool = False,
    retry_id: int = 0,
    budget: int = 2,
    exit_code: int | None = 3,
) -> tuple[bool, TaskStatus, str | None]:
    return policy.retry_or_end(
        status,
        message,
        again=again,
        stopped_by_us=stopped_by_us,
        retry_id=retry_id,
        budget=budget,
        exit_code=exit_code,
    )


@pytest.mark.parametrize("status", [T.COMPLETED, T.FAILED, T.FAILED_CANCELED, T.FAILED_UPSTREAM])
def test_no_retry_for_ordinary_ends(status: TaskStatus) -> None:
    assert retry_or_end(status, "m") == (False, status, "m")


def test_reschedule_retries_within_the_budget_then_fails() -> None:
    assert retry_or_end(T.RESCHEDULED, "exit code 3", retry_id=1) == (
        True,
        T.RESCHEDULED,
        "exit code 3",
    )
    assert retry_or_end(T.RESCHEDULED, "exit code 3", retry_id=2) == (
        False,
        T.FAILED,
        "exit code 3; retry budget (2) exhausted",
    )
    assert retry_or_end(T.RESCHEDULED, retry_id=0, budget=0) == (
        False,
        T.FAILED,
        "retry budget (0) exhausted",
    )
    # OSMO does not apply the action past the limit: exit 0 stays COMPLETED
    assert retry_or_end(T.RESCHEDULED, retry_id=0, budget=0, exit_code=0) == (
        False,
        T.COMPLETED,
        "retry budget (0) exhausted",
    )


@pytest.mark.parametrize("status", sorted(INFRA_RESCHEDULE))
def test_infrastructure_failures_retry_unless_we_stopped_them(status: TaskStatus) -> None:
    assert retry_or_end(status) == (True, status, None)
    assert retry_or_end(status, stopped_by_us=True) == (False, status, None)
    # past the budget it keeps its own status (only a reschedule turns FAILED)
    assert retry_or_end(status, "lost", retry_id=2) == (
        False,
        status,
        "lost; retry budget (2) exhausted",
    )


def test_a_users_retry_is_outside_the_budget() -> None:
    assert retry_or_end(T.FAILED, "m", again=True, retry_id=9, budget=0) == (True, T.FAILED, "m")


def test_a_preemption_is_rescheduled_outside_the_budget_up_to_a_cap() -> None:
    cap = policy.MAX_PREEMPTIONS
    assert policy.preemption_retry(T.FAILED_PREEMPTED, 0)
    assert policy.preemption_retry(T.FAILED_PREEMPTED, cap - 1)
    assert not policy.preemption_retry(T.FAILED_PREEMPTED, cap)  # then it spends the budget
    assert not policy.preemption_retry(T.RESCHEDULED, 0)  # exitActions naming 3006 rule
    assert not policy.preemption_retry(T.FAILED_BACKEND_ERROR, 0)
    # earlier preempted attempts spend nothing, up to the cap
    assert policy.budget_spent(3, 2) == 1
    assert policy.budget_spent(cap + 3, cap + 3) == 3
    assert policy.budget_spent(2, 0) == 2


def test_infrastructure_retries_back_off_doubling_and_bounded() -> None:
    bad = T.FAILED_BACKEND_ERROR
    delays = [policy.retry_delay(bad, n) for n in range(1, 12)]
    assert delays[:3] == [policy.RETRY_BACKOFF, 2 * policy.RETRY_BACKOFF, 4 * policy.RETRY_BACKOFF]
    assert delays == sorted(delays) and max(delays) == policy.RETRY_BACKOFF_MAX
    # a reschedule by exit code, and a retry the user asked for, are queued at once
    assert policy.retry_delay(T.RESCHEDULED, 3) == 0
    assert policy.retry_delay(bad, 3, again=True) == 0


# --- holds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interactive", "debug", "hold"),
    [
        (False, None, None),
        (True, None, "success"),
        (False, "on-failure", "failure"),
        (True, "on-failure", "always"),
    ],
)
def test_launch_hold(interactive: bool, debug: str | None, hold: str | None) -> None:
    assert policy.launch_hold(interactive, debug) == hold


def test_hold_kind() -> None:
    interactive, debug = task(interactive=True), task(debug="on-failure")
    both = task(interactive=True, debug="on-failure")
    assert policy.hold_kind(interactive, A.COMPLETE) == "interactive"
    assert policy.hold_kind(interactive, A.FAIL) is None
    assert policy.hold_kind(debug, A.FAIL) == "debug"
    assert policy.hold_kind(debug, A.COMPLETE) is None
    assert policy.hold_kind(both, A.COMPLETE) == "interactive"
    assert policy.hold_kind(both, A.FAIL) == "debug"
    assert policy.hold_kind(both, A.RESCHEDULE) is None  # ends as the exit actions say
    assert policy.hold_kind(task(), A.COMPLETE) is None


def test_hold_deadline() -> None:
    # the exec timeout counts from the group's start, else from the hold
    assert policy.hold_deadline(60, 600, group_start=1000.0, since=1030.0) == 1060.0
    assert policy.hold_deadline(60, 600, group_start=None, since=1030.0) == 1090.0
    # no exec timeout: OsmoConfig.hold_timeout from now; neither: no limit
    assert policy.hold_deadline(0, 600, group_start=1000.0, since=1030.0) == 1630.0
    assert policy.hold_deadline(0, 0, group_start=1000.0, since=1030.0) is None


def test_hold_expiry() -> None:
    assert policy.hold_expiry(60, 600, "debug") == (T.FAILED_EXEC_TIMEOUT, 60, "exec timeout")
    assert policy.hold_expiry(0, 600, "interactive") == (
        T.FAILED_EXEC_TIMEOUT,
        600,
        "hold timeout",
    )
    assert policy.hold_expiry(0, 600, "debug") == (T.FAILED, 600, "hold timeout")


def test_hold_timeout_message() -> None:
    assert policy.hold_timeout_message("interactive", None, 60, "exec timeout") == (
        "exec timeout: interactive task not marked done within 60s "
        "(`osmo workflow done WF TASK` ends it)"
    )
    assert policy.hold_timeout_message("debug", 3, 1.5, "hold timeout") == (
        "exit code 3; held for debugging until the hold timeout (1.5s)"
    )
    assert policy.hold_timeout_message(None, 0, 60, "exec timeout") is None


def test_describe() -> None:
    assert policy.describe(T.RUNNING, None, None) == "RUNNING"
    assert policy.describe(T.RUNNING, None, "interactive") == "RUNNING (waiting for its user)"
    assert policy.describe(T.RUNNING, None, "retry") == "RUNNING (being retried)"
    assert policy.describe(T.RUNNING, T.FAILED_CANCELED, "debug") == (
        "RUNNING, being stopped (FAILED_CANCELED)"
    )
    assert policy.describe(T.COMPLETED, T.FAILED_CANCELED, None) == "COMPLETED"


def test_utc() -> None:
    assert policy.utc(0) == "1970-01-01 00:00:00 UTC"


# --- groups ---------------------------------------------------------------------------------


def test_nonlead_failed() -> None:
    assert policy.nonlead_failed(True, [("a", T.FAILED)]) is None  # ignoreNonleadStatus
    assert policy.nonlead_failed(False, [("a", T.RUNNING), ("b", T.FAILED)]) == "b"
    nonleads = [("a", T.FAILED_CANCELED), ("b", None), ("c", T.COMPLETED)]
    assert policy.nonlead_failed(False, nonleads) is None


def test_peers_end_as_in_osmo() -> None:
    assert policy.peers_end(T.COMPLETED, None) == (T.COMPLETED, "Lead task finished")
    assert policy.peers_end(T.FAILED_EVICTED, None) == (T.FAILED, "Lead task finished")
    assert policy.peers_end(None, "w") == (T.FAILED, "Task w Failed.")
    assert policy.peers_end(T.COMPLETED, "w") == (T.FAILED, "Task w Failed.")


@pytest.mark.parametrize(
    ("is_lead", "ignore_nonlead", "restarts"),
    [(True, True, True), (True, False, True), (False, True, False), (False, False, True)],
)
def test_who_restarts_its_peers_as_osmos_code_says(
    is_lead: bool, ignore_nonlead: bool, restarts: bool
) -> None:
    """OSMO's jobs.py: a rescheduled lead always restarts its peers (its docs say not under
    the default ignoreNonleadStatus: true), a non-lead only with ignoreNonleadStatus: false."""
    assert policy.restarts_peers(is_lead, ignore_nonlead) is restarts


def test_lead_done() -> None:
    assert policy.lead_done(T.COMPLETED)
    assert policy.lead_done(T.FAILED)
    assert not policy.lead_done(T.RESCHEDULED)  # a new attempt follows
    assert not policy.lead_done(T.RUNNING)
    assert not policy.lead_done(None)


def test_group_outcome() -> None:
    assert policy.group_outcome(T.COMPLETED, None, "m") == (T.COMPLETED, None)
    assert policy.group_outcome(T.COMPLETED, "w", None) == (T.FAILED, "Task w Failed.")
    assert policy.group_outcome(T.FAILED_CANCELED, "w", None) == (T.FAILED, "Task w Failed.")
    assert policy.group_outcome(T.FAILED, "w", "exit code 1") == (T.FAILED, "exit code 1")
    assert policy.group_outcome(T.FAILED_EXEC_TIMEOUT, None, "ran past 5s") == (
        T.FAILED_EXEC_TIMEOUT,
        "ran past 5s",
    )


def test_group_phase_only_moves_forward() -> None:
    assert policy.group_phase(T.SCHEDULING, [T.SCHEDULING, T.INITIALIZING]) == T.INITIALIZING
    assert policy.group_phase(T.INITIALIZING, [T.RUNNING, T.SCHEDULING]) == T.RUNNING
    assert policy.group_phase(T.RUNNING, [T.SCHEDULING, T.INITIALIZING]) is None
    assert policy.group_phase(T.RUNNING, [T.COMPLETED, T.FAILED]) is None  # ends are not phases
