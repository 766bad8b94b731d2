"""How `osmo_jupyter.Client` reaches a control plane: one seam, two implementations.

- `RestTransport`: a server's REST API (osmo_core.client, stdlib) and its WebSockets (tornado,
  on the background loop).
- `EmbeddedTransport`: a `Service` in this process (the embedded default), answering the same
  paths with the same JSON, so the client never knows which one it has.

`request(method, path, body=, params=)` answers the decoded JSON or raises an `OsmoError`
(`ApiError` from a server; the Service's own typed errors in-process); `messages(path, params)`
is an async iterator over a WebSocket's JSON messages, run on the background loop.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import json
import urllib.parse
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol

from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from osmo_core.client import API_PATH, ApiError, Unreachable
from osmo_core.client import Client as RestClient
from osmo_core.config import OsmoConfig
from osmo_core.errors import NotFound
from osmo_core.events import Event, Overflow

from . import _loop

if TYPE_CHECKING:
    from osmo_core.service import Service

CONNECT_TIMEOUT = 10.0
REPLAY_PAGE = 1000


class Transport(Protocol):
    kind: str  # "server" or "embedded"
    url: str

    def request(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any: ...

    def messages(self, path: str, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]: ...


class RestTransport:
    kind = "server"

    def __init__(self, url: str, token: str, timeout: float = 30.0):
        self.rest = RestClient(url, token, timeout)
        self.url = self.rest.url
        self.token = token

    def request(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        if method == "POST" and body is None:
            body = {}
        return self.rest.request(method, path, body=body, params=params)

    async def messages(self, path: str, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = "ws" + self.url[len("http") :] + f"{API_PATH}/{path}" + (f"?{query}" if query else "")
        req = HTTPRequest(
            url,
            headers={"Authorization": f"token {self.token}"},
            connect_timeout=CONNECT_TIMEOUT,
            request_timeout=CONNECT_TIMEOUT,
        )
        try:
            conn = await websocket_connect(req)
        except HTTPClientError as e:
            raise ApiError(e.code, _ws_refusal(e, path)) from None
        except OSError as e:
            raise Unreachable(self.url, e.strerror or str(e)) from None
        try:
            while (msg := await conn.read_message()) is not None:
                if isinstance(msg, str):
                    yield json.loads(msg)
        finally:
            conn.close()


def _ws_refusal(e: HTTPClientError, path: str) -> str:
    body = e.response.body if e.response is not None else b""
    try:
        return str(json.loads(body)["message"])
    except (ValueError, KeyError, TypeError):
        return f"the server refused the WebSocket {path} (HTTP {e.code})"


class EmbeddedTransport:
    """A Service started on the background loop; the same paths as the REST API."""

    kind = "embedded"

    def __init__(self, config: OsmoConfig | None = None):
        from osmo_core.service import Service  # the engine's imports, only when it runs here

        self.service: Service = Service(config or OsmoConfig())
        self.url = f"embedded:{self.service.config.data_dir}"
        _loop.run(self.service.start(), timeout=60)  # Conflict: another engine has the dir
        atexit.register(self.close)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # at exit, a stopped or broken engine is fine
            _loop.run(self.service.stop(), timeout=30)

    def request(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None
    ) -> Any:
        answer = _loop.run(self._route(method, path, body or {}, params or {}), timeout=120)
        return json.loads(json.dumps(answer, default=str))  # exactly what REST would answer

    async def _route(self, method: str, path: str, body: dict[str, Any], q: dict[str, Any]) -> Any:
        svc = self.service
        match method, path.strip("/").split("/"):
            case "GET", ["workflows"]:
                status, label = q.get("status"), q.get("label")
                return svc.list(
                    statuses=[status] if isinstance(status, str) else status or None,
                    labels=[label] if isinstance(label, str) else label or (),
                    limit=int(q.get("limit") or 50),
                    offset=int(q.get("offset") or 0),
                )
            case "POST", ["workflows"]:
                loaded = svc.load(
                    body["spec"],
                    set_values=body.get("set_values") or {},
                    env=body.get("env"),
                    labels=body.get("labels"),
                )
                if body.get("dry_run") or body.get("validation_only"):
                    # the same user as submit's (the OS user): their own credentials count
                    pool = svc.check_placement(loaded, body.get("pool"), getpass.getuser())
                    return {"valid": True, "pool": pool}
                wf_id = await svc.submit(
                    loaded, pool=body.get("pool"), priority=body.get("priority") or "NORMAL"
                )
                return {"id": wf_id}
            case "GET", ["workflows", wf_id]:
                return svc.get(wf_id)
            case "POST", ["workflows", wf_id, "cancel"]:
                return {"id": wf_id, "status": (await svc.cancel(wf_id)).value}
            case "POST", ["workflows", wf_id, "restart"]:
                new_id = await svc.restart(
                    wf_id, from_task=body.get("from_task"), rerun_all=bool(body.get("all"))
                )
                reused = [t["name"] for t in svc.get(new_id)["tasks"] if t["reused_from"]]
                return {"id": new_id, "restarted": wf_id, "reused": reused}
            case "GET", ["workflows", wf_id, "spec"]:
                return svc.spec(wf_id)
            case "GET", ["workflows", wf_id, "tasks", task]:
                attempts = [a for a in svc.get(wf_id)["tasks"] if a["name"] == task]
                if not attempts:
                    raise NotFound(f"workflow {wf_id!r} has no task {task!r}")
                return {**attempts[-1], "attempts": attempts}
            case "GET", ["workflows", wf_id, "tasks", task, "logs"]:
                lines = await svc.logs(
                    wf_id,
                    task,
                    retry_id=q.get("retry_id"),
                    start=int(q.get("start") or 0),
                    limit=q.get("limit"),
                )
                return [
                    {"n": ln.n, "ts": ln.ts, "stream": ln.stream, "text": ln.text} for ln in lines
                ]
        raise ApiError(404, f"no such API path: {method} {path}", "not found")

    async def messages(self, path: str, params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        if path != "events":
            raise ApiError(404, f"no such WebSocket here: {path}", "not found")
        wf_id = params.get("workflow_id")
        logs = str(params.get("logs", "true")).lower() != "false"
        # Subscribe before reading the store (as the server does): nothing falls in between.
        sub = self.service.subscribe(wf_id, logs=logs)
        try:
            last = int(params.get("after") or 0)
            while True:
                rows = self.service.store.events_since(last, wf_id, limit=REPLAY_PAGE)
                for row in rows:
                    last = row["id"]
                    yield Event.from_row(row).to_dict()
                if len(rows) < REPLAY_PAGE:
                    break
            while (item := await sub.get()) is not None:
                if isinstance(item, Overflow):
                    yield {"type": "resync", "dropped": item.dropped}
                elif item.id is None or item.id > last:
                    last = item.id or last
                    yield item.to_dict()
        finally:
            sub.close()
