"""Tasks with an `image`: the container runtime of this host and how a task runs in it.

A task that names an image runs as `<runtime> run ...` on a host where docker or podman
answers (`detect_runtime`), with its workdir mounted at the same path inside so every resolved
path stays valid; elsewhere the supervisor runs the command on the host and says so in its log.
The runtime's client is the attempt's process: SIGTERM reaches the container through it, and a
SIGKILL of the client is followed by `remove_container`.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from pathlib import Path
from subprocess import DEVNULL

from .host import run_probe
from .workdir import Prepared


async def detect_runtime() -> str | None:
    """docker or podman, counted only when `<rt> info` answers: a client without a daemon
    (common on laptops and CI) cannot run anything."""
    for rt in ("docker", "podman"):
        if shutil.which(rt) and await run_probe(rt, "info") is not None:
            return rt
    return None


async def remove_container(runtime: str, name: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        runtime, "rm", "-f", name, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL
    )
    await proc.wait()


def container_name(key: str) -> str:
    digest = hashlib.sha1(key.encode()).hexdigest()[:8]
    return f"osmo-{key.replace('/', '-')}-{digest}"


def container_argv(
    runtime: str,
    name: str,
    d: Path,
    image: str,
    gpus: list[int],
    prep: Prepared,
    output: str,
    secret_names: list[str],
) -> list[str]:
    """`<rt> run` with the workdir at the same path inside, so resolved paths stay valid.
    CUDA_VISIBLE_DEVICES is left to the runtime: inside, the given GPUs are renumbered."""
    argv = [runtime, "run", "--rm", "--name", name, "-v", f"{d}:{d}", "-w", str(d)]
    for host, inside in prep.mounts:
        argv += ["-v", f"{host}:{inside}"]
    for k, v in {**prep.env, "OSMO_OUTPUT": output}.items():
        argv += ["-e", f"{k}={v}"]
    for k in secret_names:  # the value comes from the client's environment, not its argv
        argv += ["-e", k]
    if gpus and runtime == "docker":
        argv += ["--gpus", "device=" + ",".join(map(str, gpus))]
    elif gpus:
        argv += [f"--device=nvidia.com/gpu={g}" for g in gpus]
    return [*argv, image, *prep.argv]
