"""Jupyter's own surfaces follow OSMO's roles: `OsmoAuthorizer`, jupyter_server's Authorizer.

jupyter_server asks `ServerApp.authorizer` before each authorized handler method with
(user, action, resource), the resource being the handler's `auth_resource` ("kernels",
"contents", "terminals", ...). Who the caller is comes from `identity.principal_of`:

- **Admins** — the server's owner (its token, its password; a single-user `jupyter lab`, whose
  owner is the admin), `OsmoConfig.admin_users`, admin tokens, OIDC admins — may do everything.
- **Users** (a `user` personal access token or OIDC login) may use
  - the OSMO API (`osmo`): its routes check each workflow's owner themselves;
  - the kernels of their own running tasks: start one from a kernel spec `osmo--WF--TASK` of a
    workflow they own, use its channels, interrupt, restart, shut it down, wrap it in a session;
    `GET /api/kernelspecs` lists only those specs (kernels.py);
  - nothing else. Listing `/api/kernels` and `/api/sessions` is refused (jupyter_server has no
    hook to filter a listing, and another user's kernel id must not reach them); so are server
    terminals, contents and files, config, nbconvert, events, API status, LSP, `/metrics`, and
    every JupyterLab page and API (workspaces, settings, ...). A user's JupyterLab on a team
    server is therefore not a thing: a team gives each researcher their own Lab (JupyterHub);
    the owner's Lab and its OSMO panel are unchanged.

Handlers that never ask an authorizer (JupyterLab's, for one) are closed to users one step
earlier: `OsmoAuthorizer.admits()`, which `OsmoIdentityProvider` calls once it knows who
asks, lets a user reach only handlers of the resources above (and `/api/me`, and public ones).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.auth.identity import User

from osmo_core.auth import Principal

from ._attach import spec_name
from .access import running_tasks, started
from .identity import who_is
from .server.base import AUTH_RESOURCE as OSMO

if TYPE_CHECKING:
    from osmo_core.service import Service

log = logging.getLogger(__name__)

KERNELS, SESSIONS, KERNELSPECS = "kernels", "sessions", "kernelspecs"
# What a user's handlers may be about at all; everything else is for admins.
USER_RESOURCES = frozenset({OSMO, KERNELS, SESSIONS, KERNELSPECS})
# jupyter_server's `/api/me` (who am I, and which of these resources may I use): no resource.
_IDENTITY_HANDLER = "jupyter_server.services.api.handlers.IdentityHandler"


def _qualname(handler: Any) -> str:
    cls = type(handler)
    return f"{cls.__module__}.{cls.__qualname__}"


def _public(handler: Any) -> bool:
    """The requested method is marked `@allow_unauthenticated` (it is public, or checks itself)."""
    method = getattr(handler, (handler.request.method or "").lower(), None)
    return bool(getattr(method, "__allow_unauthenticated", False))


class OsmoAuthorizer(Authorizer):
    """OSMO's roles on every Jupyter resource (module docstring)."""

    def admits(self, handler: Any, user: User) -> bool:
        """Whether `user` may reach `handler` at all: admins everywhere, users only where a
        resource of theirs is served (each still authorized per object) or nothing is at
        stake. `OsmoIdentityProvider` asks (identity.Admission)."""
        if who_is(handler, user).is_admin or _public(handler):
            return True
        resource = getattr(handler, "auth_resource", None)
        return resource in USER_RESOURCES or _qualname(handler) == _IDENTITY_HANDLER

    def is_authorized(
        self, handler: Any, user: User, action: str, resource: str
    ) -> bool | Awaitable[bool]:
        who = who_is(handler, user)
        if who.is_admin or resource == OSMO:
            return True
        if _qualname(handler) == _IDENTITY_HANDLER:  # `/api/me?permissions=`: a report only
            return resource in USER_RESOURCES
        if resource == KERNELSPECS:
            return self._kernelspec(handler, who)
        if resource == KERNELS:
            return self._kernel(handler, who)
        if resource == SESSIONS:
            return self._session(handler, who)
        log.info("osmo: %s (role %s) may not %s %s", who.name, who.role, action, resource)
        return False

    # --- per resource ----------------------------------------------------------------------

    def _kernelspec(self, handler: Any, who: Principal) -> bool:
        name = handler.path_kwargs.get("kernel_name")
        if name is None:  # the listing: kernels.py lists a user's own task specs only
            return True
        return self._own_spec(handler, who, name)

    def _kernel(self, handler: Any, who: Principal) -> bool:
        kernel_id = handler.path_kwargs.get("kernel_id")
        if kernel_id is not None:  # one kernel: its actions, its channels
            if kernel_id not in handler.kernel_manager:
                return True  # jupyter_server's 404: a kernel that ended is gone for its owner too
            return self._own_kernel(handler, who, kernel_id)
        if handler.request.method != "POST":  # the listing names everyone's kernels
            return False
        body = _body(handler)
        if body is None or not isinstance(body.get("name"), str):
            return False  # the server's default kernel runs on the server
        kernel_id = body.get("kernel_id")
        if kernel_id is not None and kernel_id in handler.kernel_manager:
            return False  # "start" an existing kernel: jupyter_server hands it over
        return self._own_spec(handler, who, body["name"])

    def _session(self, handler: Any, who: Principal) -> bool | Awaitable[bool]:
        session_id = handler.path_kwargs.get("session_id")
        method = handler.request.method
        if session_id is None and method != "POST":  # the listing names everyone's kernels
            return False
        body = _body(handler) if method in ("POST", "PATCH") else {}
        if body is None:
            return False
        kernel = body.get("kernel") or {}
        if method == "POST" and not kernel:
            return False  # the server's default kernel
        if not isinstance(kernel, dict):
            return False
        if kernel.get("id") is not None:
            if not self._own_kernel(handler, who, str(kernel["id"])):
                return False
        elif kernel.get("name") is not None and not self._own_spec(handler, who, kernel["name"]):
            return False
        return self._own_session(handler, who, session_id, body.get("path"))

    async def _own_session(
        self, handler: Any, who: Principal, session_id: str | None, path: Any
    ) -> bool:
        """The session is the caller's (by its kernel). A POST naming the path of an existing
        session would get that session back, so it must be theirs as well."""
        sm = handler.session_manager
        try:
            if session_id is not None:
                found = await sm.get_session(session_id=session_id)
            elif isinstance(path, str) and await sm.session_exists(path=path):
                found = await sm.get_session(path=path)
            else:
                return True  # a new session around a kernel already checked
        except Exception:  # unknown session (jupyter_server answers 404 to an admin)
            return False
        return self._own_kernel(handler, who, str(found["kernel"]["id"]))

    # --- what belongs to whom --------------------------------------------------------------

    def _service(self, handler: Any) -> Service | None:
        return started(handler.settings.get("osmo_app"))

    def _own_spec(self, handler: Any, who: Principal, name: Any) -> bool:
        """`name` is the kernel spec of one of the caller's running tasks (which task exactly,
        and that it is theirs, the provisioner checks again when it starts)."""
        svc = self._service(handler)
        if svc is None or not isinstance(name, str):
            return False
        return name.lower() in {spec_name(w, t) for w, t in running_tasks(svc, who)}

    def _own_kernel(self, handler: Any, who: Principal, kernel_id: str) -> bool:
        """A running kernel of a task of a workflow the caller owns."""
        km = handler.kernel_manager
        svc = self._service(handler)
        if svc is None or kernel_id not in km:
            return False
        try:
            spec = km.get_kernel(kernel_id).kernel_spec
            wf_id = spec.metadata["osmo"]["workflow"]
            return bool(svc.store.workflow_owner(wf_id) == who.name)
        except Exception:  # not a task's kernel, or its workflow is gone
            return False


def _body(handler: Any) -> dict[str, Any] | None:
    try:
        body = json.loads(handler.request.body or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
