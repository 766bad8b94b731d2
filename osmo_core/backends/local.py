"""The local backend: tasks run on this machine under its host agent (osmo_core.agent).

The agent is a separate, detached process, one per data directory, started on demand and
outliving the engine; this backend is its client over a Unix socket (agentlink.AgentLink:
requests, events, reconnection and resync after a dropped connection).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..agent import host
from ..agent.containers import Runtimes
from ..agent.environment import scrubbed
from ..agent.logfile import count_lines, read_lines
from ..agent.protocol import MAX_MESSAGE
from ..agent.workdir import LOG, attempt_dir
from ..data import credentials
from ..errors import BackendError, ConfigError, Problem
from ..wire import EventSink, LogLine, Node
from .agentlink import AgentLink
from .base import Backend

if TYPE_CHECKING:
    pass

START_TIMEOUT = AgentLink.start_timeout
_SOCKET_MAX = 100  # bytes; sun_path holds 108 with its NUL, keep a margin


def socket_path(root: Path) -> str:
    """ROOT/agent.sock, or a short path in the temp dir derived from ROOT when that is too long
    for a Unix socket."""
    path = str(root / "agent.sock")
    if len(os.fsencode(path)) <= _SOCKET_MAX:
        return path
    digest = hashlib.sha256(os.fsencode(root)).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"osmo-agent-{digest}.sock")


class LocalBackend(AgentLink, Backend):
    """Tasks on this machine.

    Config: `root` (data directory; required), `idle_timeout` (seconds the agent lingers with
    no task and no client; default 600), and overrides of the detected capacity: `cpus`,
    `memory` (bytes) and `gpus` (a list of GPU indexes, which also lets tests declare GPUs on a
    machine without any: the tasks then get CUDA_VISIBLE_DEVICES as if they were there).
    `cpu_shared`: CPU requests share the machine instead of reserving cores (up to
    `scheduler.SHARED_CPU` times its cores at once), so OSMO's tutorials (a barrier group of
    three 1-CPU tasks) run on a 2-core laptop; memory and GPUs stay strict. Default: true,
    unless `cpus` is set (declaring cores asks for a limit).
    """

    kind = "local"
    supports_hold = True
    isolates_users = True

    def __init__(self, name: str, config: dict[str, Any] | None = None):
        Backend.__init__(self, name, config)
        if not self.config.get("root"):
            raise ConfigError(Problem("the local backend needs a 'root' directory", field="root"))
        self.root = Path(self.config["root"]).expanduser().resolve()
        self.socket_path = socket_path(self.root)
        self.idle_timeout = float(self.config.get("idle_timeout", 600))
        AgentLink.__init__(self, str(self.root))
        self._spawned: list[subprocess.Popen[bytes]] = []
        self._runtimes = Runtimes()  # this host's, before an agent tells

    # --- Backend ---------------------------------------------------------------------------

    async def start(self, sink: EventSink) -> None:
        # The agent reads the secrets of named credentials here (0600), never from a request.
        credentials.write_file(self.root, self.credentials)
        await self._start_link(sink)

    async def stop(self) -> None:
        await self._stop_link("the local backend was stopped")
        for proc in self._spawned:  # a detaching parent: it exits right after forking
            proc.wait(timeout=5)
        self._spawned.clear()

    async def nodes(self, *, runtimes: bool = True) -> list[Node]:
        # Same host: without an agent yet (placement checks), probe the machine ourselves.
        a = self.agent or {
            **await host.capacity(),
            "container_runtime": await self._runtimes.current() if runtimes else "",
        }
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
                cpu_shared=bool(self.config.get("cpu_shared", "cpus" not in self.config)),
                container_runtime=a.get("container_runtime") or "",
            )
        ]

    async def read_log(self, key: str, start: int = 0, limit: int | None = None) -> list[LogLine]:
        try:
            path = attempt_dir(self.root, key) / LOG
        except ValueError as e:
            raise BackendError(str(e)) from None
        return await asyncio.to_thread(read_lines, path, key, start, limit)  # off the loop

    async def count_log(self, key: str) -> int:
        try:
            path = attempt_dir(self.root, key) / LOG
        except ValueError as e:
            raise BackendError(str(e)) from None
        return await asyncio.to_thread(count_lines, path)  # newlines counted a chunk at a time

    def host_of(self, key: str, node: str) -> str:
        return "localhost"  # local tasks share this machine's network

    def dial_home_dir(self) -> Path:
        return self.root  # the agent reads dialhome.json in its root

    def agent_of(self, key: str, node: str) -> str:
        return self.name  # the hub names this backend's one agent after it (dialhome.json)

    async def shutdown_agent(self, force: bool = True) -> None:
        """Stop the agent (with `force`, its running tasks first) and wait until it is gone.
        A backend that is not connected (stopped, or never started) reaches a running agent
        over a link of its own; none running, it returns at once. For tests and benchmarks;
        the backend is stopped afterwards."""
        if self._writer is None:
            if self.agent_running():
                own = LocalBackend(self.name, self.config)
                await own.start(lambda ev: None)
                await own.shutdown_agent(force)
            await self.stop()
            return
        await self._shutdown(force)
        await self.stop()
        deadline = time.monotonic() + START_TIMEOUT
        while self.agent_running() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    # --- AgentLink ---------------------------------------------------------------------------

    def _agent_fits(self, hello: dict[str, Any]) -> bool:
        want = "none" if self.isolation is None else self.isolation.label
        got: str = hello.get("isolation", "none")
        return got == want

    async def _open(self) -> tuple[Any, Any]:
        self._spawned = [p for p in self._spawned if p.poll() is None]
        return await asyncio.open_unix_connection(self.socket_path, limit=MAX_MESSAGE)

    async def _agent_alive(self) -> bool:
        # One we started may still be importing (seconds, under load): a second one would take
        # the lock once the first has gone, and outlive a shutdown.
        return bool(self._spawned) or self.agent_running()

    async def _connect(self) -> None:
        try:
            await super()._connect()
        except BackendError as e:
            raise BackendError(f"{e}; see {self.root}/agent.log") from None

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

    async def _spawn_agent(self) -> None:
        with open(self.root / "agent.log", "ab") as out:
            argv = [sys.executable, "-m", "osmo_core.agent", "--root", str(self.root)]
            argv += ["--socket", self.socket_path, "--idle-timeout", str(self.idle_timeout)]
            if self.isolation is not None:
                argv += self.isolation.agent_args()
            self._spawned.append(
                subprocess.Popen(
                    [*argv, "--detach"],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,  # no terminal signal reaches it
                    env=scrubbed(os.environ),  # not the server's token (agent/environment.py)
                )
            )
