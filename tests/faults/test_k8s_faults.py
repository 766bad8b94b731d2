"""Fault injection on Kubernetes: the process kubelet of the Kubernetes tests
(tests/k8s/pod_runner.py: kmock's API server, pods as local processes, the in-pod agent dialling
home) goes down while a workflow runs and comes back; its containers go on meanwhile, as a real
kubelet's container runtime keeps them. Pods share no disk: each task's output reaches the next
through moto's S3 (OsmoConfig.intermediate_url)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUCKET
from tests.faults.conftest import RunFactory
from tests.faults.harness import SEED, Fault, Run, pick_moment
from tests.faults.test_faults import cells, run_cell
from tests.k8s.conftest import NAMESPACE, process_kubelet  # noqa: F401 (a fixture)
from tests.k8s.test_k8s_pod_agent import pod_agent_config


class Kubelet(Fault):
    name = "kubelet"
    hold = 2.0

    def __init__(self) -> None:
        self.kubelet: Any = None

    async def inject(self, run: Run) -> None:
        self.kubelet.crash()

    async def recover(self, run: Run) -> None:
        self.kubelet.restart()

    async def leftovers(self, run: Run) -> list[str]:
        listed = await asyncio.to_thread(self.kubelet.api.list_namespaced_pod, NAMESPACE)
        pods = [f"pod {p.metadata.name}" for p in listed.items]
        procs = [f"pid {p.pid}" for r in self.kubelet.pods.values() for p in r.live()]
        return pods + procs

    def evidence(self) -> list[str]:
        """The end of each pod's container logs (the in-pod agent's own log): why a task's pod
        ended as it did (a cell once saw `src` exit 1, "Error", before the fault: the agent's
        status when it stops with no attempt launched, agent/pod.py)."""
        runs = [*self.kubelet.pods.values(), *self.kubelet.gone]
        found = []
        for r in runs[-12:]:
            for log in sorted((r.dir / "logs").glob("*.log")):
                tail = log.read_bytes()[-800:].decode(errors="replace").strip()
                if tail:
                    found.append(f"pod {r.name}, container {log.stem}: ...{tail}")
        return found


@pytest.mark.parametrize(("fault", "workflow", "phase"), cells([Kubelet()]))
async def test_kubelet_fault(
    fault: Kubelet,
    workflow: str,
    phase: str,
    kmock: Any,
    process_kubelet: Any,  # noqa: F811
    fault_run: RunFactory,  # after the kubelet: its control plane stops before the kubelet
    s3_endpoint: str,
    tmp_path: Path,
) -> None:
    fault.kubelet = process_kubelet
    s3 = {"url": f"s3://{BUCKET}", "endpoint_url": s3_endpoint, "access_key_id": "k"}
    s3 |= {"secret_access_key": "s"}
    between = f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}"

    def config(data_dir: Path, store_url: str) -> Any:
        cfg = pod_agent_config(tmp_path, str(kmock.url), {"s3": s3}, data=data_dir.name)
        cfg.intermediate_url = between
        return cfg

    run = fault_run(workflow, pick_moment(SEED, fault.name, workflow, phase), fault, config)
    run.output_roots.append(process_kubelet.root)
    await run_cell(run, fault)
