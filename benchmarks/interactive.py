"""Interactive-access benchmark: the real Service, agent and dial-home SSH connection on loopback.

    python benchmarks/interactive.py

Measures, on one running task (its agent dialled home over TCP on 127.0.0.1):
  dial-in         agent spawn → its SSH connection registered (includes the agent's start)
  exec            Interactive.exec(`true`) → exit status, round trip (p50 / p95)
  pty echo        one byte into `cat` on a PTY → its echo back (p50 / p99; keystroke latency)
  port-forward    MB/s of a bulk upload to a sink server inside the task, through the SSH
                  direct-tcpip channel, next to raw loopback TCP to the same sink (same run)
  kernel attach   RemoteKernel.start (ipykernel launched inside the task) → kernel_info reply
                  through the tunnel (n=5), next to a local ipykernel started by jupyter_client
  kernel execute  execute_request("pass") → execute_reply through the tunnel (p50 / p95, n=200),
                  next to the same against the local kernel
It goes through the Service's Interactive object, not the Jupyter WebSocket layer.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from osmo_core.config import OsmoConfig
from osmo_core.service import Service

MB = 1 << 20
BULK = int(os.environ.get("OSMO_BENCH_MB", "128")) * MB
CHUNK = 256 * 1024

SINK = (
    "import socket\n"
    "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind(('127.0.0.1',{port}));s.listen()\n"
    "while True:\n"
    "    c,_=s.accept();n=0\n"
    "    while (b:=c.recv(1<<20)): n+=len(b)\n"
    "    c.sendall(str(n).encode());c.close()\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000


async def upload(reader: asyncio.StreamReader | object, writer: object) -> float:
    """Send BULK bytes, half-close, wait for the sink's count; MB/s."""
    payload = b"x" * CHUNK
    t = time.perf_counter()
    for _ in range(BULK // CHUNK):
        writer.write(payload)  # type: ignore[attr-defined]
        await writer.drain()  # type: ignore[attr-defined]
    writer.write_eof()  # type: ignore[attr-defined]
    got = await reader.read()  # type: ignore[attr-defined]
    dt = time.perf_counter() - t
    assert int(got) == BULK, got
    writer.close()  # type: ignore[attr-defined]
    return BULK / MB / dt


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "osmo"
        (data).mkdir()
        (data / "sink.py").write_text(SINK.format(port=(port := free_port())))
        config = OsmoConfig(
            data_dir=str(data),
            store_url=f"sqlite:///{data / 'osmo.db'}",
            backends={"local": {"kind": "local", "idle_timeout": 30}},
        )
        svc = Service(config)
        t0 = time.perf_counter()
        await svc.start()
        try:
            await svc.interactive.agent("local", timeout=30)
            dial = time.perf_counter() - t0
            spec = (
                "workflow:\n  name: bench\n  tasks:\n  - name: main\n"
                f"    command: [python3, {data / 'sink.py'}]\n    ports: [{port}]\n"
            )
            wf = await svc.submit(spec)
            while svc.task(wf, "main")["status"] != "RUNNING":
                await asyncio.sleep(0.02)
            for _ in range(200):  # the sink binds shortly after the task starts
                try:
                    socket.create_connection(("127.0.0.1", port), 0.1).close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            # the sink counted that probe's 0 bytes; fine

            rtt = []
            for _ in range(50):
                t = time.perf_counter()
                sess = await svc.interactive.exec(wf, "main", ["true"])
                await sess.wait()
                rtt.append(time.perf_counter() - t)

            sess = await svc.interactive.exec(wf, "main", ["cat"], pty=(80, 24))
            echo = []
            for i in range(200):
                ch = bytes([97 + i % 26])
                t = time.perf_counter()
                sess.write(ch)
                got = b""
                while ch not in got:
                    got += await sess.read()
                echo.append(time.perf_counter() - t)
            sess.signal("KILL")
            await sess.wait()

            tunnel, raw = [], []
            for _ in range(3):  # interleaved, best of 3: a shared machine
                r, w = await svc.interactive.open_port(wf, "main", port)
                tunnel.append(await upload(r, w))
                r2, w2 = await asyncio.open_connection("127.0.0.1", port)
                raw.append(await upload(r2, w2))
            conn = next(iter(svc.interactive.agents.values()))
            cipher = conn.get_extra_info("send_cipher")
            kernel = await kernel_figures(svc, wf)
            await svc.cancel(wf)
        finally:
            await svc.backends["local"].shutdown_agent(force=True)  # type: ignore[attr-defined]
            await svc.stop()
    print(f"dial-in (agent start -> registered): {dial * 1000:.0f} ms")
    print(
        f"exec round trip (`true`, n=50): p50 {pct(rtt, 0.5):.1f} ms, p95 {pct(rtt, 0.95):.1f} ms"
    )
    print(f"pty echo (n=200): p50 {pct(echo, 0.5):.2f} ms, p99 {pct(echo, 0.99):.2f} ms")
    print(
        f"port-forward upload {BULK // MB} MiB: tunnel {max(tunnel):.0f} MB/s, raw loopback TCP "
        f"{max(raw):.0f} MB/s ({max(tunnel) / max(raw):.2f}x); "
        f"median {statistics.median(tunnel):.0f} vs {statistics.median(raw):.0f}"
    )
    print(f"cipher negotiated: {cipher}")
    (att, local_att), (rt, local_rt) = kernel
    print(
        f"kernel attach (start in task -> kernel_info reply, n={len(att)}): median "
        f"{statistics.median(att) * 1000:.0f} ms, best {min(att) * 1000:.0f} ms; local ipykernel "
        f"start median {statistics.median(local_att) * 1000:.0f} ms (target < 1500 ms)"
    )
    print(
        f"kernel execute round trip (n={len(rt)}): tunnel p50 {pct(rt, 0.5):.2f} ms, p95 "
        f"{pct(rt, 0.95):.2f} ms; local kernel p50 {pct(local_rt, 0.5):.2f} ms, p95 "
        f"{pct(local_rt, 0.95):.2f} ms (target p50 < 20 ms)"
    )


async def kernel_figures(svc: Service, wf: str) -> Any:
    """(attach times, local start times), (tunnel round trips, local round trips)."""
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.manager import AsyncKernelManager

    from osmo_core.interactive.kernel import RemoteKernel

    async def ready(kc: AsyncKernelClient) -> None:
        kc.start_channels()
        await kc.wait_for_ready(timeout=30)

    async def round_trips(kc: AsyncKernelClient, n: int) -> list[float]:
        out = []
        for _ in range(n):
            t = time.perf_counter()
            msg_id = kc.execute("pass")
            while (await kc.get_shell_msg(timeout=10))["parent_header"].get("msg_id") != msg_id:
                pass
            out.append(time.perf_counter() - t)
        return out

    attach, local_start = [], []
    for i in range(5):
        t = time.perf_counter()
        k = await RemoteKernel.start(svc, wf, "main", uuid.uuid4().hex.encode())
        kc = AsyncKernelClient()
        kc.load_connection_info(k.connection_info())
        await ready(kc)
        attach.append(time.perf_counter() - t)
        if i == 4:
            rt = await round_trips(kc, 200)
        kc.stop_channels()
        await k.kill()
        await k.close()

        t = time.perf_counter()
        km = AsyncKernelManager(kernel_name="python3")
        await km.start_kernel()
        lkc = km.client()
        await ready(lkc)
        local_start.append(time.perf_counter() - t)
        if i == 4:
            local_rt = await round_trips(lkc, 200)
        lkc.stop_channels()
        await km.shutdown_kernel(now=True)
    return (attach, local_start), (rt, local_rt)


if __name__ == "__main__":
    asyncio.run(main())
