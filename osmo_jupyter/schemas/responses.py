"""What the REST API answers (pydantic), documented as the service builds them
(osmo_core.service). Fields are listed, not closed, so a field added later does not break a
client checking against an older document."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from osmo_core.states import TaskStatus, WorkflowStatus

from .requests import Priority


class TerminalModel(BaseModel):
    """jupyter_server's terminal model, plus where the terminal runs."""

    name: str
    last_activity: str
    workflow_id: str
    task: str
    user: str


class FileEntry(BaseModel):
    path: str = Field(description="Relative to the listed path; '' for the path itself.")
    type: Literal["file", "dir", "link", "other"]
    size: int
    mtime: int
    mode: int


class FilesListing(BaseModel):
    """`GET .../files`: the path itself, then everything under it (links are not followed)."""

    path: str
    type: Literal["file", "dir", "link", "other"]
    entries: list[FileEntry]


class TokenRecord(BaseModel):
    id: str
    user: str
    name: str
    role: Literal["admin", "user"]
    created_by: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None


class CredentialRecord(BaseModel):
    """A user's credential as every API shows it: never a secret."""

    name: str
    user: str
    type: Literal["DATA", "REGISTRY", "GENERIC"]
    fields: dict[str, str] = Field(
        description="The public fields: DATA's endpoint, region, override_url, "
        "addressing_style; REGISTRY's registry"
    )
    keys: list[str] = Field(description="The keys a task's `credentials:` may name")
    created_at: float
    updated_at: float


class TokenCreated(TokenRecord):
    token: str = Field(description="The token itself; shown only in this answer.")


class MeResponse(BaseModel):
    name: str
    role: Literal["admin", "user"]
    via: str = Field(description="jupyter, token, oidc")


class HoldResponse(BaseModel):
    """`done` / `retry` of a held task: the decision is recorded and on its way."""

    id: str
    task: str
    retry_id: int = Field(description="done: the attempt marked done; retry: the new attempt")
    hold: Literal["done", "retry"]


class RestartResponse(BaseModel):
    id: str = Field(description="The new workflow.")
    restarted: str
    reused: list[str] = Field(
        description="Tasks whose outputs the new workflow reuses (COMPLETED, `reused_from` set)"
    )


class CacheClearResponse(BaseModel):
    cleared: int = Field(description="Attempts that were cache entries and no longer are.")


class KernelStarted(BaseModel):
    """A kernel started inside a running task: a jupyter_client connection file without ports
    (each channel is reached through `.../kernels/{kernel_id}/channels/{channel}`, a
    WebSocket of raw bytes; server/kernels.py)."""

    kernel_id: str = Field(description="The kernel's id in the Jupyter server (`/api/kernels`).")
    kernel_name: str = Field(description="Its kernel spec, `osmo--WF--TASK`.")
    key: str = Field(description="The HMAC key that signs the kernel's messages.")
    signature_scheme: str
    transport: Literal["tcp"]
    channels: list[str] = Field(description="shell, iopub, stdin, control, hb")


class KernelStopped(BaseModel):
    kernel_id: str
    shutdown: bool


# --- workflows, tasks, pools, events, health -------------------------------------------------


class SubmitResponse(BaseModel):
    id: str


class DryRunResponse(BaseModel):
    pool: str
    rendered: str
    values: dict[str, Any]


class ValidResponse(BaseModel):
    valid: bool
    pool: str


class CancelResponse(BaseModel):
    id: str
    status: WorkflowStatus


class SpecResponse(BaseModel):
    original: str
    rendered: str
    spec: str = Field(description="The validated spec as JSON text.")


class LogLineModel(BaseModel):
    n: int = Field(description="1-based line number within the attempt's log.")
    ts: float
    stream: Literal["stdout", "stderr", "system"]
    text: str


class WorkflowSummary(BaseModel):
    """One row of `GET /workflows`."""

    id: str
    name: str
    seq: int = Field(description="N in the id NAME-N.")
    user: str
    pool: str
    status: WorkflowStatus
    priority: Priority = Field(description="OSMO's names: HIGH, NORMAL or LOW.")
    labels: dict[str, str] = Field(description="The workflow's labels (OSMO's).")
    file: str | None
    set_values: dict[str, Any]
    submit_time: float
    start_time: float | None
    end_time: float | None
    message: str | None
    parent_workflow_id: str | None = Field(
        description="The workflow this one restarted (OSMO's parent workflow)"
    )


class GroupModel(BaseModel):
    workflow_id: str
    name: str
    status: TaskStatus
    scheduling_time: float | None
    start_time: float | None
    end_time: float | None
    message: str | None


class AllocModel(BaseModel):
    cpu: float
    memory: int = Field(description="bytes")
    gpus: list[int]


class TaskModel(BaseModel):
    """One attempt of a task (`retry_id` 0 is the first)."""

    workflow_id: str
    name: str
    retry_id: int
    group_name: str
    status: TaskStatus
    exit_code: int | None
    backend: str | None
    node: str | None
    alloc: AllocModel | None
    workdir: str | None
    output_path: str | None
    log_path: str | None
    cancel_reason: str | None
    hold: Literal["interactive", "debug", "done", "retry"] | None = Field(
        description="A held attempt (its command ended, its environment kept): interactive "
        "(waiting for its user), debug (failed, kept for debugging); done / retry once decided"
    )
    hold_until: float | None = Field(description="When the hold times out")
    reused_from: str | None = Field(
        description="A reused attempt (status COMPLETED, it did not run: a restart kept its "
        "group, or the task cache hit): the `<workflow>/<task>/<retry>` whose outputs it has"
    )
    cache_key: str | None = Field(description="The task cache's key of this attempt (sha256)")
    waiting_for_user: bool = Field(
        description="An interactive task waiting for `done` (status RUNNING)"
    )
    held_for_debugging: bool = Field(
        description="A failed task (exit_code) kept up for debugging until `retry`, cancel or "
        "its timeout (status RUNNING: the workflow has not failed)"
    )
    create_time: float
    start_time: float | None
    end_time: float | None
    message: str | None
    pending_reason: str | None = Field(
        None,
        description='Why a waiting task (SCHEDULING) waits now, e.g. "pool gpu at its GPU '
        'quota (8/8 used by NORMAL/HIGH)"; null otherwise (live: `task.pending` events)',
    )


class WorkflowModel(WorkflowSummary):
    """`GET /workflows/{wf_id}`: the workflow, its groups and every task attempt."""

    groups: list[GroupModel]
    tasks: list[TaskModel]
    last_event_id: int = Field(
        description="The newest stored event (of any workflow) when this was read; everything "
        "up to it is in this answer: the events WebSocket's `after` that follows it from here."
    )


class PlatformModel(BaseModel):
    name: str
    arch: str | None
    extra: dict[str, Any]
    backend: str = Field(description="the backend its machines belong to (the pool's by default)")


class NodeUsage(BaseModel):
    backend: str
    node: str
    cpu: float
    free_cpu: float
    memory: int
    free_memory: int
    gpus: list[int]
    free_gpus: list[int]
    arch: str
    online: bool = Field(True, description="false while the host's agent is not connected (ssh)")


class UsageModel(BaseModel):
    """What a running command uses, as its agent last sampled it (every
    OSMO_METRICS_INTERVAL seconds, 10 by default): its process tree."""

    ts: float = Field(description="When it was sampled")
    cpu: float = Field(description="CPU cores used over the last interval")
    cpu_seconds: float = Field(description="CPU seconds used so far")
    memory: int = Field(description="resident memory, bytes")
    memory_peak: int = Field(description="the highest resident memory sampled, bytes")
    procs: int = Field(description="processes in the tree")


class TaskDetail(TaskModel):
    """`GET /workflows/{wf_id}/tasks/{task}`: the latest attempt, and every attempt."""

    usage: UsageModel | None = Field(
        None, description="While its command runs: what it uses (live: `task.usage` events)"
    )
    attempts: list[TaskModel]


class ResourceModel(NodeUsage):
    """One machine of `GET /resources`."""

    pools: list[str]


class AmountModel(BaseModel):
    gpu: int
    cpu: float
    memory: int = Field(description="bytes")


class QuotaModel(BaseModel):
    gpu: int | None
    cpu: float | None
    memory: int | None = Field(description="bytes")


class PoolModel(BaseModel):
    name: str
    backend: str = Field(description="the pool's default backend; a platform may name another")
    default_platform: str
    platforms: dict[str, PlatformModel]
    nodes: list[NodeUsage]
    quota: QuotaModel | None = Field(description="what NORMAL/HIGH work may hold; null: no quota")
    fair_share: Literal["fifo", "drf"]
    capacity: AmountModel = Field(
        description="what the machines of its platforms offer, shared machines included"
    )
    used: dict[str, AmountModel] = Field(description="held by running tasks, per priority")
    borrowed: AmountModel = Field(description="held past the quota (LOW work only)")
    queued: int = Field(description="task attempts waiting in the pool")


class EventModel(BaseModel):
    """One message of the `events` WebSocket: an `osmo_core.events.Event` as `to_dict()` sends
    it (types and payloads: osmo_core/events.py). Not in any path (OpenAPI 3 cannot describe a
    WebSocket): a component for clients' generated types."""

    id: int | None = Field(description="Increasing; null for live-only events (task.log)")
    ts: float
    type: str = Field(description="workflow.status, task.status, task.log, ...")
    version: int
    workflow_id: str
    group_name: str | None
    task: str | None
    retry_id: int | None
    status: str | None
    payload: dict[str, Any]


class VersionResponse(BaseModel):
    version: str
    api: str


class LastEventResponse(BaseModel):
    """`GET /events/last`."""

    last_event_id: int = Field(
        description="The newest stored event's id (0: none yet). Read it before a list, then "
        "open the events WebSocket with `after` set to it: the list, then what changed since, "
        "without replaying what the list already holds."
    )


class HealthResponse(BaseModel):
    status: Literal["ok"]


class BackendHealth(BaseModel):
    name: str
    kind: str
    connected: bool | None = Field(
        description="whether its agent link is up; null: the backend does not say (its hosts do)"
    )
    tasks: int = Field(description="INITIALIZING or RUNNING tasks on it")


class HostHealth(BaseModel):
    backend: str
    node: str
    online: bool


class ReconcileHealth(BaseModel):
    """The engine's check that every launched task still has a process behind it."""

    interval: float = Field(description="seconds between passes (0: off)")
    checking: int = Field(description="tasks being asked about right now")
    passes: int
    last_at: float | None = Field(description="when the last pass ended (Unix time)")
    last_seconds: float = Field(description="how long the last pass took")
    settled: int = Field(description="tasks passes found without a process, since the start")


class StoreHealth(BaseModel):
    reachable: bool
    schema_version: str | None = Field(None, description="the store's migration revision")
    pending_writes: int = Field(description="commands and events the engine has not committed")
    error: str | None = None


class HealthDetail(BaseModel):
    """`GET /health/detail` (admins): "ok", or "degraded" with the problems found."""

    status: Literal["ok", "degraded"]
    problems: list[str]
    loop_lag: float = Field(
        description="seconds a no-op last took through the engine's inbox (or waits there now)"
    )
    last_tick: float | None = Field(description="when that no-op was answered (Unix time)")
    backends: list[BackendHealth]
    hosts: list[HostHealth]
    reconcile: ReconcileHealth
    store: StoreHealth


class ErrorResponse(BaseModel):
    """jupyter_server's error body; `details` has one entry per problem."""

    message: str
    reason: str | None = None
    details: list[dict[str, Any]] = Field(default_factory=list)
