"""The Kubernetes in-pod agent: what it costs a task, against the same pods without it.

    sudo python benchmarks/k8s_agent.py            # 16 pods per run, 100,000 log lines
    OSMO_BENCH_PODS=8 OSMO_BENCH_LINES=20000 python benchmarks/k8s_agent.py

No cluster runs here: kmock's API server and the tests' process kubelet (tests/k8s/pod_runner.py:
each pod's containers are real processes in their own mount namespaces; needs root and
`unshare`). Both runs use them, so their ratio is the agent's own cost:

1. start: a workflow of N parallel tasks, from submit until every task is RUNNING, and until
   the workflow COMPLETED; with the agent (init container copy, agent start, dial home over
   SSH, launch over the agent protocol) and without (the command is the container's).
2. API calls per task, counted by kmock from the backend's requests only.
3. logs: one task printing L lines; with the agent they stream live over SSH to the control
   plane (archived as they arrive), without it they are read once from the pod log at the end.
   Time from submit to COMPLETED with every line readable; for reference, the same task on
   the local backend (the host agent over its Unix socket).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PODS = int(os.environ.get("OSMO_BENCH_PODS", "16"))
LINES = int(os.environ.get("OSMO_BENCH_LINES", "100000"))


def config(root: Path, url: str, agent: bool) -> Any:
    from osmo_core.config import OsmoConfig

    data = root / ("agent" if agent else "plain")
    extra: dict[str, Any] = {}
    backend: dict[str, Any] = {
        "kind": "kubernetes",
        "host": url,
        "namespace": "osmo",
        "start_timeout": 120,
    }
    if agent:
        tree = root / "agent-image"
        (tree / "bin").mkdir(parents=True, exist_ok=True)
        python = tree / "bin" / "python3"
        python.write_text(f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} "$@"\n')
        python.chmod(0o755)
        mount = root / "m"
        from tests.conftest import free_port

        port = free_port()  # pods here share this host's network: they dial loopback
        extra = {"interactive_port": port}
        backend |= {
            "agent_dial": f"127.0.0.1:{port}",
            "agent_image": "osmo-agent:bench",
            "agent_dir": str(mount),
            "agent_init_command": ["sh", "-c", f"cp -a {tree}/. {mount}/agent/"],
        }
    return OsmoConfig(
        data_dir=str(data),
        store_url=f"sqlite:///{data / 'osmo.db'}",
        backends={"k8s": backend},
        pools={"k8s": {"backend": "k8s", "platforms": {"default": {}}}},
        default_pool="k8s",
        **extra,
    )


def spec(n: int, script: str) -> dict[str, Any]:
    tasks = [
        {"name": f"t{i}", "image": "busybox", "command": ["sh", "-c", script]} for i in range(n)
    ]
    return {"workflow": {"name": "bench", "resources": {"default": {"cpu": 0.1}}, "tasks": tasks}}


async def timed_run(svc: Any, body: dict[str, Any], tasks: int) -> tuple[float, float]:
    """(seconds until every task RUNNING or past it, seconds until the workflow ended)."""
    t0 = time.perf_counter()
    wf = await svc.submit(body)
    running_at = None
    deadline = t0 + 600
    while time.perf_counter() < deadline:
        got = svc.get(wf)
        started = [t for t in got["tasks"] if t["start_time"]]
        if running_at is None and len(started) == tasks:
            running_at = time.perf_counter() - t0
        if got["status"] not in ("PENDING", "RUNNING", "WAITING"):
            assert got["status"] == "COMPLETED", got
            return running_at or time.perf_counter() - t0, time.perf_counter() - t0
        await asyncio.sleep(0.02)
    raise TimeoutError(wf)


async def one(km: Any, url: str, root: Path, agent: bool) -> dict[str, float]:
    from osmo_core.service import Service
    from tests.k8s.conftest import KUBELET_AGENT
    from tests.k8s.pod_runner import running_process_kubelet

    out: dict[str, float] = {}
    async with running_process_kubelet(km, root / f"kubelet-{agent}"):
        svc = Service(config(root, url, agent))
        await svc.start()
        try:
            before = len(list(km))
            running, done = await timed_run(svc, spec(PODS, "echo hi"), PODS)
            out["running_s"], out["completed_s"] = running, done
            for _ in range(300):  # the last deletes follow the end
                if not await asyncio.to_thread(lambda: svc_pods(km)):
                    break
                await asyncio.sleep(0.1)
            reqs = [r for r in list(km)[before:] if r.headers.get("User-Agent") != KUBELET_AGENT]
            kinds = Counter(what(r) for r in reqs)
            out["api_calls_per_task"] = len(reqs) / PODS
            out["api_kinds"] = dict(kinds)  # type: ignore[assignment]
            script = f"seq {LINES}"
            t0 = time.perf_counter()
            wf = await svc.submit(spec(1, script))
            await asyncio.wait_for(svc.wait(wf), 600)
            lines = await svc.logs(wf, "t0")
            out["log_s"] = time.perf_counter() - t0
            out["log_lines"] = len([x for x in lines if x.stream != "system"])
        finally:
            await svc.stop()
    return out


async def local_logs(root: Path) -> float:
    """The log test on the local backend: the host agent's own streaming, for reference."""
    from osmo_core.config import OsmoConfig
    from osmo_core.service import Service

    data = root / "local"
    svc = Service(OsmoConfig(data_dir=str(data), store_url=f"sqlite:///{data / 'osmo.db'}"))
    await svc.start()
    try:
        t0 = time.perf_counter()
        wf = await svc.submit(spec(1, f"seq {LINES}"))
        await asyncio.wait_for(svc.wait(wf), 600)
        assert len(await svc.logs(wf, "t0")) >= LINES
        return time.perf_counter() - t0
    finally:
        await svc.stop()


def svc_pods(km: Any) -> list[Any]:
    """What the run left: pods, Secrets, Services not deleted yet."""
    kinds = ("Pod", "Secret", "Service")
    return [o for o in km.objects.values() if o.get("kind") in kinds and not o.deleted]


def what(request: Any) -> str:
    """`METHOD resource[/subresource]` of an API request."""
    parts = request.url.path.strip("/").split("/")
    i = parts.index("namespaces") + 2 if "namespaces" in parts else len(parts) - 1
    resource = "/".join(parts[i : i + 1] + parts[i + 2 : i + 3])
    return f"{str(request.method).split('.')[-1]} {resource}"


async def main() -> None:
    import kmock

    from tests.k8s.conftest import declare_kinds
    from tests.k8s.pod_runner import unavailable

    if reason := unavailable():
        sys.exit(f"k8s_agent benchmark: {reason}")
    root = Path(tempfile.mkdtemp(prefix="osmo-bench-k8s-agent-"))
    results = {}
    try:
        for agent in (False, True):  # a fresh emulator each: kmock slows with what it holds
            async with kmock.KubernetesEmulator() as km, kmock.Server(km) as server:
                declare_kinds(km)
                results[agent] = await one(km, str(server.url).rstrip("/"), root, agent)
        local_s = await local_logs(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # nothing left in /tmp
    plain, with_agent = results[False], results[True]
    print(f"{PODS} pods in parallel, {LINES} log lines; kmock + process kubelet, this machine")
    for label, key in (
        ("submit -> all RUNNING (s)", "running_s"),
        ("submit -> COMPLETED (s)", "completed_s"),
        ("API calls per task", "api_calls_per_task"),
        (f"{LINES} log lines, submit -> readable (s)", "log_s"),
    ):
        a, b = plain[key], with_agent[key]
        print(f"  {label:42s} without agent {a:8.2f}   with agent {b:8.2f}   ratio {b / a:5.2f}")
    print(
        f"  the same log through this machine's host agent (local backend): {local_s:.2f} s "
        f"(pod agent / host agent {with_agent['log_s'] / local_s:.2f})"
    )
    read = (plain["log_lines"], with_agent["log_lines"])
    print(f"  log lines read back: without {read[0]:.0f}, with {read[1]:.0f}")
    print(f"  API calls without agent: {plain['api_kinds']}")
    print(f"  API calls with agent:    {with_agent['api_kinds']}")


if __name__ == "__main__":
    asyncio.run(main())
