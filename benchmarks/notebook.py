"""Notebook benchmark: how fast `%osmo submit` gives control back, and how fast the monitor
widget reflects an event. Everything is real: a `jupyter osmo` server (subprocess, 127.0.0.1),
a kernel started by jupyter_client, the local backend and its agent.

    python benchmarks/notebook.py            # OSMO_BENCH_SUBMITS (default 20) submissions

N1  `wf = %osmo submit hello.yaml` then `wf` (which builds the live monitor), timed two ways:
    inside the kernel (the cell's own work) and from the front end (execute_request sent →
    execute_reply received, as a user waits for the prompt). Target: p95 < 200 ms.
N2  event → widget state: for each task/workflow status event of a 12-task workflow, the time
    from the engine stamping the event to the `WorkflowMonitor`'s synced trait holding it
    (persist, publish, WebSocket, thread hop, trait update). Target: p95 < 200 ms.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SUBMITS = int(os.environ.get("OSMO_BENCH_SUBMITS", "20"))
TOKEN = "bench-token"
HELLO = REPO / "examples" / "hello.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(tmp: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from osmo_jupyter.app import main; main()", "--allow-root",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={tmp}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/osmo/api/v1/health", timeout=2):
                return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start") from None
            time.sleep(0.2)


def summary(name: str, seconds: list[float]) -> dict[str, Any]:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    row = {"n": len(ms), "p50_ms": statistics.median(ms), "p95_ms": p95, "max_ms": ms[-1]}
    print(f"{name:<44} n={row['n']:<4} p50 {row['p50_ms']:7.1f} ms   p95 {p95:7.1f} ms   "
          f"max {row['max_ms']:7.1f} ms")  # fmt: skip
    return row


def bench_submit(env: dict[str, str]) -> dict[str, Any]:
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        setup = "%load_ext osmo_jupyter\nimport time\nfrom osmo_jupyter import Client\nClient()"
        kc.execute_interactive(setup, timeout=60)
        inside: list[float] = []
        roundtrip: list[float] = []
        for i in range(SUBMITS + 2):  # the first two warm up imports and connections
            code = (
                "_t0 = time.perf_counter()\n"
                f"wf = %osmo submit {HELLO} --name nb-bench-{i}\n"
                "get_ipython().display_formatter.format(wf)  # what showing `wf` builds\n"
                "print(time.perf_counter() - _t0)"
            )
            out: list[str] = []

            def hook(msg: dict[str, Any], out: list[str] = out) -> None:
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])

            t0 = time.perf_counter()
            reply = kc.execute_interactive(code, timeout=60, output_hook=hook)
            elapsed = time.perf_counter() - t0
            assert reply["content"]["status"] == "ok", reply["content"]
            if i >= 2:
                roundtrip.append(elapsed)
                inside.append(float("".join(out).strip()))
        kc.execute_interactive("wf.wait(timeout=60)", timeout=90)
        return {
            "inside_kernel": summary("N1 %osmo submit + monitor, inside the kernel", inside),
            "front_end": summary("N1 %osmo submit + monitor, request→reply", roundtrip),
        }
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def bench_events(url: str) -> dict[str, Any]:
    from osmo_jupyter import Client
    from osmo_jupyter.widgets import WorkflowMonitor

    spec = {
        "workflow": {
            "name": "nb-bench-events",
            "tasks": [{"name": "gate", "command": ["sleep", "1"]}]
            + [
                {"name": f"t{i}", "command": ["sleep", f"0.{i % 5}"], "inputs": [{"task": "gate"}]}
                for i in range(11)
            ],
        }
    }
    applied: list[tuple[float, float]] = []  # (event ts, the trait holds it)

    class TimedMonitor(WorkflowMonitor):
        def _on_event(self, ev: dict[str, Any]) -> None:
            super()._on_event(ev)
            if ev.get("type") in ("task.status", "workflow.status"):
                applied.append((ev["ts"], time.time()))

    wf = Client(url, TOKEN).submit(spec)
    monitor = TimedMonitor(wf)
    ready = time.time()  # events stamped before this were replayed, not live
    wf.wait(timeout=120)
    monitor.settle(10)
    monitor.close()
    live = [done - ts for ts, done in applied if ts > ready + 0.05]
    return summary("N2 event → WorkflowMonitor trait", live)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="osmo-nb-bench-") as tmp:
        env = dict(os.environ)
        env.update(OSMO_HOME=f"{tmp}/osmo", XDG_CONFIG_HOME=f"{tmp}/config")
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH")] if p)
        env.pop("OSMO_STORE_URL", None)
        proc, url = start_server(Path(tmp), env)
        try:
            kernel_env = {**env, "OSMO_SERVER_URL": url, "OSMO_SERVER_TOKEN": TOKEN}
            results = {"submit": bench_submit(kernel_env), "event_to_widget": bench_events(url)}
        finally:
            proc.terminate()
            proc.wait(20)
            subprocess.run(  # the agent outlives its engine by design; not this one
                [sys.executable, "-c", _STOP_AGENT, f"{tmp}/osmo"], env=env, check=False
            )
        print(json.dumps(results))


_STOP_AGENT = """
import asyncio, sys
from osmo_core.backends.local import LocalBackend
async def main():
    await LocalBackend("local", {"root": sys.argv[1]}).shutdown_agent(force=True)
asyncio.run(main())
"""

if __name__ == "__main__":
    main()
