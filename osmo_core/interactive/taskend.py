"""When a task's attempt stops RUNNING, and why: what ends the kernels and terminals opened in
it (kernel.py, terminals.py), each saying so to its user."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..service import Service


def why_ended(service: Service, wf_id: str, task: str, retry_id: int) -> str | None:
    """ "task WF/TASK ended (STATUS, exit code N): message" once attempt `retry_id` of the task
    is no longer RUNNING; None while it runs."""
    t = service.task(wf_id, task)
    if t["retry_id"] == retry_id and t["status"] == "RUNNING":
        return None
    mine = next((a for a in t["attempts"] if a["retry_id"] == retry_id), t)
    why = f"task {wf_id}/{task} ended ({mine['status']}"
    if mine.get("exit_code") is not None:
        why += f", exit code {mine['exit_code']}"
    why += ")"
    if mine.get("message") and mine["message"] != f"exit code {mine.get('exit_code')}":
        why += f": {mine['message']}"
    return why


async def wait_ended(service: Service, wf_id: str, task: str, retry_id: int) -> str | None:
    """`why_ended`, once it is not None; None when the service stops first."""
    sub = service.subscribe(wf_id, types=frozenset({"task.status"}))  # what may end it
    try:
        while (why := why_ended(service, wf_id, task, retry_id)) is None:
            if await sub.get() is None:  # the service stops
                return None
        return why
    finally:
        sub.close()
