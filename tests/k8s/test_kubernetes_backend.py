"""The Kubernetes backend under the real engine, against kmock's emulated API server and the
test kubelet: statuses, templates, cleanup, groups, validation."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from osmo_core.config import OsmoConfig
from osmo_core.errors import Conflict, PlacementError
from osmo_core.service import Service
from tests.k8s.conftest import NAMESPACE, Kubelet, until
from tests.k8s.test_k8s_manifests import as_model

PLATFORMS = {
    "default": {},
    "a100": {
        "node_selector": {"nvidia.com/gpu.product": "A100"},
        "pod_template": {"containers": [{"name": "task", "workingDir": "/work/{{USER}}"}]},
    },
}


def k8s_config(tmp_path: Path, url: str, **backend: Any) -> Any:
    data = tmp_path / "osmo"
    return OsmoConfig(
        data_dir=str(data),
        store_url=f"sqlite:///{data / 'osmo.db'}",
        backends={
            "k8s": {
                "kind": "kubernetes",
                "host": url,
                "namespace": NAMESPACE,
                "start_timeout": 2,
                **backend,
            },
        },
        pools={"k8s": {"backend": "k8s", "platforms": PLATFORMS}},
        default_pool="k8s",
        credentials={"s3": {"url": "s3://b", "access_key_id": "k", "secret_access_key": "xyz"}},
    )


@pytest.fixture
async def k8s_service(tmp_path: Path, kmock: Any, kubelet: Kubelet) -> Any:
    svc = Service(k8s_config(tmp_path, str(kmock.url)))
    await svc.start()
    yield svc
    await svc.stop()


def _task(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], **extra}


async def _run(svc: Service, spec: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    if isinstance(spec, list):
        spec = {"workflow": {"name": "k", "tasks": spec}}
    wf_id = await svc.submit(spec)
    await asyncio.wait_for(svc.wait(wf_id), 30)
    return svc.get(wf_id)


async def _pods(kubelet: Kubelet) -> list[Any]:
    return (await asyncio.to_thread(kubelet.api.list_namespaced_pod, NAMESPACE)).items


async def test_workflow_runs_as_pods_then_they_are_deleted_and_logs_stay(
    k8s_service: Service, kubelet: Kubelet
) -> None:
    wf = await _run(k8s_service, [_task("a", "echo hello"), _task("b", "echo world")])
    assert wf["status"] == "COMPLETED", wf
    assert {t["status"] for t in wf["tasks"]} == {"COMPLETED"}
    assert len(kubelet.manifests) == 2
    for m in kubelet.manifests:
        as_model({k: v for k, v in m.items() if k != "status"})
        assert m["metadata"]["labels"]["osmo.workflow"] == wf["id"].replace("/", "-")[:63]
    assert await until(lambda: _no_pods(kubelet)), "pods are deleted when tasks end"
    lines = await k8s_service.logs(wf["id"], "a")
    assert [line.text for line in lines] == ["hello"], "the log was archived before deletion"
    svcs = await asyncio.to_thread(kubelet.api.list_namespaced_service, NAMESPACE)
    assert svcs.items == [], "the workflow's headless Service goes with its last pod"


async def _no_pods(kubelet: Kubelet) -> bool:
    return not await _pods(kubelet)


async def test_failing_task_fails_with_its_exit_code(k8s_service: Service) -> None:
    wf = await _run(k8s_service, [_task("bad", "echo x; exit 3")])
    (t,) = wf["tasks"]
    assert t["status"] == "FAILED" and t["exit_code"] == 3


@pytest.mark.parametrize(
    ("image", "script", "status", "message"),
    [
        ("bad/nope:1", "true", "FAILED_IMAGE_PULL", "ErrImagePull"),
        ("busybox", "oom", "FAILED_EVICTED", "OOMKilled"),
        ("busybox", "evict", "FAILED_EVICTED", "low on resource"),
        ("busybox", "nodelost", "FAILED_BACKEND_ERROR", "node lost"),
        ("unschedulable/x", "true", "FAILED_START_TIMEOUT", "Insufficient nvidia.com/gpu"),
    ],
)
async def test_pod_troubles_map_onto_osmo_statuses(
    k8s_service: Service, image: str, script: str, status: str, message: str
) -> None:
    wf = await _run(k8s_service, [{**_task("t", script), "image": image}])
    first = wf["tasks"][0]  # the first attempt (retried only within a budget)
    assert (first["retry_id"], first["status"]) == (0, status), wf["tasks"]
    assert message in first["message"]


async def test_unschedulable_pod_stays_initializing_until_timeout(
    k8s_service: Service, kubelet: Kubelet
) -> None:
    wf_id = await k8s_service.submit(
        {"workflow": {"name": "u", "tasks": [{**_task("t", "true"), "image": "unschedulable/x"}]}}
    )
    await until(lambda: kubelet.manifests, 5)
    await asyncio.sleep(0.5)
    (t,) = k8s_service.get(wf_id)["tasks"]
    assert t["status"] in ("SCHEDULING", "INITIALIZING"), "no RUNNING before the pod runs"
    await asyncio.wait_for(k8s_service.wait(wf_id), 10)


async def test_platform_template_selectors_and_files_reach_the_pod(
    tmp_path: Path, kmock: Any, kubelet: Kubelet
) -> None:
    await kubelet.add_node("gpu-1", cpu="8", memory="64Gi", **{"nvidia.com/gpu.product": "A100"})
    async with Service(k8s_config(tmp_path, str(kmock.url))) as svc:
        spec = {
            "workflow": {
                "name": "p",
                "resources": {"default": {"cpu": 6, "platform": "a100"}},
                "tasks": [
                    _task(
                        "t",
                        "echo ok",
                        files=[{"path": "/opt/a.sh", "contents": "echo {{workflow_id}}"}],
                        credentials={"s3": {"KEY": "secret_access_key"}},
                    )
                ],
            }
        }
        wf = await _run(svc, spec)
        assert wf["status"] == "COMPLETED", wf
        (m,) = kubelet.manifests
        pod = as_model({k: v for k, v in m.items() if k != "status"})
        assert pod.spec.node_selector == {"nvidia.com/gpu.product": "A100"}
        c = pod.spec.containers[0]
        assert c.working_dir.startswith("/work/")
        assert c.resources.requests["cpu"] == "6"
        assert {v.mount_path for v in c.volume_mounts} == {"/opt/a.sh"}
        ref = next(e for e in c.env if e.name == "KEY").value_from.secret_key_ref
        assert ref.key == "c-s3-secret_access_key"

        async def no_secrets() -> bool:
            got = await asyncio.to_thread(kubelet.api.list_namespaced_secret, NAMESPACE)
            return not got.items

        assert await until(no_secrets), "the attempt's Secret is deleted with its pod"


async def test_impossible_request_is_refused_with_node_capacities(
    tmp_path: Path, kmock: Any, kubelet: Kubelet
) -> None:
    await kubelet.add_node("gpu-1", cpu="8", memory="64Gi", **{"nvidia.com/gpu.product": "A100"})
    async with Service(k8s_config(tmp_path, str(kmock.url))) as svc:
        for platform, cpu, machine in (("default", 64, "node-a"), ("a100", 12, "gpu-1: cpu 8")):
            spec = {
                "workflow": {
                    "name": "big",
                    "resources": {"default": {"cpu": cpu, "platform": platform}},
                    "tasks": [_task("t", "true")],
                }
            }
            with pytest.raises(PlacementError) as err:
                await svc.submit(spec)
            assert "more than any machine" in str(err.value)
            assert machine in str(err.value)
        # node-a (cpu 4) lacks the A100 label: only gpu-1 counts for that platform
        assert "node-a" not in str(err.value)


async def test_nodes_added_after_start_are_used_after_the_next_listing(
    tmp_path: Path, kmock: Any, kubelet: Kubelet
) -> None:
    async with Service(k8s_config(tmp_path, str(kmock.url), node_refresh=0.2)) as svc:
        spec = {
            "workflow": {
                "name": "grow",
                "resources": {"default": {"cpu": 12}},
                "tasks": [_task("t", "echo fits")],
            }
        }
        with pytest.raises(PlacementError):  # node-a has 4 CPUs
            await svc.submit(spec)
        await kubelet.add_node("big-1", cpu="16", memory="64Gi")  # an autoscaler's new node

        async def submitted() -> str | None:
            try:
                return await svc.submit(spec)
            except PlacementError:
                return None

        wf = await until(submitted)
        await asyncio.wait_for(svc.wait(wf), 30)
        assert svc.get(wf)["status"] == "COMPLETED"
        assert svc.task(wf, "t")["node"] == "big-1"


async def test_tainted_nodes_serve_only_platforms_that_tolerate_them(
    tmp_path: Path, kmock: Any, kubelet: Kubelet
) -> None:
    taint = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "gpu-1", "labels": {}},
        "spec": {"taints": [taint]},
        "status": {"allocatable": {"cpu": "16", "memory": "64Gi"}},
    }
    await asyncio.to_thread(kubelet.api.create_node, node)
    config = k8s_config(tmp_path, str(kmock.url))
    tolerant = {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]}
    config.pools = {"k8s": {"backend": "k8s", "platforms": {"default": {}, "gpu": tolerant}}}
    async with Service(config) as svc:

        def spec(platform: str) -> dict[str, Any]:
            res = {"default": {"cpu": 8, "platform": platform}}
            return {"workflow": {"name": "t", "resources": res, "tasks": [_task("t", "true")]}}

        with pytest.raises(PlacementError) as err:  # node-a is too small, gpu-1 is tainted
            await svc.submit(spec("default"))
        assert "gpu-1 (nvidia.com/gpu=present:NoSchedule)" in str(err.value)
        wf = await svc.submit(spec("gpu"))
        await asyncio.wait_for(svc.wait(wf), 30)
        assert (svc.get(wf)["status"], svc.task(wf, "t")["node"]) == ("COMPLETED", "gpu-1")


async def test_group_tasks_reach_each_other_by_headless_service_names(
    k8s_service: Service, kubelet: Kubelet
) -> None:
    spec = {
        "workflow": {
            "name": "g",
            "groups": [
                {
                    "name": "ring",
                    "tasks": [
                        _task("lead", "echo {{host:worker}}", lead=True),
                        _task("worker", "echo {{host:lead}}"),
                    ],
                }
            ],
        }
    }
    wf = await _run(k8s_service, spec)
    assert wf["status"] == "COMPLETED", wf
    pods = {m["spec"]["hostname"]: m for m in kubelet.manifests}
    assert set(pods) == {"lead", "worker"}
    sub = pods["lead"]["spec"]["subdomain"]
    assert pods["worker"]["spec"]["subdomain"] == sub
    assert pods["lead"]["spec"]["containers"][0]["args"] == ["-c", f"echo worker.{sub}"]
    lines = await k8s_service.logs(wf["id"], "worker")
    assert [x.text for x in lines] == [f"lead.{sub}"]


async def test_volcano_podgroup_for_a_barrier_group_when_configured(
    tmp_path: Path, kmock: Any, kubelet: Kubelet
) -> None:
    kmock.resources["scheduling.volcano.sh/v1beta1/podgroups"] = {}  # the CRD is installed
    async with Service(k8s_config(tmp_path, str(kmock.url), gang_scheduler="volcano")) as svc:
        spec = {
            "workflow": {
                "name": "gang",
                "groups": [
                    {"name": "g", "tasks": [_task("a", "echo a", lead=True), _task("b", "echo b")]}
                ],
            }
        }
        wf_id = await svc.submit(spec)
        await until(lambda: len(kubelet.manifests) == 2)
        await asyncio.wait_for(svc.wait(wf_id), 30)
        assert svc.get(wf_id)["status"] == "COMPLETED"
        # The request log, not the object store: the PodGroup is deleted when the group ends,
        # and a fast run can end it before the test looks. One create for the group, not per task.
        (pg,) = [r.data for r in kmock if r.method == "POST" and r.url.path.endswith("/podgroups")]
        assert pg["spec"]["minMember"] == 2
        for m in kubelet.manifests:
            assert (
                m["metadata"]["annotations"]["scheduling.k8s.io/group-name"]
                == (pg["metadata"]["name"])
            )
            assert m["spec"]["schedulerName"] == "volcano"
        await until(
            lambda: (
                not [
                    o
                    for o in kmock.objects.values()
                    if o.get("kind") == "PodGroup" and not o.deleted
                ]
            )
        )


async def test_a_rescheduled_lead_restarts_its_peers_as_new_pods_of_the_same_gang(
    tmp_path: Path, kmock: Any, kubelet: Kubelet
) -> None:
    """On Kubernetes a peer restarted in place is a new pod (one pod per attempt) with the
    same PodGroup as before; the lead reschedules every time, so past its budget of 1 the
    group ends FAILED and its peers FAILED with "Lead task finished", as OSMO ends them."""
    kmock.resources["scheduling.volcano.sh/v1beta1/podgroups"] = {}
    config = k8s_config(tmp_path, str(kmock.url), gang_scheduler="volcano")
    config.max_retries = 1
    async with Service(config) as svc:
        tasks = [_task("a", "exit 7", lead=True, exitActions={"RESCHEDULE": "7"})]
        tasks += [_task(n, "hang") for n in ("b", "c")]
        wf = await _run(
            svc, {"workflow": {"name": "gang", "groups": [{"name": "g", "tasks": tasks}]}}
        )
        assert wf["status"] == "FAILED"
        for peer in ("b", "c"):
            tries = [t for t in wf["tasks"] if t["name"] == peer]
            assert [t["status"] for t in tries] == ["RESCHEDULED", "FAILED"]
            assert tries[0]["message"] == "restarted in place: task a of its group was rescheduled"
            assert tries[1]["message"] == "Lead task finished"
        keys = [m["metadata"]["annotations"]["osmo/key"] for m in kubelet.manifests]
        assert len(keys) == len(set(keys))  # a new pod per attempt, never one reused
        # every first attempt and the lead's second had a pod; a peer's second attempt may end
        # ("Lead task finished") before its pod is created when the lead fails at once
        assert {f"{wf['id']}/{n}/0" for n in "abc"} | {f"{wf['id']}/a/1"} <= set(keys)
        assert set(keys) <= {f"{wf['id']}/{n}/{r}" for n in "abc" for r in (0, 1)}
        gangs = {
            m["metadata"]["annotations"]["scheduling.k8s.io/group-name"] for m in kubelet.manifests
        }
        assert len(gangs) == 1


async def test_data_inputs_are_refused_not_dropped(k8s_service: Service) -> None:
    wf = await _run(
        k8s_service, [_task("a", "echo a"), _task("b", "echo b", inputs=[{"url": "s3://x/y"}])]
    )
    tasks = {t["name"]: t for t in wf["tasks"]}
    assert tasks["a"]["status"] == "COMPLETED"
    assert tasks["b"]["status"].startswith("FAILED"), tasks["b"]
    assert "in-pod agent" in tasks["b"]["message"]


async def test_an_upstream_output_with_nowhere_to_go_is_refused_at_submit(
    k8s_service: Service,
) -> None:
    """Pods share no disk: without OsmoConfig.intermediate_url or an output url of its own,
    task a's output cannot reach task b; refused at submit, naming b's input and the fixes."""
    spec = {"workflow": {"name": "k", "tasks": [_task("a", "true")]}}
    spec["workflow"]["tasks"].append(_task("b", "true", inputs=[{"task": "a"}]))
    with pytest.raises(PlacementError) as err:
        await k8s_service.submit(spec)
    (problem,) = err.value.problems
    assert problem.field == "workflow.tasks[1].inputs[0].task"
    assert "task 'b' reads the output of task 'a'; on backend 'k8s'" in problem.message
    assert "OsmoConfig.intermediate_url" in str(problem.hint)
    assert "give task 'a' an output url" in str(problem.hint)
    assert k8s_service.list() == [], "nothing was submitted"


def test_an_intermediate_url_the_agents_cannot_use_fails_at_start() -> None:
    from osmo_core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"OsmoConfig\.intermediate_url: unsupported storage URL"):
        OsmoConfig(intermediate_url="gs://bucket/between")


async def test_pods_without_an_agent_offer_no_interactive_access(k8s_service: Service) -> None:
    """Backend.agent_of declares interactive access: None without `agent_image`, so the hub
    refuses clearly instead of probing the backend."""
    wf_id = await k8s_service.submit({"workflow": {"name": "k", "tasks": [_task("a", "hang")]}})
    await until(lambda: k8s_service.task(wf_id, "a")["status"] == "RUNNING")
    with pytest.raises(Conflict, match="backend 'k8s' of task 'a' has no interactive access"):
        k8s_service.interactive.placement(wf_id, "a")
    await k8s_service.cancel(wf_id)


def test_a_bad_backend_config_fails_at_start_naming_each_field() -> None:
    from osmo_core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        OsmoConfig(
            backends={
                "dgx": {
                    "kind": "kubernetes",
                    "agnt_image": "x",
                    "start_timeout": "10m",
                    "agent_dial": "osmo.internal",
                }
            }
        )
    text = str(err.value)
    assert "OsmoConfig.backends.dgx: unknown keys ['agnt_image']" in text
    assert "agent_image" in text  # the valid keys are listed
    assert "OsmoConfig.backends.dgx.start_timeout" in text
    assert "OsmoConfig.backends.dgx.agent_dial: expected HOST:PORT" in text


async def test_a_pod_deletion_the_watch_missed_is_settled_by_reconciliation(
    k8s_service: Service, kubelet: Kubelet
) -> None:
    """The invariant on Kubernetes: with the watch deaf (it missed the pod's deletion), the
    engine's periodic check lists the pods (`running()`, one call) and settles the attempt."""
    backend: Any = k8s_service.backends["k8s"]
    wf_id = await k8s_service.submit({"workflow": {"name": "r", "tasks": [_task("t", "hang")]}})
    await until(lambda: k8s_service.get(wf_id)["tasks"][0]["status"] == "RUNNING", 15)
    assert len(await backend.running()) == 1
    watcher = backend._watcher
    hears, watcher.on_event = watcher.on_event, lambda kind, obj: None
    try:
        (pod,) = await _pods(kubelet)
        await asyncio.to_thread(
            kubelet.api.delete_namespaced_pod, pod.metadata.name, NAMESPACE, grace_period_seconds=0
        )
        await until(lambda: _no_pods(kubelet), 10)
        assert await backend.running() == set()
        assert k8s_service.get(wf_id)["tasks"][0]["status"] == "RUNNING", "nobody told it yet"
        assert await k8s_service.engine.reconcile() == 1
        await until(lambda: k8s_service.get(wf_id)["tasks"][0]["status"] != "RUNNING", 5)
    finally:
        watcher.on_event = hears
    first = k8s_service.get(wf_id)["tasks"][0]
    assert first["status"] == "FAILED_BACKEND_ERROR", first
    assert "no longer runs" in first["message"], first
    with contextlib.suppress(Conflict):  # ended already without a retry budget (OSMO's default)
        await k8s_service.cancel(wf_id)
    await asyncio.wait_for(k8s_service.wait(wf_id), 20)
