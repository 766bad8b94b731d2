"""A small client that sends exactly what OSMO's `osmo` CLI sends (NVIDIA/OSMO, src/lib/utils
client.py and login.py, read mid-2026), for testing the OSMO-compatible API without OSMO's code.

What it reproduces, request by request:
- login `--method token`: `POST {url}/api/auth/jwt/access_token` with JSON `{"token": T}`, no
  Authorization header, only `User-Agent`; the answer's `token` is a JWT whose `exp` the client
  reads (unverified) and refreshes the same way once fewer than 3 seconds are left;
- every call: `{url}/{endpoint}` (an endpoint with a leading `/` makes `//api/...`), headers
  `Authorization: Bearer <JWT>`, `x-osmo-client-version`, `Content-Type: application/json` and
  `User-Agent: osmo-cli/<version>`, a JSON body or none; query strings as `requests` writes
  them (lists repeat their key, booleans `True`/`False`, None left out);
- errors: a 4xx body is JSON with `message` (and `error_code`);
- `credential set NAME --type T --payload K=V ...`: `POST api/credentials/NAME` with the body
  `credential_body` builds (src/lib/api/credential_payload.py); `credential list`: `GET
  api/credentials`; `credential delete NAME`: `DELETE api/credentials/NAME`, whose answer's
  `credentials[0]` it reads (`cred_type`, `profile`).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

CLIENT_VERSION = "6.2.0"
USER_AGENT = f"osmo-cli/{CLIENT_VERSION}"
EXPIRE_WINDOW = 3  # seconds: OSMO's CLI refreshes a JWT this close to its expiry


def claims(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified, as OSMO's CLI reads them."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=="))  # type: ignore[no-any-return]


def query(params: dict[str, Any] | None) -> str:
    pairs: list[tuple[str, str]] = []
    for key, value in (params or {}).items():
        for v in value if isinstance(value, list) else [value]:
            if v is not None:
                pairs.append((key, str(v)))
    return "?" + urllib.parse.urlencode(pairs) if pairs else ""


def credential_body(kind: str, payload: dict[str, str]) -> dict[str, Any]:
    """OSMO's `build_credential_request_envelope`: one credential in Core's request shape."""
    if kind == "DATA":
        return {"data_credential": {**payload, "endpoint": payload["endpoint"].rstrip("/")}}
    if kind == "REGISTRY":
        return {"registry_credential": dict(payload)}
    return {"generic_credential": {"credential": dict(payload)}}


class OsmoError(Exception):
    def __init__(self, status: int, body: Any):
        super().__init__(f"{status}: {body}")
        self.status, self.body = status, body


@dataclass
class OsmoCli:
    """One logged-in OSMO CLI: `url` is what `osmo login URL` was given."""

    url: str
    refresh_token: str = ""
    id_token: str = ""
    refreshes: int = 0
    sent: list[HTTPRequest] = field(default_factory=list)

    async def login(self, token: str) -> dict[str, Any]:
        self.refresh_token = token
        answer = await self._exchange()
        return answer

    async def _exchange(self) -> dict[str, Any]:
        req = HTTPRequest(
            self.url.rstrip("/") + "/api/auth/jwt/access_token",
            method="POST",
            body=json.dumps({"token": self.refresh_token}),
            headers={"User-Agent": USER_AGENT},
        )
        answer = json.loads((await self._fetch(req)).body)
        self.id_token = answer["token"]
        return answer  # type: ignore[no-any-return]

    async def _refresh_if_needed(self) -> None:
        if self.id_token and claims(self.id_token)["exp"] - EXPIRE_WINDOW < time.time():
            self.refreshes += 1
            await self._exchange()

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.id_token}",
            "x-osmo-client-version": CLIENT_VERSION,
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }

    async def raw(
        self,
        method: str,
        endpoint: str,
        *,
        payload: Any = None,
        params: dict[str, Any] | None = None,
        streaming: Callable[[bytes], None] | None = None,
        timeout: float = 60,
    ) -> HTTPResponse:
        await self._refresh_if_needed()
        body = json.dumps(payload) if payload is not None else None
        if method in ("POST", "PUT", "PATCH") and body is None:
            body = ""  # requests sends an empty body (Content-Length: 0)
        req = HTTPRequest(
            f"{self.url.rstrip('/')}/{endpoint}{query(params)}",
            method=method,
            body=body,
            headers=self.headers(),
            streaming_callback=streaming,
            request_timeout=timeout,
            allow_nonstandard_methods=True,
        )
        return await self._fetch(req)

    async def request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
        """ResponseMode.JSON: the decoded answer, or OsmoError with the decoded error body."""
        return json.loads((await self.raw(method, endpoint, **kwargs)).body)

    async def text(self, method: str, endpoint: str, **kwargs: Any) -> str:
        """ResponseMode.STREAMING read to the end, as `iter_lines` would."""
        return (await self.raw(method, endpoint, **kwargs)).body.decode()

    async def _fetch(self, req: HTTPRequest) -> HTTPResponse:
        self.sent.append(req)
        try:
            return await AsyncHTTPClient().fetch(req)
        except HTTPClientError as e:
            assert e.response is not None, e
            body = e.response.body
            assert e.response.headers["Content-Type"].startswith("application/json"), body
            raise OsmoError(e.code, json.loads(body)) from None
