"""The one small interface every compute backend implements (local processes, SSH hosts, pods).

Modelled on jupyter_client's KernelProvisionerBase / Popen: the engine launches an *attempt*
(one try of one task) by key, gets events back through a sink, and can cancel it, ask its
status (to reconcile after a restart) and read its logs. Backends never change workflow state:
they report facts (`Started`, `Exited`, ...) and the engine decides what they mean. Those
requests and facts are in osmo_core/wire.py, shared with the agent.

Attempt keys are "<workflow_id>/<task>/<retry_id>" and unique forever, so `launch` is
idempotent: launching a key the backend already knows returns the existing attempt instead of
starting it twice (this is what makes crash recovery safe).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ..wire import AttemptState, EventSink, LaunchInfo, LaunchRequest, LogLine, Node


class Backend(ABC):
    """A place tasks run. One instance per configured backend; owned by the engine."""

    kind: str = "abstract"
    supports_hold: bool = False  # can keep an ended task's environment (LaunchRequest.hold)
    node_refresh: float | None = None  # seconds between listings of nodes() (None: at start)

    def __init__(self, name: str, config: dict[str, Any] | None = None):
        self.name = name
        self.config = config or {}
        # Named credentials (OsmoConfig.credentials), set by the service before start(): a
        # backend hands them to its agents through a private channel, never in a request.
        self.credentials: dict[str, dict[str, Any]] = {}
        # The pools placed on this backend, set by the service too (per-platform settings).
        self.pools: dict[str, Any] = {}

    @abstractmethod
    async def start(self, sink: EventSink) -> None:
        """Connect (starting the agent if needed) and deliver events to `sink` from now on.

        `sink` is called on the engine's event loop and must not block."""

    @abstractmethod
    async def stop(self) -> None:
        """Disconnect. Running attempts keep running (agents outlive the engine)."""

    @abstractmethod
    async def nodes(self) -> list[Node]:
        """The machines of this backend and their total capacity."""

    @abstractmethod
    async def launch(self, req: LaunchRequest) -> LaunchInfo:
        """Start an attempt; idempotent per key."""

    @abstractmethod
    async def cancel(self, key: str, grace: float = 5.0) -> None:
        """SIGTERM the attempt's process group, SIGKILL after `grace` seconds. Unknown key: no-op.

        An `Exited` event follows when the process is gone."""

    @abstractmethod
    async def status(self, keys: list[str]) -> dict[str, AttemptState]:
        """What the backend knows of each key (used to reconcile after an engine restart)."""

    @abstractmethod
    async def read_log(self, key: str, start: int = 0, limit: int | None = None) -> list[LogLine]:
        """Log lines of an attempt from the durable log, from line index `start` (0-based)."""

    async def count_log(self, key: str) -> int:
        """Lines in an attempt's log (for a tail); pages through read_log unless overridden."""
        n = 0
        while page := await self.read_log(key, n, 10_000):
            n += len(page)
        return n

    async def release(self, key: str) -> None:
        """End a held attempt as its command did (outputs uploaded), then `Exited`. Idempotent;
        a key that is not held: no-op. Only backends with `supports_hold`."""
        raise NotImplementedError(f"{self.kind} backend cannot hold tasks")

    async def forget(self, key: str) -> None:  # noqa: B027 - optional hook
        """The engine no longer needs the attempt's process state (its files stay)."""

    def host_of(self, key: str, node: str) -> str:
        """The name other tasks reach attempt `key` by ({{host:TASK}}); placed on `node`."""
        return node

    async def running(self) -> set[str] | None:
        """Keys of the attempts this backend runs (or holds) now, in one cheap answer: the
        engine's reconciliation asks `status` only about launched attempts missing from it.
        None: it cannot tell now (disconnected, or not implemented)."""
        return None
