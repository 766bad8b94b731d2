"""The in-pod agent, for real: kmock's API server, a kubelet that runs each pod's containers as
processes (init container first, volumes bind-mounted in the pod's own mount namespace), the
agent dialling home over TCP to the control plane, data in and out of moto's S3 server."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from osmo_core.config import OsmoConfig
from osmo_core.errors import Conflict
from osmo_core.service import Service
from tests.conftest import BUCKET
from tests.k8s.conftest import NAMESPACE, until


def agent_image(tmp_path: Path) -> Path:
    """What an agent image holds under /opt/osmo-agent: a Python that can run osmo_core (here
    this interpreter; the image's is a relocatable one, see README)."""
    tree = tmp_path / "agent-image"
    (tree / "bin").mkdir(parents=True)
    python = tree / "bin" / "python3"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return tree


def pod_agent_config(
    tmp_path: Path, url: str, credentials: dict[str, Any] | None = None, **extra: Any
) -> OsmoConfig:
    data = tmp_path / "osmo"
    mount = tmp_path / "m"  # where the pod's osmo volumes are mounted (default /osmo)
    tree = agent_image(tmp_path)
    return OsmoConfig(
        data_dir=str(data),
        store_url=f"sqlite:///{data / 'osmo.db'}",
        backends={
            "k8s": {
                "kind": "kubernetes",
                "host": url,
                "namespace": NAMESPACE,
                "start_timeout": 30,
                "agent_image": "osmo-agent:test",
                "agent_dir": str(mount),
                "agent_init_command": ["sh", "-c", f"cp -a {tree}/. {mount}/agent/"],
                **extra,
            },
        },
        pools={"k8s": {"backend": "k8s", "platforms": {"default": {}}}},
        default_pool="k8s",
        credentials=credentials or {},
    )


@pytest.fixture
async def agent_service(tmp_path: Path, kmock: Any, process_kubelet: Any) -> Any:
    services: list[Service] = []

    async def make(**extra: Any) -> Service:
        svc = Service(pod_agent_config(tmp_path, str(kmock.url), **extra))
        await svc.start()
        services.append(svc)
        return svc

    yield make
    for svc in services:
        await svc.stop()


async def _lines(svc: Service, wf: str, task: str) -> list[tuple[str, str]]:
    return [(ln["stream"], ln["text"]) for ln in await svc.logs(wf, task)]


async def pods(kubelet: Any) -> list[str]:
    listed = await asyncio.to_thread(kubelet.api.list_namespaced_pod, NAMESPACE)
    return [p.metadata.name for p in listed.items]


async def test_a_pod_stages_s3_data_streams_logs_and_uploads_its_output(
    agent_service: Any, s3_endpoint: str, kmock: Any, process_kubelet: Any
) -> None:
    import s3fs

    s3 = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    prefix = f"{BUCKET}/{uuid.uuid4().hex[:8]}"
    s3.pipe({f"{prefix}/in/a.txt": b"from-s3\n"})
    cred = {
        "url": f"s3://{BUCKET}",
        "endpoint_url": s3_endpoint,
        "access_key_id": "k",
        "secret_access_key": "s",
    }
    svc = await agent_service(credentials={"raw": cred, "unused": {"token": "t"}})
    wf = await svc.submit(
        {
            "workflow": {
                "name": "pod-data",
                "tasks": [
                    {
                        "name": "prep",
                        "image": "busybox",
                        "command": [
                            "sh",
                            "-c",
                            "cat {{input:0}}/a.txt; echo oops >&2; "
                            "tr a-z A-Z < {{input:0}}/a.txt > {{output}}/b.txt",
                        ],
                        "inputs": [{"url": f"s3://{prefix}/in/"}],
                        "outputs": [{"url": f"s3://{prefix}/out"}],
                    }
                ],
            }
        }
    )
    await asyncio.wait_for(svc.wait(wf), 60)
    got = svc.get(wf)
    assert got["status"] == "COMPLETED", got
    assert s3.cat(f"{prefix}/out/b.txt") == b"FROM-S3\n"
    lines = await _lines(svc, wf, "prep")
    # streams kept apart (the pod log API would merge them), the agent's own notes as system
    assert ("stdout", "from-s3") in lines and ("stderr", "oops") in lines
    assert ("system", f"downloading s3://{prefix}/in/") in lines
    # the pod ran the agent from its init container, with only the credential the task names
    (pod,) = process_kubelet.manifests
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["osmo-agent-init"]
    (secret,) = [r.data for r in kmock if r.method == "POST" and r.url.path.endswith("/secrets")]
    assert set(secret["data"]) == {"dialhome.json", "ssh_host_key", "credentials.json"}
    creds = json.loads(base64.b64decode(secret["data"]["credentials.json"]))
    assert set(creds) == {"raw"}  # not "unused": a pod gets only what its task names
    assert await pods(process_kubelet) == []  # deleted at the end


async def test_exec_and_port_forward_into_a_pod_then_a_hold_and_done(
    agent_service: Any, process_kubelet: Any
) -> None:
    svc = await agent_service()
    wf = await svc.submit(
        "workflow:\n  name: pod-shell\n  tasks:\n"
        "  - name: main\n    interactive: true\n    image: busybox\n"
        "    command: [sh, -c, 'echo ready > marker; timeout 20 python3 -m http.server 8766 "
        "--bind 127.0.0.1 || true']\n"
    )
    await until(lambda: svc.task(wf, "main")["status"] == "RUNNING", 30)
    sess = await svc.interactive.exec(wf, "main", ["sh", "-c", "cat marker; exit 3"])
    out = b""
    while chunk := await asyncio.wait_for(sess.read(), 10):
        out += chunk
    assert out == b"ready\n"
    assert await sess.wait() == {"exit_code": 3, "signal": None}

    async def get() -> bytes:
        try:
            reader, writer = await svc.interactive.open_port(wf, "main", 8766)
        except Conflict:  # not listening yet
            return b""
        writer.write(b"GET /marker HTTP/1.0\r\n\r\n")
        reply = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return reply

    reply = await until(get, 20)
    assert reply.startswith(b"HTTP/1.0 200") and reply.endswith(b"ready\n")
    # stop the server: the command ends, the task waits for its user (the pod stays)
    stop = await svc.interactive.exec(wf, "main", ["sh", "-c", "pkill -f 'http.server 8766'"])
    await asyncio.wait_for(stop.wait(), 10)
    await until(lambda: svc.task(wf, "main").get("waiting_for_user"), 30)
    assert await pods(process_kubelet)  # held: the pod stays
    await svc.done(wf, "main")
    await asyncio.wait_for(svc.wait(wf), 30)
    assert svc.get(wf)["status"] == "COMPLETED"
