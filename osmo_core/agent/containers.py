"""Tasks with an `image`: the container runtime of this host and how a task runs in it.

A task that names an image runs as `<runtime> run ...` on a host where docker or podman
answers (`Runtimes`, probed again whenever a runtime's program appears, goes or changes), unless
its pool says `containers: "off"`. Inside, paths are OSMO's: {{output}} is /osmo/data/output,
{{input:N}} is /osmo/data/input/N (read-only), the task's folder is the working directory
/osmo/run, and `files:`, checkpoints and credential folders sit at their absolute paths. The
container shares the host's network (ports, kernels and forwards work as for a host task).
The runtime's client is the attempt's process: SIGTERM reaches the container through it, and a
SIGKILL of the client is followed by `remove_container`. A container is not started with `--rm`:
the agent removes it once its attempt has ended, so a container whose agent died keeps its exit
code. Every container is labelled with the agent's root, so a restarted agent finds those its
predecessor left and adopts them (adopt.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import DEVNULL, PIPE

from ..wire import LaunchRequest
from .host import run_probe
from .identity import TaskIdentity
from .workdir import OUTPUT_IN, WORKDIR_IN, Prepared

LABEL = "osmo.root"  # the agent root whose attempt a container is
PIDS_LIMIT = 4096  # processes per container: a fork bomb stays in its task
RUNTIMES = ("docker", "podman")
REPROBE_NONE = 30.0  # seconds: a runtime that did not answer (daemon down) is asked again
PULL_TIMEOUT = 1800.0  # seconds for one image pull
IMAGE_SEEN = 60.0  # seconds an image found here is trusted to still be here
START_WAIT = 30.0  # seconds an exec waits for the container of a RUNNING attempt to run
REMOVE_BATCH = 1.0  # seconds an ended container waits to be removed with others (Removals)
CDI_DIRS = (Path("/etc/cdi"), Path("/var/run/cdi"))  # where NVIDIA's CDI spec is generated
JETSON = Path("/etc/nv_tegra_release")  # present on NVIDIA Jetson (L4T)
# podman's `--init` (catatonit): PID 1 that passes SIGTERM on; docker brings its own
PODMAN_INIT = (Path("/usr/libexec/podman/catatonit"), Path("/usr/bin/catatonit"))
_OOM_EXIT = 137  # what a runtime client returns for a container killed by SIGKILL


class PullError(Exception):
    """The image could not be pulled; the message is the registry's."""


async def detect_runtime() -> str | None:
    """docker or podman, counted only when `<rt> info` answers: a client without a daemon
    (common on laptops and CI) cannot run anything."""
    for rt in RUNTIMES:
        if shutil.which(rt) and await run_probe(rt, "info") is not None:
            return rt
    return None


def _stamp() -> tuple[tuple[str, int] | None, ...]:
    """Which runtime programs exist, and their versions on disk (installs change mtimes)."""
    out = []
    for rt in RUNTIMES:
        path = shutil.which(rt)
        try:
            out.append((path, os.stat(path).st_mtime_ns) if path else None)
        except OSError:  # removed between which and stat
            out.append(None)
    return tuple(out)


class Runtimes:
    """The host's runtime, asked for at each launch: probed again when a runtime program
    appears, goes or is replaced (no agent restart after installing podman), and every
    REPROBE_NONE seconds while none answered (a docker daemon started later)."""

    def __init__(self) -> None:
        self._stamp: object = None
        self._value: str | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def current(self) -> str | None:
        stamp = _stamp()
        stale = self._value is None and time.monotonic() - self._at > REPROBE_NONE
        if stamp != self._stamp or stale:
            async with self._lock:
                if stamp != self._stamp or stale:
                    self._value = await detect_runtime()
                    self._stamp, self._at = stamp, time.monotonic()
        return self._value


async def _quietly(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL
    )
    await proc.wait()


async def remove_container(runtime: str, name: str) -> None:
    await _quietly(runtime, "rm", "-f", name)


class Removals:
    """Ended containers, removed in batches: one `<rt> rm` costs about as much CPU as a
    container's start, so those that end within REMOVE_BATCH seconds of each other go in one
    call (a fan-out's tasks ending together, a chain's tasks one after another)."""

    def __init__(self) -> None:
        self._pending: dict[str, list[str]] = {}  # runtime -> names of the batch being gathered

    async def remove(self, runtime: str, name: str) -> None:
        """Remove container `name`, in the batch of those queued within REMOVE_BATCH seconds
        (only the batch's first call waits and removes; the others return at once)."""
        names = self._pending.setdefault(runtime, [])
        names.append(name)
        if len(names) > 1:
            return
        await asyncio.sleep(REMOVE_BATCH)
        del self._pending[runtime]
        await _quietly(runtime, "rm", "-f", *names)


async def kill_container(runtime: str, name: str, sig: str) -> None:
    """Send `sig` to the container's first process (its init passes it on)."""
    await _quietly(runtime, "kill", "--signal", sig, name)


async def probe_container(runtime: str, name: str) -> dict[str, str] | None:
    """The container's status and LABEL; None when there is no such container."""
    fmt = f'{{{{.State.Status}}}} {{{{index .Config.Labels "{LABEL}"}}}}'
    out = await run_probe(runtime, "container", "inspect", "--format", fmt, name)
    if out is None or not out.strip():
        return None
    status, _, label = out.strip().partition(" ")
    return {"status": status, LABEL: label}


# An adopted container's process (adopt.py), run as `sh -c ADOPT_SCRIPT osmo-adopt RUNTIME NAME`:
# its log from the start (the agent skips what it has), then its exit code as this exit status.
ADOPT_SCRIPT = '"$1" logs -f "$2"; code=$("$1" wait "$2") && exit "$code"; exit 125'


async def container_pid(runtime: str, name: str) -> int | None:
    """The host pid of the container's first process; None before it started or after."""
    out = await run_probe(runtime, "inspect", "--format", "{{.State.Pid}}", name)
    return int(out) if out and out.strip().isdigit() and int(out) > 0 else None


async def first_pid(runtime: str, name: str, timeout: float = START_WAIT) -> int | None:
    """The container's first process once it runs, asked every 0.1 s for up to `timeout`
    seconds: an attempt is RUNNING from its runtime client's start, a moment before its
    container is."""
    for _ in range(int(timeout / 0.1)):
        if pid := await container_pid(runtime, name):
            return pid
        await asyncio.sleep(0.1)
    return None


def container_name(key: str, root: Path | str) -> str:
    """The container of attempt `key` under the agent on `root`. The runtime's names are the
    host's (docker's daemon is shared by every user): two control planes there (two users'
    homes, two test sessions) may each run a workflow `serial-1`, so the root is in the name."""
    digest = hashlib.sha1(f"{root}\0{key}".encode()).hexdigest()[:8]
    return f"osmo-{key.replace('/', '-')}-{digest}"


def gpu_args(runtime: str, gpus: list[int], cdi_dirs: tuple[Path, ...], jetson: bool) -> list[str]:
    """The runtime's arguments for the task's GPUs (from NVIDIA's container toolkit docs):
    docker `--gpus device=…`, podman CDI devices `nvidia.com/gpu=N` (a CDI spec must exist:
    `nvidia-ctk cdi generate`), Jetson's L4T runtime `--runtime nvidia`. ValueError: no way
    to hand this host's GPUs to a container."""
    if not gpus:
        return []
    if jetson:  # one integrated GPU, reached through the L4T runtime (docker or podman)
        return ["--runtime", "nvidia"]
    if runtime == "docker":
        return ["--gpus", "device=" + ",".join(map(str, gpus))]
    if not any(d.is_dir() and any(d.glob("nvidia*.*")) for d in cdi_dirs):
        raise ValueError(
            "podman needs NVIDIA's CDI spec to hand GPUs to a container and none is in "
            f"{' or '.join(map(str, cdi_dirs))} (generate it: nvidia-ctk cdi generate "
            "--output=/etc/cdi/nvidia.yaml)"
        )
    return [f"--device=nvidia.com/gpu={g}" for g in gpus]


def container_argv(
    runtime: str,
    name: str,
    root: Path,
    work: Path,
    req: LaunchRequest,
    prep: Prepared,
    secret_names: list[str],
    user: str | None = None,
    command: list[str] | None = None,
) -> list[str]:
    """`<rt> run` of the task (or of `command` in its place: a hold's). As on Kubernetes, the
    command replaces the image's entrypoint. CUDA_VISIBLE_DEVICES is left to the runtime:
    inside, the given GPUs are renumbered. ValueError: the GPUs cannot be handed over here."""
    assert req.image is not None
    argv = [runtime, "run", "--name", name, "--label", f"{LABEL}={root}"]
    argv += ["--network", "host", "-v", f"{work}:{WORKDIR_IN}", "-w", WORKDIR_IN]
    argv += ["--pull", "never", "--pids-limit", str(PIDS_LIMIT), "--cpus", f"{req.cpu:g}"]
    if req.memory:
        argv += ["--memory", str(req.memory)]
    if user is not None:
        argv += ["--user", user]
    if runtime == "docker" or any(p.exists() for p in PODMAN_INIT):
        argv.append("--init")  # a shell as PID 1 would ignore the SIGTERM of a cancel
    for host, inside, readonly in prep.mounts:
        argv += ["-v", f"{host}:{inside}" + (":ro" if readonly else "")]
    for k, v in {**prep.env, "OSMO_OUTPUT": OUTPUT_IN}.items():
        argv += ["-e", f"{k}={v}"]
    for k in secret_names:  # the value comes from the client's environment, not its argv
        argv += ["-e", k]
    argv += gpu_args(runtime, req.gpus, CDI_DIRS, JETSON.exists())
    first, *rest = command or prep.argv
    return [*argv, "--entrypoint", first, req.image, *rest]


def user_of(identity: TaskIdentity | None) -> str | None:
    """`--user` of an isolated task (identity.py): its uid inside as outside."""
    return f"{identity.uid}:{identity.gid}" if identity is not None else None


def exec_argv(runtime: str, name: str, argv: list[str], tty: bool, user: str | None) -> list[str]:
    """A command in a running container (exec, terminals, kernels), in its workdir and env."""
    opts = ["-i", *(["-t"] if tty else []), *(["--user", user] if user else [])]
    return [runtime, "exec", *opts, name, *argv]


def oom_message(memory: int | None, code: int) -> str:
    """A container killed by SIGKILL that nobody canceled, with a memory limit: the kernel's
    OOM killer (cgroup v1 hosts do not tell podman, so the exit code says it)."""
    if code != _OOM_EXIT or not memory:
        return ""
    return f"OOM: killed by the kernel at its memory limit ({memory / 2**20:g} MiB)"


def not_enforced(req: LaunchRequest) -> list[str]:
    """What a container cannot enforce of the task's request here."""
    if req.storage:
        return [f"storage {req.storage / 2**30:g} GiB not enforced (no disk quota for containers)"]
    return []


def registry_auth(image: str, creds: dict[str, dict[str, object]]) -> dict[str, str] | None:
    """OSMO's REGISTRY credentials (`registry`, `username`, `auth`) for the image's registry,
    as the content of a docker/podman auth file; None when none applies."""
    host = image.split("/", 1)[0] if "/" in image else "docker.io"
    if "." not in host and ":" not in host and host != "localhost":
        host = "docker.io"  # library/ubuntu, user/image: Docker Hub
    auths = {}
    for cred in creds.values():
        if cred.get("registry") == host and isinstance(cred.get("auth"), str):
            token = f"{cred.get('username', '')}:{cred['auth']}".encode()
            auths[host] = {"auth": base64.b64encode(token).decode()}
    return {"config.json": json.dumps({"auths": auths})} if auths else None


async def ensure_image(
    runtime: str,
    image: str,
    auth_dir: Path | None,
    progress: Callable[[str], None],
    seen: dict[tuple[str, str], float],
) -> None:
    """The image, pulled when it is not here (IfNotPresent); each line the runtime prints
    while pulling goes to `progress`. `auth_dir`: a folder holding config.json (REGISTRY
    credentials; only its path is ever passed). `seen`: images found here lately, not asked
    about again for IMAGE_SEEN seconds (a chain of tasks asks once). PullError with the
    runtime's message."""
    if time.monotonic() - seen.get((runtime, image), -IMAGE_SEEN) < IMAGE_SEEN:
        return
    if await run_probe(runtime, "image", "inspect", "--format", "{{.Id}}", image) is not None:
        seen[(runtime, image)] = time.monotonic()
        return
    env = dict(os.environ)
    if auth_dir is not None:
        env["DOCKER_CONFIG"] = str(auth_dir)  # docker
        env["REGISTRY_AUTH_FILE"] = str(auth_dir / "config.json")  # podman
    progress(f"pulling image {image} ({runtime})")
    proc = await asyncio.create_subprocess_exec(
        runtime, "pull", image, stdin=DEVNULL, stdout=PIPE, stderr=PIPE, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    errors: list[str] = []

    async def lines(stream: asyncio.StreamReader, keep: bool) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            if text:
                progress(text)
                if keep:
                    errors.append(text)

    try:
        await asyncio.wait_for(
            asyncio.gather(lines(proc.stdout, False), lines(proc.stderr, True), proc.wait()),
            PULL_TIMEOUT,
        )
    except asyncio.TimeoutError:
        raise PullError(f"pulling {image} took over {PULL_TIMEOUT:g} s") from None
    finally:
        if proc.returncode is None:  # timed out or canceled: the pull stops with us
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        reason = next((e for e in reversed(errors) if "rror" in e), errors[-1] if errors else "")
        raise PullError(f"cannot pull image {image}: {reason or f'exit {proc.returncode}'}")
    progress(f"image {image} pulled")
    seen[(runtime, image)] = time.monotonic()
