"""The Kubernetes scenarios against a real cluster (kind, k3s, a cloud cluster).

    OSMO_TEST_KUBECONFIG=~/.kube/config [OSMO_TEST_CONTEXT=kind-osmo] \\
    [OSMO_TEST_NAMESPACE=osmo-test] [OSMO_TEST_IMAGE=busybox:1.36] python -m pytest tests/k8s_live

The in-pod agent's scenario also needs OSMO_TEST_AGENT_IMAGE (built with
examples/kubernetes/agent-image.Dockerfile, pullable by the cluster) and OSMO_TEST_AGENT_DIAL
(HOST:PORT of this machine that the cluster's pods can reach; the control plane listens on
0.0.0.0 at that PORT), e.g. for kind: `host.docker.internal:7022` or the docker bridge address.

The namespace must exist and the kubeconfig's user may create pods, secrets and services in
it. Skipped (with this reason) when OSMO_TEST_KUBECONFIG is not set: no cluster can run on the
machine the project is built on, so CI runs tests/k8s (kmock) instead."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

KUBECONFIG = os.environ.get("OSMO_TEST_KUBECONFIG", "")
NAMESPACE = os.environ.get("OSMO_TEST_NAMESPACE", "osmo-test")
IMAGE = os.environ.get("OSMO_TEST_IMAGE", "busybox:1.36")
AGENT_IMAGE = os.environ.get("OSMO_TEST_AGENT_IMAGE", "")
AGENT_DIAL = os.environ.get("OSMO_TEST_AGENT_DIAL", "")

pytestmark = pytest.mark.skipif(
    not KUBECONFIG, reason="set OSMO_TEST_KUBECONFIG to run against a real Kubernetes cluster"
)


def live_config(tmp_path: Path, agent: bool = False) -> Any:
    from osmo_core.config import OsmoConfig

    data = tmp_path / "osmo"
    backend = {
        "kind": "kubernetes",
        "kubeconfig": os.path.expanduser(KUBECONFIG),
        "namespace": NAMESPACE,
        "default_image": IMAGE,
        "start_timeout": 120,
    }
    if os.environ.get("OSMO_TEST_CONTEXT"):
        backend["context"] = os.environ["OSMO_TEST_CONTEXT"]
    extra: dict[str, Any] = {}
    if agent:
        backend |= {"agent_image": AGENT_IMAGE, "agent_dial": AGENT_DIAL}
        extra = {"interactive_host": "0.0.0.0", "interactive_port": int(AGENT_DIAL.split(":")[-1])}
    return OsmoConfig(
        data_dir=str(data),
        store_url=f"sqlite:///{data / 'osmo.db'}",
        backends={"live": backend},
        pools={"live": {"backend": "live", "platforms": {"default": {}}}},
        default_pool="live",
        **extra,
    )


@pytest.fixture
async def live_service(tmp_path: Path) -> AsyncIterator[Any]:
    from osmo_core.service import Service

    svc = Service(live_config(tmp_path))
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
async def live_agent_service(tmp_path: Path) -> AsyncIterator[Any]:
    from osmo_core.service import Service

    if not (AGENT_IMAGE and AGENT_DIAL):
        pytest.skip("set OSMO_TEST_AGENT_IMAGE and OSMO_TEST_AGENT_DIAL for the in-pod agent")
    svc = Service(live_config(tmp_path, agent=True))
    await svc.start()
    yield svc
    await svc.stop()
