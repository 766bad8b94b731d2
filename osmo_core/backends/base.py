"""The one small interface every compute backend implements (local processes, SSH hosts, pods).

Modelled on jupyter_client's KernelProvisionerBase / Popen: the engine launches an *attempt*
(one try of one task) by key, gets events back through a sink, and can cancel it, ask its
status (to reconcile after a restart) and read its logs. Backends never change workflow state:
they report facts (`Started`, `Exited`, ...) and the engine decides what they mean.

Attempt keys are "<workflow_id>/<task>/<retry_id>" and unique forever, so `launch` is
idempotent: launching a key the backend already knows returns the existing attempt instead of
starting it twice (this is what makes crash recovery safe).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..errors import Problem
    from ..interactive.hub import Interactive


def attempt_key(workflow_id: str, task: str, retry_id: int) -> str:
    return f"{workflow_id}/{task}/{retry_id}"


@dataclass
class FileSpec:
    path: str  # as written in the spec; absolute paths are rebased under the workdir without image
    content: bytes
    mode: int = 0o644


@dataclass
class InputSpec:
    """Input N of a task: `path`, a directory on the backend's host (an upstream output);
    `url`, a storage URL the agent downloads; or `dataset` ("name[:tag|:version]") from the
    dataset store at `store`. `credential` names the configured credential the agent uses
    (a name only: the agent looks the secret up on its side)."""

    index: int
    path: str | None = None
    url: str | None = None
    regex: str | None = None
    dataset: str | None = None
    store: str | None = None
    credential: str | None = None


@dataclass
class OutputSpec:
    """Where {{output}} goes after the command succeeds: a storage `url`, or a new version of
    `dataset` ("name[:tag]") in the dataset store at `store`; `path` picks a sub-folder."""

    index: int
    url: str | None = None
    dataset: str | None = None
    store: str | None = None
    regex: str | None = None
    path: str | None = None
    credential: str | None = None


@dataclass
class CheckpointSpec:
    """A folder uploaded to `url` every `frequency` seconds while the task runs, and at its end."""

    path: str
    url: str
    frequency: float
    regex: str | None = None
    credential: str | None = None


@dataclass
class LaunchRequest:
    key: str
    argv: list[str]  # command + args; {{output}} / {{input:N}} still unresolved (backend resolves)
    env: dict[str, str] = field(default_factory=dict)
    files: list[FileSpec] = field(default_factory=list)
    inputs: list[InputSpec] = field(default_factory=list)
    image: str | None = None
    gpus: list[int] = field(default_factory=list)
    cpu: float = 1.0
    memory: int | None = None
    storage: int | None = None  # bytes of scratch disk (ephemeral storage on Kubernetes)
    node: str | None = None  # which machine of the backend (scheduler's placement)
    pool: str = ""
    platform: str = ""  # the pool's platform the task runs on (per-platform pod templates, hosts)
    user: str = ""  # the workflow's owner ({{USER_*}} in templates, per-user agent directories)
    group_size: int = 1  # tasks started together with this one (a barrier group: gang)
    outputs: list[OutputSpec] = field(default_factory=list)
    checkpoints: list[CheckpointSpec] = field(default_factory=list)
    # OSMO's task `credentials:`: name -> {ENV_VAR: key} or a folder path; names, never secrets
    credentials: dict[str, dict[str, str] | str] = field(default_factory=dict)
    # Keep the task's environment alive after its command ends: "success" (interactive: true),
    # "failure" (debug: on-failure) or "always" (both); None: end as usual. See `Held`.
    hold: str | None = None


@dataclass
class LaunchInfo:
    key: str
    workdir: str
    output: str  # the directory {{output}} resolved to; downstream inputs read it
    log: str  # durable log file of this attempt
    already_known: bool = False  # True when launch found the attempt already there


@dataclass
class Node:
    """One machine a backend can place tasks on, with its total capacity."""

    name: str
    cpu: float
    memory: int  # bytes
    gpus: list[int] = field(default_factory=list)
    gpu_names: list[str] = field(default_factory=list)
    arch: str = ""
    online: bool = True
    labels: dict[str, str] = field(default_factory=dict)  # platforms select nodes by label
    # Kubernetes taints that keep pods off (NoSchedule/NoExecute), as {key, value, effect}:
    # only platforms whose `tolerations` tolerate each of them may use the node
    taints: list[dict[str, str]] = field(default_factory=list)


def tolerated(taint: dict[str, str], tolerations: list[dict[str, Any]]) -> bool:
    """Kubernetes' rule: a toleration matches a taint by key (empty key + Exists: every key),
    value (operator Equal, the default) and effect (empty: every effect)."""
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator", "Equal") == "Exists":
            if not t.get("key") or t["key"] == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and t.get("value", "") == taint.get("value", ""):
            return True
    return False


# --- what backends report -------------------------------------------------------------------


@dataclass
class Started:
    key: str
    pid: int | None = None
    ts: float = 0.0


@dataclass
class LogLine:
    key: str
    n: int  # 1-based line number within the attempt's log
    ts: float
    stream: Literal["stdout", "stderr", "system"]
    text: str


@dataclass
class Exited:
    key: str
    exit_code: int  # 128+N when killed by signal N, as a shell reports it
    ts: float = 0.0
    signal: int | None = None
    message: str = ""  # why, when the agent ended it (e.g. a failed download: data/exit_codes)


@dataclass
class Transfer:
    """One data transfer of an attempt finished (or failed), or how far a running one got:
    inputs, outputs, checkpoints."""

    key: str
    direction: Literal["download", "upload", "checkpoint"]
    url: str  # redacted: never carries a secret
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    ts: float = 0.0
    error: str | None = None
    dataset: str | None = None  # "name[:tag|:N]" when the transfer was a dataset's
    final: bool = True  # False: a progress report of a transfer still running
    files_total: int | None = None  # progress reports: what the whole transfer moves
    bytes_total: int | None = None


@dataclass
class Held:
    """The command ended and the attempt is being held (LaunchRequest.hold): its workdir, its
    environment and a process to exec into stay until `Backend.release()` (the user is done:
    outputs are uploaded, then `Exited`) or `Backend.cancel()` (`Exited` with this exit code)."""

    key: str
    exit_code: int
    ts: float = 0.0
    signal: int | None = None


@dataclass
class StartFailed:
    """The command could not be started (not found, not executable, bad workdir, ...)."""

    key: str
    message: str
    ts: float = 0.0
    # "image_pull": the image could not be pulled (FAILED_IMAGE_PULL); "start_timeout": it
    # did not start in time, e.g. unschedulable (FAILED_START_TIMEOUT)
    reason: str = ""


@dataclass
class Lost:
    """The backend no longer knows the attempt's fate (host gone, agent restarted)."""

    key: str
    message: str
    ts: float = 0.0
    reason: str = ""  # "evicted": the platform evicted it, e.g. node pressure (FAILED_EVICTED)


@dataclass
class Usage:
    """What a running attempt uses, sampled by its agent (`OSMO_METRICS_INTERVAL`, 10 s):
    its process tree's CPU (cores over the last interval, and CPU seconds so far), resident
    memory (now and the highest seen) and process count. Live only, like a log line."""

    key: str
    ts: float
    cpu: float
    cpu_seconds: float
    memory: int
    memory_peak: int
    procs: int

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k not in ("key", "ts")}


BackendEvent = Started | LogLine | Exited | StartFailed | Lost | Transfer | Held | Usage
EventSink = Callable[[BackendEvent], None]


@dataclass
class AttemptState:
    """Answer to `status()`: what the backend knows of one attempt right now."""

    key: str
    state: Literal["running", "held", "exited", "failed_start", "unknown", "lost"]
    exit_code: int | None = None
    signal: int | None = None
    message: str = ""
    log_lines: int = 0  # lines in the durable log so far
    info: LaunchInfo | None = None


class Backend(ABC):
    """A place tasks run. One instance per configured backend; owned by the engine.

    Besides the abstract methods, every capability the rest of the platform uses is declared
    here with a default that means "not supported", so callers never probe with `hasattr`:
    config checks (`check_config`, `host_names`; classmethods, dispatched by
    `registry.backend_class` before any instance exists), holds (`supports_hold`, `release`),
    `{{host:TASK}}` (`host_of`) and interactive access (`dial_home_dir`, `set_dial_home`,
    `attach_hub`, `agent_prefix`, `agent_of`)."""

    kind: str = "abstract"
    supports_hold: bool = False  # can keep an ended task's environment (LaunchRequest.hold)
    node_refresh: float | None = None  # seconds between listings of nodes() (None: at start)
    # Agent ids starting with this are accepted by the interactive hub only once the backend
    # has announced them (`hub.expect`): set by backends that make their agents' host keys.
    agent_prefix: str | None = None

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
