"""Run code in a kernel that the test server starts (REST + the kernel channels WebSocket), as
a notebook opened in JupyterLab would."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect


async def run_in_server_kernel(url: str, token: str, code: str, timeout: float = 60) -> str:
    """stdout of `code` run in a fresh kernel of the server at `url`; raises on an error."""
    headers = {"Authorization": f"token {token}"}
    http = AsyncHTTPClient()
    resp = await http.fetch(f"{url}/api/kernels", method="POST", body="{}", headers=headers)
    kernel_id = json.loads(resp.body)["id"]
    ws_url = "ws" + url[4:] + f"/api/kernels/{kernel_id}/channels"
    conn = await websocket_connect(HTTPRequest(ws_url, headers=headers))
    try:
        msg_id = uuid.uuid4().hex
        conn.write_message(json.dumps(_execute_request(msg_id, code)))
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            raw = await asyncio.wait_for(conn.read_message(), max(remaining, 0.01))
            assert raw is not None, "the kernel channel closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                raise AssertionError("\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(out)
    finally:
        conn.close()
        await http.fetch(f"{url}/api/kernels/{kernel_id}", method="DELETE", headers=headers)


def _execute_request(msg_id: str, code: str) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": "test",
            "session": uuid.uuid4().hex,
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "channel": "shell",
        "content": {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
        "buffers": [],
    }
