"""The agent dials home: it opens the TCP connection to the control plane and serves SSH on it.

The control plane writes ROOT/dialhome.json (`wire.DialHomeInfo`): where to connect, the public
key of the one SSH client the agent accepts, and the id it knows the agent by. The agent's host
key is ROOT/ssh_host_key, made at its first start (0600); the control plane pins it on first
sight. Over that connection (asyncssh `connect_reverse`: TCP client, SSH server) the agent
serves what ssh_server.py allows. The connection is kept alive both ways (keepalive) and
re-opened after any loss, with bounded exponential backoff; a change of dialhome.json (a
restarted control plane on a new port) is picked up at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import asyncssh

from ..wire import DIALHOME, KEEPALIVE_INTERVAL, PACKET, WINDOW, DialHomeInfo
from .ssh_server import AgentSSHServer

if TYPE_CHECKING:
    from .supervisor import Supervisor

log = logging.getLogger("osmo_core.agent")

HOST_KEY = "ssh_host_key"
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0  # seconds between reconnection attempts
CONNECT_TIMEOUT = 10.0


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
                server_factory=lambda: AgentSSHServer(self),
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
