"""The bases every REST and WebSocket handler of `/osmo/api/v1` derives from.

Handlers are thin: validate the request (models in schemas/), call the Service once, answer
JSON. Every error is jupyter_server's JSON body `{"message", "reason", "details"}`; osmo_core's
errors map to statuses in one place (`_STATUS`, `from_osmo_error`):

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
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from pydantic import BaseModel, ValidationError
from tornado import web, websocket

from osmo_core.auth import Principal, policy
from osmo_core.client import ApiError as RemoteApiError
from osmo_core.client import Unreachable
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

from ..access import ServiceUnavailable
from ..identity import CHALLENGE, principal_of

FuncT = TypeVar("FuncT", bound=Callable[..., Any])

try:  # jupyter_server >= 2.13
    from jupyter_server.auth.decorator import allow_unauthenticated as allow_unauthenticated
except ImportError:  # pragma: no cover - older servers have no global auth switch

    def allow_unauthenticated(method: FuncT) -> FuncT:
        return method


if TYPE_CHECKING:
    from osmo_core.service import Service

    from ..app import OsmoApp


_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
API_PREFIX = "osmo/api/v1"
AUTH_RESOURCE = "osmo"

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


def from_osmo_error(e: OsmoError) -> ApiError:
    """osmo_core's error as its HTTP status and JSON body (`_STATUS`; 500 for any other). A
    shared service's answer (client mode, remote.py) passes on as it came; no answer is 502."""
    if isinstance(e, RemoteApiError):
        return ApiError(e.status, e.message, e.reason, e.details)
    if isinstance(e, Unreachable):
        return ApiError(502, str(e), "bad gateway")
    for cls, status, reason in _STATUS:
        if isinstance(e, cls):
            problems = e.problems if isinstance(e, InputError | Forbidden) else []
            details = [p.to_dict() for p in problems]
            if isinstance(e, InputError) and e.left_out:  # a client shows it as one more line
                details.append({"message": e.left_out})
            return ApiError(status, str(e), reason, details)
    return ApiError(500, str(e), "server error")


def from_validation_error(e: ValidationError, where: str) -> ApiError:
    """A 400 naming each bad field of the `where` ("body", "query") pydantic refused."""
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
        self.take_body()
        try:
            return await checked(self, *args, **kwargs)
        except OsmoError as e:
            raise from_osmo_error(e) from e

    # functools.wraps keeps the wrapped method's signature
    return wrapper  # type: ignore[return-value]


class OsmoMixin:
    """What both the REST and the WebSocket handlers need."""

    settings: dict[str, Any]
    request: Any

    def take_body(self) -> None:
        """Nothing to take: a handler that reads its body as a whole (tornado's default) or
        streams it on (the task proxy). OsmoHandler collects a bounded body and overrides this."""

    @property
    def osmo_app(self) -> OsmoApp:
        # tornado's settings are a dict of Any
        return self.settings["osmo_app"]  # type: ignore[no-any-return]

    async def service(self) -> Service:
        try:
            return await self.osmo_app.ready()
        except ServiceUnavailable as e:
            raise ApiError(503, str(e), "service unavailable") from e

    def require_user(self) -> None:
        # OsmoMixin is only used with JupyterHandler, which has these
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
                # OsmoMixin is only used with JupyterHandler, which has these
                self.current_user,  # type: ignore[attr-defined]
                self.identity_provider,  # type: ignore[attr-defined]
                # requests reach handlers once the service is up
                self.osmo_app.service.config.admin_users,  # type: ignore[union-attr]
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
            raise from_validation_error(e, "query") from e


@web.stream_request_body
class OsmoHandler(OsmoMixin, APIHandler):
    """A REST handler. It reads its request body itself, up to OsmoConfig.max_request_bytes
    (413 past it), instead of letting the server buffer up to ServerApp.max_body_size; a
    subclass with its own `data_received` (an upload) streams it as it likes."""

    auth_resource = AUTH_RESOURCE
    _chunks: list[bytes] | None = None

    # no login redirect to pass on: this API answers 401/403
    async def prepare(self) -> None:  # type: ignore[override]
        await super().prepare()
        if self._finished or type(self).data_received is not OsmoHandler.data_received:
            return
        config = getattr(self.osmo_app.service, "config", None)
        limit: int = config.max_request_bytes if config else 32 * 1024 * 1024
        length = self.request.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > limit:
            raise ApiError(
                413,
                f"the request body has {length} bytes; this server reads at most {limit} "
                "(OsmoConfig.max_request_bytes)",
                "request too large",
            )
        self.request.connection.set_max_body_size(limit)  # a chunked body is cut there
        self._chunks = []

    def data_received(self, chunk: bytes) -> None:
        if self._chunks is not None:
            self._chunks.append(chunk)

    def take_body(self) -> None:
        """The body read so far (bounded, by `data_received`) becomes `request.body`."""
        if self._chunks is not None:
            self.request.body, self._chunks = b"".join(self._chunks), None

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
            self.set_header("Allow", ", ".join(handler_methods(type(self))))
        if status_code == 401:  # RFC 9110: a 401 names its scheme (send_error cleared headers)
            self.set_header("WWW-Authenticate", CHALLENGE)
        self.set_header("Content-Type", "application/json")
        self.log.warning("osmo: wrote error %s: %s", status_code, reply["message"])
        self.finish(json.dumps(reply))

    def body_model(self, model: type[M]) -> M:
        raw = self.request.body or b"null"
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise ApiError(400, f"invalid JSON in the request body: {e}", "bad request") from e
        except RecursionError:
            raise ApiError(400, "the request body nests too deeply", "bad request") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object", "bad request")
        if _SURROGATE.search(raw):  # an escaped surrogate: only a pair is a character
            try:
                json.dumps(body, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise ApiError(
                    400, "the request body holds a lone surrogate (\\ud800-\\udfff)", "bad request"
                ) from None
        try:
            return model.model_validate(body)
        except ValidationError as e:
            raise from_validation_error(e, "body") from e

    def reply(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))


def handler_methods(cls: type[web.RequestHandler]) -> list[str]:
    """The HTTP methods a handler class implements (tornado's defaults answer 405)."""
    return [
        m
        for m in cls.SUPPORTED_METHODS
        if getattr(cls, m.lower(), None) is not getattr(web.RequestHandler, m.lower(), None)
    ]


def check_page_limit(limit: int, most: int, knob: str) -> None:
    """A 400 when a page's `limit` is over the server's page size (OsmoConfig.`knob`)."""
    if limit > most:
        raise ApiError(
            400,
            f"limit {limit} is larger than this server's page size {most} (OsmoConfig.{knob})",
            "bad request",
            [{"field": "limit", "message": f"at most {most}"}],
        )


class OsmoWebSocket(OsmoMixin, JupyterHandler, websocket.WebSocketHandler):
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
            raise from_osmo_error(e) from e
        await super().get(*args, **kwargs)

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        """Validate the request before the upgrade (raise to refuse it)."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # OsmoHandler's error page on another tornado handler class
        OsmoHandler.write_error(self, status_code, **kwargs)  # type: ignore[arg-type]

    async def _send(self, msg: dict[str, Any] | str) -> None:
        # Awaiting the flush: a slow peer backs up into its bounded queue, never into the engine.
        await self.write_message(msg if isinstance(msg, str) else json.dumps(msg, default=str))
