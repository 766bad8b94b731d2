"""A client of one host agent (osmo_core.agent): JSON lines over one stream, kept connected.

Shared by the local backend (a Unix socket on this machine) and the SSH backend (the agent's
Unix socket on a remote host, reached through the SSH connection). A subclass says how to open
the stream and how to start an agent; this class does the rest: requests with ids, events to
the sink, reconnection with bounded backoff, and, after every reconnection, a resync that asks
the agent about every attempt still watched and replays what was missed from the durable logs,
so no end of an attempt is ever lost (an end may be delivered twice; the engine ignores repeats).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from itertools import count
from typing import Any, Protocol

from .. import __version__
from ..agent.protocol import PROTOCOL, decode, encode, event_from_wire, request_to_wire
from ..agent.protocol import state_from_wire as _state_from_wire
from ..errors import BackendError
from ..wire import (
    AttemptState,
    BackendEvent,
    EventSink,
    Exited,
    Held,
    LaunchInfo,
    LaunchRequest,
    LogLine,
    Lost,
    Started,
    StartFailed,
)

log = logging.getLogger("osmo_core.backends")

CALL_TIMEOUT = 30.0  # seconds for one request, reconnections included
RUNNING_TIMEOUT = 5.0  # seconds for the list of running attempts (a reconciliation skips it)


class _Reader(Protocol):
    async def readline(self) -> bytes: ...


class _Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class Disconnected(Exception):
    """The connection dropped before the answer came; the request is sent again."""


@dataclass
class _Watch:
    """What was delivered of an attempt that has not ended yet."""

    n: int = 0  # last log line delivered
    started: bool = False


class AgentLink(ABC):
    """One agent, one stream. `label` names the agent in messages (a root, a host)."""

    start_timeout = 10.0  # seconds for an agent to answer after we started it
    spawn_interval = 0.5  # seconds between two attempts to start an agent
    backoff_max = 5.0  # seconds between reconnection attempts, at most

    def __init__(self, label: str):
        self.label = label
        self.agent: dict[str, Any] = {}  # the agent's hello: version, pid, host facts
        self._sink: EventSink | None = None
        self._writer: _Writer | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._ids = count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._watch: dict[str, _Watch] = {}
        self._held: list[BackendEvent] | None = None  # live events held during a resync
        self._acks: list[str] = []  # ends delivered, to acknowledge to the agent

    # --- what a subclass provides ------------------------------------------------------------

    @abstractmethod
    async def _open(self) -> tuple[_Reader, _Writer]:
        """A stream to the agent; OSError when nothing listens (an agent is then started)."""

    @abstractmethod
    async def _agent_alive(self) -> bool:
        """Whether some agent holds the root (it may not listen yet)."""

    @abstractmethod
    async def _spawn_agent(self) -> None:
        """Start an agent (a no-op when one already holds the root)."""

    @abstractmethod
    async def read_log(self, key: str, start: int = 0, limit: int | None = None) -> list[LogLine]:
        """Log lines of an attempt from its durable log."""

    def _unreachable(self, since: float) -> None:  # noqa: B027 - optional hook
        """Called after each failed reconnection; `since`: monotonic time of the loss."""

    def _reconnected(self) -> None:  # noqa: B027 - optional hook
        """Called once the connection is back (after the resync)."""

    def _disconnected(self) -> None:  # noqa: B027 - optional hook
        """Called as soon as the connection is seen to drop."""

    # --- lifecycle ---------------------------------------------------------------------------

    async def _start_link(self, sink: EventSink, retry: bool = False) -> bool:
        """Connect, then keep connected. A failed first connection raises, or with `retry`
        returns False and goes on trying in the background."""
        self._sink = sink
        self._closing = False
        self._connected.clear()
        try:
            await self._connect()
        except (BackendError, OSError):
            if not retry:
                raise
            self._keeper = asyncio.ensure_future(self._keep_connected(first=True))
            return False
        self._keeper = asyncio.ensure_future(self._keep_connected())
        return True

    async def _stop_link(self, why: str) -> None:
        self._closing = True
        for task in (self._keeper, self._reader_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._drop_connection(BackendError(why))
        self._connected.set()  # wakes calls waiting for a connection: they see _closing

    @property
    def connected_now(self) -> bool:
        return self._connected.is_set() and not self._closing

    async def wait_connected(self) -> None:
        """Until the link is up (or stopped: a call then raises)."""
        await self._connected.wait()

    def follow(self, key: str, delivered: int) -> None:
        """Watch a started attempt this link did not launch (adopted after a restart): the
        next resync delivers its log from line `delivered` + 1, and its end."""
        self._watch.setdefault(key, _Watch(n=delivered, started=True))

    # --- attempts ----------------------------------------------------------------------------

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
        return {key: _state_from_wire(st) for key, st in states.items()}

    async def forget(self, key: str) -> None:
        self._watch.pop(key, None)

    async def running(self) -> set[str] | None:
        if not self.connected_now:
            return None  # the resync after the reconnection settles what ended meanwhile
        try:
            return set((await self._request("running", RUNNING_TIMEOUT))["keys"])
        except (Disconnected, BackendError, asyncio.TimeoutError):
            return None

    async def _shutdown(self, force: bool) -> None:
        """Ask the agent to stop (with `force`, its running tasks first)."""
        self._closing = True
        if self._writer is not None:
            try:
                await self._request("shutdown", force=force)
            except Disconnected:
                pass
            except BackendError:
                self._closing = False
                raise

    # --- requests ----------------------------------------------------------------------------

    async def _call(self, op: str, **args: Any) -> dict[str, Any]:
        """One request; sent again after a reconnection (every op is idempotent)."""
        deadline = time.monotonic() + CALL_TIMEOUT
        while True:
            if self._closing:
                raise BackendError(f"the connection to the agent of {self.label} is stopped")
            try:
                if not self._connected.is_set():
                    await asyncio.wait_for(self._connected.wait(), deadline - time.monotonic())
                    continue
                return await self._request(op, deadline - time.monotonic(), **args)
            except Disconnected:
                continue
            except asyncio.TimeoutError:
                raise BackendError(
                    f"the agent of {self.label} did not answer {op!r} in {CALL_TIMEOUT:.0f} s"
                ) from None

    async def _request(self, op: str, timeout: float = CALL_TIMEOUT, **args: Any) -> dict[str, Any]:
        if self._writer is None:
            raise Disconnected()
        req_id = next(self._ids)
        loop = asyncio.get_running_loop()
        fut = self._pending[req_id] = loop.create_future()
        expiry = loop.call_later(timeout, _expire, fut)  # cheaper than wait_for's extra task
        try:
            try:
                self._writer.write(encode({"id": req_id, "op": op, **args}))
            except OSError:  # an SSH channel closed under us: down now (or _call would spin
                self._pending.pop(req_id, None)  # on it), and sent again once reconnected
                self._drop_connection(Disconnected())
                raise Disconnected() from None
            resp: dict[str, Any] = await fut
        finally:
            expiry.cancel()
            self._pending.pop(req_id, None)
        if not resp.get("ok"):
            raise BackendError(f"agent refused {op!r}: {resp.get('error')}")
        return resp

    # --- the connection ----------------------------------------------------------------------

    async def _connect(self) -> None:
        """Connect to the agent, starting one when none listens; then hello and resync."""
        deadline = time.monotonic() + self.start_timeout
        last_spawn = 0.0
        replaced = False  # replace an agent of another version once, never in a loop
        while not self._closing:
            try:
                reader, writer = await self._open()
            except OSError as e:  # no socket yet, or nobody listening on it
                now = time.monotonic()
                if now > deadline:
                    raise BackendError(
                        f"could not reach or start the agent of {self.label} ({e})"
                    ) from None
                if now - last_spawn > self.spawn_interval and not await self._agent_alive():
                    await self._spawn_agent()
                    last_spawn = now
                await asyncio.sleep(0.02)
                continue
            self._writer = writer
            self._held = []  # events wait until the resync below has delivered what was missed
            self._reader_task = asyncio.ensure_future(self._read(reader, writer))
            try:
                self.agent = await self._request("hello")
                if not self._agent_fits(self.agent):
                    # Tasks would run as another identity than configured (task isolation):
                    # replace it, or refuse rather than run a user's task as the agent.
                    if not replaced and await self._replace_agent():
                        replaced = True
                        continue
                    self._drop_connection(Disconnected())
                    await self._reader_task
                    raise BackendError(
                        f"the agent of {self.label} runs tasks with isolation "
                        f"{self.agent.get('isolation', 'none')!r}, not as configured; stop "
                        f"its tasks (or the agent, pid {self.agent.get('pid')}) and start again"
                    )
                if (self.agent["version"], self.agent.get("protocol")) != (__version__, PROTOCOL):
                    if not replaced and await self._replace_agent():
                        replaced = True
                        continue  # the old one is gone: start a current one
                    log.warning(
                        "the agent of %s runs version %s (protocol %s), not %s (%s); using it "
                        "(it has tasks)",
                        self.label,
                        self.agent["version"],
                        self.agent.get("protocol"),
                        __version__,
                        PROTOCOL,
                    )
                await self._resync()
            except (Disconnected, asyncio.TimeoutError):
                self._drop_connection(Disconnected())
                await self._reader_task
                if time.monotonic() > deadline:
                    raise BackendError(f"the agent of {self.label} does not answer") from None
                continue
            held, self._held = self._held, None
            for ev in held:
                self._deliver(ev)
            self._connected.set()
            self._reconnected()
            return
        raise BackendError(f"the connection to the agent of {self.label} is stopped")

    def _agent_fits(self, hello: dict[str, Any]) -> bool:
        """Whether the agent runs tasks as this backend is configured to (identities)."""
        return True

    async def _replace_agent(self) -> bool:
        """Ask an agent of another version to go, if it runs nothing; True when it went."""
        if self.agent.get("running"):
            return False
        try:
            await self._request("shutdown", force=False)
        except BackendError:  # a task started meanwhile
            return False
        except Disconnected:
            pass
        if self._reader_task is not None:
            await self._reader_task  # its EOF
        deadline = time.monotonic() + self.start_timeout
        while await self._agent_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return True

    async def _keep_connected(self, first: bool = False) -> None:
        delay = 0.05
        lost = time.monotonic()
        while True:
            if not first:
                assert self._reader_task is not None
                await self._reader_task
                self._drop_connection(Disconnected())
                if self._closing:
                    return
                log.warning("lost the connection to the agent of %s; reconnecting", self.label)
                lost = time.monotonic()
            first = False
            while True:
                try:
                    await self._connect()
                    break
                except (BackendError, OSError) as e:  # bounded backoff while we are started
                    if self._closing:
                        return
                    self._unreachable(lost)
                    log.warning("%s; retrying in %.1f s", e, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.backoff_max)
            delay = 0.05

    async def _read(self, reader: _Reader, writer: _Writer) -> None:
        try:
            while line := await reader.readline():
                msg = decode(line)
                if "id" in msg:
                    if msg["id"] is None and not msg.get("ok"):  # a notification it refused
                        log.warning("agent of %s: %s", self.label, msg.get("error"))
                    fut = self._pending.get(msg["id"])
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                elif self._held is not None:
                    self._held.append(event_from_wire(msg))
                else:
                    self._deliver(event_from_wire(msg))
        except ConnectionError as e:
            log.warning("agent connection: %s", e)
        except (ValueError, KeyError, TypeError):  # a malformed message: resync on a new one
            log.exception("agent connection of %s: bad message", self.label)
        except Exception as e:  # the transport went (an SSH channel's ConnectionLost)
            log.warning("agent connection of %s ended: %s", self.label, e)
        finally:
            if self._writer is writer:  # not a newer connection's
                self._drop_connection(Disconnected())

    def _drop_connection(self, exc: Exception) -> None:
        self._connected.clear()
        self._disconnected()
        if self._writer is not None:
            with contextlib.suppress(Exception):  # a transport already gone
                self._writer.close()
            self._writer = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)

    # --- events ------------------------------------------------------------------------------

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
                self._deliver(StartFailed(key, st["message"], reason=st.get("reason", "")))
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
            elif isinstance(ev, (Exited, StartFailed, Lost)):
                # Only an end stops the watch: anything else (a usage sample, a transfer, a
                # hold) leaves the attempt to the next resync, or its loss would go unseen.
                del self._watch[ev.key]
        assert self._sink is not None
        try:
            self._sink(ev)
        except Exception:
            log.exception("event sink failed on %r", ev)
        if isinstance(ev, (Exited, StartFailed, Lost)):
            self._ack(ev.key)

    def _ack(self, key: str) -> None:
        """The engine has the attempt's end: its agent may forget it (agent/ends.py). One
        message per loop iteration; lost with the connection, the end comes again at the
        resync and is acknowledged then."""
        if not self._acks:
            asyncio.get_running_loop().call_soon(self._send_acks)
        self._acks.append(key)

    def _send_acks(self) -> None:
        keys, self._acks = self._acks, []
        if self._writer is not None:  # a notification: no id, so the agent sends no answer
            self._writer.write(encode({"op": "ack", "keys": keys}))


def _expire(fut: asyncio.Future[dict[str, Any]]) -> None:
    if not fut.done():
        fut.set_exception(asyncio.TimeoutError())
