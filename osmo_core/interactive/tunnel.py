"""A local TCP listener whose every connection is carried by a stream opened on demand.

`PortTunnel(open_upstream)` listens on 127.0.0.1 and, for each accepted connection, opens an
upstream stream (an SSH direct-tcpip channel, a WebSocket...) and copies bytes both ways until
either side ends. Nothing is kept between connections: when the agent's SSH connection drops, the
local connection is closed, its peer (a ZMQ socket) reconnects, and the new connection gets a
channel on whatever connection the agent has dialled since.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

log = logging.getLogger("osmo_core.interactive")

_READ = 65536


class Reader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


Opener = Callable[[], Awaitable[tuple[Any, Any]]]  # -> (reader, writer), asyncio-stream-like


class PortTunnel:
    def __init__(self, open_upstream: Opener, port: int = 0, name: str = "tunnel"):
        self._open = open_upstream
        self.port = port
        self.name = name
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Listen (on `port`, or a free one); answers the port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._conns):
            t.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    def drop(self) -> None:
        """Close the connections now open (their peers reconnect through new channels)."""
        for t in list(self._conns):
            t.cancel()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._bridge(reader, writer))
        self._conns.add(task)
        task.add_done_callback(self._conns.discard)

    async def _bridge(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_w: Any = None
        try:
            try:
                up_r, up_w = await self._open()
            except Exception as e:  # upstream gone: the local peer retries by reconnecting
                log.debug("%s: no upstream for a new connection: %s", self.name, e)
                return
            sock = writer.get_extra_info("socket")
            if sock is not None:  # small ZMQ frames: no Nagle delay on either hop
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            down = asyncio.ensure_future(_copy(reader, up_w))
            up = asyncio.ensure_future(_copy(up_r, writer))
            try:
                await asyncio.wait([down, up], return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (down, up):
                    t.cancel()
                await asyncio.gather(down, up, return_exceptions=True)
        except asyncio.CancelledError:
            pass
        finally:
            for w in (writer, up_w):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()


async def _copy(reader: Reader, writer: Any) -> None:
    """Bytes from `reader` to `writer` until EOF or an error of either side."""
    with contextlib.suppress(Exception):  # OSError, asyncssh's ChannelError, ...: it ended
        while data := await reader.read(_READ):
            writer.write(data)
            await writer.drain()


class WebSocketStream:
    """A WebSocket of binary frames (tornado's client connection) as an asyncio-stream-like
    reader and writer, for `PortTunnel` upstreams that go through the server's API."""

    def __init__(self, conn: Any):
        self.conn = conn
        self._sent: Any = None

    async def read(self, n: int = -1) -> bytes:
        msg = await self.conn.read_message()
        if msg is None:
            return b""
        return msg if isinstance(msg, bytes) else b""  # text frames are control, not bytes

    def write(self, data: bytes) -> None:
        self._sent = self.conn.write_message(data, binary=True)

    async def drain(self) -> None:
        if self._sent is not None:
            await self._sent

    def close(self) -> None:
        self.conn.close()
