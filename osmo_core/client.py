"""A small synchronous client for the control plane's REST API (`/osmo/api/v1`), and the
credentials `osmo login` keeps.

Standard library only (`urllib.request`): the CLI stays installable without an HTTP package.
Every failure is an `OsmoError`: `ApiError` for an answer with an error status (its JSON body's
message, reason and details), `Unreachable` when no answer came, `NotLoggedIn` when no
credentials are stored.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OsmoError

API_PATH = "/osmo/api/v1"
LOGIN_HINT = "not logged in: run `osmo login URL --token TOKEN`"


class ApiError(OsmoError):
    """The server answered with an error status; `details` are its located problems."""

    def __init__(
        self,
        status: int,
        message: str,
        reason: str | None = None,
        details: list[dict[str, Any]] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.details = details or []


class Unreachable(OsmoError):
    """No answer from the server (refused, timed out, name not resolved...)."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


class NotLoggedIn(OsmoError):
    def __init__(self) -> None:
        super().__init__(LOGIN_HINT)


def normalize_url(url: str) -> str:
    """The server's base URL: no trailing slash, no API path (either form may be given)."""
    url = url.strip().rstrip("/")
    if url.endswith(API_PATH):
        url = url[: -len(API_PATH)]
    if "://" not in url:
        url = "http://" + url
    return url


# --- credentials -----------------------------------------------------------------------------


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "osmo"


@dataclass(frozen=True)
class Credentials:
    url: str
    token: str

    @staticmethod
    def path() -> Path:
        return config_dir() / "credentials.json"

    @classmethod
    def load(cls) -> Credentials | None:
        """The stored login, or None when there is none (a corrupt file counts as none)."""
        try:
            data = json.loads(cls.path().read_text(encoding="utf-8"))
            return cls(url=str(data["url"]), token=str(data["token"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self) -> Path:
        """Write atomically, readable by the owner only (0600) from the first byte."""
        path = self.path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"url": self.url, "token": self.token}, f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def remove(cls) -> bool:
        try:
            cls.path().unlink()
            return True
        except FileNotFoundError:
            return False


# --- client ----------------------------------------------------------------------------------


class Client:
    """`Client(url, token).get("workflows", status=["RUNNING"])` → the decoded JSON answer."""

    def __init__(self, url: str, token: str, timeout: float = 30.0):
        self.url = normalize_url(url)
        self.token = token
        self.timeout = timeout

    @classmethod
    def from_credentials(cls) -> Client:
        creds = Credentials.load()
        if creds is None:
            raise NotLoggedIn()
        return cls(creds.url, creds.token)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body=body if body is not None else {})

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    async def stream(self, path: str, **params: Any) -> AsyncIterator[dict[str, Any]]:
        """The JSON messages of one of the API's WebSockets, until the server closes it."""
        from tornado.httpclient import HTTPClientError, HTTPRequest
        from tornado.websocket import websocket_connect

        url = self._url(path, params).replace("http", "ws", 1)
        req = HTTPRequest(
            url,
            headers={"Authorization": f"token {self.token}"},
            connect_timeout=self.timeout,
            request_timeout=self.timeout,
        )
        try:
            ws = await websocket_connect(req)
        except HTTPClientError as e:
            raise _ws_error(e) from None
        except OSError as e:
            raise Unreachable(self.url, e.strerror or str(e)) from None
        try:
            while (msg := await ws.read_message()) is not None:
                yield json.loads(msg)
        finally:
            ws.close()

    async def websocket(self, path: str, **params: Any) -> Any:
        """An open WebSocket of the API (tornado's client connection) for byte streams: exec
        and port-forward; a refused handshake raises ApiError like any request."""
        from tornado.httpclient import HTTPClientError, HTTPRequest
        from tornado.websocket import websocket_connect

        url = self._url(path, params).replace("http", "ws", 1)
        req = HTTPRequest(
            url, headers={"Authorization": f"token {self.token}"}, connect_timeout=self.timeout
        )
        try:
            return await websocket_connect(req, max_message_size=64 * 1024 * 1024)
        except HTTPClientError as e:
            raise _ws_error(e) from None
        except OSError as e:
            raise Unreachable(self.url, e.strerror or str(e)) from None

    def _url(self, path: str, params: dict[str, Any] | None) -> str:
        url = f"{self.url}{API_PATH}/{path.lstrip('/')}"
        query = {k: v for k, v in (params or {}).items() if v is not None and v != []}
        if query:
            url += "?" + urllib.parse.urlencode(query, doseq=True)
        return url

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        with self.open(method, path, params=params, data=data, headers=headers) as resp:
            try:
                raw = resp.read()
            except (TimeoutError, ConnectionError) as e:
                raise Unreachable(self.url, str(e) or type(e).__name__) from None
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise ApiError(
                200, f"the server's answer to {method} {path} is not JSON", "bad answer"
            ) from None

    def open(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """The open response (read it in chunks; close it): for byte streams such as file
        uploads (`data` a file object, with Content-Length in `headers`) and downloads."""
        url = self._url(path, params)
        headers = {"Authorization": f"token {self.token}", **(headers or {})}
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            raise _api_error(e) from None
        except urllib.error.URLError as e:
            reason = e.reason
            text = getattr(reason, "strerror", None) or str(reason)
            raise Unreachable(self.url, text) from None
        except (TimeoutError, ConnectionError) as e:
            raise Unreachable(self.url, str(e) or type(e).__name__) from None


async def follow_log(
    stream: Callable[[dict[str, Any]], AsyncIterator[dict[str, Any]]], params: dict[str, Any]
) -> AsyncIterator[dict[str, Any]]:
    """A log-follow WebSocket's messages (`stream(params)` opens it), its lines batched. A
    server from before batching refuses `batch` at the handshake (400) and is asked again
    without it: read the lines with `log_lines_of`, which takes both forms."""
    try:
        async for msg in stream({**params, "batch": "true"}):
            yield msg
    except ApiError as e:
        if e.status != 400 or "batch" not in e.message:
            raise
        async for msg in stream(params):
            yield msg


def log_lines_of(msg: dict[str, Any]) -> list[dict[str, Any]]:
    """The log lines one log-follow message carries: a batch, one line, or none."""
    if msg.get("type") == "lines":
        return list(msg["lines"])
    return [msg] if msg.get("type") == "log" else []


def _api_error(e: urllib.error.HTTPError) -> ApiError:
    try:
        raw = e.read()
    except OSError:
        raw = b""
    return _error_from(e.code, raw, str(e.reason or ""))


def _ws_error(e: Any) -> ApiError:
    """A refused WebSocket handshake (tornado's HTTPClientError) as an ApiError."""
    raw = e.response.body if e.response is not None and e.response.body else b""
    return _error_from(e.code, raw, e.message or "")


def _error_from(code: int, raw: bytes, reason: str) -> ApiError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and "message" in body:
        details = body.get("details")
        return ApiError(
            code,
            str(body.get("message") or reason),
            body.get("reason"),
            details if isinstance(details, list) else [],
        )
    return ApiError(code, reason or f"HTTP {code}")
