"""The types that cross the engine <-> backend <-> agent boundary, below all three.

The engine launches an *attempt* (one try of one task) with a `LaunchRequest`, gets a
`LaunchInfo` back and learns what happened through events (`Started`, `LogLine`, `Exited`, ...)
and `AttemptState` answers; backends describe their machines as `Node`s. The agent receives the
same requests and sends the same facts over its wire protocol (agent/protocol.py), and the
control plane's interactive hub and the agent's SSH server agree here on the dial-home file and
the channel settings they share. Plain dataclasses and constants only, importing nothing of
osmo_core, so no layer has to reach up to another to speak to it.

Attempt keys are "<workflow_id>/<task>/<retry_id>" and unique forever, so a launch is
idempotent per key (what makes crash recovery safe).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

# --- attempts and what the engine asks of them ----------------------------------------------


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
    # The owner's own credentials this task uses (auth/user_credentials.py), name -> secrets: over
    # the agent's configured ones for this task only; never written to the attempt's records
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    # Keep the task's environment alive after its command ends: "success" (interactive: true),
    # "failure" (debug: on-failure) or "always" (both); None: end as usual. See `Held`.
    hold: str | None = None
    # Whether an `image` runs in a container (agent/containers.py): "auto" (where a runtime
    # answers), "required" (refuse to run it on the host) or "off" (always on the host)
    containers: str = "auto"


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
    # CPU requests share the machine instead of reserving cores (the local backend by default:
    # a laptop runs OSMO's tutorials); memory and GPUs stay strict everywhere
    cpu_shared: bool = False
    # docker/podman where a task's image runs ("kubernetes": every pod), "" none, None unknown
    container_runtime: str | None = None


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


# --- what backends report: the facts the engine decides on ---------------------------------


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
    message: str = ""  # why, when the agent ended it (e.g. a failed download: exit_codes.py)


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
class StorageTrouble:
    """The agent could not write an attempt's durable records (a read-only, full or failing
    disk) and keeps retrying; `recovered`: the records it could not write are written now."""

    key: str
    message: str
    ts: float = 0.0
    recovered: bool = False


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


@dataclass
class NodeOnline:
    """A node of `backend` went offline (its link is down: no new tasks there) or came back;
    the engine's node view follows at once and waiting tasks are placed again."""

    backend: str
    node: str
    online: bool


BackendEvent = (
    Started | LogLine | Exited | StartFailed | Lost | Transfer | Held | Usage | StorageTrouble
)
EventSink = Callable[[BackendEvent | NodeOnline], None]


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
    reason: str = ""  # of a failed_start: StartFailed.reason


# --- interactive access: what the hub and the agent's SSH server share -----------------------

DIALHOME = "dialhome.json"  # in the agent's root: where to dial, written by the control plane
KEEPALIVE_INTERVAL = 15.0  # seconds between keepalives; 3 missed answers drop the connection
# Per forward channel (both ends): a window that keeps a loopback pipe full, and packets of
# 64 KiB, measured best on this code (32 KiB: more per-packet work in Python; 256 KiB: slower,
# each packet is copied while buffered whole).
WINDOW, PACKET = 8 * 1024 * 1024, 64 * 1024
SFTP_ATTEMPT = "OSMO_ATTEMPT"  # the sftp channel's environment names the attempt it serves


@dataclass(frozen=True)
class DialHomeInfo:
    host: str
    port: int
    agent_id: str
    client_key: str  # OpenSSH public key of the control plane's SSH client

    def write(self, root: Path) -> None:
        """Atomically, so the agent never reads half a file."""
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".{DIALHOME}.{os.getpid()}"
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, root / DIALHOME)

    @classmethod
    def read(cls, root: Path) -> DialHomeInfo | None:
        try:
            return cls(**json.loads((root / DIALHOME).read_text()))
        except (OSError, ValueError, TypeError):
            return None
