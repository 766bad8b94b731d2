"""What the API answers about workflows and tasks, as the notebook side reads it: a task's
latest attempt (`TaskInfo`), one row per task, whether a workflow has ended. The client, the
HTML/text rendering and the widgets all build on these; they import none of those.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from osmo_core.states import TaskStatus, WorkflowStatus


@dataclass(frozen=True)
class TaskInfo:
    """A task's latest attempt, as the API reports it."""

    name: str
    status: str
    retry_id: int
    exit_code: int | None
    start_time: float | None
    end_time: float | None
    node: str | None
    output_path: str | None
    message: str | None

    @classmethod
    def from_api(cls, row: dict[str, Any]) -> TaskInfo:
        return cls(
            name=str(row["name"]),
            status=str(row["status"]),
            retry_id=int(row["retry_id"]),
            exit_code=row.get("exit_code"),
            start_time=row.get("start_time"),
            end_time=row.get("end_time"),
            node=row.get("node"),
            output_path=row.get("output_path"),
            message=row.get("message"),
        )

    @property
    def duration(self) -> float | None:
        if self.start_time is None:
            return None
        return (self.end_time or time.time()) - self.start_time

    @property
    def terminal(self) -> bool:
        return TaskStatus(self.status).terminal


def latest_attempts(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per task (its highest retry_id), in the API's (spec) order."""
    latest: dict[str, dict[str, Any]] = {}
    for t in tasks:
        if t["name"] not in latest or t["retry_id"] >= latest[t["name"]]["retry_id"]:
            latest[t["name"]] = t
    return list(latest.values())


def workflow_ended(status: str) -> bool:
    try:
        return WorkflowStatus(status).terminal
    except ValueError:
        return False
