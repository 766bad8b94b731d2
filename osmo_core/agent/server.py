"""The agent's server: clients on a Unix socket, requests to the supervisor, events to all.

It runs until a `shutdown` request, SIGTERM/SIGINT, or `idle_timeout` seconds with no running
task and no connected client. Stopping always leaves every attempt with its exit record:
running tasks are stopped (SIGTERM, then SIGKILL after a grace; at once for a forced
shutdown) rather than orphaned, since a task whose agent is gone can no longer be watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from .. import __version__
from . import host, usage
from .adopt import adopt
from .containers import Runtimes, remove_container
from .dialhome import DialHome
from .identity import UidMap
from .logfile import read_lines
from .orphans import record_lost, recover
from .protocol import MAX_MESSAGE, PROTOCOL, RequestError, decode, encode
from .supervisor import Supervisor
from .workdir import LOG, attempt_dir

log = logging.getLogger("osmo_core.agent")

STOP_GRACE = 5.0  # seconds running tasks get on SIGTERM of the agent
LOG_PAGE = 2000  # lines per `log` answer: one answer stays well under MAX_MESSAGE


class AgentServer:
    def __init__(
        self,
        root: Path,
        socket_path: str,
        idle_timeout: float = 600.0,
        tasks: Path | None = None,
        uids: UidMap | None = None,
        task_umask: int = 0o022,
    ):
        self.root = root
        self.socket_path = socket_path
        self.idle_timeout = idle_timeout
        self.sup = Supervisor(root, self._broadcast, self._runtime, tasks, uids, task_umask)
        self._clients: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}
        self._host: asyncio.Task[dict[str, Any]] | None = None
        self.runtimes = Runtimes()
        self._stop = asyncio.Event()
        self._stop_grace = STOP_GRACE
        self._outbox: dict[asyncio.StreamWriter, list[bytes]] = {}
        self._ops = {
            "hello": self._hello,
            "launch": self._launch,
            "cancel": self._cancel,
            "release": self._release,
            "ack": self._ack,
            "status": self._status,
            "running": self._running,
            "log": self._log,
            "shutdown": self._shutdown,
        }

    async def serve(self) -> None:
        self._host = asyncio.ensure_future(host.capacity())  # nvidia-smi: in background
        adopted, lost = await self._adopt(recover(self.root, self.sup.workspace))
        self.sup.background(self._remove(lost))
        server = await asyncio.start_unix_server(
            self._serve_client, path=self.socket_path, limit=MAX_MESSAGE
        )
        os.chmod(self.socket_path, 0o600)
        bound = os.stat(self.socket_path).st_ino
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        log.info(
            "agent %s (pid %d) serving %s on %s; %d container(s) adopted, %d of lost attempts "
            "to remove; %s",
            __version__,
            os.getpid(),
            self.root,
            self.socket_path,
            adopted,
            len(lost),
            self._isolation_note(),
        )
        idle = asyncio.ensure_future(self._watch_idle())
        # interactive access, and the protocol for a control plane that cannot reach the socket
        home = asyncio.ensure_future(DialHome(self.root, self.sup, self.socket_path).run())
        sampling = asyncio.ensure_future(self._report_usage())
        await self._stop.wait()
        idle.cancel()
        home.cancel()
        sampling.cancel()
        server.close()  # stop accepting
        await self.sup.stop(self._stop_grace)
        self._flush()
        for writer in self._clients:
            writer.close()
        await asyncio.gather(*self._clients.values())  # each ends at its EOF
        await server.wait_closed()
        self._host.cancel()
        # Only our own socket: if the data dir was deleted and re-created under us, the path
        # now belongs to a newer agent.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.socket_path).st_ino == bound:
                os.unlink(self.socket_path)
        log.info("agent stopped")

    async def _report_usage(self) -> None:
        if usage.INTERVAL > 0:
            await self.sup.report_usage(usage.INTERVAL)

    async def _watch_idle(self) -> None:
        interval = min(1.0, self.idle_timeout / 4)
        since = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            if self.sup.running or self._clients or self.sup.ends.unwritten:
                since = time.monotonic()
            elif time.monotonic() - since >= self.idle_timeout:
                log.info("idle for %.0f s: exiting", self.idle_timeout)
                self._stop.set()
                return

    # --- clients ---------------------------------------------------------------------------

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients[writer] = task
        try:
            while line := await reader.readline():
                if (answer := await self._answer(line)) is not None:
                    self._send(writer, encode(answer))
        except (ConnectionError, ValueError) as e:  # ValueError: a line over MAX_MESSAGE
            log.warning("client dropped: %s", e)
        finally:
            del self._clients[writer]
            writer.close()

    async def _answer(self, line: bytes) -> dict[str, Any] | None:
        """The answer to a request; None for a request without an id (a notification, as
        the control plane's acks are) that succeeded: nobody waits for it."""
        req_id = None
        try:
            msg = decode(line)
            req_id = msg.get("id")
            op = self._ops.get(msg.get("op", ""))
            if op is None:
                raise RequestError(f"unknown op {msg.get('op')!r}")
            result = await op(msg)
            return {"id": req_id, "ok": True, **result} if "id" in msg else None
        except Exception as e:  # answer it: one bad request must not end the agent
            if not isinstance(e, (RequestError, ValueError, KeyError, TypeError)):
                log.exception("request failed")
            return {"id": req_id, "ok": False, "error": f"{type(e).__name__}: {e}"}

    def _broadcast(self, ev: dict[str, Any]) -> None:
        data = encode(ev)
        for writer in self._clients:
            self._send(writer, data)

    def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Queue `data`; what is queued in one loop iteration leaves in one write. A launch's
        `started` event and its answer then cost the client one wakeup, not two."""
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.setdefault(writer, []).append(data)

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, {}
        for writer, chunks in outbox.items():
            if not writer.is_closing():
                writer.write(b"".join(chunks))

    # --- ops -------------------------------------------------------------------------------

    async def _runtime(self) -> str | None:
        return await self.runtimes.current()

    async def _adopt(self, orphans: list[tuple[Path, str]]) -> tuple[int, list[str]]:
        """A predecessor's containers, adopted where they still exist; the others' attempts
        recorded lost. Returns how many were adopted, and the containers left to remove."""
        runtime = await self._runtime() if orphans else None

        async def one(d: Path, name: str) -> bool:
            try:
                return await adopt(self.sup, runtime, d, name)
            except (OSError, ValueError, KeyError, TypeError) as e:  # a damaged record
                log.warning("attempt folder %s: container %s not adopted: %s", d, name, e)
                return False

        done = await asyncio.gather(*(one(d, name) for d, name in orphans))
        for (d, _), ok in zip(orphans, done, strict=True):
            if not ok:
                record_lost(d)
        return sum(done), [name for (_, name), ok in zip(orphans, done, strict=True) if not ok]

    async def _remove(self, containers: list[str]) -> None:
        """The containers of a predecessor's lost attempts (their clients are dead)."""
        runtime = await self._runtime() if containers else None
        if runtime is not None:
            await asyncio.gather(*(remove_container(runtime, c) for c in containers))

    async def _hello(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self._host is not None
        return {
            **await self._host,
            "container_runtime": await self._runtime(),
            "version": __version__,
            "protocol": PROTOCOL,
            "pid": os.getpid(),
            "root": str(self.root),
            "running": len(self.sup.running),
            "isolation": self.isolation(),
        }

    def isolation(self) -> str:
        """ "none", or "user:LO-HI:TASKS" (what the backend compares with what it wants)."""
        uids = self.sup.uids
        if uids is None:
            return "none"
        return f"user:{uids.lo}-{uids.hi}:{self.sup.tasks}"

    def _isolation_note(self) -> str:
        if self.sup.uids is None:
            return f"tasks run as this agent (uid {os.geteuid()})"
        uids = self.sup.uids
        return f"each user's tasks run as a uid of {uids.lo}-{uids.hi}, in {self.sup.tasks}"

    async def _launch(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {"info": await self.sup.launch(msg["req"])}

    async def _cancel(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.sup.cancel(msg["key"], float(msg.get("grace", 5.0)))
        return {}

    async def _release(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.sup.release(msg["key"])
        return {}

    async def _ack(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.sup.ends.ack(list(msg["keys"]))
        return {}

    async def _status(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {"states": self.sup.status(list(msg["keys"]))}

    async def _running(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {"keys": list(self.sup.running)}  # held ones too: their environment lives

    async def _log(self, msg: dict[str, Any]) -> dict[str, Any]:
        path = attempt_dir(self.root, str(msg["key"])) / LOG
        start, limit = int(msg.get("start", 0)), min(int(msg.get("limit", LOG_PAGE)), LOG_PAGE)
        lines = await asyncio.to_thread(read_lines, path, msg["key"], start, limit)
        return {"lines": [[ln.ts, ln.stream, ln.text] for ln in lines]}

    async def _shutdown(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self.sup.running and not msg.get("force"):
            raise RequestError(f"{len(self.sup.running)} task(s) running; shut down with force")
        if self.sup.ends.unwritten and not msg.get("force"):  # they live in our memory only
            raise RequestError(
                f"{self.sup.ends.unwritten} exit record(s) not yet written (the disk refuses "
                "them); shut down with force to lose them"
            )
        await self.sup.stop(0)  # killed now, so each has its exit record before we answer
        self._stop_grace = 0
        self._stop.set()
        return {}
