"""One session channel of the agent's SSH server: a JSON request run inside a running attempt.

The channel's command is one JSON request::

    {"op": "hello"}                               -> stdout: {"agent_id", "version", "pid", "root"}
    {"op": "exec", "key": K, "argv": [...]}       -> runs argv inside running attempt K: its
                                                     workdir, its environment, its user (with
                                                     isolation: the task's uid, never the
                                                     agent's); with a PTY when one was requested
                                                     (resize, signals)

or the `sftp` subsystem with the environment variable OSMO_ATTEMPT=K, which hands the channel
to SFTP rooted at running attempt K's folder (sftp.py). Bytes go both ways with no encoding and
with flow control (a full channel window stops reading the process); what a user started ends
with the session (SIGHUP, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import pty
import signal
import struct
import termios
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh
import psutil
from asyncssh.sftp import MIN_SFTP_VERSION
from asyncssh.stream import SSHServerStreamSession

from .. import __version__
from ..wire import SFTP_ATTEMPT, DialHomeInfo
from .containers import exec_argv, first_pid, user_of
from .sftp import TaskSFTP

if TYPE_CHECKING:
    from .dialhome import DialHome

log = logging.getLogger("osmo_core.agent")

_READ = 65536


class Session(asyncssh.SSHServerSession[bytes]):
    """One exec (or hello) channel; bytes in both directions, no encoding."""

    def __init__(self, home: DialHome):
        self.home = home
        self.chan: Any = None
        self.request: dict[str, Any] = {}
        self.term: tuple[int, int] | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.master: int | None = None
        self.pending = bytearray()  # stdin not yet written to the PTY
        self.eof = False
        self.writable = asyncio.Event()
        self.writable.set()
        self.task: asyncio.Task[None] | None = None
        self.sftp: SSHServerStreamSession[bytes] | None = None  # takes over an sftp channel
        self.as_task: dict[str, Any] = {}  # subprocess arguments: the task's identity

    def connection_made(self, chan: Any) -> None:
        self.chan = chan

    def subsystem_requested(self, subsystem: str) -> bool:
        if subsystem != "sftp":
            return False
        self.request = {"op": "sftp"}
        return True

    def _start_sftp(self) -> None:
        key = str(self.chan.get_environment().get(SFTP_ATTEMPT, ""))
        if key not in self.home.sup.running:
            self.chan.write_stderr(f"osmo agent: task attempt {key} is not running\n".encode())
            self.chan.exit(126)
            return
        att = self.home.sup.running[key]
        root = self.home.sup.workspace(key)
        # asyncssh runs SFTP on its stream sessions; this channel's events go to one from now
        self.sftp = SSHServerStreamSession(
            None, lambda chan: TaskSFTP(chan, root, att.identity), sftp_version=MIN_SFTP_VERSION
        )
        self.sftp.connection_made(self.chan)
        self.sftp.session_started()

    def pty_requested(
        self, term_type: str, term_size: tuple[int, int, int, int], modes: Any
    ) -> bool:
        self.term = (term_size[0] or 80, term_size[1] or 24)
        return True

    def shell_requested(self) -> bool:
        return False  # always exec with a JSON request

    def exec_requested(self, command: str) -> bool:
        try:
            req = json.loads(command)
        except ValueError:
            return False
        if not isinstance(req, dict) or req.get("op") not in ("hello", "exec"):
            return False
        self.request = req
        return True

    def session_started(self) -> None:
        if self.request.get("op") == "sftp":
            self._start_sftp()
            return
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            if self.request["op"] == "hello":
                info = DialHomeInfo.read(self.home.root)
                hello = {
                    "agent_id": info.agent_id if info else None,
                    "version": __version__,
                    "pid": os.getpid(),
                    "root": str(self.home.root),
                }
                self.chan.write(json.dumps(hello).encode())
                self.chan.exit(0)
                return
            await self._exec()
        except _Refused as e:
            self.chan.write_stderr(f"osmo agent: {e}\n".encode())
            self.chan.exit(126)
        except Exception as e:  # report it on the channel: one bad session must not end others
            log.exception("exec session failed")
            with contextlib.suppress(Exception):
                self.chan.write_stderr(f"osmo agent: {type(e).__name__}: {e}\n".encode())
                self.chan.exit(125)

    async def _exec(self) -> None:
        key, argv = self.request.get("key"), self.request.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise _Refused("exec needs a non-empty argv of strings")
        att = self.home.sup.running.get(str(key))
        if att is None or att.pid is None:
            raise _Refused(f"task attempt {key} is not running on this agent")
        if att.runtime and att.container:  # in the task's container, with its cwd and env
            if att.inner_pid is None:
                att.inner_pid = await first_pid(att.runtime, att.container)
            if att.inner_pid is None:
                raise _Refused(f"the container of task attempt {key} does not run")
            tty = self.term is not None
            argv = exec_argv(att.runtime, att.container, argv, tty, user_of(att.identity))
            cwd, env = str(att.work), att.env
            self.as_task = {}  # the runtime's client is the agent's; `--user` is the task's
        else:
            cwd, env = _context_of(att.pid, self.home.sup.workspace(str(key)))
            self.as_task = self.home.sup.as_task(att)  # a user's shell is never the agent's
        if self.term is not None:
            code = await self._run_pty(argv, cwd, env)
        else:
            code = await self._run_pipes(argv, cwd, env)
        if code < 0:
            name = signal.Signals(-code).name.removeprefix("SIG")
            self.chan.exit_with_signal(name, False, "", "")
        else:
            self.chan.exit(code)

    async def _run_pipes(self, argv: list[str], cwd: str, env: dict[str, str]) -> int:
        try:
            self.proc = proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                **self.as_task,
            )
        except OSError as e:
            raise _Refused(f"cannot run {argv[0]!r}: {e}") from None
        if self.pending or self.eof:  # stdin that came before the process
            self.data_received(bytes(self.pending), None)
            self.pending.clear()
        assert proc.stdout is not None and proc.stderr is not None
        await asyncio.gather(
            self._pump(proc.stdout, self.chan.write),
            self._pump(proc.stderr, self.chan.write_stderr),
        )
        return await proc.wait()

    async def _pump(self, reader: asyncio.StreamReader, write: Any) -> None:
        while data := await reader.read(_READ):
            await self.writable.wait()  # the channel's window is full: stop reading the pipe
            write(data)

    async def _run_pty(self, argv: list[str], cwd: str, env: dict[str, str]) -> int:
        assert self.term is not None
        master, slave = pty.openpty()
        _set_size(master, *self.term)
        if "user" in self.as_task:  # its terminal is the task's, as a login's would be
            os.fchown(slave, self.as_task["user"], self.as_task["group"])
        env = {**env, "TERM": env.get("TERM") or "xterm-256color"}
        try:
            self.proc = proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
                preexec_fn=_take_terminal,
                **self.as_task,
            )
        except OSError as e:
            os.close(master)
            raise _Refused(f"cannot run {argv[0]!r}: {e}") from None
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        # A resize that came while the process started only updated self.term (no master yet)
        _set_size(master, *self.term)
        self.master = master
        loop = asyncio.get_running_loop()
        drained = loop.create_future()

        def readable() -> None:
            try:
                data = os.read(master, _READ)
            except BlockingIOError:
                return
            except OSError:  # EIO: every holder of the slave side has closed it
                data = b""
            if not data:
                loop.remove_reader(master)
                if not drained.done():
                    drained.set_result(None)
                return
            self.chan.write(data)

        self._reader = readable
        loop.add_reader(master, readable)
        if self.pending:
            self._write_pty()
        code = await proc.wait()
        # Output still in the PTY after the exit; bounded: a background child may hold it open.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(drained, 2.0)
        loop.remove_reader(master)
        loop.remove_writer(master)
        self.master = None
        os.close(master)
        return code

    def _write_pty(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.master is not None
        try:
            n = os.write(self.master, self.pending)
        except BlockingIOError:
            n = 0
        except OSError:
            self.pending.clear()
            return
        del self.pending[:n]
        if self.pending:
            loop.add_writer(self.master, self._write_pty)
        else:
            loop.remove_writer(self.master)

    # --- events from the SSH client -------------------------------------------------------

    def data_received(self, data: bytes, datatype: Any) -> None:
        if self.sftp is not None:
            self.sftp.data_received(data, datatype)
        elif self.master is not None:
            self.pending += data
            self._write_pty()
        elif self.proc is not None and self.proc.stdin is not None:
            if data:
                self.proc.stdin.write(data)
            if self.eof:
                self.proc.stdin.close()
        else:
            self.pending += data

    def eof_received(self) -> bool:
        if self.sftp is not None:
            return self.sftp.eof_received()
        self.eof = True
        if self.master is None and self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        return True  # keep the channel open for our output

    def signal_received(self, name: str) -> None:
        sig = getattr(signal, f"SIG{name}", None)
        if self.proc is not None and isinstance(sig, signal.Signals):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def terminal_size_changed(self, width: int, height: int, pw: int, ph: int) -> None:
        if self.master is not None:
            _set_size(self.master, width, height)  # the kernel sends SIGWINCH to the job
        self.term = (width, height)

    def pause_writing(self) -> None:
        if self.sftp is not None:
            self.sftp.pause_writing()
        self.writable.clear()
        if self.master is not None:
            asyncio.get_running_loop().remove_reader(self.master)

    def resume_writing(self) -> None:
        if self.sftp is not None:
            self.sftp.resume_writing()
        self.writable.set()
        if self.master is not None:
            asyncio.get_running_loop().add_reader(self.master, self._reader)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.sftp is not None:
            self.sftp.connection_lost(exc)
        # The user went away: what they started must not outlive the session.
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGHUP)
                asyncio.get_running_loop().call_later(2.0, _kill_group, self.proc.pid)


class _Refused(Exception):
    """An exec the agent will not run; the message goes to the channel's stderr."""


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _context_of(pid: int, workdir: Path) -> tuple[str, dict[str, str]]:
    """The running task's own working directory and environment (what it really runs with),
    read from the process; the attempt's folder and the agent's environment if unreadable."""
    try:
        p = psutil.Process(pid)
        return p.cwd(), p.environ()
    except (psutil.Error, OSError):
        return str(workdir), dict(os.environ)


def _set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _take_terminal() -> None:
    """In the child, after setsid: make the PTY (its stdin) the controlling terminal, so
    Ctrl-C in the stream becomes SIGINT for the foreground job."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
