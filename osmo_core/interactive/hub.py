"""Interactive: where agents dial in, and the channels users get into running tasks.

The control plane listens (asyncssh `listen_reverse`: TCP server, SSH *client*) on
`OsmoConfig.interactive_host:interactive_port` and tells each local agent where in its
ROOT/dialhome.json (with the public client key the agent must authorize). An agent that dials in
is asked who it is (`hello`); its host key is checked against the pinned one (keys.py) before it
is used for anything, and a second connection of the same agent replaces the first (it
reconnected; channels on the old one are reported lost by their readers).

Channels run on the agent of the backend that runs the task's latest attempt, only while the
store says the task is RUNNING (Conflict otherwise):

    exec(wf, task, argv, pty=(cols, rows) | None) -> ExecSession   (stdin/stdout/stderr, resize,
                                                                    signal, wait -> exit status)
    open_port(wf, task, port) -> (SSHReader, SSHWriter)             (direct-tcpip to 127.0.0.1)
    open_agent_port(agent_id, port)                                 (the same on an agent's
                                                                    current connection: tunnels)
    sftp(wf, task) -> asyncssh SFTPClient                           (rooted at the task's workdir)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncssh

from ..backends.base import Backend
from ..config import OsmoConfig
from ..errors import BackendError, Conflict, NotFound
from ..states import TaskStatus
from ..store import Store
from ..wire import (
    DIALHOME,
    KEEPALIVE_INTERVAL,
    PACKET,
    SFTP_ATTEMPT,
    WINDOW,
    DialHomeInfo,
    attempt_key,
)
from .keys import PinnedKeys, client_key, public_text
from .terminals import Terminals

_CONN_CLOSED = "SSH connection closed"  # asyncssh: a channel asked of a closing connection
log = logging.getLogger("osmo_core.interactive")

HELLO_TIMEOUT = 10.0  # seconds for a new agent to say who it is
AGENT_WAIT = 10.0  # seconds a request waits for the task's agent to (re)connect
# AES-GCM first: hardware-accelerated where chacha20 (asyncssh's first choice) is not.
CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"]


class ExecSession:
    """A command running inside a task, as seen from the control plane."""

    def __init__(self, process: asyncssh.SSHClientProcess[bytes], pty: bool):
        self._p = process
        self.pty = pty

    async def read(self, stderr: bool = False, n: int = 65536) -> bytes:
        """The next output bytes (b"" at the end); with a PTY everything comes on stdout."""
        stream = self._p.stderr if stderr else self._p.stdout
        return await stream.read(n)

    def write(self, data: bytes) -> None:
        """Input for the command; dropped once it has ended (its output and status still come:
        a command may end before its input is written, e.g. a kernel's boot in a task without
        ipykernel)."""
        with contextlib.suppress(BrokenPipeError):
            self._p.stdin.write(data)

    async def drain(self) -> None:
        await self._p.stdin.drain()

    def write_eof(self) -> None:
        with contextlib.suppress(BrokenPipeError):  # ended: its input is closed already
            self._p.stdin.write_eof()

    def resize(self, cols: int, rows: int) -> None:
        self._p.change_terminal_size(cols, rows)

    def signal(self, name: str) -> None:
        """A signal name without SIG (INT, TERM, KILL, HUP, ...), to the command's group."""
        self._p.send_signal(name.upper().removeprefix("SIG"))

    async def wait(self) -> dict[str, Any]:
        """{"exit_code": N | None, "signal": NAME | None}; exit_code None with no signal means
        the connection to the agent was lost before the command ended."""
        await self._p.wait_closed()
        sig = (self._p.exit_signal or [None])[0]
        return {"exit_code": None if sig else self._p.exit_status, "signal": sig}

    def close(self) -> None:
        self._p.close()


class Interactive:
    def __init__(self, config: OsmoConfig, backends: Mapping[str, Backend], store: Store):
        self.config = config
        self.backends = backends
        self.store = store
        self.port: int | None = None
        self.agents: dict[str, asyncssh.SSHClientConnection] = {}
        self._changed = asyncio.Event()
        self._pins = PinnedKeys(config.data_dir)
        self._listener: asyncssh.SSHAcceptor | None = None
        self._roots: dict[str, Path] = {}  # agent id -> the root whose dialhome.json we wrote
        self._bg: set[asyncio.Task[None]] = set()
        self._joining: set[asyncssh.SSHClientConnection] = set()  # dialled in, not yet checked
        self._expected: dict[str, str] = {}  # agent id -> host key a backend made for it (pods)
        self._managed: set[str] = set()  # agent id prefixes accepted only when expected
        self.terminals = Terminals()  # named shells in tasks, for Jupyter's terminal UI

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        key = client_key(self.config.data_dir)
        self._listener = await asyncssh.listen_reverse(
            self.config.interactive_host,
            self.config.interactive_port,
            client_keys=[key],
            known_hosts=None,  # checked by pin in _accept, once the agent has said who it is
            username="osmo",
            acceptor=self._accept,
            error_handler=self._failed,
            keepalive_interval=KEEPALIVE_INTERVAL,
            keepalive_count_max=3,
            login_timeout=HELLO_TIMEOUT,
            encryption_algs=CIPHERS,
            compression_algs=None,
        )
        self.port = self._listener.get_port()
        for name, backend in self.backends.items():
            root = backend.dial_home_dir()
            if root is not None:  # an agent on this machine: it reads where to dial in root
                self._roots[name] = root
                DialHomeInfo(self.config.interactive_host, self.port, name, public_text(key)).write(
                    root
                )
            else:  # remote agents: the backend tells them (a no-op for a backend with none)
                backend.set_dial_home(self.config.interactive_host, self.port, public_text(key))
            backend.attach_hub(self)
            if backend.agent_prefix is not None:
                self._managed.add(backend.agent_prefix)
        log.info("interactive: agents dial in to %s:%d", self.config.interactive_host, self.port)

    async def stop(self) -> None:
        await self.terminals.close()
        for name, root in self._roots.items():
            info = DialHomeInfo.read(root)
            if info is not None and (info.port, info.agent_id) == (self.port, name):
                (root / DIALHOME).unlink(missing_ok=True)  # ours: agents wait for the next one
        if self._listener is not None:
            self._listener.close()
        for conn in [*self.agents.values(), *self._joining]:
            conn.close()
        if self._listener is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._listener.wait_closed(), 2.0)
        for task in list(self._bg):
            task.cancel()
        await asyncio.gather(*self._bg, return_exceptions=True)
        self.agents.clear()

    # --- agents -----------------------------------------------------------------------------

    def _failed(self, conn: asyncssh.SSHClientConnection, exc: Exception | None) -> None:
        log.warning("interactive: an agent's connection failed before it was up: %s", exc)

    async def _accept(self, conn: asyncssh.SSHClientConnection) -> None:
        peer = conn.get_extra_info("peername")
        self._joining.add(conn)
        try:
            done = await conn.run(json.dumps({"op": "hello"}), timeout=HELLO_TIMEOUT, check=True)
            hello = json.loads(done.stdout or b"{}")
            agent_id = str(hello["agent_id"])
        except (asyncssh.Error, asyncio.TimeoutError, ValueError, KeyError, TypeError) as e:
            log.warning("interactive: refused %s: no valid hello (%s)", peer, e)
            conn.close()
            return
        finally:
            self._joining.discard(conn)
        host_key = conn.get_server_host_key()
        expected = self._expected.get(agent_id)
        if expected is None and any(agent_id.startswith(p) for p in self._managed):
            # a pod's agent before its backend (re)claimed the pod: it dials again
            log.info("interactive: agent %r is not expected yet; refused", agent_id)
            conn.close()
            return
        if host_key is None or not (
            public_text(host_key) == expected
            if expected is not None
            else self._pins.check(agent_id, public_text(host_key))
        ):
            log.warning(
                "interactive: refused %s claiming to be agent %r: its host key is not the one "
                "pinned for it (see %s)",
                peer,
                agent_id,
                self._pins.path,
            )
            conn.close()
            return
        old = self.agents.get(agent_id)
        self.agents[agent_id] = conn
        if old is not None:
            old.close()
        log.info(
            "interactive: agent %r (pid %s) connected from %s", agent_id, hello.get("pid"), peer
        )
        self._announce()
        task = asyncio.ensure_future(self._watch(agent_id, conn))
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _watch(self, agent_id: str, conn: asyncssh.SSHClientConnection) -> None:
        await conn.wait_closed()
        if self.agents.get(agent_id) is conn:
            del self.agents[agent_id]
            log.info("interactive: agent %r disconnected", agent_id)
            self._announce()

    def expect(self, agent_id: str, host_key: str) -> None:
        """An agent a backend made the host key of (a pod's): only that key is accepted for
        it, and nothing is pinned on disk (pods come and go; `forget` drops it)."""
        self._expected[agent_id] = host_key

    def forget(self, agent_id: str) -> None:
        self._expected.pop(agent_id, None)
        conn = self.agents.pop(agent_id, None)
        if conn is not None:
            conn.close()

    def _announce(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def agent(
        self, agent_id: str, timeout: float = AGENT_WAIT
    ) -> asyncssh.SSHClientConnection:
        """The connection of `agent_id`, waiting up to `timeout` for it to dial in."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (conn := self.agents.get(agent_id)) is None or conn.is_closed():
            left = deadline - loop.time()
            if left <= 0:
                raise BackendError(
                    f"the agent of backend {agent_id!r} is not connected for interactive access"
                )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)
        return conn

    # --- tasks ------------------------------------------------------------------------------

    def _running(self, wf_id: str, task: str) -> tuple[str, str]:
        """(agent id, attempt key) of the task's latest attempt; Conflict unless it runs."""
        rows = self.store.tasks_of(wf_id, task)
        if not rows:
            raise NotFound(f"workflow {wf_id!r} has no task {task!r}")
        row = rows[-1]
        if row["status"] != TaskStatus.RUNNING.value:
            raise Conflict(
                f"task {task!r} of {wf_id!r} is {row['status']}; interactive access needs a "
                "RUNNING task"
            )
        backend = row["backend"] or ""
        key = attempt_key(wf_id, task, row["retry_id"])
        found = self.backends.get(backend)
        agent_id = found.agent_of(key, row["node"] or "") if found is not None else None
        if agent_id is None:
            raise Conflict(f"backend {backend!r} of task {task!r} has no interactive access")
        return agent_id, key

    def declared_ports(self, wf_id: str, task: str) -> list[int]:
        """The ports a task's spec declares (`ports:`), open to its owner for port-forward."""
        spec = json.loads(self.store.get_workflow(wf_id)["spec_json"])
        found = [t for g in spec.get("groups") or [] for t in g["tasks"]]
        for t in found + list(spec.get("tasks") or []):
            if t["name"] == task:
                return [int(p) for p in t.get("ports") or []]
        raise NotFound(f"workflow {wf_id!r} has no task {task!r}")

    async def exec(
        self,
        wf_id: str,
        task: str,
        argv: list[str],
        pty: tuple[int, int] | None = None,
    ) -> ExecSession:
        """Start `argv` inside the running task; pty=(cols, rows) for a terminal."""
        agent_id, key = self._running(wf_id, task)
        conn = await self.agent(agent_id)
        req = json.dumps({"op": "exec", "key": key, "argv": argv})
        term = {} if pty is None else {"term_type": "xterm-256color", "term_size": pty}
        try:
            # bounded: a connection the agent no longer serves (its host froze, its network
            # dropped) would hold the caller until the keepalives give up (3 x 15 s)
            proc = await asyncio.wait_for(
                conn.create_process(req, encoding=None, **term), AGENT_WAIT
            )
        except asyncio.TimeoutError:
            raise BackendError(
                f"exec in {wf_id}/{task}: its agent did not answer within {AGENT_WAIT:.0f}s"
            ) from None
        except (asyncssh.Error, OSError) as e:
            raise BackendError(f"exec in {wf_id}/{task}: {e}") from e
        return ExecSession(proc, pty is not None)

    async def open_port(
        self, wf_id: str, task: str, port: int
    ) -> tuple[asyncssh.SSHReader[bytes], asyncssh.SSHWriter[bytes]]:
        """A TCP connection to 127.0.0.1:`port` on the task's host."""
        agent_id, _ = self._running(wf_id, task)
        return await self.open_agent_port(agent_id, port, f"{wf_id}/{task}")

    def placement(self, wf_id: str, task: str) -> tuple[str, str]:
        """(agent id, attempt key) of a RUNNING task; NotFound / Conflict otherwise."""
        return self._running(wf_id, task)

    async def open_agent_port(
        self, agent_id: str, port: int, what: str = "", timeout: float = AGENT_WAIT
    ) -> tuple[asyncssh.SSHReader[bytes], asyncssh.SSHWriter[bytes]]:
        """A TCP connection to 127.0.0.1:`port` on an agent's host, on its current connection
        (waiting up to `timeout` for it to dial in): tunnels that outlive one connection."""
        conn = await self.agent(agent_id, timeout)
        try:
            return await conn.open_connection(
                "127.0.0.1", port, encoding=None, window=WINDOW, max_pktsize=PACKET
            )
        except asyncssh.ChannelOpenError as e:
            if conn.is_closed() or e.reason == _CONN_CLOSED:
                # the connection is going down (the agent re-dials): not the port's answer
                raise BackendError(f"port {port} of {what or agent_id}: {e.reason}") from e
            raise Conflict(f"port {port} of {what or agent_id}: {e.reason}") from e
        except (asyncssh.Error, OSError) as e:
            raise BackendError(f"port {port} of {what or agent_id}: {e}") from e

    async def open_agent_socket(
        self, agent_id: str, path: str, timeout: float = AGENT_WAIT
    ) -> tuple[asyncssh.SSHReader[bytes], asyncssh.SSHWriter[bytes]]:
        """The agent's own protocol socket, on its current connection (OSError when the agent
        is not connected within `timeout` or refuses): how a pod's agent is driven."""
        try:
            conn = await self.agent(agent_id, timeout)
            return await conn.open_unix_connection(path, encoding=None)
        except (BackendError, asyncssh.Error) as e:
            raise OSError(f"agent {agent_id!r}: {e}") from e

    async def sftp(self, wf_id: str, task: str) -> asyncssh.SFTPClient:
        """An SFTP session in the task's workdir ("/" is the workdir); the caller closes it."""
        agent_id, key = self._running(wf_id, task)
        conn = await self.agent(agent_id)
        try:
            return await conn.start_sftp_client(env={SFTP_ATTEMPT: key})
        except (asyncssh.Error, OSError) as e:
            raise BackendError(f"sftp in {wf_id}/{task}: {e}") from e
