"""Spare kernels: a Jupyter kernel started ahead in the tasks a user is about to step into, so
that attaching costs a few tunnels, not ipykernel's start (about a second of imports).

Which tasks: the attempts that hold (an `interactive: true` task waiting for its user after its
command, `debug: on-failure` kept after a failure). Not a task whose command still runs: the
kernel would live in the task's own cgroup and could take the memory or CPU its command needs
(an OOM kill of a training run, for a kernel nobody asked for). When a spare is taken
(`RemoteKernel.start`), another is started for the same attempt, so the next notebook or
console is quick too. At most `OsmoConfig.kernel_spares` run at once over all tasks (0: none);
the tasks that want one beyond that wait for a free slot: the oldest want of the users who have
the fewest spares first.

A spare is an ordinary RemoteKernel with a key of its own: it ends with its attempt (told why,
as any kernel is) and one that has died is dropped. A task that cannot run a kernel (no
ipykernel) is not asked again for that attempt.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..errors import OsmoError
from ..events import Overflow
from .kernel import SCHEME, START_TIMEOUT, KernelUnavailable, RemoteKernel

if TYPE_CHECKING:
    from ..service import Service

log = logging.getLogger("osmo_core.interactive")

Key = tuple[str, str, int]  # workflow id, task, retry_id


class KernelSpares:
    def __init__(self, service: Service):
        self.service = service
        self.limit = service.config.kernel_spares
        self._ready: dict[Key, RemoteKernel] = {}
        self._starting: dict[Key, asyncio.Task[None]] = {}
        self._wanted: dict[Key, None] = {}  # waiting for a slot, oldest first
        self._unable: set[Key] = set()  # the attempt cannot run a kernel
        self._bg: set[asyncio.Task[Any]] = set()
        self._stopping = False

    async def start(self) -> None:
        if self.limit > 0:
            self._scan()
            self._spawn(self._follow())

    async def stop(self) -> None:
        self._stopping = True
        self._wanted.clear()
        for t in list(self._bg):
            t.cancel()
        await asyncio.gather(*self._bg, return_exceptions=True)
        spares, self._ready = list(self._ready.values()), {}
        for k in spares:  # nobody uses them: they go with the control plane
            await k.kill()
            await k.close()

    def ready(self) -> dict[Key, int]:
        """The spares ready now, by attempt: their kernels' pids on the tasks' hosts."""
        return {key: int(k.remote["pid"]) for key, k in self._ready.items() if k.returncode is None}

    async def take(self, wf_id: str, task: str, retry_id: int) -> RemoteKernel | None:
        """The attempt's spare kernel, alive, or None; the next spare is started at once."""
        key = (wf_id, task, retry_id)
        starting = self._starting.get(key)
        if starting is not None:  # nearly there: quicker than a start of our own
            await asyncio.wait({starting}, timeout=START_TIMEOUT)  # neither ends the other
        k = self._ready.pop(key, None)
        if k is None:
            return None
        if k.returncode is not None:  # died since: its watcher left it to us once taken
            await k.close()
            return None
        self._want(key)
        self._fill()
        return k

    # --- which attempts want one ------------------------------------------------------------

    def _scan(self) -> None:
        """Every attempt that wants a spare now, from the engine's state: at start (held before
        a restart) and after our event queue overflowed."""
        for wf in self.service.engine.workflows.values():
            for run in wf.tasks.values():
                att = run.current if run.attempts else None
                if att is None or att.status is None or att.status.value != "RUNNING":
                    continue
                if att.hold in ("interactive", "debug"):
                    self._want((wf.id, run.name, att.retry_id))
        self._fill()

    async def _follow(self) -> None:
        sub = self.service.subscribe(types=frozenset({"task.hold", "task.status"}))
        try:
            while (ev := await sub.get()) is not None:
                if isinstance(ev, Overflow):
                    self._scan()
                    continue
                if ev.task is None or ev.retry_id is None:
                    continue
                key = (ev.workflow_id, ev.task, ev.retry_id)
                if ev.type == "task.hold" and ev.payload.get("hold") in ("interactive", "debug"):
                    self._want(key)
                    self._fill()
                elif ev.type == "task.status" and ev.status != "RUNNING":  # nothing to keep
                    self._wanted.pop(key, None)
                    self._unable.discard(key)
        finally:
            sub.close()

    def _want(self, key: Key) -> None:
        if key not in self._ready and key not in self._starting and key not in self._unable:
            self._wanted[key] = None

    def _fill(self) -> None:
        while self._wanted and len(self._ready) + len(self._starting) < self.limit:
            # the oldest want of the users with the fewest spares: on a team server one user's
            # many held tasks do not take every slot
            have = Counter(self._owner(k) for k in (*self._ready, *self._starting))
            key = min(self._wanted, key=lambda k: have[self._owner(k)])
            del self._wanted[key]
            self._starting[key] = self._spawn(self._prestart(key))

    def _owner(self, key: Key) -> str | None:
        wf = self.service.engine.workflows.get(key[0])
        return wf.user if wf else None

    # --- one spare ----------------------------------------------------------------------------

    async def _prestart(self, key: Key) -> None:
        wf_id, task, retry_id = key
        k: RemoteKernel | None = None
        try:
            k = await RemoteKernel.launch(
                self.service, wf_id, task, secrets.token_hex(32).encode(), SCHEME
            )
        except KernelUnavailable:
            self._unable.add(key)
        except OsmoError as e:  # not RUNNING any more, agent away: an attach will say why
            log.debug("no spare kernel in %s/%s: %s", wf_id, task, e)
        except Exception:  # a bug: said, and the attach starts its own kernel
            log.warning("no spare kernel in %s/%s", wf_id, task, exc_info=True)
        if k is not None and (k.retry_id != retry_id or self._stopping):
            await k.kill()
            await k.close()
        elif k is not None:
            self._ready[key] = k
            self._spawn(self._drop_when_ended(key, k))
        del self._starting[key]
        if not self._stopping:
            self._fill()

    async def _drop_when_ended(self, key: Key, k: RemoteKernel) -> None:
        await k.wait()
        if self._ready.get(key) is k:  # not taken: ours to close
            del self._ready[key]
            await k.close()
            self._fill()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        t: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)
        return t
