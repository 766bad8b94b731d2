"""Request and response models of the REST API (pydantic), the source of the OpenAPI document.

Handlers validate bodies and query strings with these; a validation failure is a 400 whose
`details` name each bad field. Responses are documented here and built by `osmo_core.service`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from osmo_core.states import TaskStatus, WorkflowStatus

Priority = Literal["HIGH", "NORMAL", "LOW"]


class SubmitRequest(BaseModel):
    """Body of `POST /workflows`."""

    # strict: a JSON body says what it means (0 is not false, "1" is not a number)
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"spec": "workflow:\n  name: hello\n  tasks:\n  - name: t\n    command: [echo, hi]"}
            ]
        },
    )

    spec: str | dict[str, Any] = Field(description="The workflow: YAML text or a JSON object.")
    set_values: dict[str, Any] = Field(
        default_factory=dict, description="Template values overriding the spec's default-values."
    )
    pool: str | None = Field(
        None, description="Pool to run in (default: the spec's, then the server's)."
    )
    priority: Priority = "NORMAL"
    dry_run: bool = Field(
        False, description="Validate and answer the rendered spec; store nothing."
    )
    validation_only: bool = Field(False, description="Validate only; answer {valid: true}.")


class ListQuery(BaseModel):
    """Query string of `GET /workflows` (`status` may repeat or be comma-separated)."""

    model_config = ConfigDict(extra="forbid")

    status: list[WorkflowStatus] = Field(default_factory=list)
    user: str | None = None
    pool: str | None = None
    name: str | None = None
    limit: int = Field(50, ge=1, le=1000)
    offset: int = Field(0, ge=0)


class LogsQuery(BaseModel):
    """Query string of `GET /workflows/{id}/tasks/{task}/logs`."""

    model_config = ConfigDict(extra="forbid")

    retry_id: int | None = Field(None, ge=0)
    start: int = Field(0, ge=0, description="0-based index of the first line.")
    limit: int | None = Field(None, ge=1)


class EventsQuery(BaseModel):
    """Query string of the `events` WebSocket."""

    model_config = ConfigDict(extra="forbid")

    workflow_id: str | None = None
    after: int = Field(
        0, ge=0, description="Last event id seen; stored events after it come first."
    )
    logs: bool = Field(True, description="Include live `task.log` lines.")


class LogFollowQuery(BaseModel):
    """Query string of the log-follow WebSocket."""

    model_config = ConfigDict(extra="forbid")

    retry_id: int | None = Field(
        None, ge=0, description="Follow this attempt only (default: the task, across attempts)."
    )
    start: int = Field(0, ge=0, description="Skip the first `start` lines.")


class TokenListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(None, description="Admins: one user's tokens.")


class TokenRequest(BaseModel):
    """Body of `POST /tokens`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="What the token is for.")
    user: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$",  # as osmo_core.auth.tokens checks it
        description="Admins: create it for this user.",
    )
    role: Literal["admin", "user"] = Field("user", description="Admins only: `admin`.")
    expires_in_days: float | None = Field(
        None, gt=0, le=3650, description="Lifetime; none = until revoked."
    )


class TerminalRequest(BaseModel):
    """Body of `POST .../tasks/{task}/api/terminals` (what JupyterLab's TerminalManager sends)."""

    model_config = ConfigDict(extra="ignore")  # JupyterLab may send `cwd`: the task's is used

    name: str | None = Field(
        None, pattern=r"^\w{1,64}$", description="Name it (default: the next free number)."
    )


class TerminalModel(BaseModel):
    """jupyter_server's terminal model, plus where the terminal runs."""

    name: str
    last_activity: str
    workflow_id: str
    task: str
    user: str


class FilesQuery(BaseModel):
    """Query string of `GET .../tasks/{task}/files` and `GET .../files/content`."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(".", max_length=4096, description="Relative to the task's workdir.")


class PutFileQuery(FilesQuery):
    """Query string of `PUT .../tasks/{task}/files/content`."""

    mtime: int | None = Field(None, ge=0, le=2**32 - 1, description="Set this mtime (seconds).")
    mode: int | None = Field(None, ge=0, le=0o7777, description="Set these permission bits.")


class MkdirRequest(BaseModel):
    """Body of `POST .../tasks/{task}/files/dirs`."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(max_length=100_000, description="Folders to make (with parents).")


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


class KernelStarted(BaseModel):
    """A kernel started inside a running task: a jupyter_client connection file without ports
    (each channel is reached through `.../kernels/{kernel_id}/channels/{channel}`, a
    WebSocket of raw bytes; kernel_handlers.py)."""

    kernel_id: str = Field(description="The kernel's id in the Jupyter server (`/api/kernels`).")
    kernel_name: str = Field(description="Its kernel spec, `osmo--WF--TASK`.")
    key: str = Field(description="The HMAC key that signs the kernel's messages.")
    signature_scheme: str
    transport: Literal["tcp"]
    channels: list[str] = Field(description="shell, iopub, stdin, control, hb")


class KernelStopped(BaseModel):
    kernel_id: str
    shutdown: bool


# --- responses ----------------------------------------------------------------------------
# Documented as the service builds them (osmo_core.service); fields are listed, not closed,
# so a field added later does not break a client checking against an older document.


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
    priority: int = Field(description="2 HIGH, 1 NORMAL, 0 LOW.")
    file: str | None
    set_values: dict[str, Any]
    submit_time: float
    start_time: float | None
    end_time: float | None
    message: str | None


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


class WorkflowModel(WorkflowSummary):
    """`GET /workflows/{wf_id}`: the workflow, its groups and every task attempt."""

    groups: list[GroupModel]
    tasks: list[TaskModel]


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


class PoolModel(BaseModel):
    name: str
    backend: str = Field(description="the pool's default backend; a platform may name another")
    default_platform: str
    platforms: dict[str, PlatformModel]
    nodes: list[NodeUsage]


class VersionResponse(BaseModel):
    version: str
    api: str


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ErrorResponse(BaseModel):
    """jupyter_server's error body; `details` has one entry per problem."""

    message: str
    reason: str | None = None
    details: list[dict[str, Any]] = Field(default_factory=list)


# --- the OpenAPI document -------------------------------------------------------------------

_ERRORS = {
    400: "Bad request: bad JSON, or a body or query value of the wrong shape; `details` name "
    "each bad field",
    401: "Not authenticated: no credentials, or an unknown, expired or revoked token",
    403: "Not allowed: another user's workflow or token, a pool or a credential closed to the "
    "caller (`details` name each field that uses one), an admin-only action (or, with cookie "
    "auth, a POST without an XSRF token)",
    404: "No such workflow, task, attempt or token",
    409: "Conflict with the resource's state (e.g. the workflow already ended)",
    422: "Well-formed but invalid: the spec, its set values or its placement; `details` has "
    "one entry per problem with file, line and field",
    502: "The backend running the task failed to answer",
    503: "The service is not running or its store is unavailable",
}
_AUTH = (401, 403)
_SERVICE = (*_AUTH, 503)  # every route that reaches the service


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _array(model: type[BaseModel]) -> dict[str, Any]:
    return {"type": "array", "items": _ref(model)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(
    op_id: str,
    summary: str,
    ok: dict[int, dict[str, Any]],
    errors: tuple[int, ...],
    *,
    params: list[dict[str, Any]] | None = None,
    body: type[BaseModel] | None = None,
    public: bool = False,
) -> dict[str, Any]:
    """One operation: its answers, plus the JSON error body for each status in `errors`."""
    op: dict[str, Any] = {"operationId": op_id, "summary": summary}
    if public:
        op["security"] = []
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    responses = {str(code): r for code, r in ok.items()}
    for code in sorted(set(errors)):
        responses[str(code)] = _json(_ref(ErrorResponse), _ERRORS[code])
    op["responses"] = responses
    return op


_BYTES = {"type": "string", "format": "binary"}


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query value is a string or absent, never JSON null: `X | None` documents as X."""
    s = dict(schema)
    branches = [b for b in s.pop("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1:
        s.update(branches[0])
    elif branches:
        s["anyOf"] = branches
    if s.get("default", 0) is None:
        del s["default"]
    return s


def _query(model: type[BaseModel]) -> list[dict[str, Any]]:
    js = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return [
        {
            "name": name,
            "in": "query",
            "required": name in js.get("required", []),
            **({"description": p["description"]} if "description" in p else {}),
            "schema": _not_null(p),
        }
        for name, p in js["properties"].items()
    ]


def _path(*names: str) -> list[dict[str, Any]]:
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for n in names
    ]


MODELS: list[type[BaseModel]] = [
    SubmitRequest, SubmitResponse, DryRunResponse, ValidResponse, CancelResponse, SpecResponse,
    LogLineModel, WorkflowSummary, WorkflowModel, TaskDetail, PoolModel, ResourceModel,
    VersionResponse, HealthResponse, ErrorResponse, TokenRequest, TokenRecord, TokenCreated,
    MeResponse, RestartResponse, HoldResponse, KernelStarted, KernelStopped, TerminalRequest,
    TerminalModel, MkdirRequest, FileEntry, FilesListing,
]  # fmt: skip


def openapi(version: str) -> dict[str, Any]:
    """The OpenAPI 3 document of the REST API, from the models above.

    The WebSockets (events, log follow, exec, port-forward, terminals; their messages are in
    their handlers' docstrings) are not listed: OpenAPI 3 cannot describe a WebSocket. Nor is
    the HTTP proxy to a task's port, whose answers are the task's web app's."""
    schemas: dict[str, Any] = {}
    for m in MODELS:
        s = m.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(s.pop("$defs", {}))
        schemas[m.__name__] = s
    wf = "/workflows/{wf_id}"
    wf_param = {"wf_id": "$response.body#/id"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "osmo-jupyter control plane",
            "version": version,
            "description": "Errors are jupyter_server's JSON body {message, reason, details}. "
            "Authenticate with `Authorization: Bearer TOKEN`.",
        },
        "servers": [{"url": "/osmo/api/v1"}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A personal access token, an OIDC JWT, or the Jupyter "
                    "server's token (`Authorization: token TOKEN` is accepted too)",
                }
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/health": {
                "get": _op(
                    "health",
                    "Liveness",
                    {200: _json(_ref(HealthResponse), "alive")},
                    (),
                    public=True,
                )
            },
            "/version": {
                "get": _op(
                    "version", "Server version", {200: _json(_ref(VersionResponse), "OK")}, _AUTH
                )
            },
            "/openapi.json": {
                "get": _op(
                    "openapi", "This document", {200: _json({"type": "object"}, "OK")}, _AUTH
                )
            },
            "/me": {
                "get": _op(
                    "me", "Who the caller is to osmo", {200: _json(_ref(MeResponse), "OK")}, _AUTH
                )
            },
            "/resources": {
                "get": _op(
                    "listResources",
                    "Every machine: capacity, what is free, the pools using it",
                    {200: _json(_array(ResourceModel), "OK")},
                    _SERVICE,
                )
            },
            "/tokens": {
                "get": _op(
                    "listTokens",
                    "Personal access tokens (admins: anyone's)",
                    {200: _json(_array(TokenRecord), "OK")},
                    (400, *_SERVICE),
                    params=_query(TokenListQuery),
                ),
                "post": _op(
                    "createToken",
                    "Create a personal access token; the token is shown only in this answer",
                    {201: _json(_ref(TokenCreated), "created")},
                    (400, 422, *_SERVICE),
                    body=TokenRequest,
                ),
            },
            "/tokens/{token_id}": {
                "delete": _op(
                    "revokeToken",
                    "Revoke a personal access token",
                    {200: _json(_ref(TokenRecord), "revoked")},
                    (404, *_SERVICE),
                    params=_path("token_id"),
                )
            },
            "/pools": {
                "get": _op(
                    "listPools",
                    "Pools, their platforms and the capacity left on each node",
                    {200: _json(_array(PoolModel), "OK")},
                    _SERVICE,
                )
            },
            "/workflows": {
                "get": _op(
                    "listWorkflows",
                    "Workflows, newest first",
                    {200: _json(_array(WorkflowSummary), "OK")},
                    (400, *_SERVICE),
                    params=_query(ListQuery),
                ),
                "post": _op(
                    "submitWorkflow",
                    "Submit a workflow (or only validate it: dry_run, validation_only)",
                    {
                        201: {
                            **_json(_ref(SubmitResponse), "submitted"),
                            "headers": {
                                "Location": {
                                    "description": "The new workflow",
                                    "schema": {"type": "string"},
                                }
                            },
                            "links": {
                                "getWorkflow": {
                                    "operationId": "getWorkflow",
                                    "parameters": wf_param,
                                },
                                "getSpec": {"operationId": "getSpec", "parameters": wf_param},
                                "cancelWorkflow": {
                                    "operationId": "cancelWorkflow",
                                    "parameters": wf_param,
                                },
                            },
                        },
                        200: _json(
                            {"oneOf": [_ref(DryRunResponse), _ref(ValidResponse)]},
                            "dry_run: the rendered spec; validation_only: valid",
                        ),
                    },
                    (400, 422, *_SERVICE),
                    body=SubmitRequest,
                ),
            },
            wf: {
                "get": _op(
                    "getWorkflow",
                    "A workflow with its groups and every task attempt",
                    {200: _json(_ref(WorkflowModel), "OK")},
                    (404, *_SERVICE),
                    params=_path("wf_id"),
                )
            },
            f"{wf}/cancel": {
                "post": _op(
                    "cancelWorkflow",
                    "Cancel a workflow; answers its status",
                    {200: _json(_ref(CancelResponse), "OK")},
                    (404, 409, *_SERVICE),
                    params=_path("wf_id"),
                )
            },
            f"{wf}/restart": {
                "post": _op(
                    "restartWorkflow",
                    "Run an ended workflow again as a new one",
                    {201: _json(_ref(RestartResponse), "the new workflow")},
                    (404, 409, 422, *_SERVICE),
                    params=_path("wf_id"),
                )
            },
            f"{wf}/tasks/{{task}}": {
                "get": _op(
                    "getTask",
                    "A task: its latest attempt, and every attempt",
                    {200: _json(_ref(TaskDetail), "OK")},
                    (404, *_SERVICE),
                    params=_path("wf_id", "task"),
                )
            },
            f"{wf}/tasks/{{task}}/done": {
                "post": _op(
                    "markTaskDone",
                    "An interactive task waiting for its user is done: its outputs are "
                    "persisted and its downstream starts (409 unless it is waiting)",
                    {200: _json(_ref(HoldResponse), "recorded")},
                    (404, 409, *_SERVICE),
                    params=_path("wf_id", "task"),
                )
            },
            f"{wf}/tasks/{{task}}/retry": {
                "post": _op(
                    "retryTask",
                    "Run a task held for debugging (debug: on-failure) again as a new attempt "
                    "(409 unless it is held)",
                    {200: _json(_ref(HoldResponse), "recorded")},
                    (404, 409, *_SERVICE),
                    params=_path("wf_id", "task"),
                )
            },
            f"{wf}/spec": {
                "get": _op(
                    "getSpec",
                    "The spec as submitted, rendered and validated",
                    {200: _json(_ref(SpecResponse), "OK")},
                    (404, *_SERVICE),
                    params=_path("wf_id"),
                )
            },
            f"{wf}/tasks/{{task}}/kernels": {
                "post": _op(
                    "startTaskKernel",
                    "Start a Jupyter kernel inside the running task (ipykernel in its Python)",
                    {201: _json(_ref(KernelStarted), "started")},
                    (404, 409, 502, *_SERVICE),
                    params=_path("wf_id", "task"),
                )
            },
            f"{wf}/tasks/{{task}}/kernels/{{kernel_id}}": {
                "delete": _op(
                    "shutdownTaskKernel",
                    "Shut down a kernel of the task",
                    {200: _json(_ref(KernelStopped), "shut down")},
                    (404, *_SERVICE),
                    params=_path("wf_id", "task", "kernel_id"),
                )
            },
            f"{wf}/tasks/{{task}}/api/terminals": {
                "get": _op(
                    "listTerminals",
                    "Terminals open in the task (jupyter_server's terminals API, per task)",
                    {200: _json(_array(TerminalModel), "OK")},
                    (404, *_SERVICE),
                    params=_path("wf_id", "task"),
                ),
                "post": _op(
                    "createTerminal",
                    "Start the task's shell on a PTY, as a named terminal",
                    {200: _json(_ref(TerminalModel), "started")},
                    (400, 404, 409, 502, *_SERVICE),
                    params=_path("wf_id", "task"),
                    body=TerminalRequest,
                ),
            },
            f"{wf}/tasks/{{task}}/api/terminals/{{name}}": {
                "get": _op(
                    "getTerminal",
                    "A terminal of the task",
                    {200: _json(_ref(TerminalModel), "OK")},
                    (404, *_SERVICE),
                    params=_path("wf_id", "task", "name"),
                ),
                "delete": _op(
                    "deleteTerminal",
                    "End a terminal (its shell gets SIGHUP)",
                    {204: {"description": "ended"}},
                    (404, *_SERVICE),
                    params=_path("wf_id", "task", "name"),
                ),
            },
            f"{wf}/tasks/{{task}}/files": {
                "get": _op(
                    "listFiles",
                    "A path in the task's workdir and everything under it (symlinks not followed)",
                    {200: _json(_ref(FilesListing), "OK")},
                    (400, 404, 409, 422, 502, *_SERVICE),
                    params=_path("wf_id", "task") + _query(FilesQuery),
                )
            },
            f"{wf}/tasks/{{task}}/files/content": {
                "get": _op(
                    "readFile",
                    "A file of the task's workdir (X-Osmo-Mtime and X-Osmo-Mode headers)",
                    {
                        200: {
                            "description": "the bytes",
                            "content": {"application/octet-stream": {"schema": _BYTES}},
                        }
                    },
                    (400, 404, 409, 422, 502, *_SERVICE),
                    params=_path("wf_id", "task") + _query(FilesQuery),
                ),
                "put": {
                    **_op(
                        "writeFile",
                        "Write a file in the task's workdir from the body (parents made)",
                        {201: _json({"type": "object"}, "written: {path, size}")},
                        (400, 404, 409, 422, 502, *_SERVICE),
                        params=_path("wf_id", "task") + _query(PutFileQuery),
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {"application/octet-stream": {"schema": _BYTES}},
                    },
                },
            },
            f"{wf}/tasks/{{task}}/files/dirs": {
                "post": _op(
                    "makeDirs",
                    "Make folders (with parents) in the task's workdir",
                    {201: _json({"type": "object"}, "made: {paths}")},
                    (400, 404, 409, 422, 502, *_SERVICE),
                    params=_path("wf_id", "task"),
                    body=MkdirRequest,
                )
            },
            f"{wf}/tasks/{{task}}/logs": {
                "get": _op(
                    "getLogs",
                    "Log lines of a task's attempt (default: the latest)",
                    {200: _json(_array(LogLineModel), "OK")},
                    (400, 404, 502, *_SERVICE),
                    params=_path("wf_id", "task") + _query(LogsQuery),
                )
            },
        },
    }
