"""The Kubernetes backend against kmock's emulated API server and the test kubelet."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from osmo_core.backends.base import LaunchRequest
from osmo_core.backends.kubernetes_pods import build_pod, merge
from osmo_core.config import OsmoConfig
from osmo_core.errors import PlacementError
from osmo_core.service import Service
from tests.k8s.conftest import NAMESPACE, Kubelet


def as_v1pod(manifest: dict[str, Any]) -> client.V1Pod:
    """Deserialize with the client's models; unknown fields are reported, not dropped."""
    api = client.ApiClient()
    pod = api.deserialize(json.dumps(manifest), "V1Pod", "application/json")
    back = api.sanitize_for_serialization(pod)
    assert _strip_empty(back) == _strip_empty(manifest), "a field is not part of V1Pod"
    return pod


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
    )
    config = {
        "node_selector": {"nvidia.com/gpu.product": "A100"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "pod_template": {
            "containers": [{"name": "task", "volumeMounts": [{"name": "shm", "mountPath": "/s"}]}],
            "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}],
        },
    }
    manifest = build_pod(req, "osmo", config)
    pod = as_v1pod(manifest)
    c = pod.spec.containers[0]
    assert c.command == ["sh"] and c.args == ["-c", "echo hi"]
    assert c.resources.limits == {"cpu": "2500m", "memory": str(4 * 2**30), "nvidia.com/gpu": "2"}
    assert c.volume_mounts[0].mount_path == "/s"
    assert pod.spec.node_selector == {"nvidia.com/gpu.product": "A100"}
    assert pod.spec.tolerations[0].key == "gpu"
    assert pod.metadata.labels["osmo.task"] == "Train-Step"
    assert pod.metadata.labels["osmo.workflow"] == "wf_Abc-1"


def test_a_typo_in_a_template_fails_the_round_trip() -> None:
    req = LaunchRequest(key="w/t/0", argv=["true"])
    manifest = build_pod(req, "osmo", {"pod_template": {"nodeSelectr": {"a": "b"}}})
    with pytest.raises(AssertionError, match="not part of V1Pod"):
        as_v1pod(manifest)


def k8s_config(tmp_path: Path, url: str, **platform: Any) -> Any:
    data = tmp_path / "osmo"
    return OsmoConfig(
        data_dir=str(data),
        store_url=f"sqlite:///{data / 'osmo.db'}",
        backends={
            "k8s": {
                "kind": "kubernetes",
                "host": url,
                "namespace": NAMESPACE,
                "poll_interval": 0.1,
                **platform,
            },
        },
        pools={"k8s": {"backend": "k8s", "platforms": {"default": {}}}},
        default_pool="k8s",
    )


@pytest.fixture
async def k8s_service(tmp_path: Path, kmock: Any, kubelet: Kubelet) -> Any:
    svc = Service(k8s_config(tmp_path, str(kmock.url)))
    await svc.start()
    yield svc
    await svc.stop()


def _task(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], **extra}


async def _run(svc: Service, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    wf_id = await svc.submit({"workflow": {"name": "k", "tasks": tasks}})
    await asyncio.wait_for(svc.wait(wf_id), 30)
    return svc.get(wf_id)


async def test_workflow_runs_as_pods(k8s_service: Service, kubelet: Kubelet) -> None:
    wf = await _run(k8s_service, [_task("a", "echo hello"), _task("b", "echo world")])
    assert wf["status"] == "COMPLETED", wf
    assert {t["status"] for t in wf["tasks"]} == {"COMPLETED"}
    assert len(kubelet.manifests) == 2
    for m in kubelet.manifests:
        as_v1pod({k: v for k, v in m.items() if k != "status"})
        assert m["metadata"]["labels"]["osmo.workflow"] == wf["id"].replace("/", "-")[:63]
    lines = await k8s_service.logs(wf["id"], "a")
    assert "hello" in [line.text for line in lines]


async def test_failing_task_fails_with_its_exit_code(k8s_service: Service) -> None:
    wf = await _run(k8s_service, [_task("bad", "echo x; exit 3")])
    assert wf["status"].startswith("FAILED"), wf
    (t,) = wf["tasks"]
    assert t["status"] == "FAILED" and t["exit_code"] == 3


async def test_image_pull_error_fails_the_task(k8s_service: Service) -> None:
    wf = await _run(k8s_service, [{**_task("img", "true"), "image": "bad/nope:1"}])
    assert wf["status"].startswith("FAILED"), wf
    (t,) = wf["tasks"]
    assert t["status"] == "FAILED_IMAGE_PULL"
    assert "ErrImagePull" in t["message"]


async def test_impossible_request_is_refused_at_submit(k8s_service: Service) -> None:
    spec = {
        "workflow": {
            "name": "big",
            "resources": {"default": {"cpu": 64}},
            "tasks": [_task("t", "true")],
        }
    }
    with pytest.raises(PlacementError) as err:
        await k8s_service.submit(spec)
    assert "more than any machine" in str(err.value)
    assert "node-a" in str(err.value)


async def test_cancel_deletes_the_pod_and_resync_finds_pods_by_label(
    tmp_path: Path, kmock: Any, kubelet: Kubelet
) -> None:
    from osmo_core.backends.kubernetes import KubernetesBackend

    conf = {"host": str(kmock.url), "namespace": NAMESPACE, "poll_interval": 0.05}
    events: list[Any] = []
    first = KubernetesBackend("k8s", conf)
    await first.start(events.append)
    await first.launch(LaunchRequest(key="wf1/t/0", argv=["sh", "-c", "echo a"], image="busybox"))
    again = await first.launch(LaunchRequest(key="wf1/t/0", argv=["true"], image="busybox"))
    assert again.already_known
    await first.stop()
    # a restarted control plane: a new instance, nothing in memory, the pod found by label
    second = KubernetesBackend("k8s", conf)
    await second.start(events.append)
    for _ in range(100):
        state = (await second.status(["wf1/t/0", "wf1/nope/0"]))["wf1/t/0"]
        if state.state == "exited":
            break
        await asyncio.sleep(0.05)
    assert state.state == "exited" and state.exit_code == 0
    assert (await second.status(["wf1/nope/0"]))["wf1/nope/0"].state == "unknown"
    await second.cancel("wf1/t/0")
    pods = await asyncio.to_thread(kubelet.api.list_namespaced_pod, NAMESPACE)
    assert pods.items == []
    await second.stop()


async def test_nodes_are_filtered_by_the_node_selector(kmock: Any, kubelet: Kubelet) -> None:
    from osmo_core.backends.kubernetes import KubernetesBackend

    await kubelet.add_node("gpu-1", cpu="32", memory="256Gi", **{"kubernetes.io/arch": "arm64"})
    conf = {"host": str(kmock.url), "node_selector": {"kubernetes.io/arch": "arm64"}}
    nodes = await KubernetesBackend("k8s", conf).nodes()
    assert [(n.name, n.cpu, n.memory, n.arch) for n in nodes] == [
        ("gpu-1", 32.0, 256 * 2**30, "arm64")
    ]


def test_pod_status_classification() -> None:
    from osmo_core.backends.base import Exited, Lost
    from osmo_core.backends.kubernetes import classify

    def pod(status: dict[str, Any]) -> client.V1Pod:
        raw = {"metadata": {"name": "p"}, "spec": {"containers": []}, "status": status}
        return client.ApiClient().deserialize(json.dumps(raw), "V1Pod", "application/json")

    evicted = classify("k", pod({"phase": "Failed", "reason": "Evicted", "message": "disk"}))
    assert isinstance(evicted, Lost) and evicted.reason == "evicted"
    unknown = classify("k", pod({"phase": "Unknown"}))
    assert isinstance(unknown, Lost) and unknown.reason == ""
    assert classify("k", pod({"phase": "Pending"})) is None
    oom = {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
    cs = {"name": "task", "image": "i", "imageID": "", "ready": False, "restartCount": 0}
    ended = classify("k", pod({"phase": "Failed", "containerStatuses": [{**cs, "state": oom}]}))
    assert isinstance(ended, Exited) and ended.exit_code == 137 and ended.message == "OOMKilled"


async def test_data_inputs_are_refused_not_dropped(k8s_service: Service) -> None:
    wf = await _run(
        k8s_service, [_task("a", "echo a"), _task("b", "echo b", inputs=[{"task": "a"}])]
    )
    tasks = {t["name"]: t for t in wf["tasks"]}
    assert tasks["a"]["status"] == "COMPLETED"
    assert tasks["b"]["status"].startswith("FAILED"), tasks["b"]
    assert "in-pod agent" in tasks["b"]["message"]
