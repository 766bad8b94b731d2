"""API benchmark: a live `jupyter osmo` subprocess on this machine, driven over HTTP and WebSocket.

    python benchmarks/api.py                  # everything, about 1-2 minutes
    python benchmarks/api.py submit fanout    # some of: submit get fanout logs rss
    TMPDIR=/dev/shm python benchmarks/api.py  # data dir and SQLite file in memory

submit  submit -> first task RUNNING: from just before `POST /workflows` to the RUNNING event
        arriving on the events WebSocket, one workflow at a time         target p50 < 50 ms
get     `GET /workflows/{id}` from 200 concurrent clients (keep-alive connections), each
        sending its next request when its previous answer came (closed loop: latency is
        200 / throughput, so it measures capacity); then the same 200 clients each polling
        once a second at a random phase (open loop, OSMO_BENCH_RATE=200 requests/s in
        total), the load of 200 open panels                               target p99 < 50 ms
fanout  100 WebSocket subscribers; per event, from its timestamp (taken in the engine round
        that commits it) to the last subscriber receiving it
logs    a task printing its clock every 10 ms; from the printed time to the `task.log`
        message arriving on the events WebSocket                          target p99 < 100 ms
rss     idle server RSS with the extension loaded vs `jupyter server` without it (the local
        agent, a separate process, is reported apart)

OSMO_BENCH_PYSPY=DIR records each live benchmark's server with py-spy (DIR/<name>.txt, collapsed
stacks; `pip install py-spy`).

The client (aiohttp) runs in this process and shares the machine's cores with the server, so
the figures include its cost; every server runs on its own port and data dir under $TMPDIR.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil

REPO = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
N_SUBMIT = int(os.environ.get("OSMO_BENCH_SUBMITS", "100"))
CLIENTS = 200
GET_SECONDS = float(os.environ.get("OSMO_BENCH_GET_SECONDS", "10"))
RATE = float(os.environ.get("OSMO_BENCH_RATE", "200"))  # open loop: 1 req/s per client
SUBSCRIBERS = 100
LOG_LINES = 300
TIMEOUT = 60.0  # any single wait in this script


# --- a server subprocess --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`jupyter server` on 127.0.0.1 with the osmo extension on or off, own data dir."""

    def __init__(self, root: Path, *, osmo: bool = True):
        self.root = root
        self.osmo = osmo
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/osmo/api/v1"
        self.ws = f"ws://127.0.0.1:{self.port}/osmo/api/v1/events"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            OSMO_HOME=str(self.root / "osmo"),
            JUPYTER_RUNTIME_DIR=str(self.root / "runtime"),
            JUPYTER_DATA_DIR=str(self.root / "data"),
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        )
        env.pop("OSMO_STORE_URL", None)
        return env

    async def __aenter__(self) -> Server:
        exts = f"osmo_jupyter={self.osmo}"  # traitlets' key=value form of a Dict on the CLI
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                "--allow-root",
                "--no-browser",
                "--ServerApp.ip=127.0.0.1",
                f"--port={self.port}",
                f"--IdentityProvider.token={TOKEN}",
                f"--ServerApp.jpserver_extensions={exts}",
                f"--ServerApp.root_dir={self.root}",
                "--ServerApp.log_level=WARN",
            ],
            env=self.env(),
            stdout=(self.root / "server.log").open("wb"),
            stderr=subprocess.STDOUT,
            cwd=self.root,
        )
        probe = f"{self.api}/health" if self.osmo else f"{self.url}/api/status"
        deadline = time.monotonic() + TIMEOUT
        async with aiohttp.ClientSession(headers=HEADERS) as s:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError((self.root / "server.log").read_text())
                with contextlib.suppress(aiohttp.ClientError):
                    async with s.get(probe) as r:
                        if r.status == 200:
                            return self
                if time.monotonic() > deadline:
                    raise TimeoutError("the server did not come up")
                await asyncio.sleep(0.1)

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.osmo:  # agents outlive servers by design; this one is ours to stop
            from osmo_core.backends.local import LocalBackend

            with contextlib.suppress(Exception):
                await LocalBackend("local", {"root": str(self.root / "osmo")}).shutdown_agent()

    def agent_pids(self) -> list[int]:
        assert self.proc is not None
        me = psutil.Process(self.proc.pid)
        home = str(self.root / "osmo")
        out = []
        for p in psutil.process_iter(["pid", "cmdline", "environ"]):
            with contextlib.suppress(psutil.Error):
                cmd = " ".join(p.info["cmdline"] or [])
                if "osmo_core.agent" in cmd and p.pid != me.pid and home in cmd:
                    out.append(p.pid)
        return out


HEADERS = {"Authorization": f"token {TOKEN}"}


# --- helpers ----------------------------------------------------------------------------------


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def ms(x: float) -> str:
    return f"{x * 1000:7.1f} ms"


def line(name: str, xs: list[float], target: tuple[str, float] | None = None) -> dict[str, Any]:
    """Print p50/p99/max of `xs` (seconds) and whether the target holds."""
    r = {"n": len(xs), "p50": pct(xs, 50), "p99": pct(xs, 99), "max": max(xs)}
    verdict = ""
    if target is not None:
        key, limit = target
        verdict = f"   target {key} < {limit * 1000:.0f} ms: " + (
            "met" if r[key] < limit else "MISSED"
        )
    print(f"  {name:<34} n={r['n']:<6} p50 {ms(r['p50'])}  p99 {ms(r['p99'])}  "
          f"max {ms(r['max'])}{verdict}")  # fmt: skip
    return r


async def submit(s: aiohttp.ClientSession, srv: Server, spec: dict[str, Any]) -> str:
    async with s.post(f"{srv.api}/workflows", json={"spec": spec}) as r:
        body = await r.json()
        if r.status != 201:
            raise RuntimeError(f"submit answered {r.status}: {body}")
        return str(body["id"])


async def events(
    s: aiohttp.ClientSession, srv: Server, **params: str
) -> aiohttp.ClientWebSocketResponse:
    return await s.ws_connect(srv.ws, params=params, max_msg_size=0)


async def messages(ws: aiohttp.ClientWebSocketResponse) -> AsyncIterator[tuple[float, dict]]:
    """(receipt time, message) until the socket closes; TIMEOUT without one is an error."""
    while True:
        msg = await ws.receive(timeout=TIMEOUT)
        now = time.time()
        if msg.type != aiohttp.WSMsgType.TEXT:
            return
        yield now, json.loads(msg.data)


async def last_event_id(s: aiohttp.ClientSession, srv: Server) -> int:
    """The newest stored event's id: the last of the replay, after which the stream is quiet."""
    last = 0
    ws = await events(s, srv, logs="false")
    try:
        while True:
            msg = await ws.receive(timeout=0.5)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            last = json.loads(msg.data)["id"] or last
    except TimeoutError:
        pass
    finally:
        await ws.close()
    return last


def one_task(name: str, command: list[str]) -> dict[str, Any]:
    return {"workflow": {"name": name, "tasks": [{"name": "t", "command": command}]}}


def n_tasks(name: str, n: int) -> dict[str, Any]:
    """`n` independent tasks, each `true`."""
    tasks = [{"name": f"t{i}", "command": ["true"]} for i in range(n)]
    return {"workflow": {"name": name, "tasks": tasks}}


async def wait_done(s: aiohttp.ClientSession, srv: Server, wf_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        async with s.get(f"{srv.api}/workflows/{wf_id}") as r:
            wf = await r.json()
        if wf["status"] in ("COMPLETED", "FAILED", "FAILED_CANCELED"):
            return wf
        if time.monotonic() > deadline:
            raise TimeoutError(wf_id)
        await asyncio.sleep(0.05)


@contextlib.contextmanager
def profiled(srv: Server, name: str) -> Iterator[None]:
    """py-spy on the server while the block runs, if OSMO_BENCH_PYSPY names a folder."""
    folder = os.environ.get("OSMO_BENCH_PYSPY")
    if not folder or srv.proc is None:
        yield
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    out = Path(folder) / f"{name}.txt"
    spy = subprocess.Popen(
        ["py-spy", "record", "--pid", str(srv.proc.pid), "-r", "200", "-f", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # attached before the work starts
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        spy.wait(30)


# --- the measurements ----------------------------------------------------------------------


async def bench_submit(s: aiohttp.ClientSession, srv: Server) -> dict[str, Any]:
    ws = await events(s, srv, logs="false")
    lat: list[float] = []
    spec = one_task("sub", ["true"])
    it = messages(ws)
    for _ in range(N_SUBMIT):
        t0 = time.time()
        wf_id = await submit(s, srv, spec)
        async for now, ev in it:
            if (ev["workflow_id"], ev["type"], ev["status"]) == (wf_id, "task.status", "RUNNING"):
                lat.append(now - t0)
                break
        async for _, ev in it:  # let it end, so the next submit starts on a quiet server
            if ev["workflow_id"] == wf_id and ev["type"] == "workflow.status" and ev["status"] in (
                "COMPLETED", "FAILED",
            ):  # fmt: skip
                break
    await ws.close()
    print(f"submit -> first task RUNNING ({N_SUBMIT} one-task workflows, one at a time)")
    return line("latency", lat, ("p50", 0.050))


async def _getter(
    s: aiohttp.ClientSession, url: str, stop: float, pace: Callable[[], Any] | None
) -> tuple[list[float], int]:
    lat: list[float] = []
    errors = 0
    while time.monotonic() < stop:
        if pace is not None:
            await pace()
        t0 = time.monotonic()
        try:
            async with s.get(url) as r:
                await r.read()
                ok = r.status == 200
        except aiohttp.ClientError:
            ok = False
        lat.append(time.monotonic() - t0)
        errors += not ok
    return lat, errors


async def bench_get(s: aiohttp.ClientSession, srv: Server) -> dict[str, Any]:
    wf_id = await submit(
        s,
        srv,
        n_tasks("got", 3),
    )
    await wait_done(s, srv, wf_id)
    url = f"{srv.api}/workflows/{wf_id}"
    conn = aiohttp.TCPConnector(limit=CLIENTS)
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession(headers=HEADERS, connector=conn) as pool:
        # warm up the 200 connections so the figures are requests, not TCP handshakes
        await asyncio.gather(
            *(_getter(pool, url, time.monotonic() + 0.5, None) for _ in range(CLIENTS))
        )
        print(f"GET /workflows/{{id}}, {CLIENTS} concurrent clients, {GET_SECONDS:g} s each mode")
        for mode in ("closed", "open"):
            pace = None
            if mode == "open":
                period = CLIENTS / RATE
                tick: dict[str, float] = {}

                async def pace_fn(period: float = period, tick: dict[str, float] = tick) -> None:
                    key = str(id(asyncio.current_task()))
                    # the first request at a random phase: clients do not tick in step
                    nxt = tick.get(key, time.monotonic() + random.uniform(0, period)) + period
                    tick[key] = nxt
                    await asyncio.sleep(max(0.0, nxt - time.monotonic()))

                pace = pace_fn
            stop = time.monotonic() + GET_SECONDS
            t0 = time.monotonic()
            assert srv.proc is not None
            server, me = psutil.Process(srv.proc.pid), psutil.Process()
            cpu0 = sum(server.cpu_times()[:2]), sum(me.cpu_times()[:2])
            results = await asyncio.gather(
                *(_getter(pool, url, stop, pace) for _ in range(CLIENTS))
            )
            took = time.monotonic() - t0
            cpu = sum(server.cpu_times()[:2]) - cpu0[0], sum(me.cpu_times()[:2]) - cpu0[1]
            lat = [x for r in results for x in r[0]]
            errors = sum(r[1] for r in results)
            label = "closed loop (saturation)" if mode == "closed" else f"open loop, {RATE:g} req/s"
            r = line(label, lat, ("p99", 0.050) if mode == "open" else None)
            print(
                f"  {'':<34} {len(lat) / took:.0f} req/s, {errors} errors; CPU over {took:.1f} s:"
                f" server {cpu[0]:.1f} s, client {cpu[1]:.1f} s"
            )
            out[mode] = {**r, "rps": len(lat) / took, "errors": errors}
    return out


async def _fanout(
    s: aiohttp.ClientSession, srv: Server, name: str, spec: dict[str, Any]
) -> tuple[list[float], float, float]:
    """Per-event latency to the last of SUBSCRIBERS sockets, and the server's and this
    process's CPU seconds while it ran."""
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(headers=HEADERS, connector=conn) as subs:
        # Subscribed before the workflow exists, from the newest stored event on: no replay.
        after = str(await last_event_id(s, srv))
        sockets = [await events(subs, srv, logs="false", after=after) for _ in range(SUBSCRIBERS)]
        await asyncio.sleep(0.5)  # every subscription is registered
        assert srv.proc is not None
        server, me = psutil.Process(srv.proc.pid), psutil.Process()
        cpu0 = sum(server.cpu_times()[:2]), sum(me.cpu_times()[:2])
        wf_id = await submit(s, srv, spec)
        last: dict[int, float] = {}
        ts: dict[int, float] = {}

        async def reader(ws: aiohttp.ClientWebSocketResponse) -> None:
            async for now, ev in messages(ws):
                if ev["workflow_id"] != wf_id:
                    continue
                last[ev["id"]] = max(last.get(ev["id"], 0.0), now)
                ts[ev["id"]] = ev["ts"]
                if ev["type"] == "workflow.status" and ev["status"] in ("COMPLETED", "FAILED"):
                    return

        await asyncio.wait_for(asyncio.gather(*(reader(ws) for ws in sockets)), TIMEOUT)
        cpu1 = sum(server.cpu_times()[:2]), sum(me.cpu_times()[:2])
        for ws in sockets:
            await ws.close()
    return [last[i] - ts[i] for i in last], cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]


async def bench_fanout(s: aiohttp.ClientSession, srv: Server) -> dict[str, Any]:
    chain = {
        "workflow": {
            "name": "chain",
            "tasks": [
                {"name": f"t{i}", "command": ["sleep", "0.2"]}
                | ({"inputs": [{"task": f"t{i - 1}"}]} if i else {})
                for i in range(5)
            ],
        }
    }
    print(f"event fan-out to {SUBSCRIBERS} WebSocket subscribers: event ts -> last subscriber")
    out = {}
    for label, name, spec in (
        ("5-task chain (a few events at a time)", "chain", chain),
        ("10 parallel tasks (one burst)", "burst", n_tasks("burst", 10)),
    ):
        lat, server_cpu, client_cpu = await _fanout(s, srv, name, spec)
        out[name] = line(label, lat)
        n = len(lat) * SUBSCRIBERS
        print(
            f"  {'':<34} {len(lat)} events, {n} messages; CPU: server {server_cpu:.2f} s "
            f"({server_cpu / n * 1e6:.0f} us/message), client {client_cpu:.2f} s"
        )
    return out


async def bench_logs(s: aiohttp.ClientSession, srv: Server) -> dict[str, Any]:
    script = (
        f"import time\nfor _ in range({LOG_LINES}):\n"
        "    print(repr(time.time()), flush=True)\n    time.sleep(0.01)\n"
    )
    ws = await events(s, srv, after=str(await last_event_id(s, srv)))
    wf_id = await submit(s, srv, one_task("logs", [sys.executable, "-u", "-c", script]))
    lat: list[float] = []
    async for now, ev in messages(ws):
        if ev["workflow_id"] != wf_id:
            continue
        if ev["type"] == "task.log" and ev["payload"]["stream"] == "stdout":
            lat.append(now - float(ev["payload"]["text"]))
        if ev["type"] == "workflow.status" and ev["status"] in ("COMPLETED", "FAILED"):
            break
    await ws.close()
    print(f"log follow: task write -> events WebSocket ({LOG_LINES} lines, one per 10 ms)")
    if len(lat) != LOG_LINES:
        print(f"  !! received {len(lat)} of {LOG_LINES} lines")
    return line("latency", lat, ("p99", 0.100))


async def bench_rss(base: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    print("idle server RSS (after start, one request, 3 s idle)")
    for osmo in (False, True):
        async with (
            Server(base / f"rss-{osmo}", osmo=osmo) as srv,
            aiohttp.ClientSession(headers=HEADERS) as s,
        ):
            if osmo:
                async with s.get(f"{srv.api}/workflows") as r:
                    assert r.status == 200
            await asyncio.sleep(3)
            assert srv.proc is not None
            rss = psutil.Process(srv.proc.pid).memory_info().rss
            label = "with osmo_jupyter" if osmo else "jupyter server alone"
            extra = ""
            if osmo:
                agents = [psutil.Process(p).memory_info().rss for p in srv.agent_pids()]
                extra = f"   (+ local agent process {sum(agents) / 2**20:.1f} MiB)"
                out["agent"] = sum(agents)
            print(f"  {label:<34} {rss / 2**20:7.1f} MiB{extra}")
            out["with" if osmo else "without"] = rss
    print(f"  {'extension cost':<34} {(out['with'] - out['without']) / 2**20:7.1f} MiB")
    return out


BENCHES = {"submit": bench_submit, "get": bench_get, "fanout": bench_fanout, "logs": bench_logs}


async def main(which: list[str]) -> int:
    unknown = set(which) - {*BENCHES, "rss"}
    if unknown:
        print(f"unknown: {', '.join(sorted(unknown))}; choose from {', '.join([*BENCHES, 'rss'])}")
        return 2
    which = which or [*BENCHES, "rss"]
    with tempfile.TemporaryDirectory(prefix="osmo-bench-") as tmp:
        base = Path(tmp)
        print(f"data under {base} ({os.cpu_count()} CPUs)\n")
        started = time.monotonic()
        live = [w for w in which if w in BENCHES]
        if live:
            async with Server(base / "api") as srv, aiohttp.ClientSession(headers=HEADERS) as s:
                for name in live:
                    with profiled(srv, name):
                        await BENCHES[name](s, srv)
                    print()
        if "rss" in which:
            await bench_rss(base)
        print(f"\ntook {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
