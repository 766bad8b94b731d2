"""`osmo workflow exec` and `osmo workflow port-forward`: a terminal or a port of a running task,
through the server's WebSockets (osmo_jupyter/server/exec.py has the wire format).

exec: an interactive terminal when stdin is one (raw mode, window size followed on SIGWINCH),
otherwise plain pipes (stdin to the command, then EOF). The CLI exits with the command's exit
status, 128+N for a signal, 255 when the connection to the task was lost.

port-forward: `--port LOCAL:REMOTE` (or `--port N` for the same number; LOCAL 0 picks one),
repeatable; a listener on 127.0.0.1:LOCAL bridges each connection over its own WebSocket. It
prints one line per port and runs until interrupted; a refused connection (undeclared port, task
no longer running) is closed and the reason printed on stderr.

rsync: in rsync.py; kernel: in kernel.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from ..common import EXIT_INVALID, EXIT_OK, Output
from ..connect import with_client

if TYPE_CHECKING:
    from ...client import Client

STDIN, STDOUT, STDERR = 0, 1, 2
LOST = 255


def register(cmds: Any) -> None:
    """Add `exec` and `port-forward` to the `workflow` group's subcommands."""
    ex = cmds.add_parser("exec", help="run a command (default: a shell) inside a running task")
    ex.add_argument("id")
    ex.add_argument("task")
    ex.add_argument("--entry", default="/bin/sh", help="the command when none follows --")
    tty = ex.add_mutually_exclusive_group()
    tty.add_argument("-t", "--tty", action="store_true", default=None, help="force a terminal")
    tty.add_argument("-T", "--no-tty", dest="tty", action="store_false", help="plain pipes")
    ex.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    ex.set_defaults(run=with_client(exec_command))

    pf = cmds.add_parser("port-forward", help="forward local ports to a running task's ports")
    pf.add_argument("id")
    pf.add_argument("task")
    pf.add_argument(
        "--port",
        action="append",
        required=True,
        help="LOCAL:REMOTE or PORT (repeatable; LOCAL 0 picks a free port)",
    )
    pf.set_defaults(run=with_client(port_forward_command))


# --- exec ------------------------------------------------------------------------------------


async def exec_command(client: Client, args: argparse.Namespace, out: Output) -> int:
    argv = [a for a in args.command if a != "--"] if args.command else []
    argv = argv or [args.entry]
    tty = sys.stdin.isatty() if args.tty is None else args.tty
    params: dict[str, Any] = {"cmd": argv}
    if tty:
        cols, rows = _size()
        params.update(pty=1, cols=cols, rows=rows)
    ws = await client.websocket(f"workflows/{args.id}/tasks/{args.task}/exec", **params)
    with _raw_terminal(tty):
        return await _bridge_exec(ws, tty)


async def _bridge_exec(ws: Any, tty: bool) -> int:
    loop = asyncio.get_running_loop()
    fd = sys.stdin.fileno()
    done = False

    def readable() -> None:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if data:
            ws.write_message(bytes([STDIN]) + data, binary=True)
        else:  # EOF: the command's stdin ends too
            loop.remove_reader(fd)
            if not done:
                ws.write_message(json.dumps({"type": "eof"}))

    def resized() -> None:
        cols, rows = _size()
        ws.write_message(json.dumps({"type": "resize", "cols": cols, "rows": rows}))

    try:
        loop.add_reader(fd, readable)
        reading = True
    except (PermissionError, ValueError, OSError):  # e.g. /dev/null: nothing to read
        ws.write_message(json.dumps({"type": "eof"}))
        reading = False
    if tty:
        loop.add_signal_handler(signal.SIGWINCH, resized)
    try:
        while (msg := await ws.read_message()) is not None:
            if isinstance(msg, bytes):
                stream = sys.stderr if msg[:1] == bytes([STDERR]) else sys.stdout
                stream.buffer.write(msg[1:])
                stream.buffer.flush()
                continue
            ctl = json.loads(msg)
            if ctl.get("type") == "error":
                print(f"osmo: {ctl.get('message')}", file=sys.stderr)
            elif ctl.get("type") == "exit":
                if ctl.get("signal"):
                    num = getattr(signal, f"SIG{ctl['signal']}", None)
                    return 128 + int(num) if num is not None else LOST
                code = ctl.get("exit_code")
                return int(code) if code is not None else LOST
        print("osmo: the connection to the task was lost", file=sys.stderr)
        return LOST
    finally:
        done = True
        if reading:
            loop.remove_reader(fd)
        if tty:
            loop.remove_signal_handler(signal.SIGWINCH)
        ws.close()


def _size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return 80, 24
    return size.columns or 80, size.lines or 24  # a fresh PTY says 0x0


@contextlib.contextmanager
def _raw_terminal(tty: bool) -> Any:
    """Keystrokes (Ctrl-C included) go to the remote terminal, not to this process."""
    if not tty or not sys.stdin.isatty():
        yield
        return
    import termios
    import tty as ttymod

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    ttymod.setraw(fd, termios.TCSADRAIN)  # DRAIN, not FLUSH: keep what was typed ahead
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


# --- port-forward ----------------------------------------------------------------------------


def _ports(specs: list[str]) -> list[tuple[int, int]]:
    pairs = []
    for spec in specs:
        local, _, remote = spec.partition(":")
        try:
            pair = (int(local), int(remote or local))
        except ValueError:
            raise ValueError(f"--port {spec!r}: want LOCAL:REMOTE or PORT") from None
        if not (0 <= pair[0] < 65536 and 0 < pair[1] < 65536):
            raise ValueError(f"--port {spec!r}: ports are 1-65535 (LOCAL may be 0)")
        pairs.append(pair)
    return pairs


async def port_forward_command(client: Client, args: argparse.Namespace, out: Output) -> int:
    try:
        pairs = _ports(args.port)
    except ValueError as e:
        out.error(str(e))
        return EXIT_INVALID
    path = f"workflows/{args.id}/tasks/{args.task}/port-forward"
    # No probe connection up front: it would reach the task's server as a real client. A
    # refusal (403 undeclared port, 409 task not running) is reported per connection.
    servers = []
    for local, remote in pairs:

        async def bridge(
            r: asyncio.StreamReader, w: asyncio.StreamWriter, port: int = remote
        ) -> None:
            await _bridge_port(client, path, port, r, w)

        server = await asyncio.start_server(bridge, "127.0.0.1", local)
        servers.append(server)
        bound = server.sockets[0].getsockname()[1]
        print(f"forwarding 127.0.0.1:{bound} -> {args.id}/{args.task}:{remote}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()
    return EXIT_OK


async def _bridge_port(
    client: Client, path: str, port: int, r: asyncio.StreamReader, w: asyncio.StreamWriter
) -> None:
    try:
        ws = await client.websocket(path, port=port)
    except Exception as e:  # refused now (the task ended...): this connection only
        print(f"osmo: port {port}: {e}", file=sys.stderr)
        w.close()
        return

    async def upstream() -> None:
        while data := await r.read(1 << 20):  # bigger WebSocket frames, fewer of them
            await ws.write_message(data, binary=True)
        await ws.write_message(json.dumps({"type": "eof"}))

    up = asyncio.ensure_future(upstream())
    try:
        while (msg := await ws.read_message()) is not None:
            if isinstance(msg, bytes):
                w.write(msg)
                await w.drain()
            elif json.loads(msg).get("type") == "eof" and w.can_write_eof():
                w.write_eof()
    except (ConnectionError, OSError):
        pass
    finally:
        up.cancel()
        ws.close()
        w.close()
