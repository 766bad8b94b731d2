"""Workflows whose tasks have an `image`, end to end through the Service on real podman: pull
failures, the "required" placement check, exec/terminals/kernels and holds inside the
container, S3 data and credentials, and a control-plane restart under a running container."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.asynchronous import AsyncKernelClient

from osmo_core.errors import Conflict, PlacementError
from osmo_core.interactive.kernel import KernelUnavailable, RemoteKernel
from osmo_core.service import Service
from tests.conftest import BUCKET, UBUNTU, ServiceFactory, free_port, make_config
from tests.core.test_agent import without_runtimes
from tests.data.test_workflow_data import s3, s3_credential
from tests.interactive.conftest import running, until
from tests.interactive.test_remote_kernel_core import stream_of

SECRET = "s3cr3t-registry-or-not"


def one_task(image: str, script: str, **task: Any) -> dict[str, Any]:
    return {
        "workflow": {
            "name": "ctr",
            "tasks": [{"name": "main", "image": image, "command": ["sh", "-c", script], **task}],
        }
    }


async def _exec(svc: Service, wf: str, *argv: str) -> tuple[bytes, int]:
    sess = await svc.interactive.exec(wf, "main", list(argv))
    out = b""
    while chunk := await asyncio.wait_for(sess.read(), 20):
        out += chunk
    return out, (await sess.wait())["exit_code"]


async def test_a_pull_failure_is_failed_image_pull_with_the_registry_message(
    service: Service, container_image: str
) -> None:
    wf = await service.submit(one_task("127.0.0.1:9/osmo/missing:1", "true"))
    assert await asyncio.wait_for(service.wait(wf), 60) == "FAILED_IMAGE_PULL"  # as OSMO's
    t = service.task(wf, "main")
    assert t["status"] == "FAILED_IMAGE_PULL"
    assert "cannot pull image 127.0.0.1:9/osmo/missing:1" in t["message"]
    assert "connection refused" in t["message"]


async def test_required_containers_refuse_a_pool_without_a_runtime(
    service_factory: ServiceFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_runtimes(monkeypatch, tmp_path / "bin")
    svc = await service_factory(containers="required")
    with pytest.raises(PlacementError) as err:
        await svc.submit(one_task("ubuntu:24.04", "true"))
    text = str(err.value)
    assert "pool 'local' requires containers" in text and "workflow.tasks[0].image" in text
    # a pool may say otherwise: the same spec runs on the host there
    svc2 = await service_factory(
        tmp_path / "other",
        containers="required",
        pools={"local": {"backend": "local", "containers": "auto"}},
    )
    wf = await svc2.submit(one_task("ubuntu:24.04", "echo on the host"))
    assert await asyncio.wait_for(svc2.wait(wf), 30) == "COMPLETED"


async def test_exec_terminal_and_kernel_inside_the_container(
    service: Service, container_image: str
) -> None:
    script = "echo ready > marker; for i in $(seq 600); do sleep 0.2; done"
    spec = one_task(container_image, script, environment={"TASK_SECRET": "inside"})
    wf = await service.submit(spec)
    await running(service, wf)
    await until(lambda: Path(service.task(wf, "main")["workdir"], "marker").exists())
    out, code = await _exec(service, wf, "sh", "-c", "pwd; cat marker; echo $TASK_SECRET; exit 4")
    assert (out, code) == (b"/osmo/run\nready\ninside\n", 4)
    sess = await service.interactive.exec(wf, "main", ["sh"], pty=(100, 30))
    sess.write(b"test -e /bin/busybox && stty size; exit\n")
    seen = b""
    while b"30 100" not in seen:
        seen += await asyncio.wait_for(sess.read(), 20)
    with pytest.raises(KernelUnavailable, match="no python3 or python on the task's PATH"):
        await RemoteKernel.start(service, wf, "main", uuid.uuid4().hex.encode())
    await service.cancel(wf)
    assert await asyncio.wait_for(service.wait(wf), 30) == "FAILED_CANCELED"


async def test_a_kernel_inside_a_container_of_an_image_with_ipykernel(
    service: Service, python_image: str
) -> None:
    wf = await service.submit(one_task(python_image, "sleep 120"))
    await running(service, wf)
    k = await RemoteKernel.start(service, wf, "main", uuid.uuid4().hex.encode())
    kc = AsyncKernelClient()
    kc.load_connection_info(k.connection_info())
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        code = "import os, sys; print(os.path.exists('/osmo/data/output'), sys.prefix)"
        out = await stream_of(kc, kc.execute(code), "\n", 30)
        assert out.split() == ["True", "/usr"]  # the image's Python, in OSMO's paths
    finally:
        kc.stop_channels()
        await k.close()
    await service.cancel(wf)
    assert await asyncio.wait_for(service.wait(wf), 30) == "FAILED_CANCELED"


async def test_an_interactive_task_holds_its_container_until_done(
    service: Service, container_image: str
) -> None:
    spec = one_task(container_image, "echo made > {{output}}/a", interactive=True)
    wf = await service.submit(spec)
    await until(lambda: service.task(wf, "main")["waiting_for_user"], timeout=30)
    await until(lambda: "local" in service.interactive.agents)
    out, code = await _exec(service, wf, "sh", "-c", "cat /osmo/data/output/a; pwd")
    assert (out, code) == (b"made\n/osmo/run\n", 0)
    await service.done(wf, "main")
    assert await asyncio.wait_for(service.wait(wf), 30) == "COMPLETED"


async def test_s3_data_and_credentials_inside_the_container(
    service_factory: ServiceFactory, s3_endpoint: str, container_image: str
) -> None:
    prefix = f"{BUCKET}/{uuid.uuid4().hex[:8]}"
    s3(s3_endpoint).pipe({f"{prefix}/in/a.txt": b"from s3\n"})
    svc = await service_factory(
        credentials={"raw": s3_credential(s3_endpoint), "api": {"token": SECRET}}
    )
    script = "cat {{input:0}}/a.txt > {{output}}/b.txt; echo $API_TOKEN >> {{output}}/b.txt"
    spec = one_task(
        container_image,
        script,
        inputs=[{"url": f"s3://{prefix}/in/"}],
        outputs=[{"url": f"s3://{prefix}/out"}],
        credentials={"api": {"API_TOKEN": "token"}},
    )
    as_files = "ls -l /etc/api | grep -c -- '-rw-------'; cat /etc/api/token"
    spec["workflow"]["tasks"].append(
        {
            "name": "files",
            "image": container_image,
            "command": ["sh", "-c", as_files],
            "credentials": {"api": "/etc/api"},
        }
    )
    wf = await svc.submit(spec)
    assert await asyncio.wait_for(svc.wait(wf), 60) == "COMPLETED", svc.get(wf)
    assert s3(s3_endpoint).cat(f"{prefix}/out/b.txt") == f"from s3\n{SECRET}\n".encode()
    files = [ln.text for ln in await svc.logs(wf, "files") if ln.stream == "stdout"]
    assert files == ["1", "****"]  # one 0600 file; its value masked in the log
    assert all(SECRET not in ln.text for ln in await svc.logs(wf, "main"))


async def test_a_control_plane_restart_finds_the_container_running(
    service_factory: ServiceFactory, tmp_path: Path, container_image: str
) -> None:
    data = tmp_path / "osmo"
    first = Service(make_config(data))
    await first.start()
    script = "for i in $(seq 600); do test -e go && break; sleep 0.1; done; cat go"
    wf = await first.submit(one_task(container_image, script))
    await running(first, wf)
    workdir = Path(first.task(wf, "main")["workdir"])
    await first.stop()  # the agent and its container go on

    second = await service_factory(data)
    assert second.task(wf, "main")["status"] == "RUNNING"
    (workdir / "go").write_text("adopted\n")
    assert await asyncio.wait_for(second.wait(wf), 60) == "COMPLETED"
    assert [ln.text for ln in await second.logs(wf, "main")] == ["adopted"]
    record = json.loads((data / "runs" / wf / "main/0/attempt.json").read_text())
    assert record["container"].startswith(f"osmo-{wf}-main-0-")


# In the manner of OSMO's cookbook tutorials (groups with a lead, `ubuntu:24.04`, bash brace
# expansion, data through {{output}} and {{input:0}}): it runs unchanged, in the container.
COOKBOOK = """
workflow:
  name: data-pipeline
  groups:
  - name: prepare
    tasks:
    - name: generate
      lead: true
      image: ubuntu:24.04
      command: ["bash", "-c"]
      args:
      - |
        mkdir -p {{output}}/data
        for i in {1..10}; do echo "sample_$i" >> {{output}}/data/train.csv; done
    - name: check
      image: ubuntu:24.04
      command: ["bash", "-c", "echo checked"]
  - name: train
    tasks:
    - name: count
      lead: true
      image: ubuntu:24.04
      command: ["bash", "-c"]
      args: ["wc -l {{input:0}}/data/train.csv; tail -n 1 {{input:0}}/data/train.csv"]
      inputs:
      - task: generate
"""


async def test_a_cookbook_style_workflow_on_ubuntu_runs_unchanged_in_containers(
    service: Service, python_image: str
) -> None:
    # tagged at the session's start too; again here, for a test session of an older checkout
    # running at the same time may have tagged the busybox image (no bash) since
    subprocess.run(["podman", "tag", python_image, UBUNTU], check=True, capture_output=True)
    wf = await service.submit(COOKBOOK)
    assert await asyncio.wait_for(service.wait(wf), 90) == "COMPLETED", service.get(wf)
    out = [ln.text for ln in await service.logs(wf, "count") if ln.stream == "stdout"]
    assert out == ["10 /osmo/data/input/0/data/train.csv", "sample_10"]


async def test_usage_and_a_forwarded_port_of_a_task_in_a_container(
    service_factory: ServiceFactory, monkeypatch: pytest.MonkeyPatch, container_image: str
) -> None:
    monkeypatch.setenv("OSMO_METRICS_INTERVAL", "0.2")  # the agent it spawns reads it
    svc = await service_factory()
    port = free_port()
    script = f"echo served > index.html; httpd -f -p 127.0.0.1:{port} -h /osmo/run & "
    script += "x=$(head -c 50000000 /dev/zero | tr '\\0' a); sleep 60"
    wf = await svc.submit(one_task(container_image, script, ports=[port]))
    await running(svc, wf)
    # the container's processes, as the host sees them: the shell holding ~50 MB, httpd, sleep
    usage = await until(lambda: (u := svc.task(wf, "main")["usage"]) and u["memory"] > 40e6 and u)
    assert usage["procs"] >= 3

    async def get() -> bytes:
        try:
            reader, writer = await svc.interactive.open_port(wf, "main", port)
        except Conflict:  # httpd does not listen yet
            return b""
        writer.write(b"GET /index.html HTTP/1.0\r\n\r\n")
        reply = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return reply

    reply = await until(get, what="the container's web server through a forward")
    assert reply.startswith(b"HTTP/1.") and reply.endswith(b"served\n")
    await svc.cancel(wf)
    assert await asyncio.wait_for(svc.wait(wf), 30) == "FAILED_CANCELED"
