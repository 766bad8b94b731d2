"""`osmo workflow exec` and `osmo workflow port-forward` as a user runs them: CLI subprocesses
logged in to a real Jupyter server (in this process) with alice's token."""

from __future__ import annotations

import asyncio
import os
import pty
import signal

from tests.conftest import free_port, osmo_cli
from tests.interactive.conftest import until
from tests.interactive.jupyter.conftest import start_task
from tests.interactive.jupyter.test_interactive_routes import ECHO, _bound


async def osmo(env: dict[str, str], *args: str, stdin: bytes = b"") -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *osmo_cli(*args),
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out, err


async def test_exec_pipes_stdin_and_exits_with_the_remote_status(api, service, cli_env):
    env, alice = cli_env
    wf = await start_task(api, service, alice)
    script = "cat marker; read x; echo got-$x; echo to-stderr >&2; exit 9"
    code, out, err = await osmo(
        env, "workflow", "exec", wf, "main", "--", "sh", "-c", script, stdin=b"abc\n"
    )
    assert (code, out, err) == (9, b"ready\ngot-abc\n", b"to-stderr\n")
    code, _, err = await osmo(env, "workflow", "exec", wf, "nope", "--", "true")
    assert code == 4 and b"no task 'nope'" in err


async def test_exec_in_a_terminal(api, service, cli_env):
    env, alice = cli_env
    wf = await start_task(api, service, alice)
    master, slave = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        *osmo_cli("workflow", "exec", wf, "main"), env=env, stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    seen = b""

    async def expect(text: bytes) -> None:
        nonlocal seen
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while text not in seen:
            assert loop.time() < deadline, seen
            try:
                seen += os.read(master, 65536)
            except BlockingIOError:
                await asyncio.sleep(0.05)
            except OSError:  # EIO: the CLI has exited
                raise AssertionError(f"the CLI ended: {seen!r}") from None

    os.set_blocking(master, False)
    os.write(master, b"[ -t 0 ] && echo is-a-tty-$((2*21))\n")
    await expect(b"is-a-tty-42")
    os.write(master, b"exit 3\n")
    assert await asyncio.wait_for(proc.wait(), 15) == 3
    os.close(master)


async def test_port_forward_bridges_a_local_port(api, service, cli_env):
    env, alice = cli_env
    port = free_port()
    wf = await start_task(api, service, alice, cmd=ECHO.format(port=port), ports=str(port))
    await until(lambda: _bound(port), what="the echo server")
    proc = await asyncio.create_subprocess_exec(
        *osmo_cli("workflow", "port-forward", wf, "main", "--port", f"0:{port}", "--port", "0:1"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        lines = [(await asyncio.wait_for(proc.stdout.readline(), 30)).decode() for _ in range(2)]
        assert lines[0].startswith("forwarding 127.0.0.1:")
        assert lines[0].endswith(f"{wf}/main:{port}\n") and lines[1].endswith(f"{wf}/main:1\n")
        local, undeclared = (int(ln.split()[1].split(":")[1]) for ln in lines)
        # an undeclared port: the connection is closed, the reason goes to stderr
        r, w = await asyncio.open_connection("127.0.0.1", undeclared)
        assert await asyncio.wait_for(r.read(), 20) == b""
        w.close()
        assert b"does not declare port 1" in await asyncio.wait_for(proc.stderr.readline(), 10)
        # the declared one: 1 MiB through and back (the echo server takes one connection only)
        r, w = await asyncio.open_connection("127.0.0.1", local)
        payload = os.urandom(1 << 20)
        w.write(payload)
        await w.drain()
        w.write_eof()
        assert await asyncio.wait_for(r.read(), 20) == payload
        w.close()
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
