"""OSMO's own API shapes, so that OSMO's unchanged `osmo` CLI drives this server.

`osmo login http://host:8888/osmo --method token --token TOKEN` logs in; every call then goes
to `{base_url}osmo/api/...` with `Authorization: Bearer <session JWT>`. This package is a
second front door on the same `Service` as the native API (`/osmo/api/v1`): it translates
shapes, never keeps state, and checks the same `policy`. Its routes are the table below,
registered by the extension apart from the native route table, so the native OpenAPI document
is unchanged (these routes are OSMO's, documented in docs/osmo-cli.md).

    base.py       who asks (session JWT, token, Jupyter identity), OSMO's error body
    models.py     OSMO's request and answer shapes
    auth.py       token exchange, login discovery, personal access tokens
    workflows.py  submit / validate / dry run, list, query, cancel, restart, spec
    logs.py       log stream, error logs, events
    pools.py      pools, quotas, resources, task list
    info.py       version, profile, tags, credentials
    router.py     exec and port-forward through OSMO's router protocol
"""

from __future__ import annotations

from tornado import web

from .auth import (
    AccessTokenExchangeHandler,
    AccessTokenHandler,
    AccessTokensHandler,
    LoginInfoHandler,
)
from .base import route
from .info import (
    CredentialHandler,
    CredentialsHandler,
    ProfileHandler,
    RsyncHandler,
    TagsHandler,
    UnknownHandler,
    VersionHandler,
    WorkflowTagHandler,
)
from .logs import ErrorLogsHandler, EventsHandler, LogsHandler
from .pools import PoolsHandler, ResourcesHandler, TasksHandler
from .router import (
    ExecGroupHandler,
    ExecRouterWebSocket,
    ExecTaskHandler,
    PortForwardHandler,
    PortForwardRouterWebSocket,
    RouterVersionHandler,
)
from .workflows import (
    CancelHandler,
    RestartHandler,
    SpecHandler,
    SubmitHandler,
    TaskHandler,
    WorkflowHandler,
    WorkflowsHandler,
)

_NAME = r"(?P<name>[^/]+)"
_USER = r"(?P<user>[^/]+)"
_POOL = r"(?P<pool>[^/]+)"
_WF = r"workflow/(?P<wf_id>[^/]+)"
_TASK = r"(?P<task>[^/]+)"
_KEY = r"(?P<key>[^/]+)"

ROUTES: list[tuple[str, type[web.RequestHandler]]] = [
    (route("auth/jwt/access_token"), AccessTokenExchangeHandler),
    (route("auth/login"), LoginInfoHandler),
    (route("auth/access_token"), AccessTokensHandler),
    (route(f"auth/access_token/{_NAME}"), AccessTokenHandler),
    (route(f"auth/user/{_USER}/access_token"), AccessTokensHandler),
    (route(f"auth/user/{_USER}/access_token/{_NAME}"), AccessTokenHandler),
    (route(f"pool/{_POOL}/workflow"), SubmitHandler),
    (route(f"pool/{_POOL}/{_WF}/restart"), RestartHandler),
    (route("workflow"), WorkflowsHandler),
    (route(_WF), WorkflowHandler),
    (route(f"{_WF}/task/{_TASK}"), TaskHandler),
    (route(f"{_WF}/cancel"), CancelHandler),
    (route(f"{_WF}/spec"), SpecHandler),
    (route(f"{_WF}/logs"), LogsHandler),
    (route(f"{_WF}/error_logs"), ErrorLogsHandler),
    (route(f"{_WF}/events"), EventsHandler),
    (route(f"{_WF}/tag"), WorkflowTagHandler),
    (route("task"), TasksHandler),
    (route("pool"), PoolsHandler),
    (route("pool_quota"), PoolsHandler),
    (route("resources"), ResourcesHandler),
    (route("version"), VersionHandler),
    (route("profile/settings"), ProfileHandler),
    (route("tag"), TagsHandler),
    (route("credentials"), CredentialsHandler),
    (route(f"credentials/{_NAME}"), CredentialHandler),
    # interactive: a session, then the router's WebSockets
    (route(f"{_WF}/exec/task/{_TASK}"), ExecTaskHandler),
    (route(f"{_WF}/exec/group/(?P<group>[^/]+)"), ExecGroupHandler),
    (route(f"{_WF}/portforward/{_TASK}"), PortForwardHandler),
    (route("router/version"), RouterVersionHandler),
    (route(f"router/exec/(?P<wf_id>[^/]+)/client/{_KEY}"), ExecRouterWebSocket),
    (route(f"router/portforward/(?P<wf_id>[^/]+)/client/{_KEY}"), PortForwardRouterWebSocket),
    (route(f"{_WF}/rsync/task/{_TASK}"), RsyncHandler),
    (route("plugins/configs"), RsyncHandler),
    # last: the rest of OSMO's API (never the native /osmo/api/v1, routed before this table)
    (route("(?!v1/).*"), UnknownHandler),
]


def handlers() -> list[tuple[str, type[web.RequestHandler]]]:
    """OSMO's routes as tornado's (pattern, handler) rules."""
    return list(ROUTES)
