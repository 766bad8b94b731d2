"""A Jupyter kernel running inside a task, seen from the control plane (no Jupyter imports).

`RemoteKernel.start(service, wf, task, key)` takes the task's spare kernel when one is ready
(spares.py: started ahead in tasks a user is about to step into), else `launch`es one:
1. exec `python3 -c <kernel_boot.py> boot` in the task (its environment and cwd) with the key on
   stdin: the kernel starts detached there on six free ports of the task's host (five ZMQ
   channels and a small control port), or the start fails with a clear reason (no ipykernel,
   no Python, task not RUNNING);
2. listens on 127.0.0.1 here, one `PortTunnel` per channel, each connection forwarded over the
   agent's SSH connection (a direct-tcpip channel on its *current* connection, so a drop and
   re-dial costs the ZMQ peers one reconnect and the kernel nothing);
3. keeps one connection open to the kernel's control port: while it is up the kernel lives;
   when it closes, it is re-opened on the agent's next connection, and a refused one means the
   kernel has exited.
4. follows the task's status events: when the attempt stops RUNNING the kernel is told why
   (it prints the reason on its stderr — into the running cell — and exits).

`connection_info()` is what a jupyter_client needs: the local ports, the kernel's key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh

from ..errors import BackendError, Conflict
from . import kernel_boot
from .taskend import wait_ended
from .tunnel import PortTunnel

if TYPE_CHECKING:
    from ..service import Service

log = logging.getLogger("osmo_core.interactive")

CHANNELS = kernel_boot.CHANNELS
SCHEME = "hmac-sha256"  # jupyter_client's default and the spares' (another scheme: a new kernel)
START_TIMEOUT = 30.0  # seconds for the task's Python to import ipykernel and report back
REFUSALS = 3  # refused control connections in a row that mean the kernel has exited
RECONNECT_FOR = 60.0  # seconds the control connection may stay down before the kernel is lost
# (below kernel_boot.ORPHAN_AFTER, after which a kernel alone ends itself: we give it up first)
SIGNAL_WAIT = 5.0  # seconds a signal waits for the control connection to be re-opened
_SOURCE = Path(kernel_boot.__file__).read_text()
# The task's Python: python3, else python (Debian images often have only python3).
_FIND_PYTHON = (
    'for p in python3 python; do command -v "$p" >/dev/null 2>&1 && exec "$p" "$@"; done; '
    'echo "no python3 or python on the task\'s PATH" >&2; exit 127'
)


class KernelUnavailable(Conflict):
    """The task cannot run a kernel (no Python, no ipykernel); the message says what to do."""


class RemoteKernel:
    def __init__(self, service: Service, wf_id: str, task: str, agent_id: str, retry_id: int):
        self.service = service
        self.wf_id, self.task, self.agent_id, self.retry_id = wf_id, task, agent_id, retry_id
        self.key = b""
        self.signature_scheme = SCHEME
        self.remote: dict[str, Any] = {}
        self.tunnels: dict[str, PortTunnel] = {}
        self.returncode: int | None = None
        self.reason: str | None = None  # why it ended, when it did
        self._exited = asyncio.Event()
        self._control: Any = None  # the writer of the control connection
        self._control_reader: Any = None
        self._bg: list[asyncio.Task[None]] = []
        self._closing: asyncio.Future[None] | None = None

    @property
    def name(self) -> str:
        return f"{self.wf_id}/{self.task}"

    # --- start ------------------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        service: Service,
        wf_id: str,
        task: str,
        key: bytes,
        signature_scheme: str = SCHEME,
        local_ports: dict[str, int] | None = None,
    ) -> RemoteKernel:
        """A kernel in the task: its spare when one is ready (spares.py; its key is then its
        own, not `key`: a client takes `connection_info()`), else one started now. A restart
        (`local_ports` given: the client's ports stay) always starts one."""
        if local_ports is None and signature_scheme == SCHEME:
            retry_id = int(service.task(wf_id, task)["retry_id"])
            spare = await service.kernel_spares.take(wf_id, task, retry_id)
            if spare is not None:
                log.info("kernel in %s: the spare (pid %s)", spare.name, spare.remote.get("pid"))
                return spare
        return await cls.launch(service, wf_id, task, key, signature_scheme, local_ports)

    @classmethod
    async def launch(
        cls,
        service: Service,
        wf_id: str,
        task: str,
        key: bytes,
        signature_scheme: str = SCHEME,
        local_ports: dict[str, int] | None = None,
    ) -> RemoteKernel:
        """A new kernel in the task (steps 1-4 above)."""
        hub = service.interactive
        agent_id, _ = hub.placement(wf_id, task)
        retry_id = int(service.task(wf_id, task)["retry_id"])
        k = cls(service, wf_id, task, agent_id, retry_id)
        k.key, k.signature_scheme = key, signature_scheme
        await k._boot()
        try:
            for ch in CHANNELS:
                remote = int(k.remote["ports"][f"{ch}_port"])
                t = PortTunnel(k._opener(remote), (local_ports or {}).get(ch, 0), f"{k.name} {ch}")
                await t.start()
                k.tunnels[ch] = t
            k._control = await k._open_control()
        except BaseException:
            await k.kill()
            await k.close()
            raise
        k._bg = [
            asyncio.ensure_future(k._watch_control()),
            asyncio.ensure_future(k._watch_task()),
        ]
        log.info("kernel started in %s (pid %s on its host)", k.name, k.remote.get("pid"))
        return k

    async def _boot(self) -> None:
        argv = ["sh", "-c", _FIND_PYTHON, "sh", "-c", _SOURCE, "boot"]
        sess = await self.service.interactive.exec(self.wf_id, self.task, argv)
        cfg = {
            "key": self.key.decode(),
            "signature_scheme": self.signature_scheme,
            "orphan_after": kernel_boot.ORPHAN_AFTER,
        }
        sess.write(json.dumps({**cfg, "source": _SOURCE}).encode())
        sess.write_eof()

        async def collect() -> tuple[bytes, bytes, dict[str, Any]]:
            out, err = b"", b""
            while chunk := await sess.read():
                out += chunk
            while chunk := await sess.read(stderr=True):
                err += chunk
            return out, err, await sess.wait()

        try:
            out, err, status = await asyncio.wait_for(collect(), START_TIMEOUT)
        except asyncio.TimeoutError:
            sess.close()
            raise BackendError(
                f"the kernel in {self.name} did not start within {START_TIMEOUT:.0f}s"
            ) from None
        except (asyncssh.Error, OSError) as e:  # the agent's connection dropped meanwhile
            sess.close()
            raise BackendError(f"the kernel in {self.name} did not start: {e}") from None
        text = err.decode(errors="replace").strip()
        code = status["exit_code"]
        if code == 127 and not text:  # podman exec may lose the stderr of a quick exit
            text = "no python3 or python on the task's PATH"
        if code == kernel_boot.NO_IPYKERNEL or code == 127:
            raise KernelUnavailable(
                f"task {self.name} cannot run a Jupyter kernel: {text}; install ipykernel in "
                "the task's environment (e.g. `pip install ipykernel` in its image or command)"
            )
        if code != 0:
            raise BackendError(f"the kernel in {self.name} failed to start (exit {code}): {text}")
        try:
            self.remote = json.loads(out)
        except ValueError:
            raise BackendError(f"the kernel in {self.name} answered {out[:200]!r}") from None

    def _opener(self, port: int) -> Any:
        hub = self.service.interactive

        async def open_upstream() -> tuple[Any, Any]:
            return await hub.open_agent_port(self.agent_id, port, self.name)

        return open_upstream

    # --- what a client needs ----------------------------------------------------------------

    def connection_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {f"{ch}_port": t.port for ch, t in self.tunnels.items()}
        info.update(
            ip="127.0.0.1",
            transport="tcp",
            key=self.key,
            signature_scheme=self.signature_scheme,
        )
        return info

    # --- lifetime ---------------------------------------------------------------------------

    async def _open_control(self, timeout: float = 10.0) -> Any:
        port = int(self.remote["osmo_port"])
        hub = self.service.interactive
        r, w = await hub.open_agent_port(self.agent_id, port, self.name, timeout)
        self._control_reader = r
        return w

    async def _watch_control(self) -> None:
        """Alive while the control connection is; re-opened across agent reconnections."""
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(Exception):
                while await self._control_reader.read(4096):
                    pass
            self._control = None
            deadline = loop.time() + RECONNECT_FOR
            refused = 0
            while self._control is None:
                try:
                    self._control = await self._open_control(max(0.1, deadline - loop.time()))
                except Conflict:
                    # Refused on the task's host: the kernel has exited (a connection going
                    # down is a BackendError, below); a few in a row to be sure.
                    refused += 1
                    if refused >= REFUSALS:
                        self._ended(1, self.reason or f"the kernel in {self.name} exited")
                        return
                    await asyncio.sleep(0.15)
                except BackendError as e:
                    if loop.time() >= deadline:
                        self._ended(1, f"the kernel in {self.name} is unreachable: {e}")
                        return
                    await asyncio.sleep(0.2)
            log.info("kernel in %s: control connection re-opened", self.name)

    async def _watch_task(self) -> None:
        why = await wait_ended(self.service, self.wf_id, self.task, self.retry_id)
        if why is not None:
            await self.end(why + "; its kernel is shut down")

    async def end(self, reason: str) -> None:
        """Tell the kernel why it goes (it prints that and exits), then wait for it a little."""
        self.reason = reason
        log.info("kernel in %s: %s", self.name, reason)
        self._send({"op": "end", "reason": reason})
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._exited.wait(), 5.0)
        self._ended(1, reason)

    def _ended(self, code: int, reason: str) -> None:
        if self.returncode is None:
            self.returncode = code
            self.reason = self.reason or reason
            self._exited.set()
            # Nothing to carry any more; and a server that drops a dead kernel never cleans up
            # its provisioner, so the listeners must not wait for that.
            self._closing = asyncio.ensure_future(self._close_tunnels())

    async def _close_tunnels(self) -> None:
        await asyncio.gather(*(t.close() for t in self.tunnels.values()), return_exceptions=True)

    def _send(self, msg: dict[str, Any]) -> bool:
        if self._control is None:
            return False
        try:
            self._control.write(json.dumps(msg).encode() + b"\n")
        except Exception:  # the connection is going down; the watcher re-opens it
            return False
        return True

    async def signal(self, signum: int) -> None:
        """Signal the kernel's process group (SIGINT interrupts the running cell)."""
        if self.returncode is not None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SIGNAL_WAIT
        while not self._send({"op": "signal", "signal": int(signum)}):
            if loop.time() > deadline or self.returncode is not None:
                raise BackendError(f"the kernel in {self.name} cannot be reached to signal it")
            await asyncio.sleep(0.1)  # the control connection is being re-opened

    async def kill(self) -> None:
        with contextlib.suppress(BackendError):
            await self.signal(signal.SIGKILL)

    def poll(self) -> int | None:
        return self.returncode

    async def wait(self) -> int | None:
        await self._exited.wait()
        return self.returncode

    async def close(self) -> None:
        """Stop the tunnels and watchers (the kernel itself: `kill` or `end` first)."""
        for t in self._bg:
            t.cancel()
        await asyncio.gather(*self._bg, return_exceptions=True)
        if self._control is not None:
            with contextlib.suppress(Exception):
                self._control.close()
        await self._close_tunnels()
