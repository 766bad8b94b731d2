"""Facts about the agent's host, probed once per agent: capacity and GPUs (the container
runtime: containers.py)."""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import socket
from pathlib import Path
from typing import Any

import psutil

PROBE_TIMEOUT = 5.0  # seconds for `nvidia-smi` / `<runtime> info`


async def run_probe(*argv: str) -> str | None:
    """stdout of a short command, or None when it is missing, fails or hangs."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), PROBE_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return out.decode(errors="replace") if proc.returncode == 0 else None


async def gpus() -> list[dict[str, Any]]:
    if shutil.which("nvidia-smi"):
        out = await run_probe("nvidia-smi", "--query-gpu=index,name", "--format=csv,noheader")
        rows = [line.split(",", 1) for line in (out or "").splitlines() if "," in line]
        try:
            found = [{"index": int(i), "name": name.strip()} for i, name in rows]
        except ValueError:  # not the output we asked for
            found = []
        if found:
            return found
    if Path("/etc/nv_tegra_release").exists():  # Jetson: one integrated GPU, no nvidia-smi
        try:
            model = Path("/proc/device-tree/model").read_text().strip("\0\n ")
        except OSError:
            model = "Jetson"
        return [{"index": 0, "name": f"{model} (integrated)"}]
    return []


async def capacity() -> dict[str, Any]:
    """What a scheduler needs to know of this machine."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return {
        "hostname": socket.gethostname(),
        "arch": platform.machine(),
        "cpus": cpus,
        "memory": psutil.virtual_memory().total,
        "gpus": await gpus(),
    }
