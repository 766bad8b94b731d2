"""The OpenAPI 3 document of the REST API, built from the route table (routes.py).

Each route names its operations (`Op`: operationId, summary, answers, errors, query and body
models); its path parameters come from the route's URL pattern, and the models' JSON schemas
(schemas/) are the document's components. The WebSockets (events, log follow, exec,
port-forward, terminals; their messages are in their modules' docstrings) are not listed:
OpenAPI 3 cannot describe a WebSocket; the events stream's message is a component
(EventModel) all the same, for clients' generated types. Nor is the HTTP proxy to a task's
port, whose answers are the task's web app's.

`python -m osmo_jupyter.server.routes [--out FILE]` writes the document (the panel's
TypeScript types are generated from it: `jlpm gen:api` in labextension/).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from ..schemas import (
    CacheClearRequest,
    CacheClearResponse,
    CancelResponse,
    CredentialCreate,
    CredentialRecord,
    CredentialRequest,
    DryRunResponse,
    ErrorResponse,
    EventModel,
    FileEntry,
    FilesListing,
    HealthDetail,
    HealthResponse,
    HoldResponse,
    KernelStarted,
    KernelStopped,
    LastEventResponse,
    LogLineModel,
    MeResponse,
    MkdirRequest,
    PoolModel,
    ResourceModel,
    RestartRequest,
    RestartResponse,
    SpecResponse,
    SubmitRequest,
    SubmitResponse,
    TaskDetail,
    TerminalModel,
    TerminalRequest,
    TokenCreated,
    TokenRecord,
    TokenRequest,
    ValidResponse,
    VersionResponse,
    WorkflowModel,
    WorkflowSummary,
)
from .base import API_PREFIX

if TYPE_CHECKING:
    from .routes import Route

_ERRORS = {
    400: "Bad request: bad JSON, or a body or query value of the wrong shape; `details` name "
    "each bad field",
    401: "Not authenticated: no credentials, or an unknown, expired or revoked token",
    403: "Not allowed: another user's workflow or token, a pool or a credential closed to the "
    "caller (`details` name each field that uses one), an admin-only action (or, with cookie "
    "auth, a POST without an XSRF token)",
    404: "No such workflow, task, attempt, token or credential",
    409: "Conflict with the resource's state (e.g. the workflow already ended)",
    422: "Well-formed but invalid: the spec, its set values or its placement; `details` has "
    "one entry per problem with file, line and field",
    502: "The backend running the task failed to answer",
    503: "The service is not running or its store is unavailable",
}
AUTH = (401, 403)
SERVICE = (*AUTH, 503)  # every route that reaches the service


def ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def array_of(model: type[BaseModel]) -> dict[str, Any]:
    return {"type": "array", "items": ref(model)}


def json_reply(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


BYTES = {"type": "string", "format": "binary"}


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


MODELS: list[type[BaseModel]] = [
    SubmitRequest, SubmitResponse, DryRunResponse, ValidResponse, CancelResponse, SpecResponse,
    LogLineModel, WorkflowSummary, WorkflowModel, TaskDetail, PoolModel, ResourceModel,
    VersionResponse, HealthResponse, ErrorResponse, TokenRequest, TokenRecord, TokenCreated,
    MeResponse, RestartResponse, HoldResponse, KernelStarted, KernelStopped, TerminalRequest,
    TerminalModel, MkdirRequest, FileEntry, FilesListing, EventModel, HealthDetail,
    RestartRequest, CacheClearRequest, CacheClearResponse, CredentialRequest, CredentialCreate,
    CredentialRecord, LastEventResponse,
]  # fmt: skip


@dataclass(frozen=True)
class Op:
    """One operation of a route: its answers, and the JSON error body for each status in
    `errors`. `limit`: the query's `limit` is at most this page size of the server's."""

    op_id: str
    summary: str
    ok: dict[int, dict[str, Any]]
    errors: tuple[int, ...]
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_optional: bool = False  # the body may be left out (its fields' defaults apply)
    raw_body: dict[str, Any] | None = None  # a request body that is not JSON (its content)
    public: bool = False
    limit: Literal["max_page", "max_log_page"] | None = None

    def render(self, path_params: Iterable[str], pages: dict[str, int]) -> dict[str, Any]:
        op: dict[str, Any] = {"operationId": self.op_id, "summary": self.summary}
        if self.public:
            op["security"] = []
        params = [
            {
                "name": n,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "minLength": 1},
            }
            for n in path_params
        ] + (_query(self.query) if self.query is not None else [])
        if self.limit is not None:
            for p in params:
                if p["name"] == "limit":
                    p["schema"]["maximum"] = pages[self.limit]
        if params:
            op["parameters"] = params
        if self.body is not None:
            op["requestBody"] = {
                "required": not self.body_optional,
                "content": {"application/json": {"schema": ref(self.body)}},
            }
        responses = {str(code): r for code, r in self.ok.items()}
        for code in sorted(set(self.errors)):
            responses[str(code)] = json_reply(ref(ErrorResponse), _ERRORS[code])
        op["responses"] = responses
        if self.raw_body is not None:
            op["requestBody"] = {"required": True, "content": self.raw_body}
        return op


_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def document(
    version: str, routes: Iterable[Route], max_page: int = 1000, max_log_page: int = 10_000
) -> dict[str, Any]:
    """The OpenAPI 3 document of `routes`; `limit`s say the server's page sizes
    (OsmoConfig.max_page_size, max_log_page_size)."""
    schemas: dict[str, Any] = {}
    for m in MODELS:
        s = m.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(s.pop("$defs", {}))
        schemas[m.__name__] = s
    pages = {"max_page": max_page, "max_log_page": max_log_page}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not route.ops:
            continue
        path = _GROUP.sub(r"{\1}", route.pattern).removeprefix(f"/{API_PREFIX}")
        names = _GROUP.findall(route.pattern)
        paths[path] = {method: op.render(names, pages) for method, op in route.ops.items()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "osmo-jupyter control plane",
            "version": version,
            "description": "Errors are jupyter_server's JSON body {message, reason, details}. "
            "Authenticate with `Authorization: Bearer TOKEN`.",
        },
        "servers": [{"url": f"/{API_PREFIX}"}],
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
        "paths": paths,
    }
