"""The invariant, checked by the engine: no attempt stays INITIALIZING or RUNNING without a
process behind it.

Backends report ends as events, and their links resync after a reconnection; this is the
check that does not rely on them. Every `OsmoConfig.reconcile_interval` seconds (only while
some attempt is launched) a pass asks each backend which attempts it runs (`Backend.running`,
one request), compares that with what the engine thinks is launched, and asks about the
difference only (`Backend.status`): an end found there is applied as if its event had come
(exit actions, retries), an attempt the backend no longer knows is lost (FAILED_BACKEND_ERROR,
rescheduled per policy). Asking about the difference makes a race harmless: an attempt that
started or ended between the two answers is reported as it is now.

A tick measures the engine's lag meanwhile: how long a no-op takes to get through its inbox.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..wire import AttemptState, BackendEvent, Exited, Lost, StartFailed

if TYPE_CHECKING:
    from .loop import Engine

log = logging.getLogger("osmo.engine")

TICK = 1.0  # seconds between two lag measurements


@dataclass
class ReconcileStats:
    """What the last passes found (read by the health report)."""

    passes: int = 0
    last_at: float | None = None  # wall-clock time of the last finished pass
    last_seconds: float = 0.0  # its duration
    checking: set[str] = field(default_factory=set)  # keys being asked about right now
    settled: int = 0  # attempts settled by passes since the engine started


def end_event(key: str, st: AttemptState | None, label: str) -> BackendEvent | None:
    """The end a status answer tells of (None while the attempt runs or is held)."""
    if st is None or st.state == "unknown":
        return Lost(key, f"{label} no longer runs this attempt and has no record of its end")
    if st.state == "exited":
        return Exited(key, st.exit_code or 0, signal=st.signal, message=st.message)
    if st.state == "failed_start":
        return StartFailed(key, st.message, reason=st.reason)
    if st.state == "lost":
        return Lost(key, st.message or f"{label} lost this attempt")
    return None  # running or held


class Reconciling:
    """The Engine's periodic check of launched attempts against its backends, and its tick.

    A part of `Engine` (engine/loop.py): methods only, on the engine's state, run in its loop.
    The tick's measures are declared here, where they are set (mypy types an attribute where
    a class first assigns it); Engine.__init__ starts them.
    """

    lag: float  # seconds the last tick took to get through the inbox
    tick_at: float | None  # wall-clock time of the last tick's answer
    tick_started: float | None  # monotonic start of a tick not answered yet

    async def _tick_forever(self: Engine) -> None:
        while True:
            await asyncio.sleep(TICK)
            self.tick_started = started = time.monotonic()
            try:
                await self._call(lambda: None)
            except Exception:  # the engine stopped (its failure is reported): lag grows
                return
            self.lag, self.tick_started = time.monotonic() - started, None
            self.tick_at = time.time()

    async def _reconcile_forever(self: Engine, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.reconcile()
            except Exception:  # a backend's bad answer must not end the checks
                log.exception("reconciliation pass failed")

    async def reconcile(self: Engine) -> int:
        """One pass over every backend; returns how many attempts it settled."""
        t0 = time.perf_counter()
        settled = 0
        for name, backend in self.backends.items():
            launched = await self._call(self._launched_on, name)
            if not launched:
                continue
            running = await backend.running()
            if running is None:  # cannot tell now (disconnected): its link resyncs later
                continue
            missing = [k for k in launched if k not in running]
            if not missing:
                continue
            self.reconciled.checking.update(missing)
            try:
                states = await backend.status(missing)
            finally:
                self.reconciled.checking.difference_update(missing)
            # An end whose event came while we asked has been applied by now (the inbox is in
            # order): settling it again would only log a false alarm.
            for key in await self._call(self._still_launched, missing):
                ev = end_event(key, states.get(key), f"backend {name!r}")
                if ev is not None:
                    log.warning("reconciliation: %s has no process behind it (%s)", key, ev)
                    self._post(ev)
                    settled += 1
        stats = self.reconciled
        stats.passes += 1
        stats.settled += settled
        stats.last_at = time.time()
        stats.last_seconds = time.perf_counter() - t0
        return settled

    def _still_launched(self: Engine, keys: list[str]) -> list[str]:
        return [k for k in keys if k in self._launched]

    def _launched_on(self: Engine, backend: str) -> list[str]:
        """Keys of the attempts launched on `backend` whose launch was answered (an attempt
        still launching may not be known to its backend yet)."""
        return [
            key
            for key, a in self._launched.items()
            if not a.launching and a.alloc is not None and a.alloc.backend == backend
        ]
