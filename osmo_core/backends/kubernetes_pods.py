"""Pod manifests for the Kubernetes backend: a LaunchRequest -> a V1Pod-shaped dict.

Pure functions (no API calls) so every manifest can be checked against the client's models."""

from __future__ import annotations

import copy
import re
from typing import Any

from .base import LaunchRequest

LABEL_WORKFLOW = "osmo.workflow"
LABEL_TASK = "osmo.task"
LABEL_ATTEMPT = "osmo.attempt"
LABEL_MANAGED = "osmo.managed-by"


def label_value(text: str) -> str:
    """A Kubernetes label value: <=63 chars of [A-Za-z0-9._-], alphanumeric at both ends."""
    value = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63]
    return value.strip("._-") or "x"


def pod_name(key: str) -> str:
    """A DNS-1123 pod name from an attempt key `wf/task/retry` (with a short hash: unique)."""
    import hashlib

    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    base = re.sub(r"[^a-z0-9-]", "-", key.lower()).strip("-")[:50].strip("-")
    return f"{base}-{digest}"


def merge(base: Any, over: Any) -> Any:
    """Merge a PodSpec fragment: dicts recursively, scalars override, lists of dicts with a
    `name` merge item by name (others are replaced)."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(over, list):
        named = all(isinstance(i, dict) and "name" in i for i in [*base, *over])
        if not named:
            return copy.deepcopy(over)
        out_list = [copy.deepcopy(i) for i in base]
        index = {i["name"]: n for n, i in enumerate(out_list)}
        for item in over:
            if item["name"] in index:
                out_list[index[item["name"]]] = merge(out_list[index[item["name"]]], item)
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(over)


def _cpu(value: float) -> str:
    return f"{round(value * 1000)}m"


def build_pod(req: LaunchRequest, namespace: str, config: dict[str, Any]) -> dict[str, Any]:
    """The pod for one attempt. `config` may hold `default_image`, `node_selector`,
    `tolerations`, `pod_template` (a PodSpec fragment merged last)."""
    wf, task, retry = req.key.split("/")
    resources: dict[str, str] = {"cpu": _cpu(req.cpu)}
    if req.memory:
        resources["memory"] = str(int(req.memory))
    if req.gpus:
        resources["nvidia.com/gpu"] = str(len(req.gpus))
    container: dict[str, Any] = {
        "name": "task",
        "image": req.image or config.get("default_image", "busybox:stable"),
        "command": req.argv[:1],
        "args": req.argv[1:],
        "env": [{"name": k, "value": v} for k, v in sorted(req.env.items())],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
    }
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if config.get("node_selector"):
        spec["nodeSelector"] = dict(config["node_selector"])
    if config.get("tolerations"):
        spec["tolerations"] = copy.deepcopy(config["tolerations"])
    if config.get("pod_template"):
        spec = merge(spec, config["pod_template"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(req.key),
            "namespace": namespace,
            "labels": {
                LABEL_WORKFLOW: label_value(wf),
                LABEL_TASK: label_value(task),
                LABEL_ATTEMPT: label_value(retry),
                LABEL_MANAGED: "osmo",
            },
            "annotations": {"osmo/key": req.key},
        },
        "spec": spec,
    }
