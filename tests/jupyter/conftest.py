"""A real Jupyter server with the osmo extension, through pytest-jupyter's fixtures.

pytest-jupyter's fixtures are imported here (not registered as a plugin) so that its autouse
fixtures and hooks apply to this directory only. pytest-asyncio runs the tests: its loop is the
one pytest-jupyter's fixtures use (`jp_asyncio_loop`), so the server, its Service and the test
share one loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from jupyter_server.auth.identity import IdentityProvider, User
from pytest_jupyter.jupyter_server import *  # noqa: F403
from tornado.httpclient import HTTPClientError, HTTPResponse

from osmo_core.service import Service
from osmo_jupyter.app import OsmoApp


@pytest.fixture
async def jp_asyncio_loop() -> asyncio.AbstractEventLoop:
    """pytest-jupyter's loop is pytest-asyncio's (pytest-asyncio closes it)."""
    return asyncio.get_running_loop()


USER = "alice"


class FixedIdentity(IdentityProvider):
    """The shared test token stands for one named user (jupyter_server otherwise makes up a
    new anonymous user for every token-authenticated request)."""

    def generate_anonymous_user(self, handler: Any) -> User:
        return User(USER, "Alice", "Alice", "A", None, None)


@pytest.fixture
def osmo_data_dir(tmp_path: Path) -> Path:
    return tmp_path / "osmo"


@pytest.fixture
def jp_server_config(osmo_data_dir: Path) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"osmo_jupyter": True},
            "identity_provider_class": FixedIdentity,
        },
        "OsmoConfig": {
            "data_dir": str(osmo_data_dir),
            "backends": {"local": {"kind": "local", "idle_timeout": 60}},
        },
    }


@pytest.fixture
async def osmo(jp_serverapp: Any) -> AsyncIterator[OsmoApp]:
    """The extension, started as the server's loop would start it; every agent it spawned is
    shut down afterwards (pytest-jupyter's cleanup then stops the extension)."""
    await jp_serverapp.extension_manager.start_all_extensions()
    app = jp_serverapp.extension_manager.extension_apps["osmo_jupyter"]
    (ext,) = (a for a in app if isinstance(a, OsmoApp))
    svc = await ext.ready()
    yield ext
    for backend in svc.backends.values():
        shutdown = getattr(backend, "shutdown_agent", None)
        if shutdown is not None:
            with contextlib.suppress(Exception):  # already gone
                await shutdown(force=True)


@pytest.fixture
def service(osmo: OsmoApp) -> Service:
    assert osmo.service is not None
    return osmo.service


Api = Callable[..., Awaitable[Any]]


@pytest.fixture
def api(jp_fetch: Any, osmo: OsmoApp) -> Api:
    """`await api("GET", "workflows", params=..., body=..., status=200)` → the decoded JSON;
    asserts the status (an error status answers the error body)."""

    async def call(
        method: str, path: str, *, body: Any = None, status: int = 200, **kwargs: Any
    ) -> Any:
        if body is not None and not isinstance(body, (str, bytes)):
            body = json.dumps(body)
        if method == "POST" and body is None:
            body = b""
        try:
            resp: HTTPResponse = await jp_fetch(
                "osmo", "api", "v1", *path.split("/"), method=method, body=body, **kwargs
            )
        except HTTPClientError as e:
            assert e.response is not None, e
            resp = e.response
        assert resp.code == status, (resp.code, resp.body)
        assert resp.headers["Content-Type"].startswith("application/json")
        return json.loads(resp.body)

    return call
