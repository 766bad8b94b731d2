"""The log-follow WebSocket: each line once and in order, from the store then live, across
attempts, one line per message or in batches (`batch=true`, what this package's clients ask for)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

from osmo_core.client import ApiError, follow_log, log_lines_of
from tests.conftest import EXAMPLES
from tests.jupyter.test_handlers import wait_for

CHATTY = (
    "workflow:\n  name: chatty\n  tasks:\n  - name: talk\n"
    "    command: [sh, -c, 'for i in $(seq 1 300); do echo line $i; done']\n"
)


async def follow(jp_ws_fetch: Any, wf_id: str, task: str, **params: str) -> list[dict[str, Any]]:
    """Every message until the server closes the socket."""
    ws = await jp_ws_fetch(
        "osmo", "api", "v1", "workflows", wf_id, "tasks", task, "logs", "follow", params=params
    )
    msgs = []
    while (msg := await ws.read_message()) is not None:
        msgs.append(json.loads(msg))
    return msgs


def stdout(msgs: list[dict[str, Any]]) -> list[str]:
    return [ln["text"] for m in msgs for ln in log_lines_of(m) if ln["stream"] == "stdout"]


@pytest.mark.parametrize("batch", ["false", "true"])
async def test_a_slow_client_loses_no_line(api, jp_ws_fetch, service, batch):
    service.config.subscriber_queue_size = 4  # the live queue overflows: lines re-read
    wf_id = (await api("POST", "workflows", body={"spec": CHATTY}, status=201))["id"]
    msgs = await follow(jp_ws_fetch, wf_id, "talk", batch=batch)
    assert stdout(msgs) == [f"line {i}" for i in range(1, 301)]
    assert msgs[-1]["type"] == "end"
    assert {m["type"] for m in msgs[:-1]} == ({"lines"} if batch == "true" else {"log"})


async def test_a_stored_log_comes_a_page_to_a_message(api, jp_ws_fetch, service):
    service.config.log_page_size = 50
    wf_id = (await api("POST", "workflows", body={"spec": CHATTY}, status=201))["id"]
    await wait_for(api, wf_id, {"COMPLETED"})
    msgs = await follow(jp_ws_fetch, wf_id, "talk", batch="true", start="10")
    pages = [m["lines"] for m in msgs if m["type"] == "lines"]
    assert stdout(msgs) == [f"line {i}" for i in range(11, 301)]  # `start` lines skipped
    numbers = [ln["n"] for page in pages for ln in page]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), "each line once"
    assert all(len(page) <= 50 for page in pages)
    assert len(pages) == -(-len(numbers) // 50), "full pages, not a line per message"
    assert msgs[-1]["type"] == "end" and msgs[-1]["status"] == "COMPLETED"


async def test_batches_keep_their_place_around_a_reschedule(api, jp_ws_fetch):
    retry = (EXAMPLES / "retry.yaml").read_text()
    wf_id = (await api("POST", "workflows", body={"spec": retry}, status=201))["id"]
    msgs = await follow(jp_ws_fetch, wf_id, "flaky", batch="true")
    assert stdout(msgs) == ["attempt 0", "attempt 1"]
    kinds = [m["type"] for m in msgs]
    said = [ln["text"] for m in msgs for ln in log_lines_of(m)]
    at = kinds.index("attempt")
    assert "attempt 0" in stdout(msgs[:at]) and "attempt 1" in stdout(msgs[at:]), said
    assert msgs[-1] == {"type": "end", "status": "COMPLETED", "retry_id": 1}


@pytest.mark.parametrize("param", [{"batch": "sometimes"}, {"batches": "true"}])
async def test_a_bad_or_unknown_parameter_is_refused_naming_it(jp_ws_fetch, osmo, param):
    # what a server from before `batch` answers a client that asks for batches
    with pytest.raises(HTTPClientError) as e:
        await follow(jp_ws_fetch, "nope", "t", **param)
    assert e.value.code == 400
    assert next(iter(param)) in json.loads(e.value.response.body)["message"]


async def test_clients_ask_an_older_server_again_without_batches():
    # A server from before `batch` refuses it at the handshake as an unknown parameter (400,
    # naming it: the test above); no such server runs here, so this is a generator that
    # answers like one.
    asked: list[dict[str, Any]] = []

    async def old_server(params: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        asked.append(params)
        if "batch" in params:
            raise ApiError(400, "batch: Extra inputs are not permitted", "invalid")
        yield {"type": "log", "n": 1, "ts": 0, "stream": "stdout", "text": "hi"}
        yield {"type": "end", "status": "COMPLETED", "retry_id": 0}

    got = [m async for m in follow_log(old_server, {"start": 0})]
    assert asked == [{"start": 0, "batch": "true"}, {"start": 0}]
    assert [ln["text"] for m in got for ln in log_lines_of(m)] == ["hi"]
    assert got[-1]["type"] == "end"
