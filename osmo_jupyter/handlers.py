"""REST and WebSocket handlers of the control plane, under `/osmo/api/v1`.

Handlers are thin: validate the request (schemas.py), call the Service once, answer JSON.
Every error is jupyter_server's JSON body `{"message", "reason", "details"}`; osmo_core's errors
map to statuses in one place (`_STATUS`):

    SpecError, PlacementError, ConfigError  422  details: one entry per problem (file/line/field)
    NotFound                                404
    Conflict                                409
    BackendError                            502
    StoreError, service not running         503
    bad JSON / bad body or query values     400  details: one entry per bad field

The events WebSocket sends the stored events after `after` first, then live ones (deduplicated
by id across the switch). A client too slow to keep up is never allowed to stall the engine: its
bounded queue is dropped, it receives `{"type": "resync"}`, and the stored events it missed are
replayed before live ones continue (live `task.log` lines lost in the gap are not replayed).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TypeVar

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from pydantic import BaseModel, ValidationError
from tornado import web, websocket

import osmo_core
from osmo_core.errors import (
    BackendError,
    Conflict,
    InputError,
    NotFound,
    OsmoError,
    PlacementError,
    SpecError,
    StoreError,
)
from osmo_core.events import Event, Overflow

from .schemas import EventsQuery, ListQuery, LogsQuery, SubmitRequest, openapi

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
            if isinstance(e, InputError):
                return ApiError(status, str(e), reason, [p.to_dict() for p in e.problems])
            return ApiError(status, str(e), reason)
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


def _maps_errors(method: F) -> F:
    """osmo_core's errors → their HTTP status, with the JSON body and details."""

    @functools.wraps(method)
    async def wrapper(self: OsmoHandler, *args: Any, **kwargs: Any) -> Any:
        try:
            return await method(self, *args, **kwargs)
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

    def query_model(self, model: type[M], *, lists: tuple[str, ...] = ()) -> M:
        """The query string validated into `model`; `lists` may repeat or be comma-separated."""
        raw: dict[str, Any] = {}
        for key, values in self.request.query_arguments.items():
            texts = [v.decode("utf-8", "replace") for v in values]
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
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.reply({"version": osmo_core.__version__, "api": "v1"})


class OpenAPIHandler(OsmoHandler):
    @web.authenticated
    @authorized
    def get(self) -> None:
        self.reply(openapi(osmo_core.__version__))


class PoolsHandler(OsmoHandler):
    @web.authenticated
    @authorized
    @_maps_errors
    async def get(self) -> None:
        self.reply((await self.service()).pools_info())


class WorkflowsHandler(OsmoHandler):
    @web.authenticated
    @authorized
    @_maps_errors
    async def get(self) -> None:
        q = self.query_model(ListQuery, lists=("status",))
        svc = await self.service()
        rows = svc.list(
            statuses=[s.value for s in q.status] or None,
            user=q.user,
            pool=q.pool,
            name=q.name,
            limit=q.limit,
            offset=q.offset,
        )
        self.reply(rows)

    @web.authenticated
    @authorized
    @_maps_errors
    async def post(self) -> None:
        req = self.body_model(SubmitRequest)
        svc = await self.service()
        loaded = svc.load(req.spec, set_values=req.set_values)
        if req.dry_run or req.validation_only:
            pool = svc.check_placement(loaded, req.pool)
            if req.validation_only:
                self.reply({"valid": True, "pool": pool})
            else:
                self.reply({"pool": pool, "rendered": loaded.rendered, "values": loaded.values})
            return
        wf_id = await svc.submit(loaded, pool=req.pool, user=self.username, priority=req.priority)
        self.set_header("Location", self.request.path.rstrip("/") + f"/{wf_id}")
        self.reply({"id": wf_id}, status=201)


class WorkflowHandler(OsmoHandler):
    @web.authenticated
    @authorized
    @_maps_errors
    async def get(self, wf_id: str) -> None:
        self.reply((await self.service()).get(wf_id))


class CancelHandler(OsmoHandler):
    @web.authenticated
    @authorized
    @_maps_errors
    async def post(self, wf_id: str) -> None:
        status = await (await self.service()).cancel(wf_id)
        self.reply({"id": wf_id, "status": status.value})


class SpecHandler(OsmoHandler):
    @web.authenticated
    @authorized
    @_maps_errors
    async def get(self, wf_id: str) -> None:
        self.reply((await self.service()).spec(wf_id))


class LogsHandler(OsmoHandler):
    @web.authenticated
    @authorized
    @_maps_errors
    async def get(self, wf_id: str, task: str) -> None:
        q = self.query_model(LogsQuery)
        svc = await self.service()
        lines = await svc.logs(wf_id, task, retry_id=q.retry_id, start=q.start, limit=q.limit)
        self.reply([{k: v for k, v in asdict(ln).items() if k != "key"} for ln in lines])


class EventsWebSocket(_OsmoMixin, JupyterHandler, websocket.WebSocketHandler):
    """Stored events after `after`, then live ones; one JSON object per message."""

    auth_resource = AUTH_RESOURCE

    _pump: asyncio.Task[None] | None = None
    _sub: Any = None

    @allow_unauthenticated  # checked below, without a login redirect (as ws_authenticated)
    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.current_user is None:
            self.log.warning("osmo: refused an unauthenticated events WebSocket")
            raise web.HTTPError(403)
        allowed = self.authorizer.is_authorized(self, self.current_user, "read", AUTH_RESOURCE)
        if asyncio.iscoroutine(allowed):
            allowed = await allowed
        if not allowed:
            raise web.HTTPError(403)
        self._query = self.query_model(EventsQuery)
        self._svc = await self.service()
        await super().get(*args, **kwargs)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        OsmoHandler.write_error(self, status_code, **kwargs)  # type: ignore[arg-type]

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
                elif item.id is None or item.id > last:
                    await self._send(item.to_dict())
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
            rows = self._svc.store.events_since(last, q.workflow_id, limit=REPLAY_PAGE)
            for row in rows:
                await self._send(Event.from_row(row).to_dict())
                last = row["id"]
            if len(rows) < REPLAY_PAGE:
                return last

    async def _send(self, msg: dict[str, Any]) -> None:
        # Awaiting the flush: a slow peer backs up into its bounded queue, never into the engine.
        await self.write_message(json.dumps(msg, default=str))

    def on_close(self) -> None:
        if self._sub is not None:
            self._sub.close()
        if self._pump is not None:
            self._pump.cancel()


_ID = r"(?P<wf_id>[^/]+)"
_TASK = r"(?P<task>[^/]+)"


def _route(path: str) -> str:
    return f"/{API_PREFIX}/{path}"


default_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (_route("health"), HealthHandler),
    (_route("version"), VersionHandler),
    (_route("openapi.json"), OpenAPIHandler),
    (_route("pools"), PoolsHandler),
    (_route("workflows"), WorkflowsHandler),
    (_route(f"workflows/{_ID}"), WorkflowHandler),
    (_route(f"workflows/{_ID}/cancel"), CancelHandler),
    (_route(f"workflows/{_ID}/spec"), SpecHandler),
    (_route(f"workflows/{_ID}/tasks/{_TASK}/logs"), LogsHandler),
    (_route("events"), EventsWebSocket),
]
