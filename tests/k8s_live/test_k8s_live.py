"""tests/k8s scenarios on a real cluster (see conftest.py for how to run them)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from osmo_core.errors import PlacementError
from tests.k8s_live.conftest import IMAGE, KUBECONFIG, NAMESPACE

pytestmark = pytest.mark.skipif(
    not KUBECONFIG, reason="set OSMO_TEST_KUBECONFIG to run against a real Kubernetes cluster"
)


def _task(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": IMAGE, "command": ["sh", "-c", script], **extra}


async def _run(svc: Any, spec: dict[str, Any], seconds: float = 300) -> dict[str, Any]:
    wf_id = await svc.submit(spec)
    await asyncio.wait_for(svc.wait(wf_id), seconds)
    return svc.get(wf_id)


async def _osmo_pods(svc: Any) -> list[Any]:
    backend = svc.backends["live"]
    return await backend._pods()


async def test_live_workflow_runs_logs_stay_pods_go(live_service: Any) -> None:
    spec = {"workflow": {"name": "live", "tasks": [_task("a", "echo hello"), _task("b", "exit 3")]}}
    wf = await _run(live_service, spec)
    tasks = {t["name"]: t for t in wf["tasks"]}
    assert tasks["a"]["status"] == "COMPLETED"
    assert (tasks["b"]["status"], tasks["b"]["exit_code"]) == ("FAILED", 3)
    for _ in range(120):
        if not await _osmo_pods(live_service):
            break
        await asyncio.sleep(0.5)
    assert await _osmo_pods(live_service) == []
    lines = await live_service.logs(wf["id"], "a")
    assert [x.text for x in lines] == ["hello"]


async def test_live_image_pull_error(live_service: Any) -> None:
    spec = {
        "workflow": {
            "name": "pull",
            "tasks": [{**_task("t", "true"), "image": "registry.invalid/osmo/nope:0"}],
        }
    }
    wf = await _run(live_service, spec)
    assert wf["tasks"][0]["status"] == "FAILED_IMAGE_PULL", wf["tasks"]


async def test_live_group_peers_resolve_by_name(live_service: Any) -> None:
    # both tasks wait until the other's DNS name resolves through the headless Service
    look = (
        "for i in $(seq 60); do nslookup {{host:%s}} >/dev/null 2>&1 && exit 0; sleep 1; done;"
        " exit 1"
    )
    spec = {
        "workflow": {
            "name": "grp",
            "groups": [
                {
                    "name": "g",
                    "tasks": [
                        _task("lead", look % "worker", lead=True),
                        _task("worker", look % "lead"),
                    ],
                }
            ],
        }
    }
    wf = await _run(live_service, spec)
    assert wf["status"] == "COMPLETED", wf["tasks"]


async def test_live_files_reach_the_pod(live_service: Any) -> None:
    spec = {
        "workflow": {
            "name": "files",
            "tasks": [
                _task(
                    "t",
                    "sh /opt/osmo/hi.sh",
                    files=[{"path": "/opt/osmo/hi.sh", "contents": "echo from-file"}],
                )
            ],
        }
    }
    wf = await _run(live_service, spec)
    assert wf["status"] == "COMPLETED", wf["tasks"]
    assert [x.text for x in await live_service.logs(wf["id"], "t")] == ["from-file"]


async def test_live_impossible_request_names_node_capacities(live_service: Any) -> None:
    spec = {
        "workflow": {
            "name": "big",
            "resources": {"default": {"cpu": 100000}},
            "tasks": [_task("t", "true")],
        }
    }
    with pytest.raises(PlacementError, match="more than any machine"):
        await live_service.submit(spec)


async def test_live_cancel_deletes_the_pod(live_service: Any) -> None:
    wf_id = await live_service.submit(
        {"workflow": {"name": "c", "tasks": [_task("t", "sleep 600")]}}
    )
    for _ in range(240):
        if live_service.get(wf_id)["tasks"][0]["status"] == "RUNNING":
            break
        await asyncio.sleep(0.5)
    await live_service.cancel(wf_id)
    await asyncio.wait_for(live_service.wait(wf_id), 120)
    for _ in range(120):
        if not await _osmo_pods(live_service):
            break
        await asyncio.sleep(0.5)
    assert await _osmo_pods(live_service) == [], f"pods left in {NAMESPACE}"


async def test_live_pod_agent_streams_logs_and_execs(live_agent_service: Any) -> None:
    svc = live_agent_service
    wf = await svc.submit(
        {
            "workflow": {
                "name": "agent",
                "tasks": [
                    _task(
                        "t",
                        "echo ready > marker; echo out; echo err >&2; "
                        "while [ ! -e go ]; do sleep 0.2; done",
                        interactive=True,
                    )
                ],
            }
        }
    )
    for _ in range(600):
        if svc.task(wf, "t")["status"] == "RUNNING":
            break
        await asyncio.sleep(0.5)
    sess = await svc.interactive.exec(wf, "t", ["sh", "-c", "cat marker; touch go"])
    out = b""
    while chunk := await asyncio.wait_for(sess.read(), 30):
        out += chunk
    assert out == b"ready\n"
    for _ in range(120):
        if svc.task(wf, "t").get("waiting_for_user"):
            break
        await asyncio.sleep(0.5)
    await svc.done(wf, "t")
    await asyncio.wait_for(svc.wait(wf), 120)
    assert svc.get(wf)["status"] == "COMPLETED"
    lines = [(x.stream, x.text) for x in await svc.logs(wf, "t")]
    assert ("stdout", "out") in lines and ("stderr", "err") in lines
