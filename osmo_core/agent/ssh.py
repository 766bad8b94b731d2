"""The agent dials home: it opens the TCP connection to the control plane and serves SSH on it.

The control plane writes ROOT/dialhome.json (`DialHomeInfo`): where to connect, the public key
of the one SSH client the agent accepts, and the id it knows the agent by. The agent's host key
is ROOT/ssh_host_key, made at its first start (0600); the control plane pins it on first sight.

Over that connection (asyncssh `connect_reverse`: TCP client, SSH server) the agent serves:

- session channels whose command is one JSON request:
    {"op": "hello"}                               -> stdout: {"agent_id", "version", "pid", "root"}
    {"op": "exec", "key": K, "argv": [...]}       -> runs argv inside running attempt K: its
                                                     workdir, its environment, its user (with
                                                     isolation: the task's uid, never the
                                                     agent's); with a PTY when one was requested
                                                     (resize, signals)
- the `sftp` subsystem, with the environment variable OSMO_ATTEMPT=K: SFTP rooted at running
  attempt K's folder (its workdir), chroot-like: `..` stops at that folder, and a path whose
  symlinks lead outside it is refused; links are not created, setuid/setgid bits not set; with
  isolation every file call is made as the task's uid (`_TaskSFTP`)
- direct-tcpip channels to 127.0.0.1 only (port-forward into the task's host);
- direct-streamlocal to the agent's own socket only: the agent protocol, for a control plane
  that cannot reach that socket otherwise (a pod's agent).

The connection is kept alive both ways (keepalive) and re-opened after any loss, with bounded
exponential backoff; a change of dialhome.json (a restarted control plane on a new port) is
picked up at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import posixpath
import pty
import signal
import struct
import termios
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh
import psutil
from asyncssh.sftp import MIN_SFTP_VERSION
from asyncssh.stream import SSHServerStreamSession

from .. import __version__
from .identity import TaskIdentity, acting_as, drop_setid

if TYPE_CHECKING:
    from .supervisor import Supervisor

log = logging.getLogger("osmo_core.agent")

DIALHOME = "dialhome.json"
HOST_KEY = "ssh_host_key"
KEEPALIVE_INTERVAL = 15.0  # seconds between keepalives; 3 missed answers drop the connection
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0  # seconds between reconnection attempts
CONNECT_TIMEOUT = 10.0
_READ = 65536
# Per forward channel (both ends): a window that keeps a loopback pipe full, and packets of
# 64 KiB, measured best on this code (32 KiB: more per-packet work in Python; 256 KiB: slower,
# each packet is copied while buffered whole).
WINDOW, PACKET = 8 * 1024 * 1024, 64 * 1024
SFTP_ATTEMPT = "OSMO_ATTEMPT"  # the sftp channel's environment names the attempt it serves


@dataclass(frozen=True)
class DialHomeInfo:
    host: str
    port: int
    agent_id: str
    client_key: str  # OpenSSH public key of the control plane's SSH client

    def write(self, root: Path) -> None:
        """Atomically, so the agent never reads half a file."""
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{DIALHOME}.{os.getpid()}"
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, root / DIALHOME)

    @classmethod
    def read(cls, root: Path) -> DialHomeInfo | None:
        try:
            return cls(**json.loads((root / DIALHOME).read_text()))
        except (OSError, ValueError, TypeError):
            return None


def host_key(root: Path) -> asyncssh.SSHKey:
    """The agent's host key, generated on first use (only the owner may read it)."""
    path = root / HOST_KEY
    if not path.exists():
        key = asyncssh.generate_private_key("ssh-ed25519")
        tmp = root / f".{HOST_KEY}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key())
        os.replace(tmp, path)
    return asyncssh.read_private_key(path)


class DialHome:
    """Keeps one SSH connection to the control plane up while the agent runs."""

    def __init__(self, root: Path, sup: Supervisor, socket_path: str | None = None):
        self.root = root
        self.sup = sup
        self.socket_path = socket_path  # the agent's own socket: the one Unix forward allowed
        self.conn: asyncssh.SSHServerConnection | None = None

    async def run(self) -> None:
        logging.getLogger("asyncssh").setLevel(logging.WARNING)  # not a line per channel
        key = host_key(self.root)
        ours = os.stat(self.root).st_ino
        delay = BACKOFF_MIN
        while _same_dir(self.root, ours):  # a re-created data dir belongs to a newer agent
            info = DialHomeInfo.read(self.root)
            seen = _stamp(self.root)
            if info is not None:
                try:
                    await self._serve_once(info, key)
                    delay = BACKOFF_MIN  # it was up: reconnect quickly
                except (OSError, asyncssh.Error, asyncio.TimeoutError) as e:
                    log.info("dial home to %s:%d: %s", info.host, info.port, e)
            await self._wait_change(seen, delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def _serve_once(self, info: DialHomeInfo, key: asyncssh.SSHKey) -> None:
        conn = await asyncio.wait_for(
            asyncssh.connect_reverse(
                info.host,
                info.port,
                server_host_keys=[key],
                authorized_client_keys=asyncssh.import_authorized_keys(info.client_key),
                server_factory=lambda: _Server(self),
                encoding=None,
                allow_pty=True,
                agent_forwarding=False,
                x11_forwarding=False,
                sftp_factory=None,
                keepalive_interval=KEEPALIVE_INTERVAL,
                keepalive_count_max=3,
                login_timeout=CONNECT_TIMEOUT,
                window=WINDOW,
                max_pktsize=PACKET,
            ),
            CONNECT_TIMEOUT,
        )
        self.conn = conn
        log.info("dialled home to %s:%d as %r", info.host, info.port, info.agent_id)
        try:
            await conn.wait_closed()
        finally:
            self.conn = None
            conn.close()  # when cancelled (the agent stops): no half-open connection left
        log.info("connection home closed")

    async def _wait_change(self, seen: float | None, delay: float) -> None:
        """Sleep `delay`, cut short when dialhome.json changes (a control plane restarted)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + delay
        while (left := end - loop.time()) > 0:
            await asyncio.sleep(min(left, 0.1))
            if _stamp(self.root) != seen and DialHomeInfo.read(self.root) is not None:
                return


def _same_dir(root: Path, ino: int) -> bool:
    try:
        return os.stat(root).st_ino == ino
    except OSError:
        return False


def _stamp(root: Path) -> float | None:
    try:
        st = os.stat(root / DIALHOME)
    except OSError:
        return None
    return st.st_mtime_ns + st.st_ino


class _Server(asyncssh.SSHServer):
    """Public-key auth only (the keys come from dialhome.json); forwards to loopback only."""

    def __init__(self, home: DialHome):
        self.home = home
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def session_requested(self) -> _Session:
        return _Session(self.home)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> Any:
        # asyncssh refuses direct-tcpip unless this says yes; a port inside the task's host only
        if dest_host != "127.0.0.1" or not 0 < dest_port < 65536:
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                f"forwarding allowed to 127.0.0.1 only, not {dest_host}:{dest_port}",
            )
        assert self.conn is not None
        # asyncssh's own channel for an accepted forward has 32 KiB packets and a 2 MiB window,
        # whatever the connection's options say
        chan = self.conn.create_tcp_channel(window=WINDOW, max_pktsize=PACKET)
        return chan, self.conn.forward_connection(dest_host, dest_port)

    def unix_connection_requested(self, dest_path: str) -> bool:
        # The agent's own protocol socket only: how the control plane drives a pod's agent,
        # which it cannot reach any other way.
        return dest_path == self.home.socket_path

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False  # no listening on the agent's host on the control plane's behalf


class _Session(asyncssh.SSHServerSession):  # type: ignore[type-arg]
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
            None, lambda chan: _TaskSFTP(chan, root, att.identity), sftp_version=MIN_SFTP_VERSION
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
        if getattr(att, "_container", None):  # its cwd/env would be the container runtime's
            raise _Refused(
                f"task attempt {key} runs in a container: exec there is not supported yet"
            )
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


class _TaskSFTP(asyncssh.SFTPServer):
    """SFTP in one attempt's folder. asyncssh's chroot maps "/" to it and stops `..` there;
    on top, every folder on a path must really (symlinks resolved) lie inside it, and so must
    the file itself for the calls that follow a last symlink. Links are not created, and no
    setuid/setgid bit is set. With isolation every file system call is made as the task's
    identity (`acting_as`), so neither a race on a symlink nor a path the checks miss reaches
    what the task itself could not; without it the task runs as the agent anyway."""

    def __init__(self, chan: Any, root: Path, identity: TaskIdentity | None = None):
        super().__init__(chan, chroot=os.fsencode(root))
        self._root = os.fsencode(os.path.realpath(root))
        self._identity = identity

    def _inside(self, local: bytes) -> bytes:
        real = os.path.realpath(local)
        if real != self._root and not real.startswith(self._root + b"/"):
            raise asyncssh.SFTPPermissionDenied("the path leads outside the task's workdir")
        return local

    def map_path(self, path: bytes) -> bytes:
        local = super().map_path(path)
        if local.rstrip(b"/") != self._root:
            self._inside(posixpath.dirname(local.rstrip(b"/")))
        return local

    def _follow(self, path: bytes) -> None:
        self._inside(self.map_path(path))

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            with acting_as(self._identity):
                return fn(*args)
        except PermissionError as e:
            raise asyncssh.SFTPPermissionDenied(str(e)) from None

    def open(self, path: bytes, pflags: int, attrs: Any) -> Any:
        self._follow(path)
        return self._call(super().open, path, pflags, _no_setid(attrs))

    def open56(self, path: bytes, access: int, flags: int, attrs: Any) -> Any:
        self._follow(path)
        return self._call(super().open56, path, access, flags, _no_setid(attrs))

    def stat(self, path: bytes) -> Any:
        self._follow(path)
        return self._call(super().stat, path)

    def lstat(self, path: bytes) -> Any:
        return self._call(super().lstat, path)

    def setstat(self, path: bytes, attrs: Any) -> Any:
        self._follow(path)
        return self._call(super().setstat, path, _no_setid(attrs))

    def lsetstat(self, path: bytes, attrs: Any) -> Any:
        return self._call(super().lsetstat, path, _no_setid(attrs))

    def fsetstat(self, file_obj: Any, attrs: Any) -> Any:
        return self._call(super().fsetstat, file_obj, _no_setid(attrs))

    def statvfs(self, path: bytes) -> Any:
        self._follow(path)
        return self._call(super().statvfs, path)

    def realpath(self, path: bytes) -> Any:
        self._follow(path)
        return self._call(super().realpath, path)

    def readlink(self, path: bytes) -> Any:
        return self._call(super().readlink, path)

    def mkdir(self, path: bytes, attrs: Any) -> Any:
        return self._call(super().mkdir, path, _no_setid(attrs))

    def rmdir(self, path: bytes) -> Any:
        return self._call(super().rmdir, path)

    def remove(self, path: bytes) -> Any:
        return self._call(super().remove, path)

    def rename(self, oldpath: bytes, newpath: bytes) -> Any:
        return self._call(super().rename, oldpath, newpath)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> Any:
        return self._call(super().posix_rename, oldpath, newpath)

    async def scandir(self, path: bytes) -> Any:
        self._follow(path)
        local = self.map_path(path)

        def listing() -> list[Any]:  # whole, as the task: nothing else runs as it meanwhile
            names = [(n, os.lstat(os.path.join(local, n))) for n in (b".", b"..")]
            with os.scandir(local) as entries:
                names += [(e.name, e.stat(follow_symlinks=False)) for e in entries]
            return names

        for name, st in self._call(listing):
            yield asyncssh.SFTPName(name, attrs=asyncssh.SFTPAttrs.from_local(st))

    def symlink(self, oldpath: bytes, newpath: bytes) -> Any:
        raise asyncssh.SFTPPermissionDenied("links are not made in a task's workdir")

    link = symlink


def _no_setid(attrs: Any) -> Any:
    if attrs is not None and attrs.permissions is not None:
        attrs.permissions = drop_setid(attrs.permissions)
    return attrs


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
