"""A kubelet that really runs pods: each container is a local process, for tests against kmock.

Images are ignored: the host's filesystem is the image, so every container needs `command`
(there is no image entrypoint to fall back on) and runs as root on the host network
(127.0.0.1), with PATH starting at this interpreter's directory (so `python` is the tests' one)
and HOME=/root. Each container has its own mount and PID namespace (`unshare`), so its
`emptyDir` and `secret` volumes are bind-mounted at their `mountPath`s and nothing outlives its
main process. Also emulated, because the in-pod agent depends on it: init containers in order
(a `restartPolicy: Always` one is a native sidecar, SIGTERMed after the regular containers
end), env (`value`, `secretKeyRef`, `fieldRef`), pod status patches like a node's, a growing log
subresource (stdout and stderr merged, on disk at `PodRun.log_path`), and deletion: SIGTERM to
each container's PID 1 (which, as in Kubernetes, ignores it without a handler), SIGKILL after
min(grace, 5) s. Needs root and util-linux `unshare`; `unavailable()` says why not.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kmock
from kubernetes.client.exceptions import ApiException

from tests.k8s.conftest import NAMESPACE, Kubelet, running_kubelet

log = logging.getLogger(__name__)
# A container: its own mount namespace and PID namespace (when its PID 1 ends, the kernel kills
# every process left in it, even ones that left the process group; when unshare is killed,
# --kill-child takes PID 1 along).
UNSHARE = [
    *("unshare", "--mount", "--propagation", "private"),
    *("--pid", "--fork", "--kill-child", "--mount-proc"),
]
Process = asyncio.subprocess.Process
MAX_GRACE = 5.0
BASE_PATH = (
    f"{Path(sys.executable).parent}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)


@functools.cache
def unavailable() -> str | None:
    """Why processes cannot run as pods here (None when they can)."""
    if os.geteuid() != 0:
        return "the process kubelet needs root (bind mounts in a mount namespace)"
    if shutil.which("unshare") is None:
        return "the process kubelet needs `unshare` (util-linux)"
    if subprocess.run([*UNSHARE, "true"], capture_output=True, check=False).returncode != 0:
        return f"`{' '.join(UNSHARE)}` is not permitted here (no CAP_SYS_ADMIN?)"
    return None


class Unsupported(ValueError):
    """The pod uses something this kubelet does not emulate (the pod fails with this message)."""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode  # killed by signal N: 128 + N


def _signal(proc: Process, sig: int) -> None:
    """SIGTERM goes to the container's PID 1 only (as a runtime sends it; like there, a PID 1
    without a handler ignores it); SIGKILL to unshare's process group, which ends the PID
    namespace and so every process of the container."""
    with contextlib.suppress(ProcessLookupError, PermissionError, FileNotFoundError):
        if sig == signal.SIGKILL:
            os.killpg(proc.pid, sig)
        elif proc.returncode is None:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            for pid in children:  # unshare's one child: the container's PID 1
                os.kill(int(pid), sig)


def _is_sidecar(spec: dict[str, Any]) -> bool:
    return spec.get("restartPolicy") == "Always"


def _make_mount_point(dst: Path, is_dir: bool) -> Path | None:
    """Create a missing mount point on the host; returns the top-most path created."""
    if dst.exists():
        return None
    top = dst
    while not top.parent.exists():
        top = top.parent
    if is_dir:
        dst.mkdir(parents=True)
    else:
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.touch()
    return top


def _remove_mount_point(top: Path) -> None:
    """Undo `_make_mount_point`, deepest first, leaving anything with content in it."""
    for path in [*sorted(top.rglob("*"), key=lambda p: -len(p.parts)), top]:
        with contextlib.suppress(OSError):
            if path.is_dir():
                path.rmdir()
            elif path.stat().st_size == 0:
                path.unlink()


def _container_status(spec: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    running = "running" in state
    return {
        "name": spec["name"],
        "image": spec.get("image", ""),
        "imageID": "",
        "ready": running,
        "started": running,
        "restartCount": 0,
        "state": state,
    }


@dataclass
class PodRun:
    """One pod on this node: its manifest, its directory (volumes/, logs/) and processes."""

    manifest: dict[str, Any]
    dir: Path
    procs: dict[str, Process] = field(default_factory=dict)
    states: dict[str, dict[str, Any]] = field(default_factory=dict)  # container -> k8s state
    volumes: dict[str, Path] = field(default_factory=dict)  # volume name -> host dir
    envs: dict[str, dict[str, str]] = field(default_factory=dict)  # container -> environment
    deleted: bool = False
    task: asyncio.Task[None] | None = None
    stopping: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.manifest["spec"])

    def log_path(self, container: str) -> Path:
        return self.dir / "logs" / f"{container}.log"

    def live(self, sidecars: bool | None = None) -> list[Process]:
        specs = self.spec.get("initContainers", []) + self.spec["containers"]
        kinds = {c["name"]: _is_sidecar(c) for c in specs}
        return [
            p
            for n, p in self.procs.items()
            if p.returncode is None and (sidecars is None or kinds[n] == sidecars)
        ]


class ProcessKubelet(Kubelet):
    """Runs each new pod of namespace `osmo` once, as local processes (see the module doc)."""

    def __init__(self, km: Any, api: Any, root: Path) -> None:
        super().__init__(km, api)
        self.root = root
        self.pods: dict[str, PodRun] = {}  # by name; a deleted pod leaves it when it is gone
        self.gone: list[PodRun] = []
        self.mount_points: list[Path] = []  # created on the host, removed by close()
        km["get", kmock.subresource("log")] << self._serve_log

    def log_path(self, pod: str, container: str) -> Path:
        return self.pods[pod].log_path(container)

    async def step(self) -> None:
        listed = await asyncio.to_thread(self.api.list_namespaced_pod, NAMESPACE)
        current = {p.metadata.name: p for p in listed.items}
        for name, run in list(self.pods.items()):
            pod = current.get(name)
            if pod is None or pod.metadata.deletion_timestamp:
                if not run.deleted:
                    run.deleted = True
                    grace = run.spec.get("terminationGracePeriodSeconds", 30)
                    run.stopping = asyncio.create_task(
                        self._stop(run.live(), min(grace, MAX_GRACE))
                    )
                if pod is None:
                    self.gone.append(self.pods.pop(name))
        for name, pod in current.items():
            if name not in self.pods and not pod.metadata.deletion_timestamp:
                raw = self.api.api_client.sanitize_for_serialization(pod)
                self.manifests.append(raw)
                run = PodRun(raw, self.root / f"{len(self.manifests):03d}-{name}")
                self.pods[name] = run
                run.task = asyncio.create_task(self._run_pod(run))

    def _serve_log(self, request: kmock.Request) -> Any:
        run = self.pods.get(str(request.name))
        if run is None:
            return kmock.Response(status=404, payload={"kind": "Status", "code": 404})
        container = request.params.get("container") or run.spec["containers"][0]["name"]
        path = run.log_path(container)
        text = path.read_bytes() if path.exists() else b""
        return kmock.Response(payload=text, headers={"Content-Type": "text/plain"})

    # --- one pod ----------------------------------------------------------------------------

    async def _run_pod(self, run: PodRun) -> None:
        try:
            if await self._prepare(run) and await self._init_containers(run):
                await self._main_containers(run)
        except Exception as e:  # a bug here, not in the pod: say so instead of hanging it
            log.exception("process kubelet: pod %s", run.name)
            await self._report(run, "Failed", reason="KubeletError", message=repr(e))

    async def _prepare(self, run: PodRun) -> bool:
        """Volumes and env, or the pod's status says why not."""
        specs = run.spec.get("initContainers", []) + run.spec["containers"]
        try:
            for c in specs:
                if not c.get("command"):
                    raise Unsupported(f"container {c['name']}: `command` is required (no images)")
            run.volumes = await self._volumes(run)
            run.envs = {c["name"]: await self._env(run, c) for c in specs}
        except Unsupported as e:
            await self._report(run, "Failed", reason="Unsupported", message=str(e))
            return False
        except (KeyError, ApiException) as e:  # a missing secret or key, as a node reports it
            why = {"reason": "CreateContainerConfigError", "message": f"{type(e).__name__}: {e}"}
            run.states = {c["name"]: {"waiting": why} for c in specs}
            await self._report(run, "Pending")
            return False
        (run.dir / "logs").mkdir(parents=True)
        return True

    async def _init_containers(self, run: PodRun) -> bool:
        """Each to completion in order (sidecars just start); False when the pod is over."""
        for c in run.spec.get("initContainers", []):
            if run.deleted:
                return False
            proc = await self._spawn(run, c)
            if _is_sidecar(c):
                continue
            await self._report(run, "Pending")
            if await self._wait(run, c["name"], proc) != 0:
                await self._stop_sidecars(run)
                await self._report(run, "Failed")
                return False
        return not run.deleted

    async def _main_containers(self, run: PodRun) -> None:
        specs = run.spec["containers"]
        procs = [await self._spawn(run, c) for c in specs]
        await self._report(run, "Running")
        waits = (self._wait(run, c["name"], p) for c, p in zip(specs, procs, strict=True))
        codes = await asyncio.gather(*waits)
        await self._stop_sidecars(run)
        await self._report(run, "Succeeded" if not any(codes) else "Failed")

    async def _volumes(self, run: PodRun) -> dict[str, Path]:
        paths: dict[str, Path] = {}
        for vol in run.spec.get("volumes", []):
            path = paths[vol["name"]] = run.dir / "volumes" / vol["name"]
            path.mkdir(parents=True)
            if "secret" in vol:
                await self._write_secret(vol["secret"], path)
            elif "emptyDir" not in vol:
                raise Unsupported(f"volume {vol['name']}: only emptyDir and secret are emulated")
        return paths

    async def _secret(self, name: str) -> dict[str, bytes]:
        secret = await asyncio.to_thread(self.api.read_namespaced_secret, name, NAMESPACE)
        data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        return data | {k: v.encode() for k, v in (secret.string_data or {}).items()}

    async def _write_secret(self, source: dict[str, Any], path: Path) -> None:
        data = await self._secret(source["secretName"])
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            target = path / item["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[item["key"]])
            target.chmod(item.get("mode", source.get("defaultMode", 0o644)))

    async def _env(self, run: PodRun, spec: dict[str, Any]) -> dict[str, str]:
        fields = {
            "metadata.name": run.name,
            "metadata.namespace": NAMESPACE,
            "status.podIP": "127.0.0.1",
        }
        env = {"PATH": BASE_PATH, "HOME": "/root", "HOSTNAME": run.name}
        for var in spec.get("env", []):
            source = var.get("valueFrom") or {}
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                env[var["name"]] = (await self._secret(ref["name"]))[ref["key"]].decode()
            elif "fieldRef" in source:
                path = source["fieldRef"]["fieldPath"]
                if path not in fields:
                    raise Unsupported(f"env {var['name']}: fieldRef {path} (only {list(fields)})")
                env[var["name"]] = fields[path]
            elif "valueFrom" in var:
                raise Unsupported(f"env {var['name']}: only secretKeyRef and fieldRef are emulated")
            else:
                env[var["name"]] = var.get("value", "")
        return env

    async def _spawn(self, run: PodRun, spec: dict[str, Any]) -> Process:
        for m in spec.get("volumeMounts", []):
            src = run.volumes[m["name"]] / m.get("subPath", "")
            if not src.exists():
                src.mkdir(parents=True)  # a missing subPath becomes a dir, as in k8s
            if created := _make_mount_point(Path(m["mountPath"]), src.is_dir()):
                self.mount_points.append(created)
        argv = [*UNSHARE, "sh", "-ec"]
        argv += [self._mount_script(spec, run.volumes), "pod-init", *spec["command"]]
        argv += spec.get("args", [])
        with run.log_path(spec["name"]).open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                env=run.envs[spec["name"]], start_new_session=True,
            )  # fmt: skip
        run.procs[spec["name"]] = proc
        run.states[spec["name"]] = {"running": {"startedAt": _now()}}
        if run.deleted:
            _signal(proc, signal.SIGKILL)
        return proc

    @staticmethod
    def _mount_script(spec: dict[str, Any], volumes: dict[str, Path]) -> str:
        """Shell lines run inside the container's mount namespace before it execs the command."""
        lines = []
        for m in spec.get("volumeMounts", []):
            src = volumes[m["name"]] / m.get("subPath", "")
            dst = shlex.quote(m["mountPath"])
            lines.append(f"mount --bind {shlex.quote(str(src))} {dst}")
            if m.get("readOnly"):
                lines.append(f"mount -o remount,bind,ro {dst}")
        workdir = shlex.quote(spec.get("workingDir", "/"))
        lines.append(f"mkdir -p {workdir} && cd {workdir}")  # a runtime creates it too
        return "\n".join([*lines, 'exec "$@"'])

    async def _wait(self, run: PodRun, name: str, proc: Process) -> int:
        code = _exit_code(await proc.wait())
        _signal(proc, signal.SIGKILL)  # nothing of the container outlives its PID 1
        ended = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": run.states[name]["running"]["startedAt"],
            "finishedAt": _now(),
        }
        run.states[name] = {"terminated": ended}
        return code

    async def _stop_sidecars(self, run: PodRun) -> None:
        await self._stop(run.live(sidecars=True), MAX_GRACE)
        for c in run.spec.get("initContainers", []):
            if _is_sidecar(c) and c["name"] in run.procs:
                await self._wait(run, c["name"], run.procs[c["name"]])  # records its end

    async def _stop(self, procs: list[Process], grace: float) -> None:
        """SIGTERM, and SIGKILL what is left after `grace` seconds."""
        for p in procs:
            _signal(p, signal.SIGTERM)
        # asyncio.wait, not wait_for(gather): nothing is cancelled (and left unretrieved) when
        # the grace runs out or this stop itself is cancelled by close()
        waits = [asyncio.ensure_future(p.wait()) for p in procs]
        if waits:
            await asyncio.wait(waits, timeout=grace)
        for p in procs:
            _signal(p, signal.SIGKILL)
        await asyncio.gather(*waits)

    async def _report(self, run: PodRun, phase: str, **extra: str) -> None:
        def statuses(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
            initializing = {"waiting": {"reason": "PodInitializing"}}
            return [_container_status(c, run.states.get(c["name"], initializing)) for c in specs]

        status = {
            "phase": phase,
            "podIP": "127.0.0.1",
            "hostIP": "127.0.0.1",
            "initContainerStatuses": statuses(run.spec.get("initContainers", [])),
            "containerStatuses": statuses(run.spec["containers"]),
            **extra,
        }
        if not run.deleted:  # a deleted pod has no status left to patch
            with contextlib.suppress(Exception):
                await self._patch(run.name, status)

    async def close(self) -> None:
        """Kill every process of every pod, and remove the pods' directories."""
        runs = [*self.pods.values(), *self.gone]
        tasks = [t for r in runs for t in (r.task, r.stopping) if t]
        for t in tasks:
            t.cancel()
        procs = [p for r in runs for p in r.procs.values()]
        for p in procs:
            _signal(p, signal.SIGKILL)
        await asyncio.gather(*(p.wait() for p in procs))
        await asyncio.gather(*tasks, return_exceptions=True)
        shutil.rmtree(self.root, ignore_errors=True)
        for top in reversed(self.mount_points):
            _remove_mount_point(top)


@contextlib.asynccontextmanager
async def running_process_kubelet(
    km: Any, root: Path | None = None
) -> AsyncIterator[ProcessKubelet]:
    root = root or Path(tempfile.mkdtemp(prefix="osmo-kubelet-"))
    async with running_kubelet(km, lambda km, api: ProcessKubelet(km, api, root)) as k:
        yield k
