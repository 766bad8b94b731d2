"""Bulk-change benchmark: submitting or cancelling a big workflow must not stall the server's loop.

    python benchmarks/cancel.py            # 10,000 tasks
    python benchmarks/cancel.py 20000

The real Service (engine + SQLite store + local backend) on a private data dir under $TMPDIR:
submit N independent `sleep 60` tasks (a few run, the rest queue), then cancel the workflow,
each while a probe coroutine measures how late the loop wakes it (sleep 2 ms, measure the
overshoot). Reports each one's duration, and the worst and 99th-percentile loop stall.
Target: worst stall well under 100 ms (the /health budget of issue 14) for the cancel; before
slicing, the whole cancel was one stall (14 s for 10,000 tasks on a 2-core VM). A submission
stalls the loop once, for its own transaction (every row of the workflow); the spec is parsed
off the loop and the tasks start a slice per round.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from osmo_core.config import OsmoConfig
from osmo_core.service import Service

T = TypeVar("T")


async def probed(what: str, work: Coroutine[Any, Any, T]) -> T:
    """Run `work` while a probe measures how late the loop wakes it; print both."""
    stalls: list[float] = []
    running = True

    async def probe() -> None:
        while running:
            t = time.perf_counter()
            await asyncio.sleep(0.002)
            stalls.append(time.perf_counter() - t - 0.002)

    p = asyncio.create_task(probe())
    await asyncio.sleep(0.01)  # the probe is waiting before the work starts
    t0 = time.perf_counter()
    result = await work
    took = time.perf_counter() - t0
    running = False
    await p
    stalls.sort()
    p99 = stalls[int(len(stalls) * 0.99)]
    print(
        f"{what}: {took:.2f}s; loop stall worst {stalls[-1] * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms ({len(stalls)} probes)"
    )
    return result


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="osmo-bench-") as data_dir:  # nothing left in /tmp
        await run(n, data_dir)


async def run(n: int, data_dir: str) -> None:
    cfg = OsmoConfig(
        data_dir=data_dir,
        backends={"local": {"kind": "local", "idle_timeout": 60}},
    )
    async with Service(cfg) as svc:
        tasks = [{"name": f"t{i}", "command": ["sleep", "60"]} for i in range(n)]
        wf = await probed(
            f"submit of {n} tasks", svc.submit({"workflow": {"name": "big", "tasks": tasks}})
        )
        await asyncio.sleep(2)  # the first ones start
        await probed("cancel", svc.cancel(wf))
        await asyncio.wait_for(svc.wait(wf), 60)
        for backend in svc.backends.values():
            shutdown = getattr(backend, "shutdown_agent", None)
            if shutdown is not None:
                await shutdown(force=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
