"""REST and WebSocket handlers of the control plane, under `/osmo/api/v1`.

Handlers are thin: validate the request (schemas.py), call the Service once, answer JSON.
Every error is jupyter_server's JSON body `{"message", "reason", "details"}`; osmo_core's errors
map to statuses in one place (`_STATUS`):

    SpecError, PlacementError, ConfigError  422  details: one entry per problem (file/line/field)
    Unauthorized, no credentials            401  (with WWW-Authenticate: Bearer)
    Forbidden                               403  another user's workflow, a pool not open to them
    NotFound                                404
    Conflict                                409
    BackendError                            502
    StoreError, service not running         503
    bad JSON / bad body or query values     400  details: one entry per bad field

Every route but `health` needs an authenticated caller (identity.py says who that is): users
see and act on their own workflows only, admins on all; pools may be restricted to listed users
and roles (osmo_core.auth.policy).

The events WebSocket sends the stored events after `after` first, then live ones (deduplicated
by id across the switch). A client too slow to keep up is never allowed to stall the engine: its
bounded queue is dropped, it receives `{"type": "resync"}`, and the stored events it missed are
replayed before live ones continue (live `task.log` lines lost in the gap are not replayed).
A user without a workflow filter gets the events of their own workflows.

The log-follow WebSocket sends a task's stored log lines from `start`, then live ones, one
`{"type": "log", ...}` per line, each exactly once (by line number); when the task's attempt is
rescheduled it continues with the next (`{"type": "attempt", "retry_id": N}`), and it ends with
`{"type": "end", "status": S}` when the task's last attempt has finished. A slow client gets the
lines it missed re-read from the log, never a gap.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from pydantic import BaseModel, ValidationError
from tornado import web, websocket

import osmo_core
from osmo_core.auth import Principal, policy
from osmo_core.errors import (
    BackendError,
    Conflict,
    Forbidden,
    InputError,
    NotFound,
    OsmoError,
    PlacementError,
    SpecError,
    StoreError,
    Unauthorized,
)
from osmo_core.events import Event, Overflow
from osmo_core.states import TaskStatus

from .identity import CHALLENGE, principal_of
from .schemas import (
    EventsQuery,
    ListQuery,
    LogFollowQuery,
    LogsQuery,
    SubmitRequest,
    TokenListQuery,
    TokenRequest,
    openapi,
)

try:  # jupyter_server >= 2.13
    from jupyter_server.auth.decorator import allow_unauthenticated
except ImportError:  # pragma: no cover - older servers have no global auth switch

    def allow_unauthenticated(method: Any) -> Any:  # type: ignore[no-redef]
        return method


if TYPE_CHECKING:
    from osmo_core.service import Service

    from .app import OsmoApp

API_PREFIX = "osmo/api/v1"
AUTH_RESOURCE = "osmo"
REPLAY_PAGE = 1000

_STATUS: list[tuple[type[OsmoError], int, str]] = [
    (SpecError, 422, "invalid spec"),
    (PlacementError, 422, "placement"),
    (InputError, 422, "invalid input"),
    (Unauthorized, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (NotFound, 404, "not found"),
    (Conflict, 409, "conflict"),
    (BackendError, 502, "backend error"),
    (StoreError, 503, "store unavailable"),
]


class ApiError(web.HTTPError):
    """An HTTPError with `details` for the JSON body."""

    def __init__(
        self,
        status: int,
        message: str,
        reason: str | None = None,
        details: list[dict[str, Any]] | None = None,
    ):
        # message goes in as an argument so a '%' in it is never taken as a format
        super().__init__(status, "%s", message, reason=reason)
        self.message = message
        self.details = details or []


def _from_osmo(e: OsmoError) -> ApiError:
    for cls, status, reason in _STATUS:
        if isinstance(e, cls):
            problems = e.problems if isinstance(e, InputError | Forbidden) else []
            return ApiError(status, str(e), reason, [p.to_dict() for p in problems])
    return ApiError(500, str(e), "server error")


def _from_validation(e: ValidationError, where: str) -> ApiError:
    details = [
        {
            "field": ".".join(str(x) for x in err["loc"]),
            "message": err["msg"],
            **({"hint": f"got {err['input']!r}"} if "input" in err and err["loc"] else {}),
        }
        for err in e.errors(include_url=False)
    ]
    lines = "".join(f"\n  {d['field'] or where}: {d['message']}" for d in details)
    return ApiError(400, f"invalid {where}:{lines}", "bad request", details)


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
M = TypeVar("M", bound=BaseModel)


def api(method: F) -> F:
    """An authenticated API method: 401 without a valid caller (before jupyter_server's
    authorizer, which answers 403), osmo_core's errors → their HTTP status and JSON body."""

    @authorized
    @functools.wraps(method)
    async def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await method(self, *args, **kwargs)

    @functools.wraps(method)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        self.require_user()
        try:
            return await checked(self, *args, **kwargs)
        except OsmoError as e:
            raise _from_osmo(e) from e

    return wrapper  # type: ignore[return-value]


class _OsmoMixin:
    """What both the REST and the WebSocket handlers need."""

    settings: dict[str, Any]
    request: Any

    @property
    def osmo_app(self) -> OsmoApp:
        return self.settings["osmo_app"]  # type: ignore[no-any-return]

    async def service(self) -> Service:
        from .app import ServiceUnavailable

        try:
            return await self.osmo_app.ready()
        except ServiceUnavailable as e:
            raise ApiError(503, str(e), "service unavailable") from e

    def require_user(self) -> None:
        if self.current_user is None:  # type: ignore[attr-defined]
            reason = getattr(self, "_osmo_auth_error", None)
            raise ApiError(
                401,
                reason or "authentication required: send `Authorization: Bearer <token>`",
                "unauthorized",
            )

    @property
    def who(self) -> Principal:
        """The caller as osmo sees them (cached per request)."""
        found: Principal | None = getattr(self, "_osmo_who", None)
        if found is None:
            found = principal_of(
                self.current_user,  # type: ignore[attr-defined]
                self.identity_provider,  # type: ignore[attr-defined]
                self.osmo_app.service.config.admin_users,  # type: ignore[union-attr],
            )
            self._osmo_who = found
        return found

    async def workflow_for(self, wf_id: str) -> Service:
        """The Service, once the caller is known to be allowed at workflow `wf_id`."""
        svc = await self.service()
        policy.check_owner(self.who, svc.store.workflow_owner(wf_id), wf_id)
        return svc

    def query_model(self, model: type[M], *, lists: tuple[str, ...] = ()) -> M:
        """The query string validated into `model`; `lists` may repeat or be comma-separated."""
        raw: dict[str, Any] = {}
        for key, values in self.request.query_arguments.items():
            texts = [v.decode("utf-8", "replace") for v in values]
            if key.isdigit() and texts == [""]:
                continue  # JupyterLab's GET cache-buster: a bare `?<timestamp>`
            if key in lists:
                # an empty part is a bad value (400), not "no filter": `?status=` names no status
                raw[key] = [p for t in texts for p in t.split(",")]
            else:
                raw[key] = texts[-1]
        try:
            return model.model_validate(raw)
        except ValidationError as e:
            raise _from_validation(e, "query") from e


class OsmoHandler(_OsmoMixin, APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def username(self) -> str:
        user = self.current_user
        return str(getattr(user, "username", None) or user)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """jupyter_server's JSON error body, plus `details` (one entry per problem)."""
        exc = (kwargs.get("exc_info") or (None, None, None))[1]
        reply: dict[str, Any] = {"message": self._reason, "reason": None, "details": []}
        if isinstance(exc, ApiError):
            reply.update(message=exc.message, reason=exc.reason, details=exc.details)
        elif isinstance(exc, web.HTTPError):
            reply.update(message=exc.log_message or self._reason, reason=exc.reason)
        else:
            reply["message"] = "Unhandled error"
        if status_code == 405:  # RFC 9110: a 405 lists the methods the resource has
            self.set_header("Allow", ", ".join(_methods(type(self))))
        if status_code == 401:  # RFC 9110: a 401 names its scheme (send_error cleared headers)
            self.set_header("WWW-Authenticate", CHALLENGE)
        self.set_header("Content-Type", "application/json")
        self.log.warning("osmo: wrote error %s: %s", status_code, reply["message"])
        self.finish(json.dumps(reply))

    def body_model(self, model: type[M]) -> M:
        try:
            body = json.loads(self.request.body or b"null")
        except ValueError as e:
            raise ApiError(400, f"invalid JSON in the request body: {e}", "bad request") from e
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object", "bad request")
        try:
            return model.model_validate(body)
        except ValidationError as e:
            raise _from_validation(e, "body") from e

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))


def _methods(cls: type[web.RequestHandler]) -> list[str]:
    """The HTTP methods a handler class implements (tornado's defaults answer 405)."""
    return [
        m
        for m in cls.SUPPORTED_METHODS
        if getattr(cls, m.lower(), None) is not getattr(web.RequestHandler, m.lower(), None)
    ]


class HealthHandler(OsmoHandler):
    @allow_unauthenticated
    def get(self) -> None:
        self.reply({"status": "ok"})


class VersionHandler(OsmoHandler):
    @api
    async def get(self) -> None:
        self.reply({"version": osmo_core.__version__, "api": "v1"})


class MeHandler(OsmoHandler):
    @api
    async def get(self) -> None:
        self.reply({"name": self.who.name, "role": self.who.role, "via": self.who.via})


class OpenAPIHandler(OsmoHandler):
    @api
    async def get(self) -> None:
        self.reply(openapi(osmo_core.__version__))


class PoolsHandler(OsmoHandler):
    """The pools the caller may use, with their platforms and machines."""

    @api
    async def get(self) -> None:
        svc = await self.service()
        usable = {n for n, p in svc.pools.items() if policy.may_see_pool(self.who, p)}
        self.reply([p for p in svc.pools_info() if p["name"] in usable])


class ResourcesHandler(OsmoHandler):
    """Every machine with its capacity, what is free, and the pools it serves; a user sees the
    pools they may use only (as `/pools`), and the machines that serve one of them."""

    @api
    async def get(self) -> None:
        svc = await self.service()
        usable = {n for n, p in svc.pools.items() if policy.may_see_pool(self.who, p)}
        rows = [{**r, "pools": [p for p in r["pools"] if p in usable]} for r in svc.resources()]
        self.reply([r for r in rows if r["pools"] or self.who.is_admin])


class WorkflowsHandler(OsmoHandler):
    @api
    async def get(self) -> None:
        q = self.query_model(ListQuery, lists=("status",))
        svc = await self.service()
        rows = svc.list(
            statuses=[s.value for s in q.status] or None,
            user=policy.list_filter(self.who, q.user),
            pool=q.pool,
            name=q.name,
            limit=q.limit,
            offset=q.offset,
        )
        self.reply(rows)

    @api
    async def post(self) -> None:
        req = self.body_model(SubmitRequest)
        svc = await self.service()
        loaded = svc.load(req.spec, set_values=req.set_values)
        pool = svc.check_placement(loaded, req.pool)
        policy.check_pool(self.who, svc.pools[pool])
        svc.check_credentials(self.who, loaded, pool)
        if req.validation_only:
            self.reply({"valid": True, "pool": pool})
        elif req.dry_run:
            self.reply({"pool": pool, "rendered": loaded.rendered, "values": loaded.values})
        else:
            wf_id = await svc.submit(loaded, pool=pool, user=self.who.name, priority=req.priority)
            self.set_header("Location", self.request.path.rstrip("/") + f"/{wf_id}")
            self.reply({"id": wf_id}, status=201)


class WorkflowHandler(OsmoHandler):
    @api
    async def get(self, wf_id: str) -> None:
        self.reply((await self.workflow_for(wf_id)).get(wf_id))


class CancelHandler(OsmoHandler):
    @api
    async def post(self, wf_id: str) -> None:
        status = await (await self.workflow_for(wf_id)).cancel(wf_id)
        self.reply({"id": wf_id, "status": status.value})


class RestartHandler(OsmoHandler):
    @api
    async def post(self, wf_id: str) -> None:
        svc = await self.workflow_for(wf_id)
        policy.check_pool(self.who, svc.pools[svc.store.get_workflow(wf_id)["pool"]])
        new_id = await svc.restart(wf_id, user=self.who.name, who=self.who)
        self.set_header("Location", f"/{API_PREFIX}/workflows/{new_id}")
        self.reply({"id": new_id, "restarted": wf_id}, status=201)


class TaskDoneHandler(OsmoHandler):
    """An interactive task waiting for its user is done (409 when it is not waiting)."""

    @api
    async def post(self, wf_id: str, task: str) -> None:
        self.reply(await (await self.workflow_for(wf_id)).done(wf_id, task))


class TaskRetryHandler(OsmoHandler):
    """A task held for debugging runs again as a new attempt (409 when it is not held)."""

    @api
    async def post(self, wf_id: str, task: str) -> None:
        self.reply(await (await self.workflow_for(wf_id)).retry(wf_id, task))


class SpecHandler(OsmoHandler):
    @api
    async def get(self, wf_id: str) -> None:
        self.reply((await self.workflow_for(wf_id)).spec(wf_id))


class TaskHandler(OsmoHandler):
    @api
    async def get(self, wf_id: str, task: str) -> None:
        self.reply((await self.workflow_for(wf_id)).task(wf_id, task))


class LogsHandler(OsmoHandler):
    @api
    async def get(self, wf_id: str, task: str) -> None:
        q = self.query_model(LogsQuery)
        svc = await self.workflow_for(wf_id)
        lines = await svc.logs(wf_id, task, retry_id=q.retry_id, start=q.start, limit=q.limit)
        self.reply([_line(ln) for ln in lines])


class TokensHandler(OsmoHandler):
    """Personal access tokens: a user manages their own; an admin anyone's."""

    @api
    async def get(self) -> None:
        q = self.query_model(TokenListQuery)
        self.reply((await self.service()).auth.tokens.list(self.who, q.user))

    @api
    async def post(self) -> None:
        req = self.body_model(TokenRequest)
        text, record = (await self.service()).auth.tokens.create(
            self.who,
            name=req.name,
            user=req.user,
            role=req.role,
            expires_in=req.expires_in_days * 86400 if req.expires_in_days else None,
        )
        self.reply({**record, "token": text}, status=201)


class TokenHandler(OsmoHandler):
    @api
    async def delete(self, token_id: str) -> None:
        self.reply((await self.service()).auth.tokens.revoke(token_id, self.who))


def _line(ln: Any) -> dict[str, Any]:
    return {"n": ln.n, "ts": ln.ts, "stream": ln.stream, "text": ln.text}


class _OsmoWebSocket(_OsmoMixin, JupyterHandler, websocket.WebSocketHandler):
    """A WebSocket behind the same authentication as the REST routes: refused (401/403, JSON
    body) at the handshake, never after it."""

    auth_resource = AUTH_RESOURCE

    @allow_unauthenticated  # checked below: a 401 with a reason, not a login redirect
    async def get(self, *args: Any, **kwargs: Any) -> None:
        self.require_user()
        allowed = self.authorizer.is_authorized(self, self.current_user, "read", AUTH_RESOURCE)
        if asyncio.iscoroutine(allowed):
            allowed = await allowed
        if not allowed:
            raise ApiError(403, "not authorized to read osmo", "forbidden")
        try:
            await self.handshake(*args, **kwargs)
        except OsmoError as e:
            raise _from_osmo(e) from e
        await super().get(*args, **kwargs)

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        """Validate the request before the upgrade (raise to refuse it)."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        OsmoHandler.write_error(self, status_code, **kwargs)  # type: ignore[arg-type]

    async def _send(self, msg: dict[str, Any] | str) -> None:
        # Awaiting the flush: a slow peer backs up into its bounded queue, never into the engine.
        await self.write_message(msg if isinstance(msg, str) else json.dumps(msg, default=str))


class EventsWebSocket(_OsmoWebSocket):
    """Stored events after `after`, then live ones; one JSON object per message."""

    _pump: asyncio.Task[None] | None = None
    _sub: Any = None

    async def handshake(self) -> None:
        self._query = q = self.query_model(EventsQuery)
        if q.workflow_id is not None:
            self._svc = await self.workflow_for(q.workflow_id)
        else:
            self._svc = await self.service()
        # Without a workflow filter a user gets their own workflows' events only.
        self._only_user = None if self.who.is_admin or q.workflow_id else self.who.name
        self._owners: dict[str, bool] = {}

    def _visible(self, wf_id: str) -> bool:
        if self._only_user is None:
            return True
        mine = self._owners.get(wf_id)
        if mine is None:  # an event is committed before it is announced: the row exists
            mine = self._owners[wf_id] = self._svc.store.workflow_owner(wf_id) == self._only_user
        return mine

    def open(self, *args: Any, **kwargs: Any) -> None:
        q = self._query
        # Subscribe before reading the store: an event is persisted before it is published, so
        # every event is in the replay, the queue, or both (then skipped by id).
        self._sub = self._svc.subscribe(q.workflow_id, logs=q.logs)
        self._pump = asyncio.create_task(self._run(q.after), name="osmo-events-ws")

    async def _run(self, last: int) -> None:
        try:
            last = await self._replay(last)
            while (item := await self._sub.get()) is not None:
                if isinstance(item, Overflow):
                    await self._send({"type": "resync", "dropped": item.dropped})
                    last = await self._replay(last)
                elif (item.id is None or item.id > last) and self._visible(item.workflow_id):
                    await self._send(item.to_json())  # serialized once for all subscribers
                    if item.id is not None:
                        last = item.id
            self.close(1001, "server shutting down")
        except websocket.WebSocketClosedError:
            pass
        finally:
            self._sub.close()

    async def _replay(self, last: int) -> int:
        q = self._query
        while True:
            rows = self._svc.store.events_since(
                last, q.workflow_id, limit=REPLAY_PAGE, user=self._only_user
            )
            for row in rows:
                await self._send(Event.from_row(row).to_dict())
                last = row["id"]
            if len(rows) < REPLAY_PAGE:
                return last

    def on_close(self) -> None:
        if self._sub is not None:
            self._sub.close()
        if self._pump is not None:
            self._pump.cancel()


class LogFollowWebSocket(_OsmoWebSocket):
    """A task's log from `start`, then live, across its attempts, until it has finished."""

    _pump: asyncio.Task[None] | None = None
    _sub: Any = None

    async def handshake(self, wf_id: str, task: str) -> None:
        self._query = self.query_model(LogFollowQuery)
        self._svc = await self.workflow_for(wf_id)
        self._svc.task(wf_id, task)  # 404 now, not after the upgrade
        self._wf_id, self._task = wf_id, task

    def open(self, *args: Any, **kwargs: Any) -> None:
        # Subscribe first: every line is then in the file, the queue, or both (skipped by n).
        self._sub = self._svc.subscribe(self._wf_id, logs=True)
        self._pump = asyncio.create_task(self._run(), name="osmo-log-follow")

    async def _run(self) -> None:
        q = self._query
        try:
            retry = q.retry_id if q.retry_id is not None else self._attempts()[0]["retry_id"]
            last = await self._catch_up(retry, q.start)
            # The store is read again only when this task's state may have moved: at the start,
            # after one of its status events, or after an overflow that may have dropped one —
            # never per log line.
            moved = True
            while True:
                if moved:
                    rows = self._attempts()
                    row = next((r for r in rows if r["retry_id"] == retry), None)
                    if row is not None and TaskStatus(row["status"]).terminal:
                        last = await self._catch_up(retry, last)  # lines that raced the status
                        later = [r["retry_id"] for r in rows if r["retry_id"] > retry]
                        if q.retry_id is None and later:
                            retry = later[0]
                            await self._send({"type": "attempt", "retry_id": retry})
                            last = await self._catch_up(retry, 0)
                            continue
                        await self._send(
                            {"type": "end", "status": row["status"], "retry_id": retry}
                        )
                        break
                item = await self._sub.get()
                if item is None:
                    self.close(1001, "server shutting down")
                    return
                moved = isinstance(item, Overflow) or (
                    item.type == "task.status" and item.task == self._task
                )
                if isinstance(item, Overflow):
                    last = await self._catch_up(retry, last)
                elif (
                    item.type == "task.log"
                    and (item.task, item.retry_id) == (self._task, retry)
                    and item.payload["n"] > last
                ):
                    await self._send({"type": "log", **item.payload, "ts": item.ts})
                    last = item.payload["n"]
            self.close(1000, "task finished")
        except websocket.WebSocketClosedError:
            pass
        except OsmoError as e:
            self.log.warning("osmo: log follow of %s/%s ended: %s", self._wf_id, self._task, e)
            self.close(1011, str(e)[:120])
        finally:
            self._sub.close()

    def _attempts(self) -> list[Any]:
        return self._svc.store.tasks_of(self._wf_id, self._task)

    async def _catch_up(self, retry: int, last: int) -> int:
        """Send the stored lines after line `last` (0-based `start` = lines already seen)."""
        for ln in await self._svc.logs(self._wf_id, self._task, retry_id=retry, start=last):
            if ln.n > last:
                await self._send({"type": "log", **_line(ln)})
                last = ln.n
        return last

    def on_close(self) -> None:
        if self._sub is not None:
            self._sub.close()
        if self._pump is not None:
            self._pump.cancel()


_ID = r"(?P<wf_id>[^/]+)"
_TASK = r"(?P<task>[^/]+)"
_TOKEN_ID = r"(?P<token_id>[^/]+)"


def _route(path: str) -> str:
    return f"/{API_PREFIX}/{path}"


default_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (_route("health"), HealthHandler),
    (_route("version"), VersionHandler),
    (_route("me"), MeHandler),
    (_route("openapi.json"), OpenAPIHandler),
    (_route("pools"), PoolsHandler),
    (_route("resources"), ResourcesHandler),
    (_route("tokens"), TokensHandler),
    (_route(f"tokens/{_TOKEN_ID}"), TokenHandler),
    (_route("workflows"), WorkflowsHandler),
    (_route(f"workflows/{_ID}"), WorkflowHandler),
    (_route(f"workflows/{_ID}/cancel"), CancelHandler),
    (_route(f"workflows/{_ID}/restart"), RestartHandler),
    (_route(f"workflows/{_ID}/spec"), SpecHandler),
    (_route(f"workflows/{_ID}/tasks/{_TASK}"), TaskHandler),
    (_route(f"workflows/{_ID}/tasks/{_TASK}/done"), TaskDoneHandler),
    (_route(f"workflows/{_ID}/tasks/{_TASK}/retry"), TaskRetryHandler),
    (_route(f"workflows/{_ID}/tasks/{_TASK}/logs"), LogsHandler),
    (_route(f"workflows/{_ID}/tasks/{_TASK}/logs/follow"), LogFollowWebSocket),
    (_route("events"), EventsWebSocket),
]
