"""Exec and port-forward WebSockets on a real Jupyter server, into tasks run by a real agent
that dialled home over TCP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from tests.conftest import free_port
from tests.interactive.conftest import until
from tests.interactive.jupyter.conftest import start_task

ECHO = (
    "python3 -c 'import socket;s=socket.socket();"
    's.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind((\\"127.0.0.1\\",{port}));'
    's.listen();c,_=s.accept();[c.sendall(b) for b in iter(lambda:c.recv(65536),b\\"\\")];'
    "c.close()'"
)


async def exec_ws(jp_ws_fetch: Any, wf: str, headers: dict[str, str], *cmd: str, **q: Any) -> Any:
    params = [("cmd", c) for c in cmd] + [(k, str(v)) for k, v in q.items()]
    path = ("osmo", "api", "v1", "workflows", wf, "tasks", "main", "exec")
    return await jp_ws_fetch(*path, params=params, headers=headers)


async def drain(ws: Any) -> tuple[bytes, bytes, dict[str, Any]]:
    """stdout, stderr and the exit message of an exec socket."""
    out, err = b"", b""
    while True:
        msg = await asyncio.wait_for(ws.read_message(), 10)
        assert msg is not None, "closed before the exit message"
        if isinstance(msg, bytes):
            if msg[0] == 1:
                out += msg[1:]
            else:
                err += msg[1:]
        else:
            ctl = json.loads(msg)
            if ctl["type"] == "exit":
                return out, err, ctl


async def test_exec_over_websocket_exit_code_stdin_and_streams(api, service, pat, jp_ws_fetch):
    alice = await pat("alice")
    wf = await start_task(api, service, alice)
    ws = await exec_ws(
        jp_ws_fetch, wf, alice, "sh", "-c", "cat marker; tr a-z A-Z; echo e >&2; exit 4"
    )
    await ws.write_message(b"\x00hello\n", binary=True)
    await ws.write_message(json.dumps({"type": "eof"}))
    out, err, ctl = await drain(ws)
    assert (out, err) == (b"ready\nHELLO\n", b"e\n")
    assert ctl == {"type": "exit", "exit_code": 4, "signal": None}


async def test_exec_with_a_pty_resize_and_ctrl_c(api, service, pat, jp_ws_fetch):
    alice = await pat("alice")
    wf = await start_task(api, service, alice)
    ws = await exec_ws(jp_ws_fetch, wf, alice, "sh", pty=1, cols=90, rows=20)
    seen = b""

    async def expect(text: bytes) -> None:
        nonlocal seen
        while text not in seen:
            msg = await asyncio.wait_for(ws.read_message(), 10)
            assert isinstance(msg, bytes) and msg[0] == 1, msg
            seen += msg[1:]

    await ws.write_message(b"\x00stty size\n", binary=True)
    await expect(b"20 90")
    await ws.write_message(json.dumps({"type": "resize", "cols": 120, "rows": 50}))
    await ws.write_message(b"\x00stty size\n", binary=True)
    await expect(b"50 120")
    await ws.write_message(b"\x00sleep 30; echo slept\n", binary=True)
    await asyncio.sleep(0.3)
    await ws.write_message(b"\x00\x03", binary=True)  # Ctrl-C: SIGINT for the sleep only
    await ws.write_message(b"\x00echo alive-$((6*7))\n", binary=True)
    await expect(b"alive-42")
    await ws.write_message(json.dumps({"type": "signal", "signal": "KILL"}))
    _, _, ctl = await drain(ws)
    assert ctl["signal"] == "KILL"
    assert b"\nslept" not in seen


async def test_exec_is_refused_for_another_user_and_a_finished_task(api, service, pat, jp_ws_fetch):
    alice, bob = await pat("alice"), await pat("bob")
    wf = await start_task(api, service, alice)
    with pytest.raises(HTTPClientError) as e:
        await exec_ws(jp_ws_fetch, wf, bob, "true")
    assert e.value.code == 403
    with pytest.raises(HTTPClientError) as e:
        await exec_ws(jp_ws_fetch, wf, {"Authorization": "Bearer wrong"}, "true")
    assert e.value.code == 401
    await api("POST", f"workflows/{wf}/cancel", headers=alice)
    await until(lambda: service.get(wf)["status"] != "RUNNING", what="the cancel")
    with pytest.raises(HTTPClientError) as e:
        await exec_ws(jp_ws_fetch, wf, alice, "true")
    assert e.value.code == 409
    assert b"RUNNING" in e.value.response.body


async def test_port_forward_bytes_both_ways_and_refusals(api, service, pat, jp_ws_fetch):
    alice, bob = await pat("alice"), await pat("bob")
    port, other = free_port(), free_port()
    wf = await start_task(api, service, alice, cmd=ECHO.format(port=port), ports=str(port))

    # the echo server serves one connection: see it listen without connecting
    await until(
        lambda: service.task(wf, "main")["status"] == "RUNNING" and _bound(port),
        what="the echo server",
    )
    path = ("osmo", "api", "v1", "workflows", wf, "tasks", "main", "port-forward")
    for who, p, code in ((bob, port, 403), (alice, other, 403), (alice, 0, 400)):
        with pytest.raises(HTTPClientError) as e:
            await jp_ws_fetch(*path, params={"port": str(p)}, headers=who)
        assert e.value.code == code, (who, p)
    ws = await jp_ws_fetch(*path, params={"port": str(port)}, headers=alice)
    payload = bytes(range(256)) * 1024  # 256 KiB, every byte value
    await ws.write_message(payload, binary=True)
    await ws.write_message(json.dumps({"type": "eof"}))
    got = b""
    while True:
        msg = await asyncio.wait_for(ws.read_message(), 10)
        if msg is None or isinstance(msg, str):
            break
        got += msg
    assert got == payload
    assert msg is not None and json.loads(msg) == {"type": "eof"}


def _bound(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port (read from /proc, without connecting)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        return any(
            line.split()[1] == want and line.split()[3] == "0A" for line in f.readlines()[1:]
        )
