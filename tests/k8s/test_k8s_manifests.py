"""Pod, Secret and Service manifests (pure functions), each checked against the client's models."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from osmo_core.backends.kubernetes.pods import (
    build_pod,
    host_name,
    merge,
    podgroup_for,
    secret_for,
    service_for,
)
from osmo_core.wire import FileSpec, LaunchRequest


def as_model(manifest: dict[str, Any], kind: str = "V1Pod") -> Any:
    """Deserialize with the client's models; unknown fields are reported, not dropped."""
    api = client.ApiClient()
    obj = api.deserialize(json.dumps(manifest), kind, "application/json")
    back = api.sanitize_for_serialization(obj)
    assert _strip_empty(back) == _strip_empty(manifest), f"a field is not part of {kind}"
    return obj


def _strip_empty(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip_empty(v) for k, v in x.items() if v not in (None, [], {})}
    if isinstance(x, list):
        return [_strip_empty(v) for v in x]
    return x


def test_template_merge_scalars_override_lists_by_name() -> None:
    base = {"containers": [{"name": "task", "image": "a", "env": [{"name": "X", "value": "1"}]}]}
    over = {
        "containers": [
            {"name": "task", "image": "b", "env": [{"name": "Y", "value": "2"}]},
            {"name": "side", "image": "s"},
        ],
        "priorityClassName": "high",
    }
    out = merge(base, over)
    assert out["priorityClassName"] == "high"
    assert [c["name"] for c in out["containers"]] == ["task", "side"]
    assert out["containers"][0]["image"] == "b"
    assert out["containers"][0]["env"] == [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]


def test_manifest_round_trips_into_v1pod() -> None:
    req = LaunchRequest(
        key="wf_Abc-1/Train Step/0",
        argv=["sh", "-c", "echo hi"],
        env={"A": "1"},
        image="python:3.11",
        gpus=[0, 1],
        cpu=2.5,
        memory=4 * 2**30,
        storage=20 * 2**30,
    )
    config = {
        "node_selector": {"nvidia.com/gpu.product": "A100"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "pod_template": {
            "containers": [{"name": "task", "volumeMounts": [{"name": "shm", "mountPath": "/s"}]}],
            "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}],
        },
    }
    pod = as_model(build_pod(req, "osmo", config))
    c = pod.spec.containers[0]
    assert c.command == ["sh"] and c.args == ["-c", "echo hi"]
    want = {"cpu": "2500m", "memory": "4Gi", "ephemeral-storage": "20Gi", "nvidia.com/gpu": "2"}
    assert c.resources.limits == want and c.resources.requests == want
    assert c.volume_mounts[0].mount_path == "/s"
    assert pod.spec.node_selector == {"nvidia.com/gpu.product": "A100"}
    assert pod.spec.tolerations[0].key == "gpu"
    assert pod.metadata.labels["osmo.task"] == "Train-Step"
    assert pod.metadata.labels["osmo.workflow"] == "wf_Abc-1"
    assert (pod.spec.hostname, pod.spec.subdomain) == tuple(host_name(req.key).split(".", 1))


def test_platform_templates_merge_after_the_backend_with_variables() -> None:
    req = LaunchRequest(
        key="wf-9/train/1",
        argv=["python", "t.py"],
        gpus=[0],
        cpu=4,
        memory=16 * 2**30,
        pool="p",
        platform="a100",
        user="ada",
        env={"OSMO_GROUP_NAME": "g"},
    )
    backend = {
        "node_selector": {"team": "robotics"},
        "pod_template": {"priorityClassName": "low", "serviceAccountName": "osmo"},
    }
    platform = {
        "node_selector": {"nvidia.com/gpu.product": "A100-SXM4-80GB"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
        "pod_template": [
            {"priorityClassName": "high"},
            {
                "containers": [
                    {
                        "name": "task",
                        "env": [
                            {"name": "WHO", "value": "{{USER}}/{{WF_ID}}/{{WF_TASK_NAME}}"},
                            {"name": "SHAPE", "value": "{{USER_CPU}} {{USER_GPU}} {{USER_MEMORY}}"},
                        ],
                    }
                ]
            },
        ],
    }
    pod = as_model(build_pod(req, "osmo", backend, platform))
    assert pod.spec.priority_class_name == "high"  # the platform's later fragment wins
    assert pod.spec.service_account_name == "osmo"  # the backend's stays
    assert pod.spec.node_selector == {
        "team": "robotics",
        "nvidia.com/gpu.product": "A100-SXM4-80GB",
    }
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert env["WHO"] == "ada/wf-9/train" and env["SHAPE"] == "4 1 16Gi"
    assert env["OSMO_GROUP_NAME"] == "g"  # the request's env kept: lists merge by name


def test_unknown_template_variable_names_it_and_the_platform() -> None:
    req = LaunchRequest(key="w/t/0", argv=["true"], platform="orin")
    platform = {"pod_template": {"containers": [{"name": "task", "workingDir": "{{USR}}"}]}}
    with pytest.raises(ValueError, match=r"platform 'orin'.*containers\[0\]\.workingDir.*USR"):
        build_pod(req, "osmo", {}, platform)


def test_a_typo_in_a_template_fails_the_round_trip() -> None:
    req = LaunchRequest(key="w/t/0", argv=["true"])
    manifest = build_pod(req, "osmo", {"pod_template": {"nodeSelectr": {"a": "b"}}})
    with pytest.raises(AssertionError, match="not part of V1Pod"):
        as_model(manifest)


def test_files_and_credentials_come_from_one_secret() -> None:
    req = LaunchRequest(
        key="w/t/0",
        argv=["sh", "/opt/run.sh"],
        files=[FileSpec("/opt/run.sh", b"echo hi\n", 0o755)],
        credentials={"s3": {"AWS_SECRET_ACCESS_KEY": "secret_access_key"}, "ngc": "/creds/ngc"},
    )
    secrets = {"s3": {"secret_access_key": "s3cr3t-v4lue"}, "ngc": {"user": "u", "password": "p"}}
    secret = as_model(secret_for(req, "osmo", "k8s", secrets), "V1Secret")
    data = {k: base64.b64decode(v) for k, v in secret.data.items()}
    assert data == {
        "f0": b"echo hi\n",
        "c-s3-secret_access_key": b"s3cr3t-v4lue",
        "c-ngc-user": b"u",
        "c-ngc-password": b"p",
    }
    pod = as_model(build_pod(req, "osmo", {}, secrets=secrets))
    c = pod.spec.containers[0]
    mounts = {m.mount_path: m for m in c.volume_mounts}
    assert mounts["/opt/run.sh"].sub_path == "f0"
    assert "/creds/ngc" in mounts
    env = {e.name: e for e in c.env}
    ref = env["AWS_SECRET_ACCESS_KEY"].value_from.secret_key_ref
    assert (ref.name, ref.key) == (secret.metadata.name, "c-s3-secret_access_key")
    vols = {v.name: v for v in pod.spec.volumes}
    assert vols["osmo-secret"].secret.items[0].mode == 0o755
    assert sorted(i.path for i in vols["osmo-cred-ngc"].secret.items) == ["password", "user"]
    assert "s3cr3t-v4lue" not in json.dumps(
        build_pod(req, "osmo", {}, secrets=secrets)
    )  # names only
    assert secret_for(LaunchRequest(key="w/t/0", argv=["true"]), "osmo", "k8s", {}) is None


def test_the_owner_s_own_credentials_shadow_the_admin_s_in_the_task_s_secret(
    tmp_path: Path,
) -> None:
    from osmo_core.backends.local import LocalBackend

    backend = LocalBackend("local", {"root": str(tmp_path)})  # credentials_of: every backend's
    backend.credentials = {"ngc": {"password": "admin-pw"}, "s3": {"secret_access_key": "a"}}
    req = LaunchRequest(
        key="w/t/0",
        argv=["true"],
        credentials={"ngc": "/creds/ngc", "s3": {"S3": "secret_access_key"}},
        secrets={"ngc": {"user": "alice", "password": "alice-pw"}},  # alice's own `ngc`
    )
    creds = backend.credentials_of(req)
    data = secret_for(req, "osmo", "k8s", creds)["data"]
    assert {k: base64.b64decode(v) for k, v in data.items()} == {
        "c-ngc-user": b"alice",
        "c-ngc-password": b"alice-pw",
        "c-s3-secret_access_key": b"a",
    }
    pod = as_model(build_pod(req, "osmo", {}, secrets=creds))
    vols = {v.name: v for v in pod.spec.volumes}
    assert sorted(i.path for i in vols["osmo-cred-ngc"].secret.items) == ["password", "user"]
    assert backend.credentials["ngc"] == {"password": "admin-pw"}  # the backend's unchanged


def test_headless_service_selects_the_workflow_pods() -> None:
    svc = as_model(service_for("wf-1", "osmo", "k8s"), "V1Service")
    pod = build_pod(LaunchRequest(key="wf-1/a/0", argv=["true"]), "osmo", {}, backend="k8s")
    assert svc.spec.cluster_ip == "None"
    assert svc.spec.selector.items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["subdomain"] == svc.metadata.name


@pytest.mark.parametrize(
    ("scheduler", "annotation", "api"),
    [
        ("volcano", "scheduling.k8s.io/group-name", "scheduling.volcano.sh/v1beta1"),
        ("kai", "pod-group-name", "scheduling.run.ai/v2alpha2"),
    ],
)
def test_gang_scheduler_podgroup(scheduler: str, annotation: str, api: str) -> None:
    req = LaunchRequest(key="wf/a/0", argv=["true"], group_size=3, env={"OSMO_GROUP_NAME": "g"})
    config = {"gang_scheduler": scheduler}
    pod = as_model(build_pod(req, "osmo", config))
    _, _, plural, body = podgroup_for(config, req, "osmo", "k8s")
    assert pod.metadata.annotations[annotation] == body["metadata"]["name"]
    assert body["apiVersion"] == api and body["spec"]["minMember"] == 3 and plural == "podgroups"
    assert pod.spec.scheduler_name in ("volcano", "kai-scheduler")
    assert build_pod(req, "osmo", {})["spec"].get("schedulerName") is None  # default scheduler


def test_agent_pod_runs_the_agent_from_an_init_container_and_one_secret() -> None:
    from osmo_core.backends.kubernetes.agent import (
        agent_secret_data,
        agent_settings,
        credentials_for,
    )
    from osmo_core.wire import InputSpec

    config = {"agent_image": "registry.example/osmo-agent:1", "agent_dir": "/osmo"}
    agent = agent_settings(config)
    assert agent is not None and agent_settings({}) is None
    req = LaunchRequest(
        key="wf-1/t/0",
        argv=["python", "train.py"],
        files=[FileSpec("/etc/app.cfg", b"x=1", 0o600)],
        inputs=[InputSpec(index=0, url="s3://b/in/", credential="s3cred")],
        credentials={"hf": {"HF_TOKEN": "token"}},
    )
    pod = as_model(build_pod(req, "osmo", config, agent={**agent, "key": "ssh-ed25519 AAAA"}))
    (init,) = pod.spec.init_containers
    assert init.image == "registry.example/osmo-agent:1"
    assert init.command == ["sh", "-c", "cp -a /opt/osmo-agent/. /osmo/agent/"]
    task = pod.spec.containers[0]
    # the task's own image runs the agent, which runs the command (files, credentials, data)
    assert task.command[:3] == ["/osmo/agent/bin/python3", "-m", "osmo_core.agent.pod"]
    assert task.args is None or task.args == []
    mounts = {m.mount_path for m in task.volume_mounts}
    assert mounts == {"/osmo/agent", "/osmo/run", "/osmo/secret"}
    assert not [e for e in task.env or [] if e.value_from]  # no secretKeyRef: the agent has them
    vols = {v.name: v for v in pod.spec.volumes}
    assert (
        vols["osmo-agent-secret"].secret.secret_name
        == secret_for(req, "osmo", "k", {})["metadata"]["name"]
    )
    assert pod.metadata.annotations["osmo/agent-key"] == "ssh-ed25519 AAAA"

    creds = {"s3cred": {"access_key_id": "a"}, "hf": {"token": "t"}, "other": {"x": "y"}}
    assert set(credentials_for(req, creds)) == {"s3cred", "hf"}  # only what the task names
    data = agent_secret_data({"host": "h", "port": 1}, b"KEY", credentials_for(req, creds))
    secret = as_model(secret_for(req, "osmo", "k", creds, data), "V1Secret")
    assert set(secret.data) == {"dialhome.json", "ssh_host_key", "credentials.json"}
    assert "other" not in base64.b64decode(secret.data["credentials.json"]).decode()
