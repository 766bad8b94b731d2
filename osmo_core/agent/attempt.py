"""One attempt's process, as asyncio sees it: its pipes become log lines, its end a record.

Per-task overhead must stay near the cost of starting the user's own process, so an attempt
has no thread, no coroutine and no extra process: its output and exit are plain callbacks on
one asyncio.SubprocessProtocol (the exit watched through a pidfd, set up in __main__). Each
output line is masked (credential values), written to the attempt's durable log and emitted as
a `log` event before control goes back to the loop. At the end it hands over to the supervisor:
a hold (holds.py), staging out (outputs, checkpoints) or the exit record. Cancel is SIGTERM to
its process group, SIGKILL after the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.credentials import Masker
from .containers import oom_message, remove_container
from .holds import hold, holds, unhold
from .identity import TaskIdentity
from .logfile import MAX_LINE, now
from .logwriter import LogWriter
from .staging import Stager
from .workdir import LOG

if TYPE_CHECKING:
    from .supervisor import Supervisor

PIPE_GRACE = 2.0  # seconds to wait for pipe EOF after the main process exited
_STREAMS = {1: "stdout", 2: "stderr"}


class Attempt(asyncio.SubprocessProtocol):
    """One attempt's process: callbacks from asyncio turn its output and exit into records."""

    def __init__(
        self,
        sup: Supervisor,
        key: str,
        d: Path,
        runtime: str | None,
        container: str | None,
        notes: list[str],
    ):
        self.sup, self.key, self.dir = sup, key, d  # dir: the agent's records
        self.work = d  # the task's own folder (apart from `dir` with isolation)
        self.identity: TaskIdentity | None = None  # whom it runs as, when isolated
        self.pid: int | None = None
        self.n = 0  # log lines so far
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.runtime, self.container = runtime, container
        self._notes = notes  # system lines, logged once started so `started` comes first
        self._log = LogWriter(
            d / LOG, lambda message, recovered: sup.ends.trouble(key, message, recovered)
        )
        self._transport: asyncio.SubprocessTransport | None = None
        self._partial = {1: b"", 2: b""}
        self._open_pipes = {1, 2}
        self._returncode: int | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._early_cancel: float | None = None
        self._done = False
        self.mask: Masker | None = None  # hides credential values in its log
        self.secret_files = True  # whether its workdir may hold credential files (False: none)
        self.stager: Stager | None = None  # set when it has data to move
        self.staging: asyncio.Task[None] | None = None  # a transfer in progress
        self._canceled = False
        self.kill_at: float | None = None  # loop time a cancel's grace ends (SIGKILL)
        self.hold: str | None = None  # LaunchRequest.hold
        self.env: dict[str, str] = {}  # the command's environment (the holder gets it too)
        self.held: tuple[int, int | None] | None = None  # the command's (exit code, signal)
        self.holder: asyncio.subprocess.Process | None = None
        self.holder_argv: list[str] | None = None  # a container's hold (holds.py)
        self.inner_pid: int | None = None  # a container's first process, on the host
        self.cancel_pending = False  # canceled while the holder was starting
        self.memory: int | None = None  # its memory limit (a container's OOM is told apart)
        self.exit_message = ""  # why the command ended, when the exit code alone hides it

    # asyncio calls these, in this order: connection_made, then data / pipe EOFs / exit.
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self._transport = transport
        self.pid = transport.get_pid()
        self.sup.emit({"ev": "started", "key": self.key, "pid": self.pid, "ts": now()})
        for note in self._notes:
            self._line("system", note, now())
        self._flush()
        if self._early_cancel is not None:
            self.cancel(self._early_cancel)

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if self._done:
            return
        stream, ts = _STREAMS[fd], now()
        *lines, rest = (self._partial[fd] + data).split(b"\n")
        for raw in lines:
            for i in range(0, max(len(raw), 1), MAX_LINE):
                self._line(stream, raw[i : i + MAX_LINE].decode("utf-8", "replace"), ts)
        while len(rest) > MAX_LINE:
            self._line(stream, rest[:MAX_LINE].decode("utf-8", "replace"), ts)
            rest = rest[MAX_LINE:]
        self._partial[fd] = rest
        self._flush()  # every line reaches the file before we go back to the loop

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if self._done:
            return
        rest, self._partial[fd] = self._partial[fd], b""
        if rest:  # a last line without a newline
            self._line(_STREAMS[fd], rest.decode("utf-8", "replace"), now())
            self._flush()
        self._open_pipes.discard(fd)
        self._maybe_finish()

    def process_exited(self) -> None:
        assert self._transport is not None
        self._returncode = self._transport.get_returncode()
        if self._open_pipes:  # a background child still holds them: do not wait forever
            loop = asyncio.get_running_loop()
            self._timers.append(loop.call_later(PIPE_GRACE, self._pipes_held))
        self._maybe_finish()

    # ours
    def system(self, text: str) -> None:
        self._line("system", text, now())
        self._flush()

    def _line(self, stream: str, text: str, ts: float) -> None:
        if self.mask is not None:
            text = self.mask(text)
        self.n += 1
        self._log.add(ts, stream, text)
        self.sup.emit(
            {"ev": "log", "key": self.key, "n": self.n, "ts": ts, "stream": stream, "text": text}
        )

    def _flush(self) -> None:
        self._log.flush()

    def close_log(self) -> None:
        self._log.close()

    def _pipes_held(self) -> None:
        self._kill()
        # Give the pipes a moment to drain and close; a holder that left the group (setsid)
        # would keep them open forever.
        self._timers.append(asyncio.get_running_loop().call_later(0.2, self._finish))

    def _maybe_finish(self) -> None:
        if self._returncode is not None and not self._open_pipes:
            self._finish()

    def _finish(self) -> None:
        if self._done:
            return
        self._done = True
        for timer in self._timers:
            timer.cancel()
        self._signal(signal.SIGKILL)  # whatever is left of the group goes with the task
        self.close_log()
        assert self._transport is not None and self._returncode is not None
        self._transport.close()
        rc = self._returncode
        code, sig = (128 - rc, -rc) if rc < 0 else (rc, None)
        if self.container and not self._canceled:
            self.exit_message = oom_message(self.memory, code)
            if self.exit_message:
                self.system(self.exit_message)
        if holds(self.hold, code) and not self._canceled:
            self.sup.background(hold(self, code, sig))
            return
        if self.stager is not None:
            # canceled (or preempted): no outputs, but its last checkpoint in the grace left
            until = (self.kill_at or asyncio.get_running_loop().time()) if self._canceled else None
            self.sup.stage_out(self, code, sig, until)
            return
        self.sup.ended(
            self,
            {"state": "exited", "exit_code": code, "signal": sig, "message": self.exit_message},
        )

    def end_early(self, code: int, message: str, sig: int | None = None) -> None:
        """End an attempt whose command never ran (a transfer or a credential failed)."""
        self._done = True
        self.system(message)
        self.close_log()
        self.sup.ended(
            self, {"state": "exited", "exit_code": code, "signal": sig, "message": message}
        )

    def fail_start(self, message: str, reason: str = "") -> None:
        """`reason`: StartFailed.reason ("image_pull")."""
        self._done = True
        self._line("system", f"could not start: {message}", now())
        self.close_log()
        self.sup.ended(self, {"state": "failed_start", "message": message, "reason": reason})

    def cancel(self, grace: float) -> None:
        self._canceled = True
        if self.held is not None:
            if self.holder is None:
                self.cancel_pending = True
            else:
                unhold(self, complete=False)
            return
        if (self.staging is not None and not self.staging.done() and self.pid is None) or (
            self._done and self.staging is not None
        ):
            self.staging.cancel()  # a transfer before the command started or after it ended
            return
        if self._done:
            return
        if self.pid is None:  # still being spawned
            self._early_cancel = grace
            return
        self.kill_at = asyncio.get_running_loop().time() + max(grace, 0.0)
        if grace <= 0:
            self._kill()
            return
        self._signal(signal.SIGTERM)  # a container client passes it on to the container
        self._timers.append(asyncio.get_running_loop().call_later(grace, self._kill))

    def _kill(self) -> None:
        self._signal(signal.SIGKILL)
        if self.runtime and self.container:  # SIGKILL of the client leaves the container
            self.sup.background(remove_container(self.runtime, self.container))

    def _signal(self, sig: int) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
