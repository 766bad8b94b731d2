"""The Kubernetes API calls of a backend, as functions of the API objects: the client from the
backend's config, nodes as `Node`s, creating and deleting an attempt's objects, pod logs.

The official sync client is imported here on first use (never at `import osmo_core`); every
call blocks, so the async functions run it in `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

from ...wire import LogLine, Node, tolerated
from .pods import ANNOTATION_KEY, LABEL_BACKEND, LABEL_MANAGED, label_value, pod_name, secret_name


def api_client(config: dict[str, Any]) -> Any:
    """An ApiClient for the backend's cluster (`host`, `in_cluster`, or `kubeconfig`)."""
    from kubernetes import client
    from kubernetes import config as kube_config

    if config.get("host"):
        cfg = client.Configuration()
        cfg.host = config["host"]
        cfg.retries = 0  # a dead cluster answers fast; the watcher retries with backoff
        return client.ApiClient(cfg)
    if config.get("in_cluster"):
        kube_config.load_incluster_config()
        return client.ApiClient()
    kubeconfig = config.get("kubeconfig")
    return kube_config.new_client_from_config(  # its own Configuration: per cluster
        config_file=os.path.expanduser(kubeconfig) if kubeconfig else None,
        context=config.get("context"),
    )


def core(client_: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(client_)


def parse_quantity(text: str) -> float:
    """A Kubernetes quantity ("500m", "4", "16Gi", "1G") as a float."""
    from kubernetes.utils.quantity import parse_quantity as pq

    return float(pq(text))


async def list_nodes(api: Any, config: dict[str, Any]) -> list[Node]:
    """The cluster's nodes that match the backend's `node_selector`, with their capacity and the
    taints the backend's own `tolerations` leave to the platforms. Raises what the API raises."""
    selector = config.get("node_selector") or {}
    backend_tolerations = config.get("tolerations") or []
    label_selector = ",".join(f"{k}={v}" for k, v in selector.items()) or None
    resp = await asyncio.to_thread(api.list_node, label_selector=label_selector)
    out = []
    for n in resp.items:
        labels = n.metadata.labels or {}
        if any(labels.get(k) != v for k, v in selector.items()):
            continue  # the server may ignore the selector (the emulator does)
        cap = (n.status.allocatable if n.status else None) or {}
        taints = [
            {"key": t.key or "", "value": t.value or "", "effect": t.effect or ""}
            for t in (n.spec.taints if n.spec else None) or []
            if t.effect in ("NoSchedule", "NoExecute")
        ]
        # the backend's own tolerations apply to every pod: only the rest is the platform's
        taints = [t for t in taints if not tolerated(t, backend_tolerations)]
        gpus = int(parse_quantity(cap.get("nvidia.com/gpu", "0")))
        out.append(
            Node(
                name=n.metadata.name,
                cpu=parse_quantity(cap.get("cpu", "0")),
                memory=int(parse_quantity(cap.get("memory", "0"))),
                gpus=list(range(gpus)),
                gpu_names=[labels.get("nvidia.com/gpu.product", "gpu")] * gpus,
                arch=labels.get("kubernetes.io/arch", ""),
                labels=dict(labels),
                taints=taints,
                container_runtime="kubernetes",
            )
        )
    return out


async def create_object(fn: Any, *args: Any) -> None:
    """Create an object; one that exists already (409) is fine."""
    from kubernetes.client.exceptions import ApiException

    try:
        await asyncio.to_thread(fn, *args)
    except ApiException as exc:
        if exc.status != 409:
            raise


async def list_pods(api: Any, namespace: str, selector: str, backend: str) -> list[Any]:
    """The pods of `backend` (checked again here: the server may ignore the selector)."""
    resp = await asyncio.to_thread(api.list_namespaced_pod, namespace, label_selector=selector)
    mine = label_value(backend)
    return [
        p
        for p in resp.items
        if (p.metadata.labels or {}).get(LABEL_MANAGED) == "osmo"
        and (p.metadata.labels or {}).get(LABEL_BACKEND) == mine
    ]


def key_of(pod: Any) -> str | None:
    """The attempt key a pod of ours runs (its annotation)."""
    return (pod.metadata.annotations or {}).get(ANNOTATION_KEY) if pod.metadata else None


async def delete_attempt(
    api: Any, namespace: str, key: str, grace: int | None, secret: bool
) -> None:
    """Delete the attempt's pod (and its Secret), best effort: what is left is found by label
    and reaped later (`KubernetesBackend.reap_orphans`)."""
    with contextlib.suppress(Exception):
        await asyncio.to_thread(
            api.delete_namespaced_pod, pod_name(key), namespace, grace_period_seconds=grace
        )
    if secret:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(api.delete_namespaced_secret, secret_name(key), namespace)


async def archive_log(api: Any, namespace: str, key: str, path: Path) -> None:
    """Copy the pod's log to `path` (atomically; kept after the pod)."""
    from kubernetes.client.exceptions import ApiException

    try:
        text = await asyncio.to_thread(
            api.read_namespaced_pod_log, pod_name(key), namespace, container="task"
        )
    except ApiException:
        return  # never started (image pull, unschedulable): no log to keep
    await asyncio.to_thread(write_atomic, path, text or "")


async def log_lines(
    api: Any, namespace: str, key: str, archived: Path, start: int, limit: int | None
) -> list[LogLine]:
    """Lines of a pod's log: its archive when it has ended, else the live pod's."""
    from kubernetes.client.exceptions import ApiException

    if archived.exists():
        text = await asyncio.to_thread(archived.read_text, errors="replace")
    else:
        try:
            text = await asyncio.to_thread(
                api.read_namespaced_pod_log, pod_name(key), namespace, container="task"
            )
        except ApiException:
            return []
    lines = (text or "").splitlines()
    end = len(lines) if limit is None else start + limit
    now = time.time()
    # The pod log merges stdout and stderr: every line is reported as stdout.
    return [
        LogLine(key, n + 1, now, "stdout", line)
        for n, line in enumerate(lines[start:end], start=start)
    ]


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
