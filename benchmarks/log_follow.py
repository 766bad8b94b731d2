"""Log-follow benchmark: how fast a task's log reaches a follower over the log-follow WebSocket.

    python benchmarks/log_follow.py             # about 30 s
    OSMO_BENCH_LOG_LINES=200000 python benchmarks/log_follow.py

stored  a finished task's log of OSMO_BENCH_LOG_LINES lines, followed from its first line to
        the `end` message (what `osmo workflow logs -f`, the panel's log tab and
        `wf.logs(follow=True)` do when opened on a long log)
live    a task printing those lines as fast as it can, followed while it runs

Each is measured one line per message (the protocol's default, for older clients) and in
batches (`batch=true`, what this package's clients ask for), interleaved, median of 3, in one
server: lines per second as the client receives them, and the batched/per-line ratio.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from api import HEADERS, TIMEOUT, Server, one_task, submit, wait_done

LINES = int(os.environ.get("OSMO_BENCH_LOG_LINES", "50000"))
ROUNDS = 3
PRINTER = (
    "import sys\nw = sys.stdout.write\n"
    f"for i in range({LINES}):\n"
    "    w(f'line {i} of the benchmark log, padded to a typical length\\n')\n"
)


async def follow(s: aiohttp.ClientSession, srv: Server, wf_id: str, batch: bool) -> float:
    """Seconds from opening the socket to its `end` message; checks every line came once."""
    url = f"{srv.api.replace('http', 'ws', 1)}/workflows/{wf_id}/tasks/t/logs/follow"
    params = {"batch": "true"} if batch else {}
    started = time.perf_counter()
    seen = 0
    async with s.ws_connect(url, params=params, max_msg_size=0) as ws:
        while True:
            msg = await ws.receive(timeout=TIMEOUT)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise RuntimeError(f"the socket closed before the task's end: {msg}")
            m: dict[str, Any] = json.loads(msg.data)
            lines = m["lines"] if m["type"] == "lines" else [m] if m["type"] == "log" else []
            for ln in lines:
                if ln["stream"] == "stdout":
                    assert ln["text"].startswith(f"line {seen} "), (seen, ln)
                    seen += 1
            if m["type"] == "end":
                break
    took = time.perf_counter() - started
    if seen != LINES:
        raise RuntimeError(f"received {seen} of {LINES} lines")
    return took


async def main() -> int:
    with tempfile.TemporaryDirectory(prefix="osmo-bench-") as tmp:
        print(f"{LINES} log lines, median of {ROUNDS}, {os.cpu_count()} CPUs\n")
        async with Server(Path(tmp) / "api") as srv, aiohttp.ClientSession(headers=HEADERS) as s:
            spec = one_task("printer", [sys.executable, "-u", "-c", PRINTER])
            stored = await submit(s, srv, spec)
            await wait_done(s, srv, stored)
            times: dict[tuple[str, bool], list[float]] = {}
            for _ in range(ROUNDS):
                for batch in (False, True):  # interleaved: both see the same machine
                    times.setdefault(("stored", batch), []).append(
                        await follow(s, srv, stored, batch)
                    )
                    live = await submit(s, srv, spec)
                    times.setdefault(("live", batch), []).append(await follow(s, srv, live, batch))
            for case in ("stored", "live"):
                one, many = (statistics.median(times[(case, b)]) for b in (False, True))
                print(
                    f"{case:<7} one line per message {LINES / one:9,.0f} lines/s ({one:6.2f} s)"
                    f"   batched {LINES / many:9,.0f} lines/s ({many:6.2f} s)"
                    f"   ratio {one / many:5.1f}x"
                )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
