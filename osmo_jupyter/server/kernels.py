"""Kernels inside running tasks, for clients that are not on the server's machine.

The kernel is a kernel of this Jupyter server (kernels.py: kernel spec `osmo--WF--TASK`,
listed in `/api/kernels`); these routes let a remote `Client().attach()` reach its ZMQ ports,
which listen on the server's loopback only:

    POST   .../workflows/{id}/tasks/{task}/kernels               → 201 {"kernel_id", "kernel_name",
           "key", "signature_scheme", "transport", "channels": [...]}  (the connection info
           without ports: the client picks its own local ports)
    WS     .../workflows/{id}/tasks/{task}/kernels/{kernel_id}/channels/{channel}
           one TCP connection to that channel's port: binary frames both ways, closed when
           either side closes (ZMQ reconnects, and gets a new socket)
    DELETE .../workflows/{id}/tasks/{task}/kernels/{kernel_id}   → {"kernel_id", "shutdown": true}

Authorized like every workflow route: the owner or an admin (403 otherwise), 404 for an
unknown task or a kernel that is not this task's, 409 when the task is not RUNNING or cannot
run a kernel (no ipykernel: the message says so), 502 when its agent does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tornado import websocket

from osmo_core.errors import NotFound
from osmo_core.interactive.kernel import CHANNELS

from .._attach import spec_name
from ..access import CURRENT_PRINCIPAL
from .base import OsmoHandler, OsmoWebSocket, api


def _kernel_of(handler: Any, wf_id: str, task: str, kernel_id: str) -> Any:
    """The server's KernelManager of `kernel_id`, if it is this task's kernel."""
    mkm = handler.settings["kernel_manager"]
    if kernel_id not in mkm or mkm.get_kernel(kernel_id).kernel_name != spec_name(wf_id, task):
        raise NotFound(f"task {task!r} of {wf_id!r} has no kernel {kernel_id!r}")
    return mkm.get_kernel(kernel_id)


class TaskKernelsHandler(OsmoHandler):
    @api
    async def post(self, wf_id: str, task: str) -> None:
        svc = await self.workflow_for(wf_id)
        svc.task(wf_id, task)  # 404 names the task
        svc.interactive.placement(wf_id, task)  # 409 unless RUNNING
        CURRENT_PRINCIPAL.set(self.who)  # the provisioner checks it again
        mkm = self.settings["kernel_manager"]
        kernel_id = await mkm.start_kernel(kernel_name=spec_name(wf_id, task))
        km = mkm.get_kernel(kernel_id)
        self.log.info("osmo: %s started kernel %s in %s/%s", self.who.name, kernel_id, wf_id, task)
        self.set_status(201)
        self.finish(
            {
                "kernel_id": kernel_id,
                "kernel_name": km.kernel_name,
                "key": km.session.key.decode(),
                "signature_scheme": km.session.signature_scheme,
                "transport": "tcp",
                "channels": list(CHANNELS),
            }
        )


class TaskKernelHandler(OsmoHandler):
    @api
    async def delete(self, wf_id: str, task: str, kernel_id: str) -> None:
        await self.workflow_for(wf_id)
        _kernel_of(self, wf_id, task, kernel_id)
        await self.settings["kernel_manager"].shutdown_kernel(kernel_id)
        self.finish({"kernel_id": kernel_id, "shutdown": True})


class KernelChannelWebSocket(OsmoWebSocket):
    """Raw bytes of one connection to a channel's port of the task's kernel."""

    _pump: asyncio.Task[None] | None = None
    _writer: asyncio.StreamWriter | None = None

    async def handshake(self, wf_id: str, task: str, kernel_id: str, channel: str) -> None:
        await self.workflow_for(wf_id)
        km = _kernel_of(self, wf_id, task, kernel_id)
        if channel not in CHANNELS:
            raise NotFound(f"no kernel channel {channel!r} (one of {', '.join(CHANNELS)})")
        port = getattr(km, f"{channel}_port")
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", port)

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.set_nodelay(True)  # small ZMQ frames
        self._pump = asyncio.create_task(self._run(), name="osmo-kernel-channel-ws")

    async def _run(self) -> None:
        try:
            while data := await self._reader.read(65536):
                await self.write_message(data, binary=True)
        except (websocket.WebSocketClosedError, OSError):
            pass
        self.close(1000, "closed")

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes) and self._writer is not None:
            with contextlib.suppress(OSError):
                self._writer.write(message)

    def on_close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._pump is not None:
            self._pump.cancel()
