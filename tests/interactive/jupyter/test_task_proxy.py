"""The HTTP proxy to a task's declared port, for the browser: a real web app (tornado) runs
inside the task; requests, redirects and a WebSocket go through the Jupyter server."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from tests.conftest import free_port
from tests.interactive.conftest import until
from tests.interactive.jupyter.conftest import start_task
from tests.interactive.jupyter.test_interactive_routes import _bound

APP = """
import json, sys
from tornado import ioloop, web, websocket

class Echo(web.RequestHandler):
    def check_xsrf_cookie(self): pass
    def get(self, path):
        h = self.request.headers
        self.write({"path": self.request.path, "query": self.request.query,
                    "host": h.get("Host"), "auth": h.get("Authorization"),
                    "cookie": h.get("Cookie"), "prefix": h.get("X-Forwarded-Prefix")})
    def post(self, path):
        self.set_status(201)
        self.set_header("X-App", "yes")
        self.write(self.request.body.upper())

class Away(web.RequestHandler):
    def get(self):
        self.redirect("http://127.0.0.1:%d/there" % PORT)

class WS(websocket.WebSocketHandler):
    def on_message(self, m):
        self.write_message("echo:" + m)

PORT = int(sys.argv[1])
web.Application([("/away", Away), ("/ws", WS), ("/(.*)", Echo)]).listen(PORT, "127.0.0.1")
ioloop.IOLoop.current().start()
"""


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    """The web app runs on the server's Python (tornado), under /root (0700) here: out of an
    isolated task's reach, so tasks run as the server in this module."""
    jp_server_config["OsmoConfig"]["task_isolation"] = "none"
    return jp_server_config


@pytest.fixture
async def webapp(api: Any, service: Any, pat: Any, tmp_path: Path) -> Any:
    app = tmp_path / "app.py"
    app.write_text(APP)
    port, idle = free_port(), free_port()
    alice = await pat("alice")
    cmd = f"exec {sys.executable} {app} {port}"
    wf = await start_task(api, service, alice, cmd=cmd, ports=f"{port}, {idle}")
    await until(lambda: _bound(port), what="the web app")
    return wf, port, idle, alice


def proxy(wf: str, port: int, *path: str) -> tuple[str, ...]:
    return ("osmo", "api", "v1", "workflows", wf, "tasks", "main", "proxy", str(port), *path)


async def test_requests_reach_the_web_app_in_the_task(webapp, jp_fetch, jp_ws_fetch):
    wf, port, _, alice = webapp
    headers = {**alice, "Cookie": "username-x=secret; _xsrf=x; app=1"}
    resp = await jp_fetch(*proxy(wf, port, "a", "b"), params={"q": "1"}, headers=headers)
    seen = json.loads(resp.body)
    assert seen["path"] == "/a/b" and seen["query"] == "q=1"
    assert seen["host"] == f"127.0.0.1:{port}"
    assert seen["auth"] is None and seen["cookie"] == "app=1"  # Jupyter's credentials stay here
    assert seen["prefix"].endswith(f"/workflows/{wf}/tasks/main/proxy/{port}")

    resp = await jp_fetch(*proxy(wf, port, "up"), method="POST", body=b"shout", headers=alice)
    assert (resp.code, resp.body, resp.headers["X-App"]) == (201, b"SHOUT", "yes")

    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(*proxy(wf, port, "away"), headers=alice, follow_redirects=False)
    assert e.value.code == 302 and e.value.response is not None
    assert e.value.response.headers["Location"].endswith(f"/tasks/main/proxy/{port}/there")

    ws = await jp_ws_fetch(*proxy(wf, port, "ws"), headers=alice)
    await ws.write_message("hi")
    assert await asyncio.wait_for(ws.read_message(), 10) == "echo:hi"
    ws.close()


async def test_the_proxy_is_refused_like_port_forward(webapp, jp_fetch, pat, service):
    wf, port, idle, alice = webapp
    bob = await pat("bob")
    for who, p, code in ((bob, port, 403), (alice, port + 1, 403), (alice, idle, 502)):
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch(*proxy(wf, p, "x"), headers=who)
        assert e.value.code == code, (who, p)
        assert json.loads(e.value.response.body)["message"]
    cancel = ("osmo", "api", "v1", "workflows", wf, "cancel")
    await jp_fetch(*cancel, method="POST", body=b"", headers=alice)
    await until(lambda: service.task(wf, "main")["status"] != "RUNNING", what="the cancel")
    with pytest.raises(HTTPClientError) as e:
        await jp_fetch(*proxy(wf, port, "x"), headers=alice)
    assert e.value.code == 409
