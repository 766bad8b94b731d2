"""A kernel inside a running task, straight through the Service (the embedded engine's path:
osmo_core/interactive/kernel.py), with a real ipykernel and jupyter_client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from jupyter_client.asynchronous import AsyncKernelClient

from osmo_core.errors import Conflict
from osmo_core.interactive import kernel_boot
from osmo_core.interactive.kernel import RemoteKernel
from tests.interactive.conftest import long_spec, running, until


async def stream_of(kc: AsyncKernelClient, msg_id: str, until_text: str, timeout: float) -> str:
    out = ""
    deadline = time.monotonic() + timeout
    while until_text not in out:
        left = deadline - time.monotonic()
        assert left > 0, f"waited {timeout}s for {until_text!r}; got {out!r}"
        msg = await kc.get_iopub_msg(timeout=left)
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "stream":
            out += msg["content"]["text"]
    return out


async def test_kernel_runs_in_the_task_and_ends_with_it_saying_why(service, tmp_path: Path):
    tmp = tmp_path / "task-tmp"  # the task's TMPDIR: where the kernel's boot makes its folder
    tmp.mkdir()
    wf = await service.submit(long_spec(env={"TMPDIR": str(tmp)}))
    await running(service, wf)
    k = await RemoteKernel.start(service, wf, "main", uuid.uuid4().hex.encode())
    kc = AsyncKernelClient()
    kc.load_connection_info(k.connection_info())
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=20)
        code = (
            "import os, tempfile; print(open('marker').read().strip(), "
            "os.environ['TASK_SECRET'], tempfile.gettempdir())"
        )
        said = await stream_of(kc, kc.execute(code), str(tmp), 20)
        assert f"ready inside-the-task {tmp}" in said
        assert list(tmp.iterdir()) == []  # its boot folder went once the kernel was up

        busy = kc.execute("import time; print('busy', flush=True); time.sleep(60)")
        await stream_of(kc, busy, "busy", 20)
        await service.cancel(wf)
        said = await stream_of(kc, busy, "shut down", 20)
        assert f"[osmo] task {wf}/main ended (FAILED_CANCELED" in said
        assert await asyncio.wait_for(k.wait(), 10) is not None
        assert k.reason is not None and "ended (FAILED_CANCELED" in k.reason

        def gone() -> bool:
            try:
                os.kill(int(k.remote["pid"]), 0)
            except ProcessLookupError:
                return True
            return False

        await until(gone, timeout=10, what="the kernel process to exit")
        assert list(tmp.iterdir()) == []
    finally:
        kc.stop_channels()
        await k.close()
    with pytest.raises(Conflict, match="needs a RUNNING task"):
        await RemoteKernel.start(service, wf, "main", b"k")


def test_a_kernel_that_does_not_come_up_leaves_no_folder(tmp_path: Path) -> None:
    """The boot's own path, with a kernel script that exits at once."""
    done = _boot(tmp_path, {"source": "import sys; sys.stderr.write('no luck'); sys.exit(5)"})
    assert done.returncode == 1, done
    assert "the kernel did not come up (exit 5)" in done.stderr and "no luck" in done.stderr
    assert list(tmp_path.iterdir()) == []


def _boot(tmp_path: Path, cfg: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """The boot's own path, as the control plane runs it in a task (`python -c SOURCE boot`):
    `cfg` over a key and the kernel's real source; its folder in `tmp_path`."""
    argv, stdin, env = _boot_args(tmp_path, cfg)
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, timeout=60)


def _boot_args(tmp_path: Path, cfg: dict[str, Any]) -> tuple[list[str], str, dict[str, str]]:
    source = Path(kernel_boot.__file__).read_text()
    stdin = json.dumps({"key": "k", "source": source, **cfg})
    return [sys.executable, "-c", source, "boot"], stdin, {**os.environ, "TMPDIR": str(tmp_path)}


def test_a_boot_killed_while_its_kernel_starts_leaves_no_folder(tmp_path: Path) -> None:
    """The exec that boots a kernel can die before the kernel listens (its channel dropped,
    the control plane stopped): the kernel, which outlives it, removes the folder holding its
    key itself (fourteen such folders were left in /tmp over a day of test runs)."""
    argv, stdin, env = _boot_args(tmp_path, {"orphan_after": 2})
    boot = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    assert boot.stdin is not None
    boot.stdin.write(stdin.encode())
    boot.stdin.close()
    kernels: list[psutil.Process] = []
    try:
        for _ in range(300):  # bounded: 30 s for the boot to start its kernel
            kernels = [
                p
                for p in psutil.process_iter(["cmdline"])
                if str(tmp_path) in " ".join(p.info["cmdline"] or []) and p.pid != boot.pid
            ]
            if kernels or boot.poll() is not None:
                break
            time.sleep(0.1)
        assert kernels, "the boot started no kernel"
        boot.kill()  # while the kernel imports ipykernel, before it listens
        boot.wait()
        for _ in range(300):  # bounded: 30 s for the kernel to come up and clean up
            if not any(tmp_path.iterdir()):
                break
            time.sleep(0.1)
        assert list(tmp_path.iterdir()) == []
    finally:
        boot.kill()
        for k in kernels:
            with contextlib.suppress(psutil.NoSuchProcess):
                k.kill()


def _boot_alone(tmp_path: Path, orphan_after: float) -> dict[str, Any]:
    """A kernel started by the boot, with no control plane after it."""
    done = _boot(tmp_path, {"orphan_after": orphan_after})
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"  # ended, until init reaps it


def _ends_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_kernel_no_control_plane_reaches_ends_itself(tmp_path: Path) -> None:
    """A start the control plane abandoned (it stopped or was killed while the kernel booted)
    left a kernel no one could reach or end, for good (nine in one CI run)."""
    pid = int(_boot_alone(tmp_path, orphan_after=2)["pid"])
    try:
        assert _ends_within(pid, 15), "the lone kernel is still running"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_kernel_lives_while_its_control_connection_is_open_then_ends_alone(
    tmp_path: Path,
) -> None:
    booted = _boot_alone(tmp_path, orphan_after=2)
    pid = int(booted["pid"])
    try:
        control = socket.create_connection(("127.0.0.1", int(booted["osmo_port"])), timeout=5)
        time.sleep(4)  # twice orphan_after, connected
        assert not _gone(pid)
        control.close()
        assert _ends_within(pid, 15), "the kernel outlived its last control connection"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
