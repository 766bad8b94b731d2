"""Usage samples: the agent reads a running command's process tree (CPU, memory, processes),
the engine shows the last sample on the task and keeps a summary with its end."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

MIB = 2**20
BUSY = (
    "import time; b = bytearray(80 * 2**20); t = time.time()\n"  # 80 MiB, touched
    "while time.time() - t < 4: pass\n"
)


async def until(check: Any, seconds: float = 20.0) -> Any:
    for _ in range(int(seconds / 0.05)):
        if value := check():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true after {seconds}s")


async def test_a_running_task_shows_what_it_uses_and_its_end_keeps_the_summary(
    service_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OSMO_METRICS_INTERVAL", "0.2")  # the agent it spawns reads it
    svc = await service_factory()
    live: list[Any] = []

    async def collect() -> None:
        async for ev in svc.subscribe():
            if ev.type == "task.usage":  # type: ignore[union-attr]
                live.append(ev)

    collector = asyncio.ensure_future(collect())
    spec = {"name": "t", "command": [sys.executable, "-c", BUSY]}
    wf = await svc.submit({"workflow": {"name": "busy", "tasks": [spec]}})
    usage = await until(lambda: (u := svc.task(wf, "t")["usage"]) and u["memory"] > 80 * MIB and u)
    assert usage["procs"] == 1 and usage["cpu_seconds"] > 0
    await svc.wait(wf)
    collector.cancel()
    assert svc.task(wf, "t")["usage"] is None  # ended: no live usage
    end = [
        e
        for e in svc.store.events_since(workflow_id=wf)
        if e["type"] == "task.status" and e["status"] == "COMPLETED"
    ]
    summary = end[0]["payload"]["usage"]
    assert summary["memory_peak"] > 80 * MIB
    assert summary["cpu_seconds"] >= usage["cpu_seconds"]
    assert live and all(e.id is None and e.task == "t" for e in live)  # live only, not stored
    assert max(e.payload["cpu"] for e in live) > 0.2  # a busy loop: most of a core
