"""Tasks with an `image` on docker (Debian's docker.io, installed by .ci/run): a dockerd of the
test's own, on a private socket (DOCKER_HOST), so no other test's agent sees it; the test image
loaded from podman's store. Skipped, saying why, where dockerd is missing or cannot start."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from osmo_core.agent.containers import container_name
from osmo_core.wire import Exited, LogLine, StartFailed
from tests.core.conftest import BackendFactory, sh
from tests.core.test_containers import _until_gone, adoption

START = 60.0  # seconds for dockerd (and the containerd it starts) to answer


@pytest.fixture(scope="module")
def docker_host(container_image: str) -> Iterator[str]:
    """DOCKER_HOST of a dockerd started for these tests, with the test image loaded."""
    if not shutil.which("dockerd") or not shutil.which("docker"):
        pytest.skip("dockerd is not installed (.ci/run installs docker.io)")
    d = Path(tempfile.mkdtemp(prefix="osmo-dockerd-"))  # short: sockets live under it
    host = f"unix://{d}/docker.sock"
    argv = ["dockerd", "-H", host, "--data-root", f"{d}/data", "--exec-root", f"{d}/exec"]
    argv += ["--pidfile", f"{d}/pid", "--bridge=none", "--iptables=false", "--ip6tables=false"]
    with open(d / "log", "wb") as log:
        daemon = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
    env = {**os.environ, "DOCKER_HOST": host}
    try:
        deadline = time.monotonic() + START
        while subprocess.run(["docker", "info"], env=env, capture_output=True).returncode:
            if daemon.poll() is not None or time.monotonic() > deadline:
                tail = (d / "log").read_text()[-400:]
                pytest.skip(f"dockerd cannot run here: {tail}")
            time.sleep(0.2)
        saved = subprocess.run(
            ["podman", "save", "-q", "-o", f"{d}/image.tar", container_image], capture_output=True
        )
        assert saved.returncode == 0, saved.stderr
        subprocess.run(["docker", "load", "-qi", f"{d}/image.tar"], env=env, check=True)
        yield host
        left = subprocess.run(
            ["docker", "ps", "-aq", "--filter", "label=osmo.root"], env=env, capture_output=True
        ).stdout.split()
        assert not left, f"docker containers left behind: {left}"
    finally:
        daemon.send_signal(signal.SIGTERM)  # it stops its containerd and its containers
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(10)
        mounts = [ln.split()[1] for ln in Path("/proc/self/mounts").read_text().splitlines()]
        for m in reversed([m for m in mounts if m.startswith(f"{d}/")]):  # its netns file
            subprocess.run(["umount", m], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)
        assert not d.exists(), f"dockerd left {d} behind"


@pytest.fixture
def docker(docker_host: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The agents started next run containers in that dockerd (docker is probed first)."""
    monkeypatch.setenv("DOCKER_HOST", docker_host)
    return "docker"


async def test_a_task_runs_in_docker_in_osmo_paths(
    backends: BackendFactory, docker: str, container_image: str
) -> None:
    backend, events = await backends()
    assert backend.agent["container_runtime"] == "docker"
    script = "pwd; echo $OSMO_OUTPUT; echo made > {{output}}/r; grep -c docker /proc/1/cgroup"
    await backend.launch(sh("wf/d/0", script, image=container_image, cpu=0.5))
    end = await events.end("wf/d/0", timeout=60)
    assert isinstance(end, Exited) and end.exit_code == 0, end
    lines = [e.text for e in events.of("wf/d/0", LogLine)]  # type: ignore[attr-defined]
    assert lines[:2] == ["/osmo/run", "/osmo/data/output"] and int(lines[2]) > 0
    assert (backend.root / "runs/wf/d/0/output/r").read_text() == "made\n"
    assert await _until_gone(container_name("wf/d/0", backend.root), runtime=docker)


async def test_an_agent_killed_under_a_docker_container_is_succeeded_by_one_that_adopts_it(
    backends: BackendFactory, docker: str, container_image: str
) -> None:
    await adoption(await backends(), container_image, docker)


async def test_cancel_and_a_failed_pull_on_docker(
    backends: BackendFactory, docker: str, container_image: str
) -> None:
    backend, events = await backends()
    await backend.launch(sh("wf/dc/0", "echo up; sleep 60", image=container_image))
    await events.wait("wf/dc/0", LogLine, timeout=30)
    await backend.cancel("wf/dc/0", grace=5)
    end = await events.end("wf/dc/0", timeout=30)
    assert isinstance(end, Exited) and end.exit_code == 143  # sh got the SIGTERM inside
    assert await _until_gone(container_name("wf/dc/0", backend.root), runtime=docker)
    await backend.launch(sh("wf/dp/0", "true", image="127.0.0.1:9/osmo/nope:1"))
    failed = await events.end("wf/dp/0", timeout=60)
    assert isinstance(failed, StartFailed) and failed.reason == "image_pull"
    assert "connection refused" in failed.message
