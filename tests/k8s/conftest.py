"""kmock (an in-memory Kubernetes API over HTTP on 127.0.0.1) plus a tiny test-side kubelet.

kmock serves list/watch/create/patch/delete of any object kind and streams watch events; it
ignores label selectors and resourceVersions (so the backend filters by label itself, and a
410 Gone is injected with a kmock reaction where a test needs one)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

kmock = pytest.importorskip("kmock")
client = pytest.importorskip("kubernetes.client")

NAMESPACE = "osmo"
KUBELET_AGENT = "osmo-test-kubelet"  # its requests are told apart from the backend's by this


def api_for(url: str, user_agent: str | None = None) -> Any:
    cfg = client.Configuration()
    cfg.host = url.rstrip("/")
    api_client = client.ApiClient(cfg)
    if user_agent:
        api_client.user_agent = user_agent
    return client.CoreV1Api(api_client)


def backend_requests(km: Any) -> list[Any]:
    """Requests kmock received from anyone but the test kubelet."""
    return [r for r in km if r.headers.get("User-Agent") != KUBELET_AGENT]


def _container(state: dict[str, Any], image: str) -> dict[str, Any]:
    return {
        "name": "task",
        "image": image,
        "imageID": "",
        "ready": "running" in state,
        "restartCount": 0,
        "state": state,
    }


class Kubelet:
    """Moves each new pod Pending -> Running -> Succeeded/Failed, like a node would.

    The exit code is the N of a trailing `exit N` in the command (0 otherwise); stdout lines
    are the `echo WORD`s of the command, served on the pod's log subresource. Variants:
    an image starting with `bad/` never pulls (ErrImagePull); `unschedulable/` is never
    scheduled (PodScheduled False); a command with `oom` ends OOMKilled, `evict` is evicted,
    `nodelost` loses its node (phase Unknown), `hang` keeps running."""

    def __init__(self, km: Any, api: Any) -> None:
        self.kmock, self.api = km, api
        self.done: set[str] = set()
        self.manifests: list[dict[str, Any]] = []
        self.up = asyncio.Event()  # cleared: the kubelet is down (tests/faults/)
        self.up.set()

    def crash(self) -> None:
        """The kubelet dies: it neither starts, stops nor reports pods until `restart`; the
        containers it runs go on, as with a real kubelet's container runtime."""
        self.up.clear()

    def restart(self) -> None:
        """Back with its state (the pods it runs): it catches up on what changed meanwhile."""
        self.up.set()

    async def add_node(self, name: str, cpu: str, memory: str, **labels: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"cpu": cpu, "memory": memory}},
        }
        await asyncio.to_thread(self.api.create_node, body)

    async def step(self) -> None:
        pods = await asyncio.to_thread(self.api.list_namespaced_pod, NAMESPACE)
        for pod in pods.items:
            name = pod.metadata.name
            if name in self.done:
                continue
            self.done.add(name)
            raw = self.api.api_client.sanitize_for_serialization(pod)
            self.manifests.append(raw)
            await self._run(name, raw["spec"]["containers"][0])

    async def _run(self, name: str, spec: dict[str, Any]) -> None:
        image, script = spec["image"], " ".join(spec.get("args") or [])
        if image.startswith("bad/"):
            waiting = {"waiting": {"reason": "ErrImagePull", "message": f"pull {image}"}}
            await self._patch(
                name, {"phase": "Pending", "containerStatuses": [_container(waiting, image)]}
            )
            return
        if image.startswith("unschedulable/"):
            cond = {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
            }
            await self._patch(name, {"phase": "Pending", "conditions": [cond]})
            return
        running = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
        await self._patch(
            name, {"phase": "Running", "containerStatuses": [_container(running, image)]}
        )
        log = "".join(f"{w}\n" for w in re.findall(r"echo (\S+)", script))
        path = f"/api/v1/namespaces/{NAMESPACE}/pods/{name}/log"
        self.kmock[f"get {path}"] << kmock.text(log)
        if "hang" in script:
            return
        if "evict" in script:
            msg = "The node was low on resource: ephemeral-storage."
            await self._patch(name, {"phase": "Failed", "reason": "Evicted", "message": msg})
            return
        if "nodelost" in script:
            await self._patch(name, {"phase": "Unknown", "reason": "NodeLost"})
            return
        m = re.search(r"exit (\d+)\s*$", script)
        code = int(m.group(1)) if m else 0
        reason = "Completed" if code == 0 else "Error"
        if "oom" in script:
            code, reason = 137, "OOMKilled"
        term = {"terminated": {"exitCode": code, "reason": reason}}
        phase = "Succeeded" if code == 0 else "Failed"
        await self._patch(name, {"phase": phase, "containerStatuses": [_container(term, image)]})

    async def _patch(self, name: str, status: dict[str, Any]) -> None:
        await self.up.wait()
        await asyncio.to_thread(
            self.api.patch_namespaced_pod_status, name, NAMESPACE, {"status": status}
        )

    async def close(self) -> None:
        """Nothing runs for real here (ProcessKubelet kills its processes)."""

    async def run(self) -> None:
        while True:
            await self.up.wait()
            with contextlib.suppress(Exception):
                await self.step()
            await asyncio.sleep(0.1)


def declare_kinds(km: Any) -> None:
    """A real API server serves these kinds even with no object of them (kmock: 404 unless
    declared), so an empty list or watch succeeds."""
    for kind in ("v1/pods", "v1/services", "v1/secrets", "v1/nodes"):
        km.resources[kind] = {}


@contextlib.asynccontextmanager
async def running_kubelet(km: Any, make: Any = None) -> AsyncIterator[Any]:
    """A kubelet (`make(km, api)`, default `Kubelet`) serving node-a, stopped at the end."""
    declare_kinds(km)
    k = (make or Kubelet)(km, api_for(str(km.url), KUBELET_AGENT))
    await k.add_node("node-a", cpu="4", memory="8Gi", **{"kubernetes.io/arch": "amd64"})
    task = asyncio.create_task(k.run())
    try:
        yield k
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await k.close()
        await _wake_watch_handlers(k.api)


async def _wake_watch_handlers(api: Any) -> None:
    """kmock's watch handler notices a client that went away only when it next writes an
    event; until then aiohttp's shutdown waits (60 s). One pod created and deleted gives each
    stale handler something to write."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "teardown-wake", "namespace": NAMESPACE},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    }
    with contextlib.suppress(Exception):
        await asyncio.to_thread(api.create_namespaced_pod, NAMESPACE, body)
        await asyncio.to_thread(api.delete_namespaced_pod, "teardown-wake", NAMESPACE)


@pytest.fixture
async def kubelet(kmock: Any) -> AsyncIterator[Kubelet]:
    async with running_kubelet(kmock) as k:
        yield k


async def until(check: Any, seconds: float = 10.0, step: float = 0.05) -> Any:
    """Poll `check()` (sync or async) until truthy; bounded in time."""
    for _ in range(int(seconds / step)):
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(step)
    raise AssertionError(f"not true after {seconds}s: {check}")


@pytest.fixture
async def process_kubelet(kmock: Any, tmp_path: Any) -> AsyncIterator[Any]:
    """A kubelet that runs pods as local processes (tests/k8s/pod_runner.py); skips without
    root or `unshare`."""
    from tests.k8s.pod_runner import running_process_kubelet, unavailable

    if reason := unavailable():
        pytest.skip(reason)
    async with running_process_kubelet(kmock, tmp_path / "kubelet") as k:
        yield k
