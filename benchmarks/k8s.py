"""Kubernetes backend benchmark against kmock's emulated API server (no real cluster here).

    python benchmarks/k8s.py                 # 1,000 pods, then 10,000 pods watched
    OSMO_BENCH_PODS=200 OSMO_BENCH_WATCHED=2000 python benchmarks/k8s.py   # quicker

The emulator and a minimal kubelet (it watches pods and marks each new one Running) run in a
child process, so the parent's memory is the control plane's alone. Figures:

1. launch: time for the backend to create N pods and observe each Running through its watch,
   against a floor in the same run: the bare client creating N pods with the same concurrency
   (no watch, no labels bookkeeping). Ratio = backend / floor.
2. API calls per task, counted by the emulator from the backend's requests only.
3. watch memory: a fresh backend that follows 10,000 existing pods (one list, then the watch),
   its resident-memory growth and the time until every pod was seen.

kmock is an in-memory Python server whose cost per request grows with the requests and objects
it holds (profiled: kmock/_internal/filtering.py `_check`), and the floor runs first on an
emptier emulator: wall times and the ratio measure kmock more than the backend. The
control-plane CPU per pod (this process only) is the backend's own cost. On this project's
shared 2-core VM the 1,000-pod launch did not finish within 25 minutes because of kmock, so the
README reports OSMO_BENCH_PODS=200.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NAMESPACE = "bench"
KUBELET = "osmo-bench-kubelet"
FLOOR = "osmo-bench-floor"
CONCURRENCY = 16


def _api(url: str, agent: str | None = None) -> Any:
    from kubernetes import client

    cfg = client.Configuration()
    cfg.host = url
    cfg.connection_pool_maxsize = CONCURRENCY * 2
    api_client = client.ApiClient(cfg)
    if agent:
        api_client.user_agent = agent
    return client.CoreV1Api(api_client)


def _kubelet(url: str) -> None:
    """Mark every new pod Running (a thread in the emulator's process)."""
    from kubernetes import watch

    api = _api(url, KUBELET)
    running = {
        "phase": "Running",
        "containerStatuses": [
            {
                "name": "task",
                "image": "busybox",
                "imageID": "",
                "ready": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
            }
        ],
    }
    while True:
        try:
            for ev in watch.Watch().stream(api.list_namespaced_pod, NAMESPACE):
                pod = ev["object"]
                if ev["type"] == "ADDED" and not (pod.status and pod.status.phase):
                    if (pod.metadata.labels or {}).get("bench") == "preloaded":
                        continue
                    api.patch_namespaced_pod_status(
                        pod.metadata.name, NAMESPACE, {"status": running}
                    )
        except Exception:
            time.sleep(0.1)


def _emulator(conn: Any) -> None:
    """Child process: kmock on 127.0.0.1 + the kubelet; answers `count` and `preload N`."""
    import kmock

    async def main() -> None:
        async with kmock.KubernetesEmulator() as km, kmock.Server(km) as server:
            for kind in ("v1/pods", "v1/services", "v1/secrets", "v1/nodes"):
                km.resources[kind] = {}
            url = str(server.url).rstrip("/")
            threading.Thread(target=_kubelet, args=(url,), daemon=True).start()
            conn.send(url)
            loop = asyncio.get_running_loop()
            while True:
                cmd = await loop.run_in_executor(None, conn.recv)
                if cmd == "count":
                    agents = Counter()
                    for r in km:
                        agent = r.headers.get("User-Agent")
                        if agent in (KUBELET, FLOOR):
                            continue
                        watch = r.params.get("watch") == "true"
                        path = r.url.path
                        kind = "log" if path.endswith("/log") else path.split("/")[5]
                        agents[f"{'WATCH' if watch else r.method.value} {kind}"] += 1
                    conn.send(dict(agents))
                elif isinstance(cmd, tuple) and cmd[0] == "preload":
                    # straight into the emulator's store: kmock looks objects up by a linear
                    # scan, so creating 10,000 over HTTP takes many minutes here
                    for i in range(cmd[1]):
                        body = _pod(f"w-{i}", cmd[2])
                        body["metadata"]["annotations"] = {"osmo/key": f"wf-w/t{i}/0"}
                        km.objects["v1/pods", NAMESPACE, f"w-{i}"] = body
                    conn.send("ok")
                elif cmd == "stop":
                    return

    asyncio.run(main())


def _pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {"containers": [{"name": "task", "image": "busybox"}]},
    }


async def _floor(url: str, n: int) -> float:
    """The bare client creating n pods with the same concurrency."""
    api = _api(url, FLOOR)
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with sem:
            body = _pod(f"floor-{i}", {"bench": "preloaded"})
            await asyncio.to_thread(api.create_namespaced_pod, NAMESPACE, body)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - t0


async def _launch(url: str, n: int, root: str) -> tuple[float, float, float]:
    from osmo_core.backends.kubernetes.backend import KubernetesBackend
    from osmo_core.wire import LaunchRequest, Started

    started: set[str] = set()
    done = asyncio.Event()

    def sink(ev: Any) -> None:
        if isinstance(ev, Started):
            started.add(ev.key)
            if len(started) == n:
                done.set()

    conf = {"host": url, "namespace": NAMESPACE, "root": root, "orphan_grace": 3600}
    backend = KubernetesBackend("bench", conf)
    await backend.start(sink)
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with sem:
            req = LaunchRequest(key=f"wf-bench/t{i}/0", argv=["true"], image="busybox")
            await backend.launch(req)

    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(i) for i in range(n)))
    created = time.perf_counter() - t0
    await asyncio.wait_for(done.wait(), 1800)
    running = time.perf_counter() - t0
    cpu = time.process_time() - cpu0  # this process only: the backend, not the emulator
    await backend.stop()
    return created, running, cpu


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _watch_many(url: str, n: int, root: str, conn: Any) -> tuple[float, int, float]:
    """Preload n pods of another backend's attempts, then follow them all with a new one:
    (seconds until all were seen, RSS growth in bytes, CPU seconds of this process)."""
    from osmo_core.backends.kubernetes.backend import KubernetesBackend
    from osmo_core.backends.kubernetes.pods import LABEL_BACKEND, LABEL_MANAGED

    labels = {LABEL_MANAGED: "osmo", LABEL_BACKEND: "watched", "bench": "preloaded"}
    conn.send(("preload", n, labels))
    conn.recv()
    seen: set[str] = set()
    done = asyncio.Event()
    backend = KubernetesBackend("watched", {"host": url, "namespace": NAMESPACE, "root": root})
    for i in range(n):  # what recovery does for the attempts the engine knows
        backend._track(f"wf-w/t{i}/0")
    original = backend._on_pod

    def on_pod(kind: str, obj: Any) -> None:
        for pod in obj[1] if kind == "SYNC" else [obj]:
            seen.add(pod.metadata.name)
        if len(seen) >= n:
            done.set()
        original(kind, obj)

    backend._on_pod = on_pod  # type: ignore[method-assign]
    before = _rss()
    t0, cpu0 = time.perf_counter(), time.process_time()
    await backend.start(lambda ev: None)
    await asyncio.wait_for(done.wait(), 600)
    seconds = time.perf_counter() - t0
    grown = _rss() - before
    cpu = time.process_time() - cpu0
    await backend.stop()
    return seconds, grown, cpu


async def main() -> None:
    import tempfile

    n = int(os.environ.get("OSMO_BENCH_PODS", "1000"))
    watched = int(os.environ.get("OSMO_BENCH_WATCHED", "10000"))
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_emulator, args=(child,), daemon=True)
    proc.start()
    url = parent.recv()
    try:
        with tempfile.TemporaryDirectory() as root:
            floor = await _floor(url, n)
            print(f"floor: bare client created {n} pods in {floor:.2f}s", flush=True)
            created, running, cpu = await _launch(url, n, root)
            parent.send("count")
            calls = parent.recv()
            print(
                f"launch {n} pods through the backend: created in {created:.2f}s, "
                f"all Running seen in {running:.2f}s"
            )
            print(f"  control-plane CPU: {cpu:.2f}s ({cpu / n * 1000:.2f} ms per pod)")
            print(f"  ratio backend/floor (create): {created / floor:.2f}x")
            print(f"API calls per task ({n} tasks):")
            for what, count in sorted(calls.items()):
                print(f"  {what:<16} {count:>6}  ({count / n:.3f} per task)")
            seconds, grown, wcpu = await _watch_many(url, watched, root, parent)
            print(
                f"watch {watched} pods: all seen in {seconds:.2f}s (CPU {wcpu:.2f}s), "
                f"control-plane RSS +{grown / 2**20:.1f} MiB "
                f"({grown / watched / 1024:.1f} KiB per pod)"
            )
    finally:
        parent.send("stop")
        proc.join(10)
        if proc.is_alive():
            proc.kill()


if __name__ == "__main__":
    asyncio.run(main())
