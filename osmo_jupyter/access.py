"""What the server side shares below the extension app, the handlers, the authorizer and the
task kernels: the service once started, who asks, and which of their tasks run.

It sits under all of them so that none imports another for these (app.py imports the handlers,
kernels and authorizer; they must not import it back).
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

from jupyter_server.auth.identity import User

from osmo_core.auth import Principal
from osmo_core.errors import OsmoError

from .identity import principal_of

if TYPE_CHECKING:
    from osmo_core.service import Service

    from .app import OsmoApp


class ServiceUnavailable(Exception):
    """The Service failed to start (or has stopped); carries the reason."""


# The principal of the request being served, for what runs inside it without the handler (kernel
# specs, provisioners): set by the identity provider's get_user (wrapped by kernels.install);
# each request runs in its own asyncio task, so it never leaks into another.
CURRENT_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "osmo_principal", default=None
)


def started(app: OsmoApp | None) -> Service | None:
    """The app's Service if it has started, else None (without waiting for it)."""
    task = getattr(app, "_start_task", None)
    if task is None or not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()  # type: ignore[no-any-return]


def current_principal(app: OsmoApp) -> Principal | None:
    """Who asks: the request's principal; outside a request, the owner under a single-user
    identity provider (else nobody)."""
    who = CURRENT_PRINCIPAL.get()
    if who is not None:
        return who
    svc = app.service
    idp = app.serverapp.identity_provider
    who = principal_of(User("?"), idp, svc.config.admin_users if svc else set())
    return who if who.is_admin else None


def running_tasks(svc: Service, who: Principal | None) -> list[tuple[str, str]]:
    """(workflow, task) of every RUNNING task `who` may reach, on a backend with interactive
    access."""
    if who is None:
        return []
    hub = svc.interactive
    found = []
    user = None if who.is_admin else who.name
    for wf in svc.list(statuses=["RUNNING"], user=user, limit=1000):
        for t in svc.get(wf["id"])["tasks"]:
            if t["status"] == "RUNNING":
                try:
                    hub.placement(wf["id"], t["name"])
                except OsmoError:
                    continue
                found.append((str(wf["id"]), str(t["name"])))
    return found
