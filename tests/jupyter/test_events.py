"""The events WebSocket: stored events first, then live ones, resumable by event id."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from tests.conftest import EXAMPLES
from tests.jupyter.test_handlers import wait_for

SERIAL = (EXAMPLES / "serial.yaml").read_text()
TERMINAL = {"COMPLETED", "FAILED", "FAILED_CANCELED"}


async def receive(ws: Any, timeout: float = 15) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.read_message(), timeout)
    assert msg is not None, "the server closed the socket"
    return json.loads(msg)


async def until_done(ws: Any, wf_id: str) -> list[dict[str, Any]]:
    """Messages up to the workflow's terminal status, then whatever follows within 0.3 s."""
    out = []
    while True:
        ev = await receive(ws)
        out.append(ev)
        if ev["type"] == "workflow.status" and ev["status"] in TERMINAL:
            assert ev["workflow_id"] == wf_id
            break
    while True:
        try:
            out.append(await receive(ws, 0.3))
        except asyncio.TimeoutError:
            return out


def events_ws(jp_ws_fetch: Any, **params: Any) -> Any:
    return jp_ws_fetch("osmo", "api", "v1", "events", params=params)


async def test_live_events_and_log_lines(api, jp_ws_fetch, service):
    ws = await events_ws(jp_ws_fetch)
    wf_id = (await api("POST", "workflows", body={"spec": SERIAL}, status=201))["id"]
    got = await until_done(ws, wf_id)
    ws.close()
    stored = [e["id"] for e in service.store.events_since(0, wf_id)]
    assert [e["id"] for e in got if e["id"] is not None] == stored
    assert got[0]["type"] == "workflow.submitted"
    done = {(e["task"], e["status"]) for e in got if e["type"] == "task.status"}
    assert {("task1", "COMPLETED"), ("task2", "COMPLETED"), ("task3", "COMPLETED")} <= done
    logs = [e for e in got if e["type"] == "task.log"]
    assert "hello from task1" in [e["payload"]["text"] for e in logs if e["task"] == "task3"]


async def test_replay_then_live_then_resume_after_an_id(api, jp_ws_fetch, service):
    wf_id = (await api("POST", "workflows", body={"spec": SERIAL}, status=201))["id"]
    # connected after the submission: the first events come from the store, the rest live
    ws = await events_ws(jp_ws_fetch, workflow_id=wf_id, logs="false")
    got = await until_done(ws, wf_id)
    ws.close()
    ids = [e["id"] for e in got]
    stored = [e["id"] for e in service.store.events_since(0, wf_id)]
    assert ids == stored, "nothing skipped, nothing twice"
    assert all(e["type"] != "task.log" and e["workflow_id"] == wf_id for e in got)

    mid = ids[len(ids) // 2]
    ws = await events_ws(jp_ws_fetch, workflow_id=wf_id, after=mid)
    again = [await receive(ws) for _ in ids[ids.index(mid) + 1 :]]
    assert again == got[ids.index(mid) + 1 :]
    with pytest.raises(asyncio.TimeoutError):
        await receive(ws, 0.3)  # and nothing more
    ws.close()


async def test_a_workflow_answer_names_the_event_to_follow_it_after(
    api, jp_ws_fetch, service, tmp_path
):
    go = tmp_path / "go"  # the workflow waits for it: the answer comes mid-run
    spec = (
        "workflow:\n  name: gated\n  tasks:\n  - name: wait\n    command: [sh, -c, "
        f"'for i in $(seq 300); do [ -e {go} ] && exit 0; sleep 0.1; done; exit 1']\n"
    )
    wf_id = (await api("POST", "workflows", body={"spec": spec}, status=201))["id"]
    snapshot = await api("GET", f"workflows/{wf_id}")
    after = snapshot["last_event_id"]
    go.touch()
    stored = lambda: [e["id"] for e in service.store.events_since(0, wf_id)]  # noqa: E731
    assert stored()[0] <= after <= service.store.max_event_id()  # its submission is in it
    ws = await events_ws(jp_ws_fetch, workflow_id=wf_id, logs="false", after=after)
    rest = [e["id"] for e in await until_done(ws, wf_id)]
    ws.close()
    # the answer, then the stream from its id: every event once, none replayed
    assert [i for i in stored() if i <= after] + rest == stored()
    done = await api("GET", f"workflows/{wf_id}")
    assert done["status"] == "COMPLETED" and done["last_event_id"] >= stored()[-1]


async def test_a_list_then_events_after_the_last_one_replays_nothing(api, jp_ws_fetch, service):
    old = (await api("POST", "workflows", body={"spec": SERIAL}, status=201))["id"]
    await wait_for(api, old, TERMINAL)
    last = (await api("GET", "events/last"))["last_event_id"]
    assert last == service.store.max_event_id() > 0
    ws = await events_ws(jp_ws_fetch, logs="false", after=last)
    new = (await api("POST", "workflows", body={"spec": SERIAL}, status=201))["id"]
    got = await until_done(ws, new)
    ws.close()
    assert got and all(e["workflow_id"] == new and e["id"] > last for e in got)


async def test_events_socket_needs_a_token(jp_ws_fetch, osmo):
    for headers in ({"Authorization": ""}, {"Authorization": "token wrong"}):
        with pytest.raises(HTTPClientError) as e:
            await jp_ws_fetch("osmo", "api", "v1", "events", headers=headers)
        assert e.value.code == 401


async def test_events_socket_rejects_bad_query(jp_ws_fetch, osmo):
    with pytest.raises(HTTPClientError) as e:
        await events_ws(jp_ws_fetch, after="yesterday")
    assert e.value.code == 400


def _wide(n: int) -> str:
    tasks = "".join(f"  - name: t{i}\n    command: [echo, '{i}']\n" for i in range(n))
    return f"workflow:\n  name: wide\n  tasks:\n{tasks}"


async def test_a_client_that_falls_behind_is_resynced_without_gaps(api, jp_ws_fetch, service):
    service.config.subscriber_queue_size = 4  # one engine round announces far more than 4
    ws = await events_ws(jp_ws_fetch, logs="false")
    wf_id = (await api("POST", "workflows", body={"spec": _wide(30)}, status=201))["id"]
    got = await until_done(ws, wf_id)
    ws.close()
    assert any(e.get("type") == "resync" for e in got), "the queue did overflow"
    ids = [e["id"] for e in got if e.get("type") != "resync"]
    assert ids == [e["id"] for e in service.store.events_since(0, wf_id)], "no gap, no repeat"
