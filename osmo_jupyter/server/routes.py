"""The one route table of the control plane: every handler with its URL pattern and, for the
REST routes, its operations, from which the OpenAPI document is built (openapi.py).

`OsmoApp.initialize_handlers` (app.py) gives `handlers()` to tornado, in this order; an app's
own host name (`OsmoConfig.app_proxy_url`) is routed apart (`proxy.install_app_host`). A route
without operations is not in the document: a WebSocket, the proxy to a task's web app, and
`/metrics` (outside the API). `python -m osmo_jupyter.server.routes [--out FILE]` writes the
document (the panel's TypeScript types are generated from it: `jlpm gen:api` in labextension/).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tornado import web

import osmo_core

from ..schemas import (
    CacheClearRequest,
    CacheClearResponse,
    CancelResponse,
    CredentialCreate,
    CredentialQuery,
    CredentialRecord,
    CredentialRequest,
    DryRunResponse,
    FilesListing,
    FilesQuery,
    HealthDetail,
    HealthResponse,
    HoldResponse,
    KernelStarted,
    KernelStopped,
    LastEventResponse,
    ListQuery,
    LogLineModel,
    LogsQuery,
    MeResponse,
    MkdirRequest,
    PoolModel,
    PutFileQuery,
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
    TokenListQuery,
    TokenRecord,
    TokenRequest,
    ValidResponse,
    VersionResponse,
    WorkflowModel,
    WorkflowSummary,
)
from .app_links import APP_ROUTE
from .base import API_PREFIX, OsmoHandler, api
from .credentials import CredentialHandler, CredentialsHandler
from .events import EventsWebSocket, LastEventHandler
from .exec import ExecWebSocket, PortForwardWebSocket
from .files import DirsHandler, FileContentHandler, FilesHandler
from .info import HealthDetailHandler, HealthHandler, MeHandler, VersionHandler
from .kernels import KernelChannelWebSocket, TaskKernelHandler, TaskKernelsHandler
from .logs import LogFollowWebSocket, LogsHandler
from .metrics import MetricsHandler
from .openapi import AUTH, BYTES, SERVICE, Op, array_of, document, json_reply, ref
from .pools import PoolsHandler, ResourcesHandler
from .proxy import AppHandler, ProxyHandler
from .tasks import TaskDoneHandler, TaskHandler, TaskRetryHandler
from .terminals import TerminalHandler, TerminalsHandler, TerminalWebSocket
from .tokens import TokenHandler, TokensHandler
from .workflows import (
    CacheClearHandler,
    CancelHandler,
    RestartHandler,
    SpecHandler,
    WorkflowHandler,
    WorkflowsHandler,
)

WF_ID = r"(?P<wf_id>[^/]+)"
TASK = r"(?P<task>[^/]+)"
TOKEN_ID = r"(?P<token_id>[^/]+)"
CRED_NAME = r"(?P<name>[^/]+)"
KERNEL_ID = r"(?P<kernel_id>[^/]+)"
CHANNEL = r"(?P<channel>[^/]+)"
TERMINAL = r"(?P<name>[^/]+)"  # any: an unknown name is a JSON 404, not an HTML one
PORT = r"(?P<port>[0-9]{1,5})"


class OpenAPIHandler(OsmoHandler):
    """The document built from ROUTES below: here rather than in info.py, since the table
    imports every handler module."""

    @api
    async def get(self) -> None:
        config = getattr(self.osmo_app.service, "config", None)  # the document needs no engine
        pages = (config.max_page_size, config.max_log_page_size) if config else ()
        self.reply(openapi(osmo_core.__version__, *pages))


def api_route(path: str) -> str:
    """The URL pattern of `path` under `/osmo/api/v1`."""
    return f"/{API_PREFIX}/{path}"


@dataclass(frozen=True)
class Route:
    """A URL pattern, its handler, and its documented operations (by lower-case method)."""

    pattern: str
    handler: type[web.RequestHandler]
    ops: dict[str, Op] = field(default_factory=dict)


_WF = f"workflows/{WF_ID}"
_TASK = f"{_WF}/tasks/{TASK}"
_NEW_WF = {"wf_id": "$response.body#/id"}  # the workflow a submit answered
_FILES = (400, 404, 409, 422, 502, *SERVICE)

_SUBMITTED: dict[str, Any] = {
    **json_reply(ref(SubmitResponse), "submitted"),
    "headers": {"Location": {"description": "The new workflow", "schema": {"type": "string"}}},
    "links": {
        "getWorkflow": {"operationId": "getWorkflow", "parameters": _NEW_WF},
        "getSpec": {"operationId": "getSpec", "parameters": _NEW_WF},
        "cancelWorkflow": {"operationId": "cancelWorkflow", "parameters": _NEW_WF},
    },
}

ROUTES: list[Route] = [
    Route(api_route("health"), HealthHandler, {
        "get": Op("health", "Liveness", {200: json_reply(ref(HealthResponse), "alive")}, (),
                  public=True),
    }),
    Route(api_route("health/detail"), HealthDetailHandler, {
        "get": Op("healthDetail", "Engine lag, agents, hosts, reconciliation, store (admins)",
                  {200: json_reply(ref(HealthDetail), "ok or degraded")}, SERVICE),
    }),
    Route(api_route("version"), VersionHandler, {
        "get": Op("version", "Server version", {200: json_reply(ref(VersionResponse), "OK")},
                  AUTH),
    }),
    Route(api_route("me"), MeHandler, {
        "get": Op("me", "Who the caller is to osmo", {200: json_reply(ref(MeResponse), "OK")},
                  AUTH),
    }),
    Route(api_route("openapi.json"), OpenAPIHandler, {
        "get": Op("openapi", "This document", {200: json_reply({"type": "object"}, "OK")}, AUTH),
    }),
    Route(api_route("pools"), PoolsHandler, {
        "get": Op("listPools", "Pools, their platforms and the capacity left on each node",
                  {200: json_reply(array_of(PoolModel), "OK")}, SERVICE),
    }),
    Route(api_route("resources"), ResourcesHandler, {
        "get": Op("listResources", "Every machine: capacity, what is free, the pools using it",
                  {200: json_reply(array_of(ResourceModel), "OK")}, SERVICE),
    }),
    Route(api_route("credentials"), CredentialsHandler, {
        "get": Op("listCredentials",
                  "Your own credentials, without their secrets (admins: `user=NAME` or `*`)",
                  {200: json_reply(array_of(CredentialRecord), "OK")}, (400, *SERVICE),
                  query=CredentialQuery),
        "post": Op("createCredential", "Create a credential of yours (OSMO's `credential set`)",
                   {201: json_reply(ref(CredentialRecord), "created")},
                   (400, 409, 422, *SERVICE), body=CredentialCreate),
    }),
    Route(api_route(f"credentials/{CRED_NAME}"), CredentialHandler, {
        "put": Op("putCredential", "Create or replace a credential of yours",
                  {200: json_reply(ref(CredentialRecord), "stored")}, (400, 404, 422, *SERVICE),
                  body=CredentialRequest),
        "delete": Op("deleteCredential", "Delete a credential of yours (admins: `user=NAME`)",
                     {200: json_reply(ref(CredentialRecord), "deleted")}, (400, 404, *SERVICE),
                     query=CredentialQuery),
    }),
    Route(api_route("tokens"), TokensHandler, {
        "get": Op("listTokens", "Personal access tokens (admins: anyone's)",
                  {200: json_reply(array_of(TokenRecord), "OK")}, (400, *SERVICE),
                  query=TokenListQuery),
        "post": Op("createToken",
                   "Create a personal access token; the token is shown only in this answer",
                   {201: json_reply(ref(TokenCreated), "created")}, (400, 422, *SERVICE),
                   body=TokenRequest),
    }),
    Route(api_route(f"tokens/{TOKEN_ID}"), TokenHandler, {
        "delete": Op("revokeToken", "Revoke a personal access token",
                     {200: json_reply(ref(TokenRecord), "revoked")}, (404, *SERVICE)),
    }),
    Route(api_route("workflows"), WorkflowsHandler, {
        "get": Op("listWorkflows", "Workflows, newest first",
                  {200: json_reply(array_of(WorkflowSummary), "OK")}, (400, *SERVICE),
                  query=ListQuery, limit="max_page"),
        "post": Op("submitWorkflow",
                   "Submit a workflow (or only validate it: dry_run, validation_only)",
                   {201: _SUBMITTED,
                    200: json_reply({"oneOf": [ref(DryRunResponse), ref(ValidResponse)]},
                                    "dry_run: the rendered spec; validation_only: valid")},
                   (400, 422, *SERVICE), body=SubmitRequest),
    }),
    Route(api_route(_WF), WorkflowHandler, {
        "get": Op("getWorkflow", "A workflow with its groups and every task attempt",
                  {200: json_reply(ref(WorkflowModel), "OK")}, (404, *SERVICE)),
    }),
    Route(api_route(f"{_WF}/cancel"), CancelHandler, {
        "post": Op("cancelWorkflow", "Cancel a workflow; answers its status",
                   {200: json_reply(ref(CancelResponse), "OK")}, (404, 409, *SERVICE)),
    }),
    Route(api_route(f"{_WF}/restart"), RestartHandler, {
        "post": Op("restartWorkflow",
                   "A new workflow from an ended one: reruns the groups that failed or never "
                   "ran and reuses the completed ones' outputs (`from_task`, `all`: rerun more)",
                   {201: json_reply(ref(RestartResponse), "the new workflow")},
                   (400, 404, 409, 422, *SERVICE), body=RestartRequest, body_optional=True),
    }),
    Route(api_route("cache/clear"), CacheClearHandler, {
        "post": Op("clearCache",
                   "Forget task-cache entries (users: of their own workflows; admins: anyone's)",
                   {200: json_reply(ref(CacheClearResponse), "OK")}, (400, 403, 422, *SERVICE),
                   body=CacheClearRequest),
    }),
    Route(api_route(f"{_WF}/spec"), SpecHandler, {
        "get": Op("getSpec", "The spec as submitted, rendered and validated",
                  {200: json_reply(ref(SpecResponse), "OK")}, (404, *SERVICE)),
    }),
    Route(api_route(_TASK), TaskHandler, {
        "get": Op("getTask", "A task: its latest attempt, and every attempt",
                  {200: json_reply(ref(TaskDetail), "OK")}, (404, *SERVICE)),
    }),
    Route(api_route(f"{_TASK}/done"), TaskDoneHandler, {
        "post": Op("markTaskDone",
                   "An interactive task waiting for its user is done: its outputs are "
                   "persisted and its downstream starts (409 unless it is waiting)",
                   {200: json_reply(ref(HoldResponse), "recorded")}, (404, 409, *SERVICE)),
    }),
    Route(api_route(f"{_TASK}/retry"), TaskRetryHandler, {
        "post": Op("retryTask",
                   "Run a task held for debugging (debug: on-failure) again as a new attempt "
                   "(409 unless it is held)",
                   {200: json_reply(ref(HoldResponse), "recorded")}, (404, 409, *SERVICE)),
    }),
    Route(api_route(f"{_TASK}/logs"), LogsHandler, {
        "get": Op("getLogs", "Log lines of a task's attempt (default: the latest)",
                  {200: json_reply(array_of(LogLineModel), "OK")}, (400, 404, 502, *SERVICE),
                  query=LogsQuery, limit="max_log_page"),
    }),
    Route(api_route(f"{_TASK}/logs/follow"), LogFollowWebSocket),
    Route(api_route("events"), EventsWebSocket),
    Route(api_route("events/last"), LastEventHandler, {
        "get": Op("lastEvent", "The newest stored event's id: the events stream's `after` for "
                  "a list just read", {200: json_reply(ref(LastEventResponse), "OK")}, SERVICE),
    }),
    # into running tasks
    Route(api_route(f"{_TASK}/exec"), ExecWebSocket),
    Route(api_route(f"{_TASK}/port-forward"), PortForwardWebSocket),
    Route(api_route(f"{_TASK}/api/terminals"), TerminalsHandler, {
        "get": Op("listTerminals",
                  "Terminals open in the task (jupyter_server's terminals API, per task)",
                  {200: json_reply(array_of(TerminalModel), "OK")}, (404, *SERVICE)),
        "post": Op("createTerminal", "Start the task's shell on a PTY, as a named terminal",
                   {200: json_reply(ref(TerminalModel), "started")},
                   (400, 404, 409, 502, *SERVICE), body=TerminalRequest),
    }),
    Route(api_route(f"{_TASK}/api/terminals/{TERMINAL}"), TerminalHandler, {
        "get": Op("getTerminal", "A terminal of the task",
                  {200: json_reply(ref(TerminalModel), "OK")}, (404, *SERVICE)),
        "delete": Op("deleteTerminal", "End a terminal (its shell gets SIGHUP)",
                     {204: {"description": "ended"}}, (404, *SERVICE)),
    }),
    Route(api_route(f"{_TASK}/terminals/websocket/{TERMINAL}"), TerminalWebSocket),
    Route(api_route(f"{_TASK}/files"), FilesHandler, {
        "get": Op("listFiles",
                  "A path in the task's workdir and everything under it (symlinks not followed)",
                  {200: json_reply(ref(FilesListing), "OK")}, _FILES, query=FilesQuery),
    }),
    Route(api_route(f"{_TASK}/files/content"), FileContentHandler, {
        "get": Op("readFile",
                  "A file of the task's workdir (X-Osmo-Mtime and X-Osmo-Mode headers)",
                  {200: {"description": "the bytes",
                         "content": {"application/octet-stream": {"schema": BYTES}}}},
                  _FILES, query=FilesQuery),
        "put": Op("writeFile", "Write a file in the task's workdir from the body (parents made)",
                  {201: json_reply({"type": "object"}, "written: {path, size}")}, _FILES,
                  query=PutFileQuery,
                  raw_body={"application/octet-stream": {"schema": BYTES}}),
    }),
    Route(api_route(f"{_TASK}/files/dirs"), DirsHandler, {
        "post": Op("makeDirs", "Make folders (with parents) in the task's workdir",
                   {201: json_reply({"type": "object"}, "made: {paths}")}, _FILES,
                   body=MkdirRequest),
    }),
    Route(api_route(f"{_TASK}/proxy/{PORT}(?P<path>/.*)?"), ProxyHandler),
    Route(APP_ROUTE, AppHandler),
    Route(api_route(f"{_TASK}/kernels"), TaskKernelsHandler, {
        "post": Op("startTaskKernel",
                   "Start a Jupyter kernel inside the running task (ipykernel in its Python)",
                   {201: json_reply(ref(KernelStarted), "started")},
                   (404, 409, 502, *SERVICE)),
    }),
    Route(api_route(f"{_TASK}/kernels/{KERNEL_ID}"), TaskKernelHandler, {
        "delete": Op("shutdownTaskKernel", "Shut down a kernel of the task",
                     {200: json_reply(ref(KernelStopped), "shut down")}, (404, *SERVICE)),
    }),
    Route(api_route(f"{_TASK}/kernels/{KERNEL_ID}/channels/{CHANNEL}"), KernelChannelWebSocket),
    # in place of jupyter_server's own (an extension's routes are matched first)
    Route(r"/metrics", MetricsHandler),
]  # fmt: skip


def handlers() -> list[tuple[str, type[web.RequestHandler]]]:
    """The route table as tornado's (pattern, handler) rules."""
    return [(r.pattern, r.handler) for r in ROUTES]


def openapi(version: str, max_page: int = 1000, max_log_page: int = 10_000) -> dict[str, Any]:
    """The OpenAPI 3 document of the REST API; `limit`s say the server's page sizes
    (OsmoConfig.max_page_size, max_log_page_size)."""
    return document(version, ROUTES, max_page, max_log_page)


def main(argv: Sequence[str] | None = None) -> None:
    """Write the document of the server's route table, with its default page sizes."""
    parser = argparse.ArgumentParser(
        prog="python -m osmo_jupyter.server.routes", description=main.__doc__
    )
    parser.add_argument("--out", help="write it to this file (default: stdout)")
    args = parser.parse_args(argv)
    text = json.dumps(openapi(osmo_core.__version__), indent=2, sort_keys=True) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
