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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..wire import AttemptState, EventSink, LaunchInfo, LaunchRequest, LogLine, Node

if TYPE_CHECKING:
    from ..errors import Problem
    from ..interactive.hub import Interactive
    from ..isolation import Isolation


class Backend(ABC):
    """A place tasks run. One instance per configured backend; owned by the engine.

    Besides the abstract methods, every capability the rest of the platform uses is declared
    here with a default that means "not supported", so callers never probe with `hasattr`:
    config checks (`check_config`, `host_names`; classmethods, dispatched by
    `registry.backend_class` before any instance exists), holds (`supports_hold`, `release`),
    `{{host:TASK}}` (`host_of`), the engine's reconciliation (`running`), data between tasks
    (`outputs_by_path`) and interactive access (`dial_home_dir`, `set_dial_home`, `attach_hub`,
    `agent_prefix`, `agent_of`)."""

    kind: str = "abstract"
    supports_hold: bool = False  # can keep an ended task's environment (LaunchRequest.hold)
    # A downstream task can read an upstream output by its path (InputSpec.path: the same
    # disk, or copied by the backend); False: only through storage (data/plan.py).
    outputs_by_path: bool = True
    node_refresh: float | None = None  # seconds between listings of nodes() (None: at start)
    # Agent ids starting with this are accepted by the interactive hub only once the backend
    # has announced them (`hub.expect`): set by backends that make their agents' host keys.
    agent_prefix: str | None = None
    # Whom tasks run as when the service isolates users (OsmoConfig.task_isolation): a backend
    # with `isolates_users` runs each user's tasks as that user's own OS identity, given in
    # `isolation` before start(); one with `shares_login_user` runs every task as one login
    # user beside its agent's folder (SSH hosts), which the service warns about.
    isolates_users: bool = False
    shares_login_user: bool = False
    isolation: Isolation | None = None

    @classmethod
    def check_config(cls, name: str, spec: dict[str, Any]) -> list[Problem]:
        """Every problem of `spec` (OsmoConfig.backends[name], `kind` included), each naming
        its field, so a typo fails when the config is loaded, not at the first launch."""
        return []

    @classmethod
    def host_names(cls, spec: dict[str, Any]) -> list[str] | None:
        """The hosts a pool platform of this backend may pin with `hosts: [...]` (checked when
        the config is loaded); None: this backend's platforms do not name hosts."""
        return None

    def __init__(self, name: str, config: dict[str, Any] | None = None):
        self.name = name
        self.config = config or {}
        problems = self.check_config(name, self.config)  # also when built without OsmoConfig
        if problems:
            raise ConfigError(problems)
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
    async def nodes(self, *, runtimes: bool = True) -> list[Node]:
        """The machines of this backend and their total capacity. `runtimes`: whether their
        container runtimes are wanted; a probe of them may take a while (`podman info`: 0.5 s),
        and without it `container_runtime` may be left empty."""

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

    def credentials_of(self, req: LaunchRequest) -> dict[str, dict[str, Any]]:
        """The named credentials and, over them, those of the task's owner its request carries
        (auth/user_credentials.py): what a backend that resolves credentials itself uses."""
        return {**self.credentials, **req.secrets}

    def host_of(self, key: str, node: str) -> str:
        """The name other tasks reach attempt `key` by ({{host:TASK}}); placed on `node`."""
        return node

    async def running(self) -> set[str] | None:
        """Keys of the attempts this backend runs (or holds) now, in one cheap answer: the
        engine's reconciliation asks `status` only about launched attempts missing from it.
        None: it cannot tell now (disconnected, or not implemented)."""
        return None

    # --- interactive access (osmo_core.interactive); the defaults: none --------------------

    def dial_home_dir(self) -> Path | None:
        """A folder on this machine where this backend's agent looks for where to dial home:
        the hub writes its address there (the local backend). None: see `set_dial_home`."""
        return None

    def set_dial_home(self, host: str, port: int, client_key: str) -> None:  # noqa: B027
        """Where remote agents dial home (the hub's listener) and the key the hub logs in
        with: the backend passes it on to its agents. Default: it has no remote agents."""

    def attach_hub(self, hub: Interactive) -> None:  # noqa: B027
        """The hub, for a backend that drives its agents over their dial-home connections
        (Kubernetes pods: `hub.expect`, `hub.open_agent_socket`). Default: it does not."""

    def agent_of(self, key: str, node: str) -> str | None:
        """The id of the agent that runs attempt `key` (placed on `node`), which interactive
        access (exec, ports, kernels) goes through. None: no interactive access."""
        return None
