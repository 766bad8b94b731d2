"""Reconciliation benchmark: one engine pass over 10,000 running attempts must stay cheap.

    python benchmarks/reconcile.py            # 10,000 running attempts
    python benchmarks/reconcile.py 20000

The real Service (engine, SQLite store, scheduler) on a private data dir under $TMPDIR, with
one stand-in: the backend starts no processes (10,000 real ones do not fit a 2-core VM), it
answers `running` with every key it was given, through the agent protocol's JSON encoding so
the wire cost of a 10,000-key answer is counted. Each pass: the engine's snapshot of its
launched attempts (in its loop), the backend's answer, the difference. Reports the pass
(best, median, worst of 20), the worst loop stall a probe coroutine saw meanwhile, and a pass
that finds 1% of the attempts gone (the `status` of the difference, then their settling).
Target: under 50 ms per pass. Passes run every OsmoConfig.reconcile_interval (5 s) while
tasks run, none while nothing runs.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import sys
import tempfile
import time
from typing import Any

from osmo_core.agent.protocol import decode, encode
from osmo_core.backends.base import Backend
from osmo_core.config import OsmoConfig
from osmo_core.service import Service
from osmo_core.wire import (
    AttemptState,
    EventSink,
    LaunchInfo,
    LaunchRequest,
    LogLine,
    Node,
    Started,
)

PASSES = 20


class InstantBackend(Backend):
    """Attempts "run" from their launch until told otherwise; no process behind them."""

    kind = "instant"

    def __init__(self, name: str) -> None:
        super().__init__(name, {})
        self.keys: set[str] = set()
        self._sink: EventSink | None = None

    async def start(self, sink: EventSink) -> None:
        self._sink = sink

    async def stop(self) -> None:
        pass

    async def nodes(self) -> list[Node]:
        return [Node(name="bench", cpu=1e6, memory=2**60)]

    async def launch(self, req: LaunchRequest) -> LaunchInfo:
        self.keys.add(req.key)
        assert self._sink is not None
        self._sink(Started(req.key, None))
        return LaunchInfo(req.key, "/nonexistent", "/nonexistent/output", "/nonexistent/log")

    async def cancel(self, key: str, grace: float = 5.0) -> None:
        self.keys.discard(key)

    async def status(self, keys: list[str]) -> dict[str, AttemptState]:
        return {k: AttemptState(k, "running" if k in self.keys else "lost") for k in keys}

    async def read_log(self, key: str, start: int = 0, limit: int | None = None) -> list[LogLine]:
        return []

    async def running(self) -> set[str] | None:
        wire = encode({"id": 1, "ok": True, "keys": list(self.keys)})  # as an agent answers
        return set(decode(wire)["keys"])


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="osmo-bench-") as data_dir:  # nothing left in /tmp
        await run(n, data_dir)


async def run(n: int, data_dir: str) -> None:
    cfg = OsmoConfig(
        data_dir=data_dir,
        backends={"local": {"kind": "local", "idle_timeout": 60}},
        reconcile_interval=0,  # passes run here, by hand
        max_retries=0,
    )
    logging.getLogger("osmo.engine").setLevel(logging.ERROR)  # one warning per gone attempt
    svc = Service(cfg)
    backend = svc.backends["local"] = InstantBackend("local")
    async with svc:
        tasks = [{"name": f"t{i}", "command": ["sleep", "600"]} for i in range(n)]
        spec: dict[str, Any] = {"workflow": {"name": "big", "tasks": tasks}}
        spec["workflow"]["resources"] = {"default": {"cpu": 0.001, "memory": "1Mi"}}
        t0 = time.perf_counter()
        wf = await svc.submit(spec)
        while svc.engine.attempt_counts.get("RUNNING", 0) < n:
            await asyncio.sleep(0.1)
            assert time.perf_counter() - t0 < 300, svc.engine.attempt_counts
        print(f"{n} attempts RUNNING after {time.perf_counter() - t0:.1f} s")

        stalls: list[float] = []
        probing = True

        async def probe() -> None:
            while probing:
                t = time.perf_counter()
                await asyncio.sleep(0.002)
                stalls.append(time.perf_counter() - t - 0.002)

        p = asyncio.create_task(probe())
        took = []
        for _ in range(PASSES):
            t = time.perf_counter()
            assert await svc.engine.reconcile() == 0
            took.append(time.perf_counter() - t)
            await asyncio.sleep(0.01)
        probing = False
        await p
        ms = sorted(x * 1000 for x in took)
        print(
            f"pass over {n} running attempts, nothing to settle: best {ms[0]:.1f} ms, "
            f"median {statistics.median(ms):.1f} ms, worst {ms[-1]:.1f} ms ({PASSES} passes); "
            f"loop stall worst {max(stalls) * 1000:.1f} ms"
        )
        snap, answer = [], []
        for _ in range(PASSES):
            t = time.perf_counter()
            await svc.engine._call(svc.engine._launched_on, "local")
            snap.append(time.perf_counter() - t)
            t = time.perf_counter()
            await backend.running()
            answer.append(time.perf_counter() - t)
        print(
            f"of which (medians): the engine's snapshot {statistics.median(snap) * 1000:.1f} ms, "
            f"the backend's answer (JSON both ways) {statistics.median(answer) * 1000:.1f} ms"
        )
        gone = sorted(backend.keys)[: n // 100]
        backend.keys.difference_update(gone)
        t = time.perf_counter()
        settled = await svc.engine.reconcile()
        took_gone = time.perf_counter() - t
        assert settled == len(gone), settled
        print(f"pass finding {settled} attempts gone (1%): {took_gone * 1000:.1f} ms")
        await svc.cancel(wf)
        await asyncio.wait_for(svc.wait(wf), 120)
        print(
            f"passes run every reconcile_interval ({OsmoConfig().reconcile_interval:.0f} s "
            "by default) while tasks run: at the median, "
            f"{statistics.median(took) / OsmoConfig().reconcile_interval * 100:.2f}% of one core"
        )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
