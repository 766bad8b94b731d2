"""Manifests for the Kubernetes backend: a LaunchRequest -> a V1Pod-shaped dict (plus the
Secret holding its files and credentials, and the headless Service naming a workflow's pods).

Pure functions (no API calls) so every manifest can be checked against the client's models.

Pod templates are OSMO's: PodSpec fragments merged in order (the backend's, then the
platform's; scalars override, lists of named items merge by `name`), with `{{VARIABLE}}`s
substituted in every string (see `variables`).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import re
from typing import Any

from ...wire import LaunchRequest
from .agent import AGENT_KEY_ANNOTATION, add_agent

LABEL_WORKFLOW = "osmo.workflow"
LABEL_TASK = "osmo.task"
LABEL_ATTEMPT = "osmo.attempt"
LABEL_GROUP = "osmo.group"
LABEL_MANAGED = "osmo.managed-by"
LABEL_BACKEND = "osmo.backend"  # two backends may share a namespace: each reaps only its own
ANNOTATION_KEY = "osmo/key"
_VAR = re.compile(r"\{\{\s*([A-Z_]+)\s*\}\}")


def label_value(text: str) -> str:
    """A Kubernetes label value: <=63 chars of [A-Za-z0-9._-], alphanumeric at both ends."""
    value = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63]
    return value.strip("._-") or "x"


def dns_name(text: str, limit: int = 63, digest_of: str | None = None) -> str:
    """A DNS-1123 label; with `digest_of`, a short hash of it appended (unique names)."""
    base = re.sub(r"[^a-z0-9-]", "-", text.lower()).strip("-")
    if digest_of is None:
        return base[:limit].strip("-") or "x"
    digest = hashlib.sha256(digest_of.encode()).hexdigest()[:8]
    return f"{base[: limit - 9].strip('-')}-{digest}"


def pod_name(key: str) -> str:
    """A DNS-1123 pod name from an attempt key `wf/task/retry` (with a short hash: unique)."""
    return dns_name(key, 59, digest_of=key)


def service_name(workflow_id: str) -> str:
    """The headless Service of a workflow: `{{host:TASK}}` is `<task>.<service>`."""
    return dns_name(f"osmo-{workflow_id}", 63, digest_of=workflow_id)


def host_name(key: str) -> str:
    """The pod's DNS name inside its namespace (hostname.subdomain)."""
    wf, task, _ = key.split("/")
    return f"{dns_name(task)}.{service_name(wf)}"


def secret_name(key: str) -> str:
    return dns_name(f"osmo-{key}", 59, digest_of=key)


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


def quantity_cpu(value: float) -> str:
    return f"{value:g}" if float(value).is_integer() else f"{round(value * 1000)}m"


def quantity_bytes(value: int) -> str:
    for unit, size in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    return str(int(value))


def variables(req: LaunchRequest) -> dict[str, str]:
    """What `{{NAME}}` means in a pod template (OSMO's names)."""
    wf, task, retry = req.key.split("/")
    return {
        "USER_CPU": quantity_cpu(req.cpu),
        "USER_GPU": str(len(req.gpus)),
        "USER_MEMORY": quantity_bytes(req.memory) if req.memory else "",
        "USER_STORAGE": quantity_bytes(req.storage) if req.storage else "",
        "WF_ID": wf,
        "WF_TASK_NAME": task,
        "WF_RETRY_ID": retry,
        "WF_GROUP_NAME": req.env.get("OSMO_GROUP_NAME", ""),
        "WF_POOL": req.pool,
        "WF_PLATFORM": req.platform,
        "USER": req.user,
    }


def substitute(obj: Any, values: dict[str, str], where: str = "pod_template") -> Any:
    """`{{NAME}}` in every string of a template; an unknown name is an error naming it."""
    if isinstance(obj, dict):
        return {k: substitute(v, values, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list):
        return [substitute(v, values, f"{where}[{i}]") for i, v in enumerate(obj)]
    if not isinstance(obj, str):
        return obj

    def one(m: re.Match[str]) -> str:
        if m.group(1) not in values:
            raise ValueError(
                f"{where}: unknown template variable {{{{{m.group(1)}}}}}; "
                f"known: {', '.join(sorted(values))}"
            )
        return values[m.group(1)]

    return _VAR.sub(one, obj)


def _fragments(layer: dict[str, Any]) -> list[dict[str, Any]]:
    """One config layer (backend or platform) as PodSpec fragments, in merge order."""
    out: list[dict[str, Any]] = []
    if layer.get("node_selector"):
        out.append({"nodeSelector": dict(layer["node_selector"])})
    if layer.get("tolerations"):
        out.append({"tolerations": copy.deepcopy(layer["tolerations"])})
    template = layer.get("pod_template")
    if isinstance(template, dict):
        out.append(template)
    elif isinstance(template, list):
        out.extend(template)
    return out


def _resources(req: LaunchRequest) -> dict[str, str]:
    out = {"cpu": quantity_cpu(req.cpu)}
    if req.memory:
        out["memory"] = quantity_bytes(req.memory)
    if req.storage:
        out["ephemeral-storage"] = quantity_bytes(req.storage)
    if req.gpus:
        out["nvidia.com/gpu"] = str(len(req.gpus))
    return out


def labels(req: LaunchRequest, backend: str) -> dict[str, str]:
    wf, task, retry = req.key.split("/")
    return {
        LABEL_WORKFLOW: label_value(wf),
        LABEL_TASK: label_value(task),
        LABEL_ATTEMPT: label_value(retry),
        LABEL_GROUP: label_value(req.env.get("OSMO_GROUP_NAME", task)),
        LABEL_MANAGED: "osmo",
        LABEL_BACKEND: label_value(backend),
    }


def secret_for(
    req: LaunchRequest,
    namespace: str,
    backend: str,
    secrets: dict[str, dict[str, Any]],
    agent_data: dict[str, str] | None = None,
) -> dict[str, Any] | None:
    """The attempt's Secret: its `files:` (keys f0, f1, ...) and the values of the named
    credentials it asks for (keys c-NAME-FIELD); with the in-pod agent, `agent_data` instead
    (the agent writes files and resolves credentials itself). None when it needs neither."""
    data: dict[str, str] = dict(agent_data or {})
    for i, f in enumerate([] if agent_data else req.files):
        data[f"f{i}"] = base64.b64encode(f.content).decode()
    for name, use in ({} if agent_data else req.credentials).items():
        values = secrets.get(name) or {}
        fields = sorted(values) if isinstance(use, str) else sorted(set(use.values()) & set(values))
        for field in fields:  # a folder gets every field; env vars only those they name
            data[_cred_key(name, field)] = base64.b64encode(str(values[field]).encode()).decode()
    if not data:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(req.key),
            "namespace": namespace,
            "labels": labels(req, backend),
            "annotations": {ANNOTATION_KEY: req.key},
        },
        "type": "Opaque",
        "data": data,
    }


def _cred_key(name: str, field: str) -> str:
    return re.sub(r"[^-._a-zA-Z0-9]", "-", f"c-{name}-{field}")


def _data_mounts(req: LaunchRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(env entries, volume mounts) that bring files and credentials from the Secret."""
    env: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    secret = secret_name(req.key)
    for i, f in enumerate(req.files):
        mounts.append(
            {"name": "osmo-secret", "mountPath": f.path, "subPath": f"f{i}", "readOnly": True}
        )
    for name, use in sorted(req.credentials.items()):
        if isinstance(use, str):  # a folder: one file per field, like OSMO
            mounts.append({"name": f"osmo-cred-{dns_name(name)}", "mountPath": use})
            continue
        for var, field in sorted(use.items()):
            ref = {"name": secret, "key": _cred_key(name, field)}
            env.append({"name": var, "valueFrom": {"secretKeyRef": ref}})
    return env, mounts


def _data_volumes(req: LaunchRequest, secrets: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    secret = secret_name(req.key)
    volumes: list[dict[str, Any]] = []
    if req.files:
        items = [{"key": f"f{i}", "path": f"f{i}", "mode": f.mode} for i, f in enumerate(req.files)]
        volumes.append({"name": "osmo-secret", "secret": {"secretName": secret, "items": items}})
    for name, use in sorted(req.credentials.items()):
        if isinstance(use, str):
            items = [
                {"key": _cred_key(name, field), "path": field}
                for field in sorted(secrets.get(name) or {})
            ]
            volumes.append(
                {
                    "name": f"osmo-cred-{dns_name(name)}",
                    "secret": {"secretName": secret, "items": items},
                }
            )
    return volumes


def build_pod(
    req: LaunchRequest,
    namespace: str,
    config: dict[str, Any],
    platform: dict[str, Any] | None = None,
    backend: str = "kubernetes",
    secrets: dict[str, dict[str, Any]] | None = None,
    agent: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The pod for one attempt. `config` (the backend's) and `platform` (the pool platform's
    extra keys) may each hold `node_selector`, `tolerations`, `pod_template` (one PodSpec
    fragment or a list); `config` also `default_image`. `agent`: the in-pod agent's settings
    (agent.py) plus its public host key as `key`."""
    resources = _resources(req)
    env, mounts = _data_mounts(req) if agent is None else ([], [])
    container: dict[str, Any] = {
        "name": "task",
        "image": req.image or config.get("default_image", "busybox:stable"),
        "command": req.argv[:1],
        "args": req.argv[1:],
        "env": [{"name": k, "value": v} for k, v in sorted(req.env.items())] + env,
        "resources": {"requests": dict(resources), "limits": dict(resources)},
    }
    if mounts:
        container["volumeMounts"] = mounts
    wf, task, _ = req.key.split("/")
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # A task gets no Kubernetes API credential unless a pod template gives it one (the
        # control plane's own token never reaches a pod: its env is the request's, no more).
        "automountServiceAccountToken": False,
        "containers": [container],
        # `{{host:TASK}}` resolves to <task>.<service>: the workflow's headless Service
        "hostname": dns_name(task),
        "subdomain": service_name(wf),
    }
    volumes = _data_volumes(req, secrets or {}) if agent is None else []
    if volumes:
        spec["volumes"] = volumes
    if agent is not None:
        spec = add_agent(spec, agent, secret_name(req.key))
    if config.get("gang_scheduler"):
        spec["schedulerName"] = config.get("scheduler_name") or {
            "volcano": "volcano",
            "kai": "kai-scheduler",
        }.get(config["gang_scheduler"], config["gang_scheduler"])
    values = variables(req)
    for layer, where in ((config, "backend"), (platform or {}, f"platform {req.platform!r}")):
        for fragment in _fragments(layer):
            spec = merge(spec, substitute(fragment, values, f"{where}: pod_template"))
    meta_labels = labels(req, backend)
    annotations = {ANNOTATION_KEY: req.key}
    if agent is not None:
        annotations[AGENT_KEY_ANNOTATION] = agent["key"]
    if config.get("gang_scheduler"):
        annotations.update(podgroup_annotations(config, req))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(req.key),
            "namespace": namespace,
            "labels": meta_labels,
            "annotations": annotations,
        },
        "spec": spec,
    }


def service_for(workflow_id: str, namespace: str, backend: str) -> dict[str, Any]:
    """Headless Service whose DNS names are the workflow's pods (hostname.subdomain)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(workflow_id),
            "namespace": namespace,
            "labels": {
                LABEL_WORKFLOW: label_value(workflow_id),
                LABEL_MANAGED: "osmo",
                LABEL_BACKEND: label_value(backend),
            },
        },
        "spec": {
            "clusterIP": "None",
            "selector": {
                LABEL_WORKFLOW: label_value(workflow_id),
                LABEL_BACKEND: label_value(backend),
            },
            "publishNotReadyAddresses": True,  # names resolve while peers still start
        },
    }


def podgroup_name(req: LaunchRequest) -> str:
    wf = req.key.split("/")[0]
    group = req.env.get("OSMO_GROUP_NAME", req.key.split("/")[1])
    return dns_name(f"osmo-{wf}-{group}", 63, digest_of=f"{wf}/{group}")


def podgroup_annotations(config: dict[str, Any], req: LaunchRequest) -> dict[str, str]:
    """Volcano and KAI read the pod's group from these annotations."""
    name = podgroup_name(req)
    if config["gang_scheduler"] == "kai":
        return {"pod-group-name": name}
    return {"scheduling.k8s.io/group-name": name}


def podgroup_for(
    config: dict[str, Any], req: LaunchRequest, namespace: str, backend: str
) -> tuple[str, str, str, dict[str, Any]]:
    """(group, version, plural, body) of the PodGroup custom object for a gang scheduler."""
    kai = config["gang_scheduler"] == "kai"
    group = "scheduling.run.ai" if kai else "scheduling.volcano.sh"
    version = "v2alpha2" if kai else "v1beta1"
    body = {
        "apiVersion": f"{group}/{version}",
        "kind": "PodGroup",
        "metadata": {
            "name": podgroup_name(req),
            "namespace": namespace,
            "labels": {
                LABEL_WORKFLOW: label_value(req.key.split("/")[0]),
                LABEL_MANAGED: "osmo",
                LABEL_BACKEND: label_value(backend),
            },
        },
        "spec": {"minMember": max(1, req.group_size)},
    }
    return group, version, "podgroups", body
