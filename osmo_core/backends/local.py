"""The local backend: tasks run on this machine under its host agent (osmo_core.agent).

The agent is a separate, detached process, one per data directory, started on demand and
outliving the engine; this backend is its client over a Unix socket. If the connection drops
it reconnects (starting a new agent if the old one is gone), asks the agent about every
attempt it still watches and replays what it missed from the durable logs, so no end of an
attempt is ever lost (an end may be delivered twice; the engine ignores repeats).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

from .. import __version__
from ..agent import host
from ..agent.logfile import read_lines
from ..agent.protocol import (
    MAX_MESSAGE,
    PROTOCOL,
    decode,
    encode,
    event_from_wire,
    request_to_wire,
    state_from_wire,
)
from ..agent.workdir import LOG, attempt_dir
from ..data import credentials
from ..errors import BackendError, ConfigError, Problem
from .base import (
    AttemptState,
    Backend,
    BackendEvent,
    EventSink,
    Exited,
    Held,
    LaunchInfo,
    LaunchRequest,
    LogLine,
    Lost,
    Node,
    Started,
    StartFailed,
    Transfer,
)

log = logging.getLogger("osmo_core.backends.local")

START_TIMEOUT = 10.0  # seconds for an agent to answer after we started it
CALL_TIMEOUT = 30.0  # seconds for one request, reconnections included
_SOCKET_MAX = 100  # bytes; sun_path holds 108 with its NUL, keep a margin


def socket_path(root: Path) -> str:
    """ROOT/agent.sock, or a short path in the temp dir derived from ROOT when that is too long
    for a Unix socket."""
    path = str(root / "agent.sock")
    if len(os.fsencode(path)) <= _SOCKET_MAX:
        return path
    digest = hashlib.sha256(os.fsencode(root)).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"osmo-agent-{digest}.sock")


class _Disconnected(Exception):
    """The connection dropped before the answer came; the request is sent again."""


@dataclass
class _Watch:
    """What was delivered of an attempt that has not ended yet."""

    n: int = 0  # last log line delivered
    started: bool = False


class LocalBackend(Backend):
    """Tasks on this machine.

    Config: `root` (data directory; required), `idle_timeout` (seconds the agent lingers with
    no task and no client; default 600), and overrides of the detected capacity: `cpus`,
    `memory` (bytes) and `gpus` (a list of GPU indexes, which also lets tests declare GPUs on a
    machine without any: the tasks then get CUDA_VISIBLE_DEVICES as if they were there).
    """

    kind = "local"
    supports_hold = True

    def __init__(self, name: str, config: dict[str, Any] | None = None):
        super().__init__(name, config)
        if not self.config.get("root"):
            raise ConfigError(Problem("the local backend needs a 'root' directory", field="root"))
        self.root = Path(self.config["root"]).expanduser().resolve()
        self.socket_path = socket_path(self.root)
        self.idle_timeout = float(self.config.get("idle_timeout", 600))
        self.agent: dict[str, Any] = {}  # the agent's hello: version, pid, host facts
        self._sink: EventSink | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._ids = count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._watch: dict[str, _Watch] = {}
        self._held: list[BackendEvent] | None = None  # live events held during a resync
        self._spawned: list[subprocess.Popen[bytes]] = []

    # --- Backend ---------------------------------------------------------------------------

    async def start(self, sink: EventSink) -> None:
        self._sink = sink
        self._closing = False
        # The agent reads the secrets of named credentials here (0600), never from a request.
        credentials.write_file(self.root, self.credentials)
        self._connected.clear()
        await self._connect()
        self._keeper = asyncio.ensure_future(self._keep_connected())

    async def stop(self) -> None:
        self._closing = True
        for task in (self._keeper, self._reader_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._drop_connection(BackendError("the local backend was stopped"))
        self._connected.set()  # wakes calls waiting for a connection: they see _closing
        for proc in self._spawned:  # a detaching parent: it exits right after forking
            proc.wait(timeout=5)
        self._spawned.clear()

    async def nodes(self) -> list[Node]:
        # Same host: without an agent yet (placement checks), probe the machine ourselves.
        a = self.agent or await host.capacity()
        names = {g["index"]: g["name"] for g in a.get("gpus", [])}
        gpus = [int(g) for g in self.config.get("gpus", names)]
        return [
            Node(
                name=a["hostname"],
                cpu=float(self.config.get("cpus", a["cpus"])),
                memory=int(self.config.get("memory", a["memory"])),
                gpus=gpus,
                gpu_names=[names.get(g, "") for g in gpus],
                arch=a.get("arch", ""),
            )
        ]

    async def launch(self, req: LaunchRequest) -> LaunchInfo:
        new = req.key not in self._watch
        self._watch.setdefault(req.key, _Watch())  # before the call: events may come first
        try:
            resp = await self._call("launch", req=request_to_wire(req))
        except BackendError:
            if new:
                self._watch.pop(req.key, None)
            raise
        return LaunchInfo(**resp["info"])

    async def cancel(self, key: str, grace: float = 5.0) -> None:
        await self._call("cancel", key=key, grace=grace)

    async def release(self, key: str) -> None:
        await self._call("release", key=key)

    async def status(self, keys: list[str]) -> dict[str, AttemptState]:
        states = (await self._call("status", keys=keys))["states"]
        for key, st in states.items():
            if st["state"] in ("running", "held"):  # asked about: watch it from here on
                self._watch.setdefault(key, _Watch(n=st["log_lines"], started=True))
        return {key: state_from_wire(st) for key, st in states.items()}

    async def read_log(self, key: str, start: int = 0, limit: int | None = None) -> list[LogLine]:
        try:
            path = attempt_dir(self.root, key) / LOG
        except ValueError as e:
            raise BackendError(str(e)) from None
        return read_lines(path, key, start, limit)

    async def forget(self, key: str) -> None:
        self._watch.pop(key, None)

    async def shutdown_agent(self, force: bool = True) -> None:
        """Stop the agent (with `force`, its running tasks first) and wait until it is gone.
        For tests and the CLI's cleanup; the backend is stopped afterwards."""
        self._closing = True
        if self._writer is not None:
            try:
                await self._request("shutdown", force=force)
            except _Disconnected:
                pass
            except BackendError:
                self._closing = False
                raise
        await self.stop()
        deadline = time.monotonic() + START_TIMEOUT
        while self.agent_running() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    # --- requests --------------------------------------------------------------------------

    async def _call(self, op: str, **args: Any) -> dict[str, Any]:
        """One request; sent again after a reconnection (every op is idempotent)."""
        deadline = time.monotonic() + CALL_TIMEOUT
        while True:
            if self._closing:
                raise BackendError(f"local backend {self.name!r} is stopped")
            try:
                if not self._connected.is_set():
                    await asyncio.wait_for(self._connected.wait(), deadline - time.monotonic())
                    continue
                return await self._request(op, deadline - time.monotonic(), **args)
            except _Disconnected:
                continue
            except asyncio.TimeoutError:
                raise BackendError(
                    f"the agent of {self.root} did not answer {op!r} in {CALL_TIMEOUT:.0f} s"
                ) from None

    async def _request(self, op: str, timeout: float = CALL_TIMEOUT, **args: Any) -> dict[str, Any]:
        if self._writer is None:
            raise _Disconnected()
        req_id = next(self._ids)
        loop = asyncio.get_running_loop()
        fut = self._pending[req_id] = loop.create_future()
        expiry = loop.call_later(timeout, _expire, fut)  # cheaper than wait_for's extra task
        try:
            self._writer.write(encode({"id": req_id, "op": op, **args}))
            resp = await fut
        finally:
            expiry.cancel()
            self._pending.pop(req_id, None)
        if not resp.get("ok"):
            raise BackendError(f"agent refused {op!r}: {resp.get('error')}")
        return resp

    # --- the connection --------------------------------------------------------------------

    async def _connect(self) -> None:
        """Connect to the agent, starting one when none holds the root's lock; then hello."""
        deadline = time.monotonic() + START_TIMEOUT
        last_spawn = 0.0
        replaced = False  # replace an agent of another version once, never in a loop
        while not self._closing:
            try:
                reader, writer = await asyncio.open_unix_connection(
                    self.socket_path, limit=MAX_MESSAGE
                )
            except OSError as e:  # no socket yet, or nobody listening on it
                self._spawned = [p for p in self._spawned if p.poll() is None]
                now = time.monotonic()
                if now > deadline:
                    raise BackendError(
                        f"could not reach or start the agent for {self.root} ({e}); "
                        f"see {self.root}/agent.log"
                    ) from None
                if not self.agent_running() and now - last_spawn > 0.5:
                    self._spawn_agent()
                    last_spawn = now
                await asyncio.sleep(0.02)
                continue
            self._writer = writer
            self._held = []  # events wait until the resync below has delivered what was missed
            self._reader_task = asyncio.ensure_future(self._read(reader, writer))
            try:
                self.agent = await self._request("hello")
                if (self.agent["version"], self.agent.get("protocol")) != (__version__, PROTOCOL):
                    if not replaced and await self._replace_agent():
                        replaced = True
                        continue  # the old one is gone: start a current one
                    log.warning(
                        "the agent for %s runs version %s (protocol %s), not %s (%s); using it "
                        "(it has tasks)",
                        self.root,
                        self.agent["version"],
                        self.agent.get("protocol"),
                        __version__,
                        PROTOCOL,
                    )
                await self._resync()
            except (_Disconnected, asyncio.TimeoutError):
                self._drop_connection(_Disconnected())
                await self._reader_task
                if time.monotonic() > deadline:
                    raise BackendError(f"the agent for {self.root} does not answer") from None
                continue
            held, self._held = self._held, None
            for ev in held:
                self._deliver(ev)
            self._connected.set()
            return
        raise BackendError(f"local backend {self.name!r} is stopped")

    async def _replace_agent(self) -> bool:
        """Ask an agent of another version to go, if it runs nothing; True when it went."""
        if self.agent.get("running"):
            return False
        try:
            await self._request("shutdown", force=False)
        except BackendError:  # a task started meanwhile
            return False
        except _Disconnected:
            pass
        if self._reader_task is not None:
            await self._reader_task  # its EOF
        deadline = time.monotonic() + START_TIMEOUT
        while self.agent_running() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return True

    async def _keep_connected(self) -> None:
        delay = 0.05
        while True:
            assert self._reader_task is not None
            await self._reader_task
            self._drop_connection(_Disconnected())
            if self._closing:
                return
            log.warning("lost the connection to the agent of %s; reconnecting", self.root)
            while True:
                try:
                    await self._connect()
                    break
                except (BackendError, OSError) as e:  # bounded backoff while we are started
                    if self._closing:
                        return
                    log.warning("%s; retrying in %.1f s", e, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            delay = 0.05

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                msg = decode(line)
                if "id" in msg:
                    fut = self._pending.get(msg["id"])
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                elif self._held is not None:
                    self._held.append(event_from_wire(msg))
                else:
                    self._deliver(event_from_wire(msg))
        except ConnectionError as e:
            log.warning("agent connection: %s", e)
        except Exception:  # a malformed message: drop the connection and resync on a new one
            log.exception("agent connection: bad message")
        finally:
            if self._writer is writer:  # not a newer connection's
                self._drop_connection(_Disconnected())

    def _drop_connection(self, exc: Exception) -> None:
        self._connected.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)

    def agent_running(self) -> bool:
        """Whether some agent holds the root's lock (it may not listen yet)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "agent.lock", "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False

    def _spawn_agent(self) -> None:
        with open(self.root / "agent.log", "ab") as out:
            argv = [sys.executable, "-m", "osmo_core.agent", "--root", str(self.root)]
            argv += ["--socket", self.socket_path, "--idle-timeout", str(self.idle_timeout)]
            self._spawned.append(
                subprocess.Popen(
                    [*argv, "--detach"],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,  # no terminal signal reaches it
                )
            )

    # --- events ----------------------------------------------------------------------------

    async def _resync(self) -> None:
        """Deliver what the watched attempts did while we were not connected."""
        if not self._watch:
            return
        states = (await self._request("status", keys=list(self._watch)))["states"]
        for key, st in states.items():
            w = self._watch.get(key)
            if w is None or st["state"] == "unknown":  # unknown: its launch is still on its way
                continue
            if not w.started and st["state"] in ("running", "held", "exited"):
                self._deliver(Started(key, st.get("pid")))
            for line in await self.read_log(key, w.n):
                self._deliver(line)
            if st["state"] == "held":  # the engine ignores a repeat
                self._deliver(Held(key, st["exit_code"], signal=st.get("signal")))
            elif st["state"] == "exited":
                exited = Exited(key, st["exit_code"], signal=st.get("signal"))
                exited.message = st.get("message") or ""
                self._deliver(exited)
            elif st["state"] == "failed_start":
                self._deliver(StartFailed(key, st["message"]))
            elif st["state"] == "lost":
                self._deliver(Lost(key, st["message"]))

    def _deliver(self, ev: BackendEvent) -> None:
        w = self._watch.get(ev.key)
        if w is not None:
            if isinstance(ev, LogLine):
                if ev.n <= w.n:
                    return  # already delivered (from the log during a resync)
                w.n = ev.n
            elif isinstance(ev, Started):
                w.started = True
            elif isinstance(ev, (Transfer, Held)):
                pass  # not an end
            else:
                del self._watch[ev.key]
        assert self._sink is not None
        try:
            self._sink(ev)
        except Exception:
            log.exception("event sink failed on %r", ev)


def _expire(fut: asyncio.Future[dict[str, Any]]) -> None:
    if not fut.done():
        fut.set_exception(asyncio.TimeoutError())
