"""kmock (an in-memory Kubernetes API over HTTP on 127.0.0.1) plus a tiny test-side kubelet."""

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


def api_for(url: str) -> Any:
    cfg = client.Configuration()
    cfg.host = url.rstrip("/")
    return client.CoreV1Api(client.ApiClient(cfg))


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

    The exit code is the N of a trailing `exit N` in the command (0 otherwise); an image that
    starts with `bad/` never pulls (ErrImagePull); stdout lines are the `echo WORD`s of the
    command, served on the pod's log subresource."""

    def __init__(self, kmock: Any, api: Any) -> None:
        self.kmock, self.api = kmock, api
        self.done: set[str] = set()
        self.manifests: list[dict[str, Any]] = []

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
            spec = raw["spec"]["containers"][0]
            image, script = spec["image"], " ".join(spec.get("args") or [])
            if image.startswith("bad/"):
                waiting = {"waiting": {"reason": "ErrImagePull", "message": f"pull {image}"}}
                status = {"phase": "Pending", "containerStatuses": [_container(waiting, image)]}
                await self._patch(name, status)
                continue
            running = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
            await self._patch(
                name, {"phase": "Running", "containerStatuses": [_container(running, image)]}
            )
            log = "".join(f"{w}\n" for w in re.findall(r"echo (\S+)", script))
            path = f"/api/v1/namespaces/{NAMESPACE}/pods/{name}/log"
            self.kmock[f"get {path}"] << kmock.text(log)
            m = re.search(r"exit (\d+)\s*$", script)
            code = int(m.group(1)) if m else 0
            term = {
                "terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}
            }
            phase = "Succeeded" if code == 0 else "Failed"
            await self._patch(
                name, {"phase": phase, "containerStatuses": [_container(term, image)]}
            )

    async def _patch(self, name: str, status: dict[str, Any]) -> None:
        await asyncio.to_thread(
            self.api.patch_namespaced_pod_status, name, NAMESPACE, {"status": status}
        )

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.step()
            await asyncio.sleep(0.1)


@pytest.fixture
async def kubelet(kmock: Any) -> AsyncIterator[Kubelet]:
    k = Kubelet(kmock, api_for(str(kmock.url)))
    await k.add_node("node-a", cpu="4", memory="8Gi", **{"kubernetes.io/arch": "amd64"})
    task = asyncio.create_task(k.run())
    yield k
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
