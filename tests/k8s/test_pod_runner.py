"""The process kubelet (tests/k8s/pod_runner.py) against kmock with the official client: pods'
containers really run as local processes."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Any

import pytest

from tests.k8s.conftest import NAMESPACE, api_for, until
from tests.k8s.pod_runner import ProcessKubelet, running_process_kubelet, unavailable


def _c(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": ["sh", "-c", script], **extra}


async def _create(api: Any, name: str, spec: dict[str, Any]) -> None:
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}
    await asyncio.to_thread(api.create_namespaced_pod, NAMESPACE, body)


async def _ended(api: Any, name: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        pod = await asyncio.to_thread(api.read_namespaced_pod, name, NAMESPACE)
        raw: dict[str, Any] = api.api_client.sanitize_for_serialization(pod)
        status = raw.get("status") or {}
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status: dict[str, Any] = await until(check, 10)
    return status


async def _log(api: Any, name: str, container: str | None = None) -> str:
    extra = {"container": container} if container else {}
    return str(await asyncio.to_thread(api.read_namespaced_pod_log, name, NAMESPACE, **extra))


def _terminated(status: dict[str, Any], key: str = "containerStatuses") -> dict[str, Any]:
    return {c["name"]: c["state"].get("terminated") for c in status.get(key) or []}


async def test_init_container_fills_an_empty_dir_the_main_container_reads(
    kmock: Any, process_kubelet: ProcessKubelet, tmp_path: Path
) -> None:
    api = api_for(str(kmock.url))
    mnt = str(tmp_path / "mnt" / "shared")
    spec = {
        "volumes": [{"name": "shared", "emptyDir": {}}],
        "initContainers": [
            _c(
                "place",
                f"echo placed > {mnt}/agent",
                volumeMounts=[{"name": "shared", "mountPath": mnt}],
            )
        ],
        "containers": [
            _c(
                "task",
                f'cat {mnt}/agent; echo "$POD/$NS/$IP"; echo oops >&2; pwd; '
                f"touch {mnt}/x 2>/dev/null || echo ro",
                volumeMounts=[{"name": "shared", "mountPath": mnt, "readOnly": True}],
                workingDir=str(tmp_path / "work"),
                env=[
                    {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                    {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                ],
            )
        ],
    }
    await _create(api, "p-ok", spec)
    status = await _ended(api, "p-ok")
    assert status["phase"] == "Succeeded"
    task = _terminated(status)["task"]
    assert task["exitCode"] == 0 and task["reason"] == "Completed"
    assert _terminated(status, "initContainerStatuses")["place"]["exitCode"] == 0
    expected = f"placed\np-ok/osmo/127.0.0.1\noops\n{tmp_path}/work\nro\n"  # ro: read-only
    assert await _log(api, "p-ok") == expected
    assert await _log(api, "p-ok", "place") == ""
    # the bind mount lived only in the containers' mount namespaces
    assert not os.listdir(mnt)
    shared = process_kubelet.pods["p-ok"].dir / "volumes" / "shared"
    assert (shared / "agent").read_text() == "placed\n"


async def test_failing_main_container_fails_the_pod(
    kmock: Any, process_kubelet: ProcessKubelet
) -> None:
    api = api_for(str(kmock.url))
    await _create(api, "p-fail", {"containers": [_c("task", "echo before; exit 3")]})
    status = await _ended(api, "p-fail")
    assert status["phase"] == "Failed"
    assert _terminated(status)["task"]["exitCode"] == 3
    assert _terminated(status)["task"]["reason"] == "Error"
    assert await _log(api, "p-fail", "task") == "before\n"


async def test_failing_init_container_never_starts_the_main_one(
    kmock: Any, process_kubelet: ProcessKubelet, tmp_path: Path
) -> None:
    api = api_for(str(kmock.url))
    marker = tmp_path / "ran"
    spec = {
        "initContainers": [_c("init", "exit 7")],
        "containers": [_c("task", f"touch {marker}")],
    }
    await _create(api, "p-init", spec)
    status = await _ended(api, "p-init")
    assert status["phase"] == "Failed"
    init = _terminated(status, "initContainerStatuses")["init"]
    assert init["exitCode"] == 7 and init["reason"] == "Error"
    assert _terminated(status) == {"task": None}
    assert not marker.exists()


async def test_secret_volume_and_secret_env(
    kmock: Any, process_kubelet: ProcessKubelet, tmp_path: Path
) -> None:
    api = api_for(str(kmock.url))
    token = base64.b64encode(b"s3cret").decode()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "data": {"token": token},
        "stringData": {"ca.pem": "CERT"},
    }
    await asyncio.to_thread(api.create_namespaced_secret, NAMESPACE, secret)
    mnt = tmp_path / "etc" / "creds"
    vol = {"secretName": "creds", "defaultMode": 0o400, "items": [{"key": "ca.pem", "path": "ca"}]}
    ref = {"secretKeyRef": {"name": "creds", "key": "token"}}
    spec = {
        "volumes": [
            {"name": "creds", "secret": vol},
            {"name": "all", "secret": {"secretName": "creds"}},
        ],
        "containers": [
            _c(
                "task",
                f'cat {mnt}/ca; echo; stat -c %a {mnt}/ca; echo "$TOKEN"; cat /tmp/tok/token',
                env=[{"name": "TOKEN", "valueFrom": ref}],
                volumeMounts=[
                    {"name": "creds", "mountPath": str(mnt)},
                    {"name": "all", "mountPath": "/tmp/tok/token", "subPath": "token"},
                ],
            )
        ],
    }
    await _create(api, "p-secret", spec)
    status = await _ended(api, "p-secret")
    assert status["phase"] == "Succeeded", await _log(api, "p-secret")
    assert await _log(api, "p-secret") == "CERT\n400\ns3cret\ns3cret"


async def test_native_sidecar_is_terminated_after_the_main_container(
    kmock: Any, process_kubelet: ProcessKubelet, tmp_path: Path
) -> None:
    api = api_for(str(kmock.url))
    sidecar = 'trap "echo term; exit 0" TERM; echo up; while :; do sleep 0.05; done'
    spec = {
        "initContainers": [_c("side", sidecar, restartPolicy="Always")],
        "containers": [_c("task", "sleep 0.3; echo main")],
    }
    await _create(api, "p-side", spec)
    status = await _ended(api, "p-side")
    assert status["phase"] == "Succeeded"
    side = _terminated(status, "initContainerStatuses")["side"]
    task = _terminated(status)["task"]
    assert side["exitCode"] == 0 and task["exitCode"] == 0
    assert side["finishedAt"] >= task["finishedAt"]
    assert await _log(api, "p-side", "side") == "up\nterm\n"
    assert await _log(api, "p-side") == "main\n"


async def test_deleted_pod_is_killed(kmock: Any, process_kubelet: ProcessKubelet) -> None:
    api = api_for(str(kmock.url))
    stubborn = 'trap "echo ignored" TERM; echo up; while :; do sleep 0.05; done'
    spec = {"terminationGracePeriodSeconds": 1, "containers": [_c("task", stubborn)]}
    await _create(api, "p-del", spec)
    run = await until(lambda: process_kubelet.pods.get("p-del"))
    log = run.log_path("task")
    await until(lambda: log.exists() and log.read_text() == "up\n")
    assert await _log(api, "p-del") == "up\n"  # served while it runs
    proc = run.procs["task"]
    await asyncio.to_thread(api.delete_namespaced_pod, "p-del", NAMESPACE)
    await until(lambda: proc.returncode is not None, 5)
    assert proc.returncode == -9  # it ignored SIGTERM, so SIGKILL after the 1 s grace
    assert log.read_text() == "up\nignored\n"
    await until(lambda: "p-del" not in process_kubelet.pods)


async def test_unsupported_spec_fails_and_a_missing_secret_waits(
    kmock: Any, process_kubelet: ProcessKubelet
) -> None:
    api = api_for(str(kmock.url))
    await _create(api, "p-nocmd", {"containers": [{"name": "task", "image": "busybox"}]})
    status = await _ended(api, "p-nocmd")
    assert status["phase"] == "Failed" and status["reason"] == "Unsupported"
    assert "container task: `command` is required" in status["message"]
    ref = {"secretKeyRef": {"name": "absent", "key": "k"}}
    spec = {"containers": [_c("task", "true", env=[{"name": "X", "valueFrom": ref}])]}
    await _create(api, "p-nosecret", spec)

    async def waiting() -> dict[str, Any] | None:
        pod = await asyncio.to_thread(api.read_namespaced_pod, "p-nosecret", NAMESPACE)
        statuses = (pod.status and pod.status.container_statuses) or []
        return statuses[0].state.waiting if statuses else None

    why = await until(waiting)
    assert why.reason == "CreateContainerConfigError" and "404" in why.message


async def test_teardown_kills_processes_and_removes_what_it_created(
    kmock: Any, tmp_path: Path
) -> None:
    if reason := unavailable():
        pytest.skip(reason)
    api = api_for(str(kmock.url))
    mnt = tmp_path / "made" / "by" / "kubelet"
    spec = {
        "volumes": [{"name": "v", "emptyDir": {}}],
        "containers": [
            _c("task", "echo up; sleep 60", volumeMounts=[{"name": "v", "mountPath": str(mnt)}])
        ],
    }
    async with running_process_kubelet(kmock, tmp_path / "kubelet") as k:
        await _create(api, "p-hang", spec)
        run = await until(lambda: k.pods.get("p-hang"))
        await until(lambda: run.log_path("task").exists() and run.log_path("task").read_text())
        proc = run.procs["task"]
        assert mnt.is_dir()
    assert proc.returncode == -9
    assert not (tmp_path / "kubelet").exists() and not (tmp_path / "made").exists()


def _processes_with(marker: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes().decode(errors="replace"):
                found.append(cmdline.parent.name)
        except OSError:  # ended meanwhile
            continue
    return found


async def test_nothing_outlives_a_container(kmock: Any, process_kubelet: ProcessKubelet) -> None:
    api = api_for(str(kmock.url))
    # a process in its own session (as the agent starts tasks) has left the process group
    script = "setsid sleep 60.4242 & echo $$; sleep 0.5"
    await _create(api, "p-leak", {"containers": [_c("task", script)]})
    run = await until(lambda: process_kubelet.pods.get("p-leak"))
    await until(lambda: run.log_path("task").exists() and run.log_path("task").read_text())
    assert run.log_path("task").read_text() == "1\n"  # PID 1 of its own PID namespace
    assert _processes_with("60.4242")
    status = await _ended(api, "p-leak")
    assert status["phase"] == "Succeeded"
    await until(lambda: not _processes_with("60.4242"), 2)
