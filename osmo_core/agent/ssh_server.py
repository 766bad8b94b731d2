"""What the agent's SSH server (on the connection it dialled home) lets the control plane open.

Public-key authentication only, with the one client key from dialhome.json; session channels
(exec, hello, the sftp subsystem: ssh_session.py); direct-tcpip forwards to 127.0.0.1 only
(port-forward into the task's host), which asyncssh refuses unless allowed here;
direct-streamlocal to the agent's own socket only (the agent protocol, for a control plane that
cannot reach that socket otherwise: a pod's agent); and no listening on the agent's host on the
control plane's behalf.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import asyncssh

from ..wire import PACKET, WINDOW
from .ssh_session import Session

if TYPE_CHECKING:
    from .dialhome import DialHome


class AgentSSHServer(asyncssh.SSHServer):
    """Public-key auth only (the keys come from dialhome.json); forwards to loopback only."""

    def __init__(self, home: DialHome):
        self.home = home
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def session_requested(self) -> Session:
        return Session(self.home)

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
