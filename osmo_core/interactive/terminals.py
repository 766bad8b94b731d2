"""Named terminals inside running tasks: a shell on the agent's PTY that outlives its viewers.

Like terminado's named terminals (what JupyterLab's Terminal widget talks to), but the process
is an `ExecSession` with a PTY inside a task instead of a local one. A terminal is created once
(its shell starts), any number of viewers attach and detach (a reloaded browser tab re-attaches
and gets the recent output again), and it ends when its shell exits, when it is terminated, when
the connection to the agent is lost, when its task ends (the shell would go on in a task that
is gone: viewers are told why, then it is hung up), or after `IDLE` seconds without a viewer.

The PTY's size is the smallest of its viewers' (as terminado does), so every viewer sees it all.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import Conflict, NotFound

if TYPE_CHECKING:
    from .hub import ExecSession

# The task's own shell: bash when it has one (interactive, not login: a login shell's
# /etc/profile would reset the task's PATH), else sh.
SHELL = ["/bin/sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash -i; fi; exec sh -i"]
IDLE = 600.0  # seconds a terminal with no viewer is kept
REPLAY = 1000  # output chunks kept for a viewer that (re)attaches, as terminado keeps


class Viewer(Protocol):
    def output(self, text: str) -> None: ...
    def ended(self) -> None: ...


@dataclass(eq=False)
class Terminal:
    name: str
    wf_id: str
    task: str
    user: str
    session: ExecSession
    last_activity: float = field(default_factory=time.time)
    viewers: dict[Viewer, tuple[int, int]] = field(default_factory=dict)  # viewer -> (rows, cols)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=REPLAY))
    size: tuple[int, int] = (24, 80)

    def model(self) -> dict[str, Any]:
        """jupyter_server's terminal model (`name`, `last_activity`), plus where it runs."""
        ts = datetime.fromtimestamp(self.last_activity, timezone.utc)
        return {
            "name": self.name,
            "last_activity": ts.isoformat().replace("+00:00", "Z"),
            "workflow_id": self.wf_id,
            "task": self.task,
            "user": self.user,
        }

    def write(self, text: str) -> None:
        self.last_activity = time.time()
        # dropped once the shell has ended: the pump reports it
        self.session.write(text.encode("utf-8", "surrogateescape"))

    def resize(self, viewer: Viewer, rows: int, cols: int) -> None:
        if viewer in self.viewers and rows > 0 and cols > 0:
            self.viewers[viewer] = (rows, cols)
            self._fit()

    def _fit(self) -> None:
        sizes = [s for s in self.viewers.values() if s != (0, 0)]
        if not sizes:
            return
        size = (min(r for r, _ in sizes), min(c for _, c in sizes))
        if size != self.size:
            self.size = size
            with contextlib.suppress(OSError):
                self.session.resize(size[1], size[0])


class Terminals:
    """The terminals of every task, by (workflow, task, name)."""

    def __init__(self, idle: float = IDLE):
        self.idle = idle
        self._terms: dict[tuple[str, str, str], Terminal] = {}
        self._pumps: dict[Terminal, asyncio.Task[None]] = {}
        self._watches: dict[Terminal, asyncio.Task[None]] = {}
        self._timers: dict[Terminal, asyncio.TimerHandle] = {}
        self._seq = itertools.count(1)

    def list(self, wf_id: str, task: str) -> list[Terminal]:
        return [t for (w, k, _), t in self._terms.items() if (w, k) == (wf_id, task)]

    def get(self, wf_id: str, task: str, name: str) -> Terminal:
        term = self._terms.get((wf_id, task, name))
        if term is None:
            raise NotFound(f"task {task!r} of {wf_id!r} has no terminal {name!r}")
        return term

    async def create(
        self,
        wf_id: str,
        task: str,
        user: str,
        start: Callable[[tuple[int, int]], Any],
        name: str | None = None,
        task_end: Callable[[], Awaitable[str | None]] | None = None,
    ) -> Terminal:
        """`start((cols, rows))` starts the shell (an awaitable ExecSession with a PTY);
        `task_end()` resolves with why the task ended (None: it did not): that ends the
        terminal."""
        if name is None:
            name = str(next(self._seq))
            while (wf_id, task, name) in self._terms:
                name = str(next(self._seq))
        elif (wf_id, task, name) in self._terms:
            raise Conflict(f"task {task!r} of {wf_id!r} already has a terminal {name!r}")
        session = await start((80, 24))
        term = Terminal(name, wf_id, task, user, session)
        self._terms[(wf_id, task, name)] = term
        self._pumps[term] = asyncio.ensure_future(self._pump(term))
        if task_end is not None:
            self._watches[term] = asyncio.ensure_future(self._watch(term, task_end()))
        self._arm(term)
        return term

    async def _watch(self, term: Terminal, task_end: Awaitable[str | None]) -> None:
        why = await task_end
        if why is None:
            return
        self._watches.pop(term, None)  # what follows ends the terminal: not to be cancelled
        note = f"\r\n\x1b[1;31m{why}; this terminal is closed\x1b[0m\r\n"
        term.recent.append(note)
        for viewer in list(term.viewers):
            viewer.output(note)
        await self.terminate(term)

    def attach(self, term: Terminal, viewer: Viewer) -> None:
        term.viewers[viewer] = (0, 0)  # sized by its first set_size
        timer = self._timers.pop(term, None)
        if timer is not None:
            timer.cancel()
        text = "".join(term.recent)
        if text:
            viewer.output(text)

    def detach(self, term: Terminal, viewer: Viewer) -> None:
        if term.viewers.pop(viewer, None) is not None:
            term._fit()
            if not term.viewers:
                self._arm(term)

    def _arm(self, term: Terminal) -> None:
        if not term.viewers and self._key(term) in self._terms:
            loop = asyncio.get_running_loop()
            self._timers[term] = loop.call_later(self.idle, self._end, term)

    @staticmethod
    def _key(term: Terminal) -> tuple[str, str, str]:
        return (term.wf_id, term.task, term.name)

    async def terminate(self, term: Terminal) -> None:
        with contextlib.suppress(OSError):  # already gone: _end below still tidies up
            term.session.signal("HUP")  # a shell's hangup: it and its jobs end
        pump = self._pumps.get(term)
        if pump is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(pump), 3.0)
        self._end(term)

    async def close(self) -> None:
        for term in list(self._terms.values()):
            self._end(term)
        await asyncio.gather(*self._pumps.values(), return_exceptions=True)

    def _end(self, term: Terminal) -> None:
        self._terms.pop(self._key(term), None)
        timer = self._timers.pop(term, None)
        if timer is not None:
            timer.cancel()
        pump = self._pumps.pop(term, None)
        if pump is not None and pump is not asyncio.current_task():
            pump.cancel()
        watch = self._watches.pop(term, None)
        if watch is not None and watch is not asyncio.current_task():
            watch.cancel()
        term.session.close()
        for viewer in list(term.viewers):
            viewer.ended()
        term.viewers.clear()

    async def _pump(self, term: Terminal) -> None:
        decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
        try:
            while data := await term.session.read():
                text = decode(data)
                if not text:
                    continue
                term.last_activity = time.time()
                term.recent.append(text)
                for viewer in list(term.viewers):
                    viewer.output(text)
        except (OSError, EOFError):
            pass  # the connection to the agent was lost: the terminal ends
        finally:
            self._end(term)
