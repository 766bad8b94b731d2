"""`kind: kubernetes`: each attempt is one pod (first slice of the Kubernetes backend).

Config: `kubeconfig` + `context`, or `host` (a plain API URL, used by the tests), `namespace`,
and optional `node_selector`, `tolerations`, `pod_template`, `default_image`, `poll_interval`.
The official sync client runs in `asyncio.to_thread`. Pod state is followed by listing the
attempt pods (label `osmo.managed-by=osmo`) every `poll_interval` seconds; see the README for
why this slice polls instead of watching.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from .base import (
    AttemptState,
    Backend,
    EventSink,
    Exited,
    LaunchInfo,
    LaunchRequest,
    LogLine,
    Lost,
    Node,
    Started,
    StartFailed,
)
from .kubernetes_pods import LABEL_MANAGED, build_pod, pod_name

IMAGE_ERRORS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}


def parse_quantity(text: str) -> float:
    """A Kubernetes quantity ("500m", "4", "16Gi", "1G") as a float."""
    from kubernetes.utils.quantity import parse_quantity as pq

    return float(pq(text))


class KubernetesBackend(Backend):
    kind = "kubernetes"

    def __init__(self, name: str, config: dict[str, Any] | None = None):
        super().__init__(name, config)
        self.namespace: str = self.config.get("namespace", "default")
        self.poll_interval: float = float(self.config.get("poll_interval", 0.5))
        self._api: Any = None
        self._sink: EventSink | None = None
        self._task: asyncio.Task[None] | None = None
        self._known: dict[str, str] = {}  # key -> last phase reported ("", running, done)

    def _client(self) -> Any:
        from kubernetes import client, config

        if self.config.get("host"):
            cfg = client.Configuration()
            cfg.host = self.config["host"]
            api_client = client.ApiClient(cfg)
        else:
            api_client = config.new_client_from_config(
                config_file=self.config.get("kubeconfig"), context=self.config.get("context")
            )
        return client.CoreV1Api(api_client)

    async def start(self, sink: EventSink) -> None:
        self._sink = sink
        self._api = await asyncio.to_thread(self._client)
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def nodes(self) -> list[Node]:
        api = self._api or await asyncio.to_thread(self._client)
        selector = self.config.get("node_selector") or {}
        label_selector = ",".join(f"{k}={v}" for k, v in selector.items()) or None
        resp = await asyncio.to_thread(api.list_node, label_selector=label_selector)
        out = []
        for n in resp.items:
            labels = n.metadata.labels or {}
            if any(labels.get(k) != v for k, v in selector.items()):
                continue  # the server may ignore the selector (the emulator does)
            cap = (n.status.allocatable if n.status else None) or {}
            gpus = int(parse_quantity(cap.get("nvidia.com/gpu", "0")))
            out.append(
                Node(
                    name=n.metadata.name,
                    cpu=parse_quantity(cap.get("cpu", "0")),
                    memory=int(parse_quantity(cap.get("memory", "0"))),
                    gpus=list(range(gpus)),
                    gpu_names=[labels.get("nvidia.com/gpu.product", "gpu")] * gpus,
                    arch=labels.get("kubernetes.io/arch", ""),
                )
            )
        return out

    def manifest(self, req: LaunchRequest) -> dict[str, Any]:
        return build_pod(req, self.namespace, self.config)

    def _info(self, key: str, known: bool = False) -> LaunchInfo:
        name = pod_name(key)
        return LaunchInfo(
            key,
            workdir=f"pod:{name}",
            output=f"pod:{name}/output",
            log=f"pod:{name}",
            already_known=known,
        )

    async def launch(self, req: LaunchRequest) -> LaunchInfo:
        from kubernetes.client.rest import ApiException

        unsupported = [
            what
            for what in ("files", "inputs", "outputs", "checkpoints", "credentials")
            if getattr(req, what)
        ]
        if unsupported:  # no agent in the pod yet: refuse rather than run without the data
            raise NotImplementedError(
                f"kubernetes backend (first slice): task {what_of(req.key)} uses "
                f"{', '.join(unsupported)}, which need the in-pod agent (not done yet)"
            )
        body = self.manifest(req)
        try:
            await asyncio.to_thread(self._api.create_namespaced_pod, self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return self._info(req.key, known=True)
            raise
        self._known.setdefault(req.key, "")
        return self._info(req.key)

    async def cancel(self, key: str, grace: float = 5.0) -> None:
        from kubernetes.client.rest import ApiException

        with contextlib.suppress(ApiException):
            await asyncio.to_thread(
                self._api.delete_namespaced_pod,
                pod_name(key),
                self.namespace,
                grace_period_seconds=int(grace),
            )

    async def _pods(self) -> list[Any]:
        resp = await asyncio.to_thread(
            self._api.list_namespaced_pod, self.namespace, label_selector=f"{LABEL_MANAGED}=osmo"
        )
        return [p for p in resp.items if (p.metadata.labels or {}).get(LABEL_MANAGED) == "osmo"]

    async def status(self, keys: list[str]) -> dict[str, AttemptState]:
        by_key = {(p.metadata.annotations or {}).get("osmo/key"): p for p in await self._pods()}
        out = {}
        for key in keys:
            pod = by_key.get(key)
            if pod is None:
                out[key] = AttemptState(key, "unknown")
                continue
            ev = classify(key, pod)
            self._known.setdefault(key, "")
            if isinstance(ev, Exited):
                out[key] = AttemptState(key, "exited", exit_code=ev.exit_code, info=self._info(key))
            elif isinstance(ev, StartFailed):
                out[key] = AttemptState(key, "failed_start", message=ev.message)
            elif isinstance(ev, Lost):
                out[key] = AttemptState(key, "lost", message=ev.message)
            else:
                out[key] = AttemptState(key, "running", info=self._info(key))
        return out

    async def read_log(self, key: str, start: int = 0, limit: int | None = None) -> list[LogLine]:
        from kubernetes.client.rest import ApiException

        try:
            text = await asyncio.to_thread(
                self._api.read_namespaced_pod_log, pod_name(key), self.namespace, container="task"
            )
        except ApiException:
            return []
        lines = (text or "").splitlines()
        end = len(lines) if limit is None else start + limit
        now = time.time()
        return [
            LogLine(key, n + 1, now, "stdout", line)
            for n, line in enumerate(lines[start:end], start=start)
        ]

    async def _follow(self) -> None:
        """Report each known attempt's pod moves, once each (bounded interval polling)."""
        while True:
            with contextlib.suppress(Exception):
                pods = await self._pods()
                seen = set()
                for pod in pods:
                    key = (pod.metadata.annotations or {}).get("osmo/key")
                    if key not in self._known:
                        continue
                    seen.add(key)
                    self._report(key, classify(key, pod))
                for key, phase in list(self._known.items()):
                    if key not in seen and phase != "done":
                        self._report(key, Lost(key, "pod deleted", time.time()))
            await asyncio.sleep(self.poll_interval)

    def _report(self, key: str, ev: Any) -> None:
        phase = self._known.get(key, "")
        if ev is None or phase == "done" or self._sink is None:
            return
        if isinstance(ev, Started):
            if phase == "":
                self._known[key] = "running"
                self._sink(ev)
            return
        if phase == "" and isinstance(ev, Exited):
            self._sink(Started(key, ts=ev.ts))
        self._known[key] = "done"
        self._sink(ev)

    async def forget(self, key: str) -> None:
        self._known.pop(key, None)


def what_of(key: str) -> str:
    return repr(key.split("/")[1]) if key.count("/") == 2 else repr(key)


def classify(key: str, pod: Any) -> Started | Exited | StartFailed | Lost | None:
    """What a pod's status means for the attempt, or None while it is still pending."""
    now = time.time()
    status = pod.status
    phase = status.phase if status else None
    reason = status.reason if status else None
    if reason in ("Evicted", "NodeLost") or (phase == "Failed" and reason == "Evicted"):
        why = "evicted" if reason == "Evicted" else ""
        return Lost(key, f"pod {reason}: {status.message or ''}".strip(), now, reason=why)
    for cs in (status.container_statuses or []) if status else []:
        if cs.name != "task" or cs.state is None:
            continue
        if cs.state.waiting and cs.state.waiting.reason in IMAGE_ERRORS:
            return StartFailed(
                key,
                f"{cs.state.waiting.reason}: {cs.state.waiting.message or ''}",
                now,
                "image_pull",
            )
        if cs.state.terminated:
            t = cs.state.terminated
            return Exited(key, int(t.exit_code), now, message=t.reason or "")
        if cs.state.running:
            return Started(key, ts=now)
    if phase == "Unknown":
        return Lost(key, "pod phase Unknown (node lost)", now)
    return None
