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
from tests.conftest import BUCKET, free_port
from tests.k8s.conftest import NAMESPACE, until


def agent_image(tmp_path: Path) -> Path:
    """What an agent image holds under /opt/osmo-agent: a Python that can run osmo_core (here
    this interpreter; the image's is a relocatable one, see README)."""
    tree = tmp_path / "agent-image"
    (tree / "bin").mkdir(parents=True, exist_ok=True)
    python = tree / "bin" / "python3"
    repo = Path(__file__).resolve().parents[2]  # the package the image would carry
    python.write_text(f'#!/bin/sh\nPYTHONPATH={repo} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return tree


def pod_agent_config(
    tmp_path: Path,
    url: str,
    credentials: dict[str, Any] | None = None,
    data: str = "",
    interactive_port: int = 0,
    **extra: Any,
) -> OsmoConfig:
    data_dir = tmp_path / (data or f"osmo-{uuid.uuid4().hex[:6]}")  # a fresh one by default
    mount = tmp_path / "m"  # where the pod's osmo volumes are mounted (default /osmo)
    tree = agent_image(tmp_path)
    return OsmoConfig(
        data_dir=str(data_dir),
        store_url=f"sqlite:///{data_dir / 'osmo.db'}",
        interactive_port=interactive_port,
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

    async def make(intermediate_url: str = "", **extra: Any) -> Service:
        config = pod_agent_config(tmp_path, str(kmock.url), **extra)
        config.intermediate_url = intermediate_url
        svc = Service(config)
        await svc.start()
        services.append(svc)
        return svc

    yield make
    for svc in services:
        await svc.stop()


async def _lines(svc: Service, wf: str, task: str) -> list[tuple[str, str]]:
    return [(ln.stream, ln.text) for ln in await svc.logs(wf, task)]


def pod_logs(kubelet: Any) -> str:
    """Every container's output: what a failure message needs."""
    runs = [*kubelet.pods.values(), *kubelet.gone]
    return "\n".join(
        f"--- {r.name}/{p.stem}:\n{p.read_text(errors='replace')}"
        for r in runs
        for p in sorted((r.dir / "logs").glob("*.log"))
    )


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
    assert got["status"] == "COMPLETED", pod_logs(process_kubelet)
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


async def test_outputs_reach_downstream_pods_through_storage(
    agent_service: Any, s3_endpoint: str, process_kubelet: Any
) -> None:
    """Pods share no disk: a's output goes to OsmoConfig.intermediate_url (per attempt) and b
    downloads it from there; c reads b's output from b's own output url."""
    import s3fs

    s3 = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
    prefix = f"{BUCKET}/{uuid.uuid4().hex[:8]}"
    cred = {"url": f"s3://{BUCKET}", "endpoint_url": s3_endpoint}
    cred |= {"access_key_id": "k", "secret_access_key": "s"}
    svc = await agent_service(credentials={"lab": cred}, intermediate_url=f"s3://{prefix}/mid")
    task = {"image": "busybox", "command": ["sh", "-c"]}
    wf = await svc.submit(
        {
            "workflow": {
                "name": "pod-chain",
                "tasks": [
                    {**task, "name": "a", "args": ["echo a > {{output}}/x"]},
                    {
                        **task,
                        "name": "b",
                        "inputs": [{"task": "a"}],
                        "outputs": [{"url": f"s3://{prefix}/b/{{{{workflow_id}}}}"}],
                        "args": ["cat {{input:0}}/x > {{output}}/x; echo b >> {{output}}/x"],
                    },
                    {
                        **task,
                        "name": "c",
                        "inputs": [{"task": "b"}],
                        "args": ["cat {{input:0}}/x"],
                    },
                ],
            }
        }
    )
    await asyncio.wait_for(svc.wait(wf), 90)
    got = svc.get(wf)
    assert got["status"] == "COMPLETED", (got, pod_logs(process_kubelet))
    assert s3.cat(f"{prefix}/mid/{wf}/a/0/x") == b"a\n"
    assert s3.cat(f"{prefix}/b/{wf}/x") == b"a\nb\n"
    # only outputs someone reads are stored: b's own url serves c, nobody reads c
    assert s3.ls(f"{prefix}/mid/{wf}") == [f"{prefix}/mid/{wf}/a"]
    lines = await _lines(svc, wf, "c")
    assert ("system", f"downloading s3://{prefix}/b/{wf}") in lines
    assert [t for st, t in lines if st == "stdout"] == ["a", "b"]


async def test_an_output_made_on_this_machine_reaches_a_pod_through_storage(
    tmp_path: Path, kmock: Any, s3_endpoint: str, process_kubelet: Any
) -> None:
    """One workflow on this machine and a cluster: the local task's output is uploaded for the
    pod that reads it (one of the two apart is enough), and read back from there."""
    import s3fs

    prefix = f"{BUCKET}/{uuid.uuid4().hex[:8]}"
    cred = {"url": f"s3://{BUCKET}", "endpoint_url": s3_endpoint}
    cred |= {"access_key_id": "k", "secret_access_key": "s"}
    config = pod_agent_config(tmp_path, str(kmock.url), {"lab": cred})
    config.backends = {**config.backends, "local": {"kind": "local"}}
    platforms = {"default": {}, "here": {"backend": "local"}}
    config.pools = {"k8s": {"backend": "k8s", "platforms": platforms}}
    config.intermediate_url = f"s3://{prefix}/mid"
    svc = Service(config)
    await svc.start()
    try:
        wf = await svc.submit(
            "workflow:\n  name: span\n  resources:\n    here: {platform: here}\n  tasks:\n"
            "  - {name: a, resource: here, command: [sh, -c, 'echo a > {{output}}/x']}\n"
            "  - {name: b, image: busybox, inputs: [{task: a}], command: [cat, '{{input:0}}/x']}\n"
        )
        await asyncio.wait_for(svc.wait(wf), 60)
        assert svc.get(wf)["status"] == "COMPLETED", pod_logs(process_kubelet)
        assert {t: svc.task(wf, t)["backend"] for t in "ab"} == {"a": "local", "b": "k8s"}
        s3 = s3fs.S3FileSystem(endpoint_url=s3_endpoint, skip_instance_cache=True)
        assert s3.cat(f"{prefix}/mid/{wf}/a/0/x") == b"a\n"
        assert ("stdout", "a") in await _lines(svc, wf, "b")
    finally:
        await svc.backends["local"].shutdown_agent(force=True)  # type: ignore[attr-defined]
        await svc.stop()


async def test_exec_and_port_forward_into_a_pod_then_a_hold_and_done(
    agent_service: Any, process_kubelet: Any
) -> None:
    svc = await agent_service()
    wf = await svc.submit(
        "workflow:\n  name: pod-shell\n  tasks:\n"
        "  - name: main\n    interactive: true\n    image: busybox\n"
        "    command: [sh, -c, 'echo ready > marker; python3 -m http.server 8766 "
        "--bind 127.0.0.1 & echo $! > server.pid; wait; true']\n"
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
    stop = await svc.interactive.exec(wf, "main", ["sh", "-c", "kill $(cat server.pid)"])
    await asyncio.wait_for(stop.wait(), 10)
    await until(lambda: svc.task(wf, "main").get("waiting_for_user"), 30)
    assert await pods(process_kubelet)  # held: the pod stays
    await svc.done(wf, "main")
    await asyncio.wait_for(svc.wait(wf), 30)
    assert svc.get(wf)["status"] == "COMPLETED"


async def test_a_pod_whose_agent_cannot_start_fails_naming_the_init_container(
    agent_service: Any, process_kubelet: Any
) -> None:
    spec = "workflow:\n  name: lost\n  tasks:\n  - {name: t, image: busybox, command: [true]}\n"
    # the agent image's copy step fails: the pod never runs the task container
    svc = await agent_service(agent_init_command=["sh", "-c", "echo no space >&2; exit 3"])
    wf = await svc.submit(spec)
    await asyncio.wait_for(svc.wait(wf), 30)
    task = svc.task(wf, "t")
    assert task["status"] == "FAILED_START_ERROR", task
    assert "init container osmo-agent-init failed (exit 3" in task["message"]


async def test_a_pod_whose_agent_cannot_reach_the_control_plane_times_out_saying_where(
    agent_service: Any, process_kubelet: Any
) -> None:
    spec = "workflow:\n  name: lost\n  tasks:\n  - {name: t, image: busybox, command: [true]}\n"
    # the agent runs but dials an address where nothing listens
    svc = await agent_service(agent_dial="127.0.0.1:9", start_timeout=10)  # ample to run
    wf = await svc.submit(spec)
    await asyncio.wait_for(svc.wait(wf), 30)
    task = svc.task(wf, "t")
    assert task["status"] == "FAILED_START_TIMEOUT", task
    statuses = [r.data for r in process_kubelet.kmock if r.url.path.endswith("/status")]
    why = f"{task['message']}\n{statuses}\n{pod_logs(process_kubelet)}"
    assert "its agent has not dialled home to 127.0.0.1:9" in task["message"], why


async def test_a_restarted_control_plane_takes_its_running_pods_back(
    agent_service: Any, process_kubelet: Any
) -> None:
    port = free_port()  # pods dial a fixed address: a restarted control plane listens there
    first = await agent_service(data="cp", interactive_port=port)
    wf = await first.submit(
        "workflow:\n  name: long\n  tasks:\n  - name: t\n    image: busybox\n"
        "    command: [sh, -c, 'echo before; while [ ! -e go ]; do sleep 0.1; done; echo after']\n"
    )
    await until(lambda: first.task(wf, "t")["status"] == "RUNNING", 30)
    await until(lambda: _has_line(first, wf, "before"), 10)
    await first.stop()  # the pod and its agent go on; the agent dials again and again
    second = await agent_service(data="cp", interactive_port=port)
    await until(lambda: second.task(wf, "t")["status"] == "RUNNING", 10)
    go = await second.interactive.exec(wf, "t", ["touch", "go"])  # through the new connection
    assert await asyncio.wait_for(go.wait(), 20) == {"exit_code": 0, "signal": None}
    try:
        await until(lambda: second.get(wf)["status"] == "COMPLETED", 15)
    except AssertionError:
        raise AssertionError(pod_logs(process_kubelet)) from None
    assert [x for x in await _lines(second, wf, "t") if x[0] == "stdout"] == [
        ("stdout", "before"),
        ("stdout", "after"),
    ]


async def _has_line(svc: Service, wf: str, text: str, task: str = "t") -> bool:
    return any(t == text for _, t in await _lines(svc, wf, task))


async def test_a_notebook_kernel_runs_inside_the_pod(
    agent_service: Any, process_kubelet: Any, tmp_path: Path
) -> None:
    from jupyter_client.asynchronous import AsyncKernelClient

    from osmo_core.interactive.kernel import RemoteKernel

    svc = await agent_service()
    wf = await svc.submit(
        "workflow:\n  name: pod-kernel\n  tasks:\n  - name: main\n    image: busybox\n"
        "    command: [sh, -c, 'echo ready > marker; sleep 60']\n"
    )
    await until(lambda: svc.task(wf, "main")["status"] == "RUNNING", 30)
    k = await RemoteKernel.start(svc, wf, "main", uuid.uuid4().hex.encode())
    kc = AsyncKernelClient()
    kc.load_connection_info(k.connection_info())
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=30)
        # the agent's socket is visible only in the pod's own mount namespace
        sock = tmp_path / "m" / "run" / "agent.sock"
        code = f"import os; print(open('marker').read().strip(), os.path.exists({str(sock)!r}))"
        msg_id = kc.execute(code)
        out = ""
        for _ in range(200):  # bounded: iopub messages until the output came
            msg = await kc.get_iopub_msg(timeout=20)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
                out += msg["content"]["text"]
            if "True" in out or "False" in out:
                break
        assert out.split() == ["ready", "True"]
        assert not sock.exists()  # and not here
    finally:
        kc.stop_channels()
        await k.close()
        await svc.cancel(wf)


async def test_a_failed_pod_held_for_debugging_is_retried_in_a_new_pod_and_cancel_ends_one(
    agent_service: Any, process_kubelet: Any, tmp_path: Path
) -> None:
    svc = await agent_service()
    fixed = tmp_path / "fixed"
    wf = await svc.submit(
        "workflow:\n  name: debug\n  tasks:\n  - name: flaky\n    image: busybox\n"
        "    debug: on-failure\n"
        f"    command: [sh, -c, 'test -e {fixed} || exit 4']\n"
    )
    await until(lambda: svc.task(wf, "flaky").get("held_for_debugging"), 30)
    first = await pods(process_kubelet)
    assert len(first) == 1  # the failed pod stays up for a look inside
    sess = await svc.interactive.exec(wf, "flaky", ["sh", "-c", "echo $OSMO_OUTPUT"])
    assert await asyncio.wait_for(sess.wait(), 10) == {"exit_code": 0, "signal": None}
    fixed.write_text("")
    await svc.retry(wf, "flaky")
    await asyncio.wait_for(svc.wait(wf), 30)
    assert svc.get(wf)["status"] == "COMPLETED"
    attempts = svc.task(wf, "flaky")["attempts"]
    assert [(a["status"], a["exit_code"]) for a in attempts] == [("FAILED", 4), ("COMPLETED", 0)]
    await until(lambda: _gone(process_kubelet, first), 20)

    wf = await svc.submit(
        "workflow:\n  name: stop\n  tasks:\n"
        "  - {name: t, image: busybox, command: [sh, -c, 'echo up; sleep 60']}\n"
    )
    await until(lambda: _has_line(svc, wf, "up", "t"), 30)
    await svc.cancel(wf)
    await asyncio.wait_for(svc.wait(wf), 30)
    assert svc.task(wf, "t")["status"] == "FAILED_CANCELED"
    await until(lambda: _gone(process_kubelet, []), 20)  # no pod left, its processes ended


async def _gone(kubelet: Any, names: list[str]) -> bool:
    left = await pods(kubelet)
    live = [p for r in kubelet.pods.values() for p in r.procs.values() if p.returncode is None]
    return not (set(names) & set(left)) and (names or (not left and not live))


async def test_a_pod_whose_agent_never_got_its_task_before_a_restart_is_placed_again(
    agent_service: Any, process_kubelet: Any, tmp_path: Path
) -> None:
    port = free_port()
    tree = tmp_path / "agent-image"
    slow_init = ["sh", "-c", f"sleep 1.5; cp -a {tree}/. {tmp_path / 'm'}/agent/"]
    first = await agent_service(data="cp", interactive_port=port, agent_init_command=slow_init)
    wf = await first.submit(
        "workflow:\n  name: early\n  tasks:\n"
        "  - {name: t, image: busybox, command: [echo, hi], maxRetries: 1}\n"
    )
    await until(lambda: process_kubelet.manifests, 10)
    await first.stop()  # the init container still sleeps: its agent never met this one
    second = await agent_service(data="cp", interactive_port=port)
    await asyncio.wait_for(second.wait(wf), 60)
    attempts = second.task(wf, "t")["attempts"]
    assert attempts[0]["status"] == "FAILED_BACKEND_ERROR"
    assert "restarted before the pod's agent was given its task" in attempts[0]["message"]
    assert (second.get(wf)["status"], attempts[-1]["status"]) == ("COMPLETED", "COMPLETED")
