"""`osmo workflow exec` and `osmo workflow port-forward` of OSMO's own CLI: its router protocol
(a session from a POST, then `api/router/...` WebSockets) onto a task run by a real agent, with
the requests and messages OSMO's CLI sends (tests/jupyter/osmo_client.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from tests.conftest import free_port
from tests.interactive.conftest import until
from tests.interactive.jupyter.conftest import start_task
from tests.interactive.jupyter.test_interactive_routes import ECHO, _bound
from tests.jupyter.osmo_client import OsmoCli, OsmoError


@pytest.fixture
def cli(api: Any, jp_http_port: int, jp_base_url: str) -> Any:
    """`await cli("alice")` → (OSMO's CLI logged in as alice, alice's native API headers)."""

    async def make(user: str) -> tuple[OsmoCli, dict[str, str]]:
        made = await api("POST", "tokens", body={"name": "cli", "user": user}, status=201)
        client = OsmoCli(f"http://127.0.0.1:{jp_http_port}{jp_base_url}osmo")
        await client.login(made["token"])
        return client, {"Authorization": f"Bearer {made['token']}"}

    return make


async def connect(client: OsmoCli, session: dict[str, str], endpoint: str) -> Any:
    """`ServiceClient.create_websocket(router_address, endpoint, headers={'Cookie': ...})`."""
    headers = {**client.headers(), "Cookie": session["cookie"]}
    del headers["Content-Type"]  # create_websocket sends no Content-Type
    req = HTTPRequest(f"{session['router_address']}/{endpoint}", headers=headers)
    return await websocket_connect(req)


async def read_all(ws: WebSocketClientConnection) -> bytes:
    out = b""
    while (msg := await asyncio.wait_for(ws.read_message(), 10)) is not None:
        assert isinstance(msg, bytes)
        out += msg
    return out


async def test_exec_through_the_router(api, service, cli):
    (alice, alice_api), (bob, _) = await cli("alice"), await cli("bob")
    wf = await start_task(api, service, alice_api)
    endpoint = f"api/workflow/{wf}/exec/task/main"
    with pytest.raises(OsmoError) as e:
        await bob.request("POST", endpoint, params={"entry_command": "/bin/sh"})
    assert e.value.status == 403

    session = await alice.request("POST", endpoint, params={"entry_command": "/bin/sh"})
    assert set(session) == {"router_address", "key", "cookie"}
    assert session["router_address"].startswith("ws://")
    router = f"api/router/exec/{wf}/client/{session['key']}"
    ws = await connect(alice, session, router)
    await ws.write_message(json.dumps({"Rows": 30, "Cols": 100}).encode(), binary=True)
    await ws.write_message(b"stty size; cat marker; echo $TASK_SECRET; exit\n", binary=True)
    out = await read_all(ws)  # the socket closes when the shell exits
    assert b"30 100" in out and b"ready" in out and b"inside-the-task" in out

    with pytest.raises(HTTPClientError) as e:  # a key is good once
        await connect(alice, session, router)
    assert e.value.code == 404
    session = await alice.request("POST", endpoint, params={"entry_command": "/bin/sh"})
    with pytest.raises(HTTPClientError) as e:  # and for the user it was given to
        await connect(bob, session, f"api/router/exec/{wf}/client/{session['key']}")
    assert e.value.code == 403

    # a group: the command in each of its running tasks, no terminal
    group = await alice.request(
        "POST", f"api/workflow/{wf}/exec/group/main", params={"entry_command": "cat marker"}
    )
    ws = await connect(alice, group["main"], f"api/router/exec/{wf}/client/{group['main']['key']}")
    await ws.write_message(json.dumps({"Rows": 30, "Cols": 100}).encode(), binary=True)
    assert await read_all(ws) == b"ready\n"


async def test_port_forward_through_the_router(api, service, cli):
    alice, alice_api = await cli("alice")
    port, other = free_port(), free_port()
    wf = await start_task(api, service, alice_api, cmd=ECHO.format(port=port), ports=str(port))
    await until(lambda: _bound(port), what="the echo server")
    endpoint = f"api/workflow/{wf}/portforward/main"
    for params, status in (({"task_ports": other}, 403), ({"task_ports": port, "use_udp": True},
                                                           422)):  # fmt: skip
        with pytest.raises(OsmoError) as e:
            await alice.request("POST", endpoint, params=params)
        assert e.value.status == status, params

    (session,) = await alice.request(
        "POST", endpoint, params={"task_ports": [port], "use_udp": False}
    )
    base = f"api/router/portforward/{wf}/client"
    ctrl = await connect(alice, session, f"{base}/{session['key']}")
    # a local connection: the router's cookie, its key on the control socket, a data socket
    http = session["router_address"].replace("ws://", "http://", 1)
    version = await AsyncHTTPClient().fetch(f"{http}/api/router/version")
    cookie = version.headers.get("Set-Cookie", "")
    conn_key = "PORTFORWARD-0123456789"
    # the CLI sends the key and connects without waiting: the data socket may come first
    data_ws = connect(alice, {**session, "cookie": cookie}, f"{base}/{conn_key}")
    data_task = asyncio.ensure_future(data_ws)
    await asyncio.sleep(0.1)
    await ctrl.write_message(json.dumps({"key": conn_key, "cookie": cookie}).encode(), binary=True)
    data = await data_task
    payload = bytes(range(256)) * 256
    await data.write_message(payload, binary=True)
    got = b""
    while len(got) < len(payload):
        msg = await asyncio.wait_for(data.read_message(), 10)
        assert isinstance(msg, bytes), msg
        got += msg
    assert got == payload
    data.close()
    ctrl.close()
