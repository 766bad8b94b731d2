"""Preemption on Kubernetes: a LOW pod is stopped for HIGH work, through its in-pod agent (real
processes under the process kubelet: SIGTERM reaches the task, which traps it) and, for a pod
without an agent, by deleting it with the grace period as gracePeriodSeconds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from osmo_core.backends.kubernetes.pods import pod_name
from osmo_core.service import Service
from tests.k8s.conftest import backend_requests, until
from tests.k8s.test_k8s_pod_agent import pod_agent_config, pod_logs
from tests.k8s.test_kubernetes_backend import k8s_config

WAIT = 60


def gated(gates: Path, name: str, cpu: int) -> dict[str, Any]:
    """A task of `cpu` cores waiting at gate `name`; on SIGTERM it writes `<name>.term`."""
    script = (
        f"trap 'echo term > {gates}/{name}.term; exit 0' TERM; "
        f"while [ ! -e {gates}/{name} ]; do sleep 0.05; done"
    )
    return {
        "workflow": {
            "name": name,
            "resources": {"default": {"cpu": cpu}},
            "tasks": [{"name": "t", "image": "busybox", "command": ["sh", "-c", script]}],
        }
    }


async def test_a_low_pod_is_preempted_through_its_agent_and_retried_after(
    tmp_path: Path, kmock: Any, process_kubelet: Any
) -> None:
    config = pod_agent_config(tmp_path, str(kmock.url))
    config.pools = {"k8s": {"backend": "k8s", "platforms": {"default": {}}, "preemption_grace": 5}}
    config.max_retries = 1  # a preempted task is rescheduled within it (OSMO's default is 0)
    svc = Service(config)
    await svc.start()
    gates = tmp_path / "gates"
    gates.mkdir()
    try:
        low = await svc.submit(gated(gates, "low", 3), priority="LOW")  # node-a has 4 cores
        await until(lambda: svc.task(low, "t")["status"] == "RUNNING", 30)
        high = await svc.submit(gated(gates, "high", 2), priority="HIGH")
        await until(lambda: svc.task(high, "t")["status"] == "RUNNING", 30)
        first = svc.task(low, "t")["attempts"][0]
        assert (first["status"], first["exit_code"]) == ("FAILED_PREEMPTED", 3006), pod_logs(
            process_kubelet
        )
        assert (gates / "low.term").read_text() == "term\n"  # the task got SIGTERM in its pod
        assert svc.task(low, "t")["status"] == "SCHEDULING"
        (gates / "high").touch()
        (gates / "low").touch()
        for wf in (high, low):
            assert (await asyncio.wait_for(svc.wait(wf), WAIT)).value == "COMPLETED"
        statuses = [a["status"] for a in svc.task(low, "t")["attempts"]]
        assert statuses == ["FAILED_PREEMPTED", "COMPLETED"]
    finally:
        await svc.stop()


async def test_a_pod_without_an_agent_is_deleted_with_the_grace_period(
    tmp_path: Path, kmock: Any, kubelet: Any
) -> None:
    config = k8s_config(tmp_path, str(kmock.url))
    config.pools = {**config.pools, "k8s": {**config.pools["k8s"], "preemption_grace": 7}}
    svc = Service(config)
    await svc.start()
    try:
        low = await svc.submit(
            {
                "workflow": {
                    "name": "low",
                    "resources": {"default": {"cpu": 3}},
                    "tasks": [{"name": "t", "image": "busybox", "command": ["sh", "-c", "hang"]}],
                }
            },
            priority="LOW",
        )
        await until(lambda: svc.task(low, "t")["status"] == "RUNNING", 20)
        high = await svc.submit(
            {
                "workflow": {
                    "name": "high",
                    "resources": {"default": {"cpu": 2}},
                    "tasks": [
                        {"name": "t", "image": "busybox", "command": ["sh", "-c", "echo hi"]}
                    ],
                }
            },
            priority="HIGH",
        )
        assert (await asyncio.wait_for(svc.wait(high), WAIT)).value == "COMPLETED"
        assert svc.task(low, "t")["attempts"][0]["status"] == "FAILED_PREEMPTED"
        deletes = [
            r
            for r in backend_requests(kmock)
            if r.method.value == "DELETE" and r.url.path.endswith("/pods/" + pod_name(f"{low}/t/0"))
        ]
        assert deletes and deletes[0].params.get("gracePeriodSeconds") == "7"
        # rescheduled by default, outside the retry budget (OSMO's default is 0): a new attempt
        await until(lambda: len(svc.task(low, "t")["attempts"]) == 2, 20)
        await svc.cancel(low)
        assert (await asyncio.wait_for(svc.wait(low), WAIT)).value == "FAILED_CANCELED"
    finally:
        await svc.stop()
