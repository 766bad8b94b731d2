"""Exec inside a running task over the agent's dial-home SSH connection (real agent, real TCP
on 127.0.0.1, asyncssh both ends), through the Service's Interactive object."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from osmo_core.errors import BackendError, Conflict
from osmo_core.interactive import hub
from tests.interactive.conftest import long_spec, running, until


async def _collect(sess, stderr: bool = False) -> bytes:
    out = b""
    while chunk := await asyncio.wait_for(sess.read(stderr), 10):
        out += chunk
    return out


async def test_exec_runs_in_the_task_context_with_its_exit_code(service):
    wf = await service.submit(long_spec())
    await running(service, wf)
    sess = await service.interactive.exec(
        wf, "main", ["sh", "-c", "cat marker; echo $TASK_SECRET; echo oops >&2; exit 7"]
    )
    out, err = await asyncio.gather(_collect(sess), _collect(sess, stderr=True))
    assert out == b"ready\ninside-the-task\n"
    assert err == b"oops\n"
    assert await sess.wait() == {"exit_code": 7, "signal": None}


async def test_exec_stdin_is_piped_to_the_command(service):
    wf = await service.submit(long_spec())
    await running(service, wf)
    sess = await service.interactive.exec(wf, "main", ["sh", "-c", "tr a-z A-Z; exit 3"])
    sess.write(b"hello\nworld\n")
    sess.write_eof()
    assert await _collect(sess) == b"HELLO\nWORLD\n"
    assert (await sess.wait())["exit_code"] == 3


async def test_pty_output_resize_and_ctrl_c(service):
    wf = await service.submit(long_spec())
    await running(service, wf)
    sess = await service.interactive.exec(wf, "main", ["sh"], pty=(100, 30))
    seen = b""

    async def expect(text: bytes) -> None:
        nonlocal seen
        while text not in seen:
            seen += await asyncio.wait_for(sess.read(), 10)

    sess.write(b"tty; stty size\n")
    await expect(b"30 100")
    assert b"/dev/pts/" in seen
    sess.resize(132, 40)
    sess.write(b"stty size\n")
    await expect(b"40 132")
    # Ctrl-C through the terminal stops the foreground job, not the shell
    sess.write(b"sleep 30; echo after-sleep\n")
    await asyncio.sleep(0.3)
    sess.write(b"\x03")
    sess.write(b"echo back-$((40+2))\n")
    await expect(b"back-42")
    assert b"\nafter-sleep" not in seen  # only the echo of the typed line
    sess.write(b"exit 5\n")
    assert (await sess.wait())["exit_code"] == 5


async def test_a_signal_ends_the_command_and_is_reported(service):
    wf = await service.submit(long_spec())
    await running(service, wf)
    sess = await service.interactive.exec(wf, "main", ["sleep", "30"])
    await asyncio.sleep(0.2)
    sess.signal("TERM")
    assert await asyncio.wait_for(sess.wait(), 10) == {"exit_code": None, "signal": "TERM"}


async def test_exec_needs_a_running_task(service):
    wf = await service.submit(long_spec(cmd="true"))
    await until(lambda: service.get(wf)["status"] == "COMPLETED", what="completion")
    with pytest.raises(Conflict, match="RUNNING"):
        await service.interactive.exec(wf, "main", ["true"])


async def test_a_resize_while_the_command_starts_is_not_lost(service):
    """JupyterLab sends its terminal's size as soon as the socket opens, while the shell may
    still be starting on the agent: that first size must reach the PTY (it once was lost,
    leaving the terminal at 80x24)."""
    wf = await service.submit(long_spec())
    await running(service, wf)
    for i in range(8):  # the window is short: several starts make a lost size show
        sess = await service.interactive.exec(wf, "main", ["sh"], pty=(80, 24))
        sess.resize(90 + i, 20)
        sess.write(b"stty size; exit\n")
        out = b""
        while chunk := await asyncio.wait_for(sess.read(), 10):
            out += chunk
        assert f"20 {90 + i}".encode() in out, out
        await sess.wait()


async def test_a_command_that_exits_before_its_input_arrives_still_reports_its_status(service):
    """A kernel's boot in a task without ipykernel exits at once, before the control plane
    has written its configuration: the exit status and stderr must still come back."""
    wf = await service.submit(long_spec())
    await running(service, wf)
    for _ in range(10):  # the window is short: several starts make a lost status show
        sess = await service.interactive.exec(wf, "main", ["sh", "-c", "echo gone >&2; exit 3"])
        sess.write(b"x" * 300_000)  # more than a pipe holds: the writes after the exit fail
        sess.write_eof()
        out, err = await asyncio.gather(_collect(sess), _collect(sess, stderr=True))
        assert (out, err) == (b"", b"gone\n")
        assert await asyncio.wait_for(sess.wait(), 10) == {"exit_code": 3, "signal": None}


async def test_an_exec_on_a_frozen_agent_fails_in_bounded_time(service, monkeypatch):
    """The agent's host froze (SIGSTOP here): its connection is open but nobody answers. An
    exec (a terminal, a kernel's start) says so within AGENT_WAIT instead of hanging until
    the keepalives give up."""
    wf = await service.submit(long_spec())
    await running(service, wf)
    monkeypatch.setattr(hub, "AGENT_WAIT", 1.0)
    agent = int((Path(service.config.data_dir) / "agent.pid").read_text())
    os.kill(agent, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(BackendError, match="did not answer within 1s"):
            await service.interactive.exec(wf, "main", ["true"])
        assert time.monotonic() - started < 5
    finally:
        os.kill(agent, signal.SIGCONT)
    sess = await service.interactive.exec(wf, "main", ["true"])  # thawed: it answers again
    assert await asyncio.wait_for(sess.wait(), 10) == {"exit_code": 0, "signal": None}
