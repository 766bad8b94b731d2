"""Helpers for interactive access: a long-running task to step into, and waits."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from osmo_core.service import Service

# A task that runs until stopped; it writes a marker into its environment and workdir so a
# test can tell an exec really ran inside it. `ports` declares what may be forwarded.
LONG = """
workflow:
  name: {name}
  tasks:
  - name: main
    command: [sh, -c]
    args: ["echo ready > marker; {cmd}"]
    environment:
      TASK_SECRET: inside-the-task{env}
    ports: [{ports}]
"""


def long_spec(
    name: str = "long", cmd: str = "sleep 120", ports: str = "", env: dict[str, str] | None = None
) -> str:
    more = "".join(f"\n      {k}: {v}" for k, v in (env or {}).items())
    return LONG.format(name=name, cmd=cmd, ports=ports, env=more)


async def until(cond: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `cond()` (sync or async) until it is truthy; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def running(svc: Service, wf_id: str, task: str = "main") -> None:
    """Wait until the task RUNS and its agent has dialled home."""
    await until(lambda: svc.task(wf_id, task)["status"] == "RUNNING", what=f"{task} RUNNING")
    await until(lambda: "local" in svc.interactive.agents, what="the agent to dial home")
