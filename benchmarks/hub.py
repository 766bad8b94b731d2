"""The hop through a user's Lab: interactive access with the control plane as a JupyterHub service.

    python benchmarks/hub.py        (needs jupyterhub and configurable-http-proxy, as tests/hub/)

Starts the Hub, the service and alice's Lab in client mode exactly as tests/hub/ does, runs one
long task of alice's, and measures the same two things each way:

  kernel execute  execute_request("pass") → idle, over the kernel's channels WebSocket (n=200):
                  a task kernel started from alice's Lab (Lab → service → agent), next to one
                  started on the service itself (service → agent, the single-server path)
  terminal echo   one keystroke into the task's shell → its echo, over the terminal WebSocket
                  (n=200): through alice's Lab (the forwarder), next to the service directly

Both paths run on this machine over loopback, in the same run, so the difference is the hop.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hub.conftest import (
    Hub,
    KernelChannels,
    TaskTerminal,
    call,
    running_hub,
    wait_until,
)

N = int(os.environ.get("OSMO_BENCH_N", "200"))
API = "osmo/api/v1"
SPEC = "workflow:\n  name: bench\n  tasks:\n  - name: t\n    command: [sleep, '3600']\n"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def report(what: str, xs: list[float]) -> None:
    ms = [x * 1000 for x in xs]
    print(f"  {what:<34} p50 {statistics.median(ms):6.2f} ms   p99 {pct(ms, 99):6.2f} ms")


async def kernel_round_trips(base: str, token: str, spec: str) -> list[float]:
    status, kernel = call(f"{base}/api/kernels", token, "POST", {"name": spec})
    assert status == 201, kernel
    channels = await KernelChannels.connect(base, token, kernel["id"])
    times = []
    try:
        await channels.execute("pass")  # warm
        for _ in range(N):
            started = time.perf_counter()
            await channels.execute("pass")
            times.append(time.perf_counter() - started)
    finally:
        channels.close()
        call(f"{base}/api/kernels/{kernel['id']}", token, "DELETE")
    return times


async def echoes(base: str, token: str, wf: str) -> list[float]:
    term = await TaskTerminal.open(base, token, wf, "t")
    times = []
    try:
        await term.send("stty -echoctl; PS1=; cat\r")  # every keystroke echoed once, no prompt
        await asyncio.sleep(1.0)
        for i in range(N):
            key = "abcdefghij"[i % 10]
            started = time.perf_counter()
            await term.send(key)
            await term.until(key, timeout=10)
            times.append(time.perf_counter() - started)
    finally:
        term.close()
    return times


async def measure(hub: Hub) -> dict[str, Any]:
    token = hub.tokens["alice"]
    lab = hub.lab("alice")
    status, made = call(f"{lab}/{API}/workflows", token, "POST", {"spec": SPEC})
    assert status == 201, made
    wf = made["id"]

    def running() -> bool:
        return call(f"{lab}/{API}/workflows/{wf}", token)[1]["status"] == "RUNNING"

    wait_until("the task", running, 60)
    spec = f"osmo--{wf}--t"
    out = {
        "kernel via Lab": await kernel_round_trips(lab, token, spec),
        "kernel on the service": await kernel_round_trips(hub.service_url, token, spec),
        "terminal via Lab": await echoes(lab, token, wf),
        "terminal on the service": await echoes(hub.service_url, token, wf),
    }
    call(f"{hub.service_url}/{API}/workflows/{wf}/cancel", token, "POST", {})
    return out


def main() -> None:
    with (
        tempfile.TemporaryDirectory(prefix="osmo-hub-bench-") as tmp,
        running_hub(Path(tmp), users=("alice",)) as hub,
    ):
        figures = asyncio.run(measure(hub))
    print(f"JupyterHub hop (n={N} each; loopback; {os.cpu_count()} CPUs)")
    for what, xs in figures.items():
        report(what, xs)


if __name__ == "__main__":
    main()
