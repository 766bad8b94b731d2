"""The transition table: terminal states are final, illegal moves raise, outcomes aggregate."""

from __future__ import annotations

import pytest

from osmo_core.errors import InvalidTransition
from osmo_core.states import (
    GROUP_TRANSITIONS,
    TASK_TERMINAL,
    TASK_TRANSITIONS,
    WORKFLOW_TRANSITIONS,
    TaskStatus,
    WorkflowStatus,
    check_group,
    check_task,
    check_workflow,
    workflow_outcome,
)

T, W = TaskStatus, WorkflowStatus


def test_status_names_are_osmos() -> None:
    assert {s.value for s in TaskStatus} >= {
        "SUBMITTING",
        "WAITING",
        "PROCESSING",
        "SCHEDULING",
        "INITIALIZING",
        "RUNNING",
        "COMPLETED",
        "RESCHEDULED",
        "FAILED",
        "FAILED_CANCELED",
        "FAILED_SERVER_ERROR",
        "FAILED_BACKEND_ERROR",
        "FAILED_EXEC_TIMEOUT",
        "FAILED_QUEUE_TIMEOUT",
        "FAILED_UPSTREAM",
        "FAILED_EVICTED",
        "FAILED_START_ERROR",
        "FAILED_START_TIMEOUT",
        "FAILED_PREEMPTED",
    }
    assert {s.value for s in WorkflowStatus} >= {
        "PENDING",
        "RUNNING",
        "WAITING",
        "COMPLETED",
        "FAILED",
        "FAILED_SUBMISSION",
        "FAILED_CANCELED",
    }


@pytest.mark.parametrize("table", [TASK_TRANSITIONS, GROUP_TRANSITIONS])
def test_terminal_states_are_final(table) -> None:
    for s in TASK_TERMINAL:
        assert table[s] == frozenset()
    for s in TaskStatus:
        assert s in table


def test_every_status_reachable_from_creation() -> None:
    seen, frontier = set(), {None}
    while frontier:
        nxt = set()
        for s in frontier:
            nxt |= TASK_TRANSITIONS[s] - seen
        seen |= nxt
        frontier = nxt
    assert seen == set(TaskStatus)


@pytest.mark.parametrize(
    ("frm", "to"),
    [
        (T.COMPLETED, T.RUNNING),
        (T.WAITING, T.RUNNING),
        (T.RUNNING, T.SCHEDULING),
        (T.RUNNING, T.FAILED_UPSTREAM),
        (None, T.RUNNING),
        (T.WAITING, T.COMPLETED),
    ],
)
def test_illegal_task_moves_raise(frm, to) -> None:
    with pytest.raises(InvalidTransition, match=f"{frm} -> {to}"):
        check_task(frm, to)


@pytest.mark.parametrize(
    ("frm", "to"),
    [
        (None, T.SUBMITTING),
        (T.SUBMITTING, T.WAITING),
        (T.WAITING, T.PROCESSING),
        (T.SCHEDULING, T.INITIALIZING),
        (T.INITIALIZING, T.RUNNING),
        (T.RUNNING, T.RESCHEDULED),
        (T.WAITING, T.FAILED_UPSTREAM),
        (T.SCHEDULING, T.FAILED_QUEUE_TIMEOUT),
        (T.RUNNING, T.FAILED_EXEC_TIMEOUT),
        (T.RUNNING, T.FAILED_CANCELED),
        (None, T.PROCESSING),
        (T.SCHEDULING, T.COMPLETED),  # its group's lead completed (OSMO's "Lead task finished")
    ],
)
def test_legal_task_moves(frm, to) -> None:
    check_task(frm, to)


def test_group_moves_only_forward() -> None:
    check_group(T.SCHEDULING, T.RUNNING)
    with pytest.raises(InvalidTransition):
        check_group(T.RUNNING, T.SCHEDULING)
    with pytest.raises(InvalidTransition):
        check_group(T.RUNNING, T.FAILED_UPSTREAM)
    with pytest.raises(InvalidTransition):
        check_group(T.RUNNING, T.RESCHEDULED)


def test_workflow_moves() -> None:
    check_workflow(None, W.PENDING)
    check_workflow(W.RUNNING, W.WAITING)
    check_workflow(W.WAITING, W.RUNNING)
    with pytest.raises(InvalidTransition):
        check_workflow(W.COMPLETED, W.RUNNING)
    assert all(WORKFLOW_TRANSITIONS[s] == frozenset() for s in WorkflowStatus if s.terminal)


@pytest.mark.parametrize(
    ("groups", "outcome"),
    [
        ([T.COMPLETED, T.COMPLETED], W.COMPLETED),
        ([T.COMPLETED, T.FAILED, T.FAILED_UPSTREAM], W.FAILED),
        ([T.FAILED_EXEC_TIMEOUT, T.COMPLETED, T.FAILED_UPSTREAM], W.FAILED_EXEC_TIMEOUT),
        ([T.FAILED_QUEUE_TIMEOUT, T.FAILED], W.FAILED_QUEUE_TIMEOUT),
        ([T.FAILED_CANCELED, T.FAILED_CANCELED], W.FAILED_CANCELED),
        ([T.FAILED_SERVER_ERROR, T.FAILED_EXEC_TIMEOUT], W.FAILED_SERVER_ERROR),  # OSMO's order
        # the failed groups' one cause names the workflow, as in OSMO's workflow.py
        ([T.FAILED_EVICTED, T.COMPLETED, T.FAILED_UPSTREAM], W.FAILED_EVICTED),
        ([T.FAILED_PREEMPTED, T.FAILED_PREEMPTED], W.FAILED_PREEMPTED),
        ([T.FAILED_IMAGE_PULL], W.FAILED_IMAGE_PULL),
        ([T.FAILED_START_ERROR], W.FAILED_START_ERROR),
        ([T.FAILED_START_TIMEOUT], W.FAILED_START_TIMEOUT),
        ([T.FAILED_BACKEND_ERROR], W.FAILED_BACKEND_ERROR),
        ([T.FAILED_EVICTED, T.FAILED], W.FAILED),
    ],
)
def test_workflow_outcome(groups, outcome) -> None:
    assert workflow_outcome(groups) == outcome
