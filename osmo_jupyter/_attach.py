"""`Client().attach(WF, TASK)` and `%osmo attach`: a kernel inside a running task.

- Embedded (the engine in this process): the kernel is started through the Service's agent
  connection directly (osmo_core/interactive/kernel.py); its tunnels listen here.
- A server: `POST .../tasks/{task}/kernels` starts it as a kernel of that server; each ZMQ
  channel gets a local listener here whose connections travel as WebSockets
  (`.../kernels/{id}/channels/{channel}`) to the server, which forwards them over the agent's
  SSH connection (server/kernels.py).

Either way the caller gets a jupyter_client `BlockingKernelClient`, already answering
kernel_info; `kc.osmo.close()` shuts the kernel down and stops the tunnels.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, cast

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.connect import KernelConnectionInfo
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from osmo_core.client import API_PATH
from osmo_core.errors import OsmoError
from osmo_core.interactive.kernel import CHANNELS, RemoteKernel
from osmo_core.interactive.tunnel import PortTunnel, WebSocketStream

from . import _loop

SHUTDOWN_WAIT = 5.0
PREFIX = "osmo--"  # kernel spec names of tasks: osmo--WF--TASK


def spec_name(wf_id: str, task: str) -> str:
    """The kernel spec of a task (kernels.py); lower case, as jupyter_client's names are."""
    return f"{PREFIX}{wf_id}--{task}".lower()


SWITCH_DELAY = 0.5


class Attached:
    """What keeps an attached kernel reachable; `close()` ends it."""

    def __init__(self, kc: BlockingKernelClient, close: Any, kernel_id: str | None):
        self.kc = kc
        self.kernel_id = kernel_id
        self._close = close

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.kc.stop_channels()
        self._close()


class ServerKernel:
    """A kernel inside a task, started as a kernel of a server (`POST .../tasks/{task}/kernels`);
    each ZMQ channel listens here, its connections travelling as WebSockets to the server.
    The shape of osmo_core's RemoteKernel, for the task-kernel provisioner in client mode."""

    reason: str | None = None

    def __init__(self, transport: Any, base: str, made: dict[str, Any], tunnels: Any):
        self.transport, self.base, self.made, self.tunnels = transport, base, made, tunnels
        self.kernel_id: str = made["kernel_id"]
        self._code: int | None = None
        self._ended = asyncio.Event()

    @classmethod
    async def start(cls, transport: Any, wf_id: str, task: str) -> ServerKernel:
        path = f"workflows/{wf_id}/tasks/{task}/kernels"
        made = await asyncio.to_thread(transport.request, "POST", path)
        base = f"{path}/{made['kernel_id']}"
        try:
            tunnels = await _ws_tunnels(transport, base)
        except BaseException:
            with contextlib.suppress(OsmoError):
                await asyncio.to_thread(transport.request, "DELETE", base)
            raise
        return cls(transport, base, made, tunnels)

    def connection_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {f"{ch}_port": t.port for ch, t in self.tunnels.items()}
        info.update(
            ip="127.0.0.1",
            transport="tcp",
            key=self.made["key"].encode(),
            signature_scheme=self.made["signature_scheme"],
        )
        return info

    def poll(self) -> int | None:
        return self._code

    async def wait(self) -> int | None:
        await self._ended.wait()
        return self._code

    async def signal(self, signum: int) -> None:
        """SIGINT interrupts (the server's kernel API); anything else ends the kernel."""
        if signum == signal.SIGINT:
            url, token = self.transport.url, self.transport.token
            path = f"api/kernels/{self.kernel_id}/interrupt"
            await asyncio.to_thread(_call, url, token, "POST", path)
        else:
            await self.kill()

    async def kill(self) -> None:
        if self._code is None:
            with contextlib.suppress(OsmoError):  # already gone there
                await asyncio.to_thread(self.transport.request, "DELETE", self.base)
            self._code = -signal.SIGKILL
            self._ended.set()

    async def close(self) -> None:
        await _close_all(self.tunnels)


def attach(transport: Any, wf_id: str, task: str, timeout: float = 60.0) -> BlockingKernelClient:
    if transport.kind == "embedded":
        key = uuid.uuid4().hex.encode()
        kernel = _loop.run(RemoteKernel.start(transport.service, wf_id, task, key), timeout)
        info = kernel.connection_info()
        kernel_id = None

        def close() -> None:
            _loop.run(_shutdown_embedded(kernel, info), SHUTDOWN_WAIT + 15)

    else:
        remote = _loop.run(ServerKernel.start(transport, wf_id, task), timeout)
        info, kernel_id = remote.connection_info(), remote.kernel_id

        def close() -> None:
            _loop.run(_kill_and_close(remote), 30)

    kc = BlockingKernelClient()
    kc.load_connection_info(cast(KernelConnectionInfo, info))
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=timeout)
    except RuntimeError as e:
        kc.stop_channels()
        close()
        raise OsmoError(f"the kernel in {wf_id}/{task} did not answer: {e}") from None
    # our handle, added to jupyter_client's client for the caller
    kc.osmo = Attached(kc, close, kernel_id)  # type: ignore[attr-defined]
    return kc


async def _kill_and_close(kernel: ServerKernel) -> None:
    await kernel.kill()
    await kernel.close()


async def _shutdown_embedded(kernel: RemoteKernel, info: dict[str, Any]) -> None:
    from jupyter_client.asynchronous.client import AsyncKernelClient

    kc = AsyncKernelClient()
    kc.load_connection_info(cast(KernelConnectionInfo, info))
    kc.start_channels(shell=False, iopub=False, stdin=False, hb=False, control=True)
    kc.shutdown()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(kernel.wait(), SHUTDOWN_WAIT)
    kc.stop_channels()
    if kernel.poll() is None:
        await kernel.kill()
    await kernel.close()


async def _close_all(tunnels: dict[str, PortTunnel]) -> None:
    await asyncio.gather(*(t.close() for t in tunnels.values()), return_exceptions=True)


async def _ws_tunnels(transport: Any, base: str) -> dict[str, PortTunnel]:
    url = "ws" + transport.url[len("http") :] + f"{API_PATH}/{base}/channels/"
    headers = {"Authorization": f"token {transport.token}"}

    def opener(channel: str) -> Any:
        async def open_ws() -> tuple[WebSocketStream, WebSocketStream]:
            conn = await websocket_connect(
                HTTPRequest(url + channel, headers=headers, connect_timeout=10)
            )
            s = WebSocketStream(conn)
            return s, s

        return open_ws

    tunnels = {ch: PortTunnel(opener(ch), name=f"kernel {ch}") for ch in CHANNELS}
    for t in tunnels.values():
        await t.start()
    return tunnels


# --- %osmo attach: switch this notebook's kernel through the server's sessions API ----------


def switch_session_kernel(kernel_name: str) -> tuple[dict[str, Any], str]:
    """Start a `kernel_name` kernel on the server this kernel came from, then (in the
    background, SWITCH_DELAY s later) point this kernel's session at it: the server then shuts
    this kernel down, so its answer to that PATCH never arrives. Answers (the session before,
    the new kernel's id); every error that can be seen comes from the first, synchronous step."""
    url = os.environ.get("OSMO_SERVER_URL")
    token = os.environ.get("OSMO_SERVER_TOKEN", "")
    if not url:
        raise OsmoError(
            "this kernel was not started by a Jupyter server with osmo (no OSMO_SERVER_URL); "
            "use Client().attach(WF, TASK) instead"
        )
    mine = _own_kernel_id()
    sessions = _call(url, token, "GET", "api/sessions")
    before = next((s for s in sessions if (s.get("kernel") or {}).get("id") == mine), None)
    if before is None:
        raise OsmoError(f"no notebook session of the server at {url} uses this kernel ({mine})")
    new = _call(url, token, "POST", "api/kernels", {"name": kernel_name})["id"]

    def patch() -> None:
        time.sleep(SWITCH_DELAY)  # this cell's reply goes out first
        with contextlib.suppress(OsmoError):
            _call(url, token, "PATCH", f"api/sessions/{before['id']}", {"kernel": {"id": new}})

    threading.Thread(target=patch, name="osmo-attach", daemon=True).start()
    return before, new


def _own_kernel_id() -> str:
    from ipykernel.connect import get_connection_file

    name = os.path.basename(get_connection_file())
    return name.removeprefix("kernel-").removesuffix(".json")


def _call(url: str, token: str, method: str, path: str, body: Any = None) -> Any:
    req = urllib.request.Request(
        f"{url.rstrip('/')}/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=90) as resp:
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        try:
            msg = json.loads(e.read())["message"]
        except (ValueError, KeyError, TypeError):
            msg = e.reason
        raise OsmoError(f"{method} {path}: HTTP {e.code}: {msg}") from None
    except OSError as e:
        raise OsmoError(f"cannot reach the Jupyter server at {url}: {e}") from None
