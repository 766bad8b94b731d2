"""The Kubernetes scenarios against a real cluster (kind, k3s, a cloud cluster).

    OSMO_TEST_KUBECONFIG=~/.kube/config [OSMO_TEST_CONTEXT=kind-osmo] \\
    [OSMO_TEST_NAMESPACE=osmo-test] [OSMO_TEST_IMAGE=busybox:1.36] python -m pytest tests/k8s_live

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

pytestmark = pytest.mark.skipif(
    not KUBECONFIG, reason="set OSMO_TEST_KUBECONFIG to run against a real Kubernetes cluster"
)


def live_config(tmp_path: Path) -> Any:
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
    return OsmoConfig(
        data_dir=str(data),
        store_url=f"sqlite:///{data / 'osmo.db'}",
        backends={"live": backend},
        pools={"live": {"backend": "live", "platforms": {"default": {}}}},
        default_pool="live",
    )


@pytest.fixture
async def live_service(tmp_path: Path) -> AsyncIterator[Any]:
    from osmo_core.service import Service

    svc = Service(live_config(tmp_path))
    await svc.start()
    yield svc
    await svc.stop()
