"""Tasks with an `image` in real podman containers (runc), through the local backend's agent:
OSMO's paths inside, limits, pulls, cancel and an agent killed under its containers. Skipped
where podman cannot run a container (the `container_image` fixture says why)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from osmo_core.agent.containers import (
    REMOVE_BATCH,
    Removals,
    Runtimes,
    container_name,
    gpu_args,
    registry_auth,
)
from osmo_core.agent.logfile import MAX_LINE
from osmo_core.errors import ConfigError
from osmo_core.wire import Exited, FileSpec, InputSpec, LogLine, Started, StartFailed
from tests.conftest import make_config
from tests.core.conftest import BackendFactory, Events, req, sh
from tests.core.test_agent import Local, run, without_runtimes


def _containers(runtime: str = "podman") -> list[str]:
    out = subprocess.run(
        [runtime, "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True
    )
    return out.stdout.split()


async def _until_gone(name: str, timeout: float = 10.0, runtime: str = "podman") -> bool:
    for _ in range(int(timeout / 0.1)):
        if name not in _containers(runtime):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_osmo_paths_inside_the_container(
    local: Local, container_image: str, tmp_path: Path
) -> None:
    backend, _ = local
    upstream = tmp_path / "up"
    upstream.mkdir()
    (upstream / "data.txt").write_text("from upstream\n")
    script = (
        "pwd; cat {{input:0}}/data.txt; echo $GREETING; sh /opt/tool/run.sh; "
        "echo result > {{output}}/result.txt; echo $OSMO_OUTPUT; "
        "touch {{input:0}}/nope 2>/dev/null || echo input read-only; test -e /bin/busybox"
    )
    request = sh(
        "wf/paths/0",
        script,
        image=container_image,
        inputs=[InputSpec(0, path=str(upstream))],
        env={"GREETING": "hello {{output}}"},
        files=[FileSpec("/opt/tool/run.sh", b"echo tool at $0 sees {{input:0}}\n", 0o755)],
    )
    end, lines = await run(local, request, timeout=30)
    assert end.exit_code == 0, [ln.text for ln in lines]
    assert [ln.text for ln in lines] == [
        "/osmo/run",
        "from upstream",
        "hello /osmo/data/output",
        "tool at /opt/tool/run.sh sees /osmo/data/input/0",
        "/osmo/data/output",
        "input read-only",
    ]
    out = backend.root / "runs/wf/paths/0/output/result.txt"
    assert out.read_text() == "result\n"  # the host's output folder: downstream reads it
    assert not (upstream / "nope").exists()


async def test_over_its_memory_the_task_fails_with_oom(local: Local, container_image: str) -> None:
    script = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"
    request = sh("wf/oom/0", script, image=container_image, memory=32 * 2**20)
    end, lines = await run(local, request, timeout=60)
    assert end.exit_code == 137
    assert end.message == "OOM: killed by the kernel at its memory limit (32 MiB)"
    assert lines[-1].stream == "system" and lines[-1].text == end.message
    assert "survived" not in [ln.text for ln in lines]


async def test_cpu_and_pids_limits_reach_the_runtime(local: Local, container_image: str) -> None:
    backend, events = local
    name = container_name("wf/lim/0", backend.root)
    request = sh("wf/lim/0", "echo up; sleep 30", image=container_image, cpu=0.5)
    await backend.launch(request)
    await events.wait("wf/lim/0", LogLine, timeout=30)
    fmt = "{{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}"
    got = subprocess.run(["podman", "inspect", "--format", fmt, name], capture_output=True)
    assert got.stdout.decode().split() == ["500000000", "4096"]
    await backend.cancel("wf/lim/0", grace=0)
    await events.end("wf/lim/0")
    assert await _until_gone(name)


async def test_a_missing_image_fails_the_pull_with_the_registry_message(
    local: Local, container_image: str
) -> None:
    backend, events = local
    await backend.launch(req("wf/pull/0", "true", image="127.0.0.1:9/osmo/nope:1"))
    end = await events.end("wf/pull/0", timeout=60)
    assert isinstance(end, StartFailed) and end.reason == "image_pull"
    assert end.message.startswith("cannot pull image 127.0.0.1:9/osmo/nope:1: ")
    assert "connection refused" in end.message
    assert not events.of("wf/pull/0", Started)  # never RUNNING
    st = (await backend.status(["wf/pull/0"]))["wf/pull/0"]
    assert (st.state, st.reason) == ("failed_start", "image_pull")
    lines = [e.text for e in events.of("wf/pull/0", LogLine)]  # type: ignore[attr-defined]
    assert lines[0] == "pulling image 127.0.0.1:9/osmo/nope:1 (podman)"


async def test_cancel_stops_and_removes_the_container(local: Local, container_image: str) -> None:
    backend, events = local
    name = container_name("wf/cancel/0", backend.root)
    await backend.launch(sh("wf/cancel/0", "echo up; sleep 60", image=container_image))
    await events.wait("wf/cancel/0", LogLine, timeout=30)
    assert name in _containers()
    await backend.cancel("wf/cancel/0", grace=2)
    end = await events.end("wf/cancel/0", timeout=15)
    assert isinstance(end, Exited) and end.exit_code == 143  # sh got the SIGTERM inside
    assert await _until_gone(name)


async def test_two_control_planes_run_the_same_attempt_key_in_containers_side_by_side(
    backends: BackendFactory, tmp_path: Path, container_image: str
) -> None:
    """Two homes on one host (two users, or two test sessions) each run their `serial-1`:
    the runtime's names are the host's, and the second launch once took the first's name and
    ended its task (exit 143)."""
    key = "serial-1/task1/0"
    ours = [await backends(tmp_path / name) for name in ("alice", "bob")]
    for backend, _ in ours:
        await backend.launch(sh(key, "echo up; sleep 3", image=container_image))
    for _, events in ours:
        end = await events.end(key, timeout=60)
        assert isinstance(end, Exited) and end.exit_code == 0, end
        assert "up" in [e.text for e in events.of(key, LogLine)]  # type: ignore[attr-defined]
    names = {container_name(key, backend.root) for backend, _ in ours}
    assert len(names) == 2


async def test_an_agent_killed_under_its_container_is_succeeded_by_one_that_adopts_it(
    local: Local, container_image: str
) -> None:
    await adoption(local, container_image, "podman")


async def until_line(events: Events, key: str, text: str, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if any(getattr(e, "text", None) == text for e in events.of(key, LogLine)):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no line {text!r} from {key} in {timeout:g} s")


async def adoption(local: Local, image: str, runtime: str) -> None:
    """SIGKILL the agent under a running container: the backend's new agent adopts it."""
    backend, events = local
    key, name = "wf/adopt/0", container_name("wf/adopt/0", backend.root)
    # `ran` (in its workdir) proves it ran once and to its end; `gap` is printed while no
    # agent reads it, `late` after the new agent re-attached; `go` lets it end
    # a line over MAX_LINE is two log lines here, one line in the container's log
    script = (
        "echo start >> ran; head -c 70000 /dev/zero | tr '\\0' x; echo; echo up; sleep 1; "
        "echo gap; echo gap-err >&2; "
        "for i in $(seq 600); do test -e go && break; sleep 0.1; done; "
        "echo late; echo end >> ran; exit 3"
    )
    await backend.launch(sh(key, script, image=image))
    await until_line(events, key, "up")
    first = backend.agent["pid"]
    os.kill(first, signal.SIGKILL)
    workdir = backend.root / "runs" / key
    for _ in range(300):  # the backend reconnects, starting a new agent on the same root
        if backend.connected_now and backend.agent["pid"] != first:
            break
        await asyncio.sleep(0.1)
    assert backend.agent["pid"] != first
    assert name in _containers(runtime)
    assert (await backend.status([key]))[key].state == "running"
    (workdir / "go").touch()
    end = await events.end(key, timeout=60)
    assert isinstance(end, Exited) and end.exit_code == 3, end
    assert (workdir / "ran").read_text() == "start\nend\n"  # once, to its end
    lines = [e for e in events.of(key, LogLine) if isinstance(e, LogLine)]
    assert [ln.n for ln in lines] == list(range(1, len(lines) + 1))  # none lost or repeated
    # in order per stream (docker's log replay does not keep the order across streams)
    out = [ln.text for ln in lines if ln.stream == "stdout"]
    assert out == ["x" * MAX_LINE, "x" * (70000 - MAX_LINE), "up", "gap", "late"]
    assert [ln.text for ln in lines if ln.stream == "stderr"] == ["gap-err"]
    assert f"agent restarted: re-attached to container {name} (running)" in [
        ln.text for ln in lines if ln.stream == "system"
    ]
    assert await _until_gone(name, runtime=runtime)  # removed once its end was recorded
    assert (await backend.status([key]))[key].exit_code == 3


async def test_a_cancel_reaches_an_adopted_container(
    backends: BackendFactory, container_image: str
) -> None:
    backend, events = await backends()
    key, name = "wf/adoptcancel/0", container_name("wf/adoptcancel/0", backend.root)
    await backend.launch(sh(key, "echo up; sleep 120", image=container_image))
    await events.wait(key, LogLine, timeout=30)
    os.kill(backend.agent["pid"], signal.SIGKILL)
    await backend.stop()
    second, events = await backends()  # a new agent on the same root, a new control plane
    assert (await second.status([key]))[key].state == "running"
    second.follow(key, 1)
    await second.cancel(key, grace=5)
    end = await events.end(key, timeout=30)
    assert isinstance(end, Exited) and end.exit_code == 143  # sh got the SIGTERM inside
    assert await _until_gone(name)


async def test_a_container_gone_while_its_agent_was_dead_is_lost(
    backends: BackendFactory, container_image: str
) -> None:
    backend, events = await backends()
    key, name = "wf/kill/0", container_name("wf/kill/0", backend.root)
    await backend.launch(sh(key, "echo up; sleep 120", image=container_image))
    await events.wait(key, LogLine, timeout=30)
    os.kill(backend.agent["pid"], signal.SIGKILL)
    await backend.stop()
    subprocess.run(["podman", "rm", "-f", name], capture_output=True, check=True)
    second, _ = await backends()
    st = (await second.status([key]))[key]
    assert st.state == "lost"


async def test_containers_that_end_together_are_removed_together(container_image: str) -> None:
    names = [f"osmo-test-removals-{i}" for i in range(3)]
    for name in names:
        create = ["podman", "create", "--name", name, container_image, "true"]
        subprocess.run(create, check=True, capture_output=True)
    removals, t0 = Removals(), asyncio.get_running_loop().time()
    first = asyncio.ensure_future(removals.remove("podman", names[0]))
    await asyncio.sleep(0.1)
    await asyncio.gather(*(removals.remove("podman", n) for n in names[1:]))
    assert asyncio.get_running_loop().time() - t0 < REMOVE_BATCH  # queued, not waited for
    assert set(names) <= set(_containers())
    await first  # the batch's first removes them all, in one call
    assert not set(names) & set(_containers())


async def test_containers_off_runs_the_image_task_on_the_host(
    local: Local, container_image: str
) -> None:
    request = sh("wf/off/0", "test -e /bin/busybox && pwd", image=container_image)
    request.containers = "off"
    _, lines = await run(local, request)
    assert lines[0].text.startswith(str(local[0].root))  # the host's folder, not /osmo/run


async def test_the_runtime_is_probed_again_when_podman_comes_or_goes(
    container_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtimes, podman = Runtimes(), shutil.which("podman")
    assert podman is not None
    monkeypatch.setenv("PATH", str(tmp_path))  # neither docker nor podman
    assert await runtimes.current() is None
    os.symlink(podman, tmp_path / "podman")
    assert await runtimes.current() == "podman"  # installed: no restart needed
    (tmp_path / "podman").unlink()
    assert await runtimes.current() is None


async def test_required_without_a_runtime_fails_at_start(
    backends: BackendFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_runtimes(monkeypatch, tmp_path / "bin")
    backend, events = await backends()
    request = req("wf/req/0", "true", image="ubuntu:24.04")
    request.containers = "required"
    await backend.launch(request)
    end = await events.end("wf/req/0")
    assert isinstance(end, StartFailed)
    assert "requires a container" in end.message and "no docker/podman" in end.message


# --- GPUs: argument construction only (no GPU on these machines) --------------------------------


def test_gpu_arguments_per_runtime(tmp_path: Path) -> None:
    cdi = tmp_path / "cdi"
    assert gpu_args("docker", [], (cdi,), jetson=False) == []
    assert gpu_args("docker", [0, 2], (cdi,), jetson=False) == ["--gpus", "device=0,2"]
    assert gpu_args("docker", [0], (cdi,), jetson=True) == ["--runtime", "nvidia"]
    with pytest.raises(ValueError, match="nvidia-ctk cdi generate"):
        gpu_args("podman", [1], (cdi,), jetson=False)  # no CDI spec
    cdi.mkdir()
    (cdi / "nvidia.yaml").write_text("cdiVersion: 0.5.0\n")
    assert gpu_args("podman", [1, 3], (cdi,), jetson=False) == [
        "--device=nvidia.com/gpu=1",
        "--device=nvidia.com/gpu=3",
    ]


def test_a_bad_containers_mode_is_a_located_config_error(tmp_path: Path) -> None:
    pools = {"local": {"backend": "local", "platforms": {"p": {"containers": "sometimes"}}}}
    with pytest.raises(ConfigError) as err:
        make_config(tmp_path, pools=pools).pool_configs()
    assert "OsmoConfig.pools.local.platforms.p.containers" in str(err.value)
    assert "'sometimes' is not one of auto, required, off" in str(err.value)


def test_registry_credentials_become_an_auth_file_for_their_registry_only() -> None:
    creds: dict[str, dict[str, object]] = {
        "ngc": {"registry": "nvcr.io", "username": "$oauthtoken", "auth": "k3y-secret"},
        "s3": {"url": "s3://b", "access_key_id": "a", "secret_access_key": "b"},
    }
    auth = registry_auth("nvcr.io/nvidia/pytorch:24.01", creds)
    assert auth is not None
    token = json.loads(auth["config.json"])["auths"]["nvcr.io"]["auth"]
    assert base64.b64decode(token) == b"$oauthtoken:k3y-secret"
    assert registry_auth("ubuntu:24.04", creds) is None  # Docker Hub: no credential for it
    assert registry_auth("localhost/osmo-test:busybox", creds) is None
