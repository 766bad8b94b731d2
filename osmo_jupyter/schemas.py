"""Request and response models of the REST API (pydantic), the source of the OpenAPI document.

Handlers validate bodies and query strings with these; a validation failure is a 400 whose
`details` name each bad field. Responses are documented here and built by `osmo_core.service`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from osmo_core.states import WorkflowStatus

Priority = Literal["HIGH", "NORMAL", "LOW"]


class SubmitRequest(BaseModel):
    """Body of `POST /workflows`."""

    model_config = ConfigDict(extra="forbid")

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
    user: str | None = Field(None, description="Admins: create it for this user.")
    role: Literal["admin", "user"] = Field("user", description="Admins only: `admin`.")
    expires_in_days: float | None = Field(
        None, gt=0, le=3650, description="Lifetime; none = until revoked."
    )


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


class RestartResponse(BaseModel):
    id: str = Field(description="The new workflow.")
    restarted: str


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


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _ok(schema: dict[str, Any], status: str = "200") -> dict[str, Any]:
    errors = {
        code: {
            "description": text,
            "content": {"application/json": {"schema": _ref(ErrorResponse)}},
        }
        for code, text in (
            ("400", "bad request"),
            ("401", "not authenticated (missing, unknown, expired or revoked token)"),
            ("403", "not allowed (another user's workflow, a closed pool)"),
            ("404", "not found"),
        )
    }
    ok = {"description": "OK", "content": {"application/json": {"schema": schema}}}
    return {status: ok, **errors}


def _query(model: type[BaseModel]) -> list[dict[str, Any]]:
    props = model.model_json_schema(ref_template="#/components/schemas/{model}")["properties"]
    return [{"name": k, "in": "query", "schema": v} for k, v in props.items()]


def _path(*names: str) -> list[dict[str, Any]]:
    return [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names
    ]


def openapi(version: str) -> dict[str, Any]:
    """The OpenAPI 3 document of the REST API, from the models above."""
    models = [
        SubmitRequest, SubmitResponse, DryRunResponse, ValidResponse, CancelResponse,
        SpecResponse, LogLineModel, VersionResponse, HealthResponse, ErrorResponse,
        TokenRequest, TokenRecord, TokenCreated, MeResponse, RestartResponse,
    ]  # fmt: skip
    schemas: dict[str, Any] = {}
    for m in models:
        s = m.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(s.pop("$defs", {}))
        schemas[m.__name__] = s
    obj = {"type": "object"}
    wf = "/workflows/{wf_id}"
    return {
        "openapi": "3.1.0",
        "info": {"title": "osmo-jupyter control plane", "version": version},
        "servers": [{"url": "/osmo/api/v1"}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "Authorization"}
            },
        },
        "security": [{"token": []}],
        "paths": {
            "/health": {"get": {"security": [], "responses": _ok(_ref(HealthResponse))}},
            "/version": {"get": {"responses": _ok(_ref(VersionResponse))}},
            "/openapi.json": {"get": {"responses": _ok(obj)}},
            "/me": {"get": {"responses": _ok(_ref(MeResponse))}},
            "/pools": {"get": {"responses": _ok({"type": "array", "items": obj})}},
            "/resources": {"get": {"responses": _ok({"type": "array", "items": obj})}},
            "/tokens": {
                "get": {
                    "parameters": _query(TokenListQuery),
                    "responses": _ok({"type": "array", "items": _ref(TokenRecord)}),
                },
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(TokenRequest)}},
                    },
                    "responses": _ok(_ref(TokenCreated), "201"),
                },
            },
            "/tokens/{token_id}": {
                "delete": {"parameters": _path("token_id"), "responses": _ok(_ref(TokenRecord))}
            },
            "/workflows": {
                "get": {
                    "parameters": _query(ListQuery),
                    "responses": _ok({"type": "array", "items": obj}),
                },
                "post": {
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref(SubmitRequest)}},
                    },
                    "responses": {
                        **_ok({"oneOf": [_ref(DryRunResponse), _ref(ValidResponse)]}),
                        "201": {
                            "description": "submitted",
                            "content": {"application/json": {"schema": _ref(SubmitResponse)}},
                        },
                        "422": {
                            "description": "invalid spec or placement; details per problem",
                            "content": {"application/json": {"schema": _ref(ErrorResponse)}},
                        },
                    },
                },
            },
            wf: {"get": {"parameters": _path("wf_id"), "responses": _ok(obj)}},
            f"{wf}/cancel": {
                "post": {
                    "parameters": _path("wf_id"),
                    "responses": {
                        **_ok(_ref(CancelResponse)),
                        "409": {"description": "the workflow already ended"},
                    },
                }
            },
            f"{wf}/restart": {
                "post": {
                    "parameters": _path("wf_id"),
                    "responses": {
                        **_ok(_ref(RestartResponse), "201"),
                        "409": {"description": "the workflow is still running"},
                    },
                }
            },
            f"{wf}/tasks/{{task}}": {
                "get": {"parameters": _path("wf_id", "task"), "responses": _ok(obj)}
            },
            f"{wf}/spec": {
                "get": {"parameters": _path("wf_id"), "responses": _ok(_ref(SpecResponse))}
            },
            f"{wf}/tasks/{{task}}/logs": {
                "get": {
                    "parameters": _path("wf_id", "task") + _query(LogsQuery),
                    "responses": _ok({"type": "array", "items": _ref(LogLineModel)}),
                }
            },
        },
    }
