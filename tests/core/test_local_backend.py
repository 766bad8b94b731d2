"""The local backend as the engine uses it: the agent outlives its clients, connections drop
and come back without losing an end, a dead agent's attempts are reported lost, one agent
per root however many engines start at once."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import psutil
import pytest

from osmo_core.backends.local import LocalBackend, socket_path
from osmo_core.backends.registry import backend_class
from osmo_core.errors import ConfigError
from osmo_core.wire import Exited, LogLine, Lost, Started, Usage
from tests.core.conftest import BackendFactory, Events, gone, processes_of, sh, wait_gone


async def test_the_agent_outlives_its_client(backends: BackendFactory) -> None:
    first, _ = await backends()
    agent_pid = first.agent["pid"]
    await first.launch(sh("wf/outlive/0", "for i in 1 2 3; do echo $i; sleep 0.2; done; exit 4"))
    await first.stop()  # the engine goes away mid-task
    exit_json = first.root / "runs/wf/outlive/0/exit.json"
    while not exit_json.exists():
        await asyncio.sleep(0.05)
    second, events = await backends()
    assert second.agent["pid"] == agent_pid
    st = (await second.status(["wf/outlive/0"]))["wf/outlive/0"]
    assert (st.state, st.exit_code, st.log_lines) == ("exited", 4, 3)
    assert [ln.text for ln in await second.read_log("wf/outlive/0")] == ["1", "2", "3"]
    assert not events.items  # nothing replayed to a client that never watched it


async def test_a_stopped_backend_still_shuts_its_agent_down(backends: BackendFactory) -> None:
    """Over a link of its own (it used to wait 10 s for its stopped one and leave the agent
    running); with no agent left, it starts none."""
    backend, _ = await backends()
    agent_pid = backend.agent["pid"]
    await backend.stop()
    await backend.shutdown_agent(force=True)
    assert gone(agent_pid)
    await backend.shutdown_agent(force=True)
    assert not backend.agent_running()


async def test_a_reconnection_delivers_what_was_missed(local: tuple[LocalBackend, Events]) -> None:
    backend, events = local
    sock = Path(backend.socket_path)
    hidden = sock.with_name("hidden.sock")
    await backend.launch(sh("wf/missed/0", "echo a; sleep 0.3; echo b; exit 7"))
    await events.wait("wf/missed/0", LogLine)
    # Hide the socket (the agent keeps listening on it) and drop the connection: the backend
    # cannot reconnect until the task has ended, so its end reaches nobody live.
    os.rename(sock, hidden)
    assert backend._writer is not None
    backend._writer.transport.abort()
    exit_json = backend.root / "runs/wf/missed/0/exit.json"
    while not exit_json.exists():
        await asyncio.sleep(0.05)
    assert not events.of("wf/missed/0", Exited)
    os.rename(hidden, sock)
    end = await events.end("wf/missed/0")
    assert isinstance(end, Exited) and end.exit_code == 7
    assert [(e.n, e.text) for e in events.of("wf/missed/0", LogLine)] == [(1, "a"), (2, "b")]
    info = await backend.launch(sh("wf/after/0", "true"))  # and the backend works on
    assert isinstance(await events.end("wf/after/0"), Exited) and not info.already_known


async def test_a_reconnection_delivers_the_end_of_a_task_that_reported_usage(
    backends: BackendFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A usage sample is not an end: the attempt stays watched, so the resync delivers it."""
    monkeypatch.setenv("OSMO_METRICS_INTERVAL", "0.1")  # the agent it spawns reads it
    backend, events = await backends()
    sock = Path(backend.socket_path)
    await backend.launch(sh("wf/sampled/0", "sleep 0.6; exit 5"))
    await events.wait("wf/sampled/0", Usage)
    os.rename(sock, sock.with_name("hidden.sock"))  # no reconnection until it has ended
    assert backend._writer is not None
    backend._writer.transport.abort()
    exit_json = backend.root / "runs/wf/sampled/0/exit.json"
    for _ in range(200):  # 10 s
        if exit_json.exists():
            break
        await asyncio.sleep(0.05)
    os.rename(sock.with_name("hidden.sock"), sock)
    end = await events.end("wf/sampled/0")
    assert isinstance(end, Exited) and end.exit_code == 5


async def test_a_killed_agent_leaves_its_attempts_lost(local: tuple[LocalBackend, Events]) -> None:
    backend, events = local
    old_agent = backend.agent["pid"]
    await backend.launch(sh("wf/orphan/0", "sleep 60 & echo $!; wait"))
    started = await events.wait("wf/orphan/0", Started)
    child = int((await events.wait("wf/orphan/0", LogLine)).text)  # type: ignore[union-attr]
    os.kill(old_agent, signal.SIGKILL)
    # The backend reconnects, which starts a new agent; that one records the attempt lost,
    # kills what is left of it, and the resync reports it.
    end = await events.end("wf/orphan/0", timeout=15)
    assert isinstance(end, Lost) and "agent" in end.message
    assert backend.agent["pid"] != old_agent
    assert await wait_gone(started.pid) and await wait_gone(child)  # type: ignore[arg-type]
    st = (await backend.status(["wf/orphan/0"]))["wf/orphan/0"]
    assert st.state == "lost" and st.info is not None


async def test_two_backends_starting_at_once_share_one_agent(
    root: Path, backends: BackendFactory
) -> None:
    (a, _), (b, _) = await asyncio.gather(backends(), backends())
    assert a.agent["pid"] == b.agent["pid"]
    for _ in range(100):  # a loser of the lock race exits at once
        agents = [p for p in processes_of(root) if "osmo_core.agent" in p.info["cmdline"]]
        if len(agents) == 1:
            break
        await asyncio.sleep(0.05)
    assert [p.pid for p in agents] == [a.agent["pid"]]


async def test_events_reach_every_connected_backend(backends: BackendFactory) -> None:
    (a, a_events), (_, b_events) = await backends(), await backends()
    await a.launch(sh("wf/both/0", "echo hi"))
    for events in (a_events, b_events):
        assert isinstance(await events.end("wf/both/0"), Exited)
        assert [e.text for e in events.of("wf/both/0", LogLine)] == ["hi"]


async def test_nodes_report_the_host_with_overrides(backends: BackendFactory) -> None:
    plain, _ = await backends()
    [node] = await plain.nodes()
    assert node.cpu == len(os.sched_getaffinity(0))
    assert node.memory == psutil.virtual_memory().total
    assert node.arch and node.name == plain.agent["hostname"]
    unstarted = LocalBackend("local", {"root": str(plain.root / "elsewhere")})
    assert await unstarted.nodes() == [node]  # placement checks need no agent
    assert not unstarted.agent_running()
    declared, _ = await backends(cpus=3, memory=2**30, gpus=[0, 1])
    [node] = await declared.nodes()
    assert (node.cpu, node.memory, node.gpus, len(node.gpu_names)) == (3.0, 2**30, [0, 1], 2)


async def test_a_long_root_gets_a_short_socket(tmp_path: Path, backends: BackendFactory) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    backend, events = await backends(on=deep)
    assert backend.socket_path != str(deep / "agent.sock")
    assert len(backend.socket_path) < 100 and socket_path(deep) == backend.socket_path
    await backend.launch(sh("wf/deep/0", "pwd"))
    assert isinstance(await events.end("wf/deep/0"), Exited)
    assert [e.text for e in events.of("wf/deep/0", LogLine)] == [f"{deep}/runs/wf/deep/0"]


async def test_an_agent_of_another_version_is_replaced_when_idle(
    backends: BackendFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, _ = await backends()
    await old.stop()
    monkeypatch.setattr("osmo_core.backends.agentlink.__version__", "0.0.0-other")
    new, _ = await backends()
    assert new.agent["pid"] != old.agent["pid"]  # replaced once, then kept with a warning
    assert await wait_gone(old.agent["pid"])


def test_registry_and_config() -> None:
    assert backend_class("local") is LocalBackend
    with pytest.raises(ConfigError, match="root"):
        LocalBackend("local", {})


async def test_gpus_come_from_nvidia_smi(
    tmp_path: Path, backends: BackendFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\nprintf '0, NVIDIA H100 80GB HBM3\\n1, NVIDIA H100 80GB HBM3\\n'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    backend, _ = await backends()
    [node] = await backend.nodes()
    assert node.gpus == [0, 1] and node.gpu_names == ["NVIDIA H100 80GB HBM3"] * 2


async def test_an_agent_orphaned_by_a_deleted_root_leaves_the_new_one_alone(
    root: Path, backends: BackendFactory
) -> None:
    old, _ = await backends()
    old_pid = old.agent["pid"]
    await old.stop()
    shutil.rmtree(root)  # the user deletes the data dir under a running agent
    new, _ = await backends()
    assert new.agent["pid"] != old_pid
    os.kill(old_pid, signal.SIGTERM)  # the orphan goes (as it would when idle)
    assert await wait_gone(old_pid)
    assert (root / "agent.pid").read_text().strip() == str(new.agent["pid"])
    await new.stop()
    again, _ = await backends()  # the new agent's socket is still there and answers
    assert again.agent["pid"] == new.agent["pid"]
