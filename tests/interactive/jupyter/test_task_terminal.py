"""A terminal inside a running task through the Jupyter server, as JupyterLab's Terminal widget
uses it: jupyter_server's terminals API and terminado's WebSocket protocol under the task's own
base URL; and the audit events every interactive action leaves in the workflow's event stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from tests.interactive.conftest import until
from tests.interactive.jupyter.conftest import start_task
from tests.interactive.jupyter.test_interactive_routes import exec_ws

BASE = ("osmo", "api", "v1", "workflows")


async def term_ws(jp_ws_fetch: Any, wf: str, name: str, headers: dict[str, str]) -> Any:
    ws = await jp_ws_fetch(
        *BASE, wf, "tasks", "main", "terminals", "websocket", name, headers=headers
    )
    assert json.loads(await asyncio.wait_for(ws.read_message(), 10)) == ["setup", {}]
    return ws


class Screen:
    """What a terminado client has been sent so far."""

    def __init__(self, ws: Any):
        self.ws = ws
        self.text = ""

    async def expect(self, text: str) -> None:
        while text not in self.text:
            msg = await asyncio.wait_for(self.ws.read_message(), 10)
            assert msg is not None, f"closed before {text!r}; got {self.text[-500:]!r}"
            kind, *rest = json.loads(msg)
            assert kind == "stdout", msg
            self.text += rest[0]

    async def type(self, keys: str) -> None:
        await self.ws.write_message(json.dumps(["stdin", keys]))


async def test_a_terminal_in_a_task_like_jupyterlab_uses_it(
    api, service, pat, jp_fetch, jp_ws_fetch
):
    alice = await pat("alice")
    wf = await start_task(api, service, alice)
    terms = f"workflows/{wf}/tasks/main/api/terminals"
    model = await api("POST", terms, headers=alice)  # JupyterLab may post no body at all
    name = model["name"]
    assert model["task"] == "main" and model["user"] == "alice"
    assert [t["name"] for t in await api("GET", terms, headers=alice)] == [name]

    ws = await term_ws(jp_ws_fetch, wf, name, alice)
    screen = Screen(ws)
    await ws.write_message(json.dumps(["set_size", 20, 90, 400, 900]))
    await screen.type("stty size; cat marker; echo $TASK_SECRET\r")
    await screen.expect("20 90")
    await screen.expect("inside-the-task")
    await ws.write_message(json.dumps(["set_size", 50, 120, 800, 1200]))
    await screen.type("stty size\r")
    await screen.expect("50 120")
    await screen.type("sleep 30; echo slept\r")
    await asyncio.sleep(0.3)
    await screen.type("\x03")  # Ctrl-C stops the sleep, not the shell
    await screen.type("echo alive-$((6*7))\r")
    await screen.expect("alive-42")
    assert "\nslept" not in screen.text

    ws.close()  # a reloaded tab: the shell lives on, and the new viewer sees the recent output
    again = Screen(await term_ws(jp_ws_fetch, wf, name, alice))
    await again.expect("alive-42")
    await again.type("echo still-$((1+1))\r")
    await again.expect("still-2")

    path = (*BASE, wf, "tasks", "main", "api", "terminals", name)
    assert (await jp_fetch(*path, method="DELETE", headers=alice)).code == 204
    while (msg := await asyncio.wait_for(again.ws.read_message(), 10)) is not None:
        if json.loads(msg)[0] == "disconnect":
            break
    else:
        pytest.fail("no disconnect message")
    assert await api("GET", terms, headers=alice) == []
    await api("GET", f"{terms}/{name}", headers=alice, status=404)


async def test_terminals_are_refused_like_every_workflow_route(api, service, pat, jp_ws_fetch):
    alice, bob = await pat("alice"), await pat("bob")
    wf = await start_task(api, service, alice)
    terms = f"workflows/{wf}/tasks/main/api/terminals"
    name = (await api("POST", terms, body={"name": "dev"}, headers=alice))["name"]
    assert name == "dev"
    await api("POST", terms, body={"name": "dev"}, headers=alice, status=409)
    await api("POST", terms, body={"name": "no/slash"}, headers=alice, status=400)
    await api("GET", terms, headers=bob, status=403)
    await api("POST", terms, headers=bob, status=403)
    for who, term, code in ((bob, "dev", 403), (alice, "nope", 404)):
        with pytest.raises(HTTPClientError) as e:
            await term_ws(jp_ws_fetch, wf, term, who)
        assert e.value.code == code
    await api("POST", f"workflows/{wf}/cancel", headers=alice)
    await until(lambda: service.get(wf)["status"] != "RUNNING", what="the cancel")
    await api("POST", terms, headers=alice, status=409)


async def test_interactive_actions_are_audited_in_the_event_stream(api, service, pat, jp_ws_fetch):
    alice = await pat("alice")
    wf = await start_task(api, service, alice)
    await api("POST", f"workflows/{wf}/tasks/main/api/terminals", headers=alice)
    ws = await exec_ws(jp_ws_fetch, wf, alice, "true")
    while await asyncio.wait_for(ws.read_message(), 10) is not None:
        pass
    events = await jp_ws_fetch(
        "osmo", "api", "v1", "events", params={"workflow_id": wf}, headers=alice
    )
    seen: list[dict[str, Any]] = []
    while len(seen) < 2:
        ev = json.loads(await asyncio.wait_for(events.read_message(), 10))
        if ev["type"] == "task.access":
            seen.append(ev)
    events.close()
    assert [(e["task"], e["payload"]["user"], e["payload"]["action"]) for e in seen] == [
        ("main", "alice", "terminal"),
        ("main", "alice", "exec"),
    ]
    assert seen[1]["payload"]["argv"] == ["true"] and seen[0]["id"] < seen[1]["id"]


async def test_a_terminal_whose_task_ended_says_so_and_stops(api, service, pat, jp_ws_fetch):
    alice = await pat("alice")
    wf = await start_task(api, service, alice)
    terms = f"workflows/{wf}/tasks/main/api/terminals"
    name = (await api("POST", terms, headers=alice))["name"]
    screen = Screen(await term_ws(jp_ws_fetch, wf, name, alice))
    await screen.type("echo before-$((6*7))\r")
    await screen.expect("before-42")

    await api("POST", f"workflows/{wf}/cancel", headers=alice)
    await screen.expect(f"task {wf}/main ended (FAILED_CANCELED")
    await screen.expect("; this terminal is closed")
    while (msg := await asyncio.wait_for(screen.ws.read_message(), 10)) is not None:
        if json.loads(msg)[0] == "disconnect":
            break
    else:
        pytest.fail("no disconnect message")
    assert await api("GET", terms, headers=alice) == []
