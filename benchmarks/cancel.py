"""Bulk-change benchmark: cancelling a big workflow must not stall the server's loop.

    python benchmarks/cancel.py            # 10,000 tasks
    python benchmarks/cancel.py 20000

The real Service (engine + SQLite store + local backend) on a private data dir under $TMPDIR:
submit N independent `sleep 60` tasks (a few run, the rest queue), then cancel the workflow
while a probe coroutine measures how late the loop wakes it (sleep 2 ms, measure the
overshoot). Reports the cancel's duration, and the worst and 99th-percentile loop stall.
Target: worst stall well under 100 ms (the /health budget of issue 14); before slicing, the
whole cancel was one stall (14 s for 10,000 tasks on a 2-core VM).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time

from osmo_core.config import OsmoConfig
from osmo_core.service import Service


async def main(n: int) -> None:
    cfg = OsmoConfig(
        data_dir=tempfile.mkdtemp(prefix="osmo-bench-"),
        backends={"local": {"kind": "local", "idle_timeout": 60}},
    )
    async with Service(cfg) as svc:
        tasks = [{"name": f"t{i}", "command": ["sleep", "60"]} for i in range(n)]
        t0 = time.perf_counter()
        wf = await svc.submit({"workflow": {"name": "big", "tasks": tasks}})
        print(f"submit of {n} tasks: {time.perf_counter() - t0:.2f}s")
        await asyncio.sleep(2)  # the first ones start
        stalls: list[float] = []
        running = True

        async def probe() -> None:
            while running:
                t = time.perf_counter()
                await asyncio.sleep(0.002)
                stalls.append(time.perf_counter() - t - 0.002)

        p = asyncio.create_task(probe())
        t0 = time.perf_counter()
        await svc.cancel(wf)
        took = time.perf_counter() - t0
        running = False
        await p
        stalls.sort()
        p99 = stalls[int(len(stalls) * 0.99)]
        print(
            f"cancel: {took:.2f}s; loop stall worst {stalls[-1] * 1000:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms ({len(stalls)} probes)"
        )
        await asyncio.wait_for(svc.wait(wf), 60)
        for backend in svc.backends.values():
            shutdown = getattr(backend, "shutdown_agent", None)
            if shutdown is not None:
                await shutdown(force=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
