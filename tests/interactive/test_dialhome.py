"""The dial-home connection itself: keys both ways (a forged agent and a foreign control plane
are refused), loopback-only forwards, and an agent that reconnects to a restarted control plane
(new port) while its task keeps running."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import stat
from pathlib import Path

import asyncssh
import pytest

from osmo_core.agent.dialhome import HOST_KEY, DialHome
from osmo_core.interactive.keys import public_text
from osmo_core.service import Service
from osmo_core.wire import DIALHOME, DialHomeInfo
from tests.conftest import make_config
from tests.interactive.conftest import long_spec, running, until


async def _output(svc: Service, wf: str, *argv: str) -> bytes:
    sess = await svc.interactive.exec(wf, "main", list(argv))
    out = b""
    while chunk := await asyncio.wait_for(sess.read(), 10):
        out += chunk
    assert (await sess.wait())["exit_code"] == 0
    return out


async def _impostor(root: Path) -> asyncio.Task[None]:
    """An agent of our own code on another root (so with its own host key), dialling with what
    it finds in that root's dialhome.json."""
    return asyncio.ensure_future(DialHome(root, sup=None).run())  # type: ignore[arg-type]


async def test_keys_are_private_and_the_agent_key_is_pinned(service, tmp_path):
    wf = await service.submit(long_spec())
    await running(service, wf)
    data = Path(service.config.data_dir)
    for key in (data / "interactive" / "client_key", data / HOST_KEY):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    pinned = json.loads((data / "interactive" / "known_agents.json").read_text())
    agent_key = asyncssh.read_private_key(data / HOST_KEY)
    assert pinned == {"local": public_text(agent_key)}
    info = DialHomeInfo.read(data)
    assert info is not None and (info.host, info.port) == ("127.0.0.1", service.interactive.port)


async def test_a_forged_agent_is_refused(service, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="osmo_core.interactive")
    wf = await service.submit(long_spec())
    await running(service, wf)
    real = service.interactive.agents["local"]
    forged = tmp_path / "forged"
    forged.mkdir()
    shutil.copy(Path(service.config.data_dir) / DIALHOME, forged / DIALHOME)  # claims "local"
    task = await _impostor(forged)
    try:
        await until(lambda: "not the one pinned" in caplog.text, what="the refusal")
    finally:
        task.cancel()
    assert service.interactive.agents["local"] is real
    assert await _output(service, wf, "cat", "marker") == b"ready\n"


async def test_an_agent_accepts_only_the_control_planes_client_key(service, tmp_path, caplog):
    wf = await service.submit(long_spec())
    await running(service, wf)
    caplog.set_level(logging.INFO, logger="osmo_core.interactive")
    other = tmp_path / "other"
    other.mkdir()
    wrong = public_text(asyncssh.generate_private_key("ssh-ed25519"))
    DialHomeInfo("127.0.0.1", service.interactive.port or 0, "other", wrong).write(other)
    task = await _impostor(other)
    try:
        await until(lambda: "failed before it was up" in caplog.text, what="the failed handshake")
    finally:
        task.cancel()
    assert set(service.interactive.agents) == {"local"}


async def test_forwards_go_to_127_0_0_1_only(service):
    wf = await service.submit(long_spec())
    await running(service, wf)
    conn = service.interactive.agents["local"]
    for host in ("127.0.0.2", "localhost"):
        with pytest.raises(asyncssh.ChannelOpenError, match=r"127\.0\.0\.1 only"):
            await conn.open_connection(host, 22)


async def test_the_agent_reconnects_to_a_restarted_control_plane(service_factory, tmp_path):
    data = tmp_path / "osmo"
    first = Service(make_config(data))
    await first.start()
    wf = await first.submit(long_spec())
    await running(first, wf)
    old_port = first.interactive.port
    await first.stop()  # the agent and its task go on; the agent loses its connection
    assert not (data / DIALHOME).exists()
    second = await service_factory(data)  # a new listener on a new port
    assert second.interactive.port != old_port
    await running(second, wf)
    assert await _output(second, wf, "sh", "-c", "cat marker; echo $TASK_SECRET") == (
        b"ready\ninside-the-task\n"
    )
