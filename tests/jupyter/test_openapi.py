"""The OpenAPI document is complete and true: every route is in it, and schemathesis, run
against a live `jupyter osmo` subprocess, finds no 5xx and no answer the document does not
describe."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from tornado import websocket

from osmo_core.events import Event
from osmo_jupyter.schemas import EventModel
from osmo_jupyter.server.base import API_PREFIX, handler_methods
from osmo_jupyter.server.proxy import ProxyHandler
from osmo_jupyter.server.routes import handlers, openapi
from tests.conftest import free_port
from tests.jupyter.test_headless import TOKEN, call, jupyter_osmo

HELLO = "workflow:\n  name: hl\n  tasks:\n  - name: t\n    command: [echo, hello]\n"
# A fixed seed keeps the run reproducible in CI; OSMO_SCHEMATHESIS_SEED explores others.
SEED = os.environ.get("OSMO_SCHEMATHESIS_SEED", "1")
MAX_EXAMPLES = os.environ.get("OSMO_SCHEMATHESIS_EXAMPLES", "25")

# Exceptions, for reasons the document cannot express. A workflow spec is checked beyond its
# JSON shape (YAML, DAG, placement), so a schema-valid body can be a 422 on submit.
CONFIG = """\
[parameters]
"path.wf_id" = "{wf_id}"
"path.task" = "t"

[[operations]]
include-operation-id = "submitWorkflow"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "401", "403", "404", "409", "422", "429", "5xx",
]

# a schema-valid `from_task` may name no task of the workflow: 422, naming the field
[[operations]]
include-operation-id = "restartWorkflow"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "401", "403", "404", "409", "422", "429", "5xx",
]

# a credential's fields depend on its type (which are required, a DATA endpoint's scheme) and
# its name in the path on OSMO's rule: 422, naming each field
[[operations]]
include-operation-id = "createCredential"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "401", "403", "404", "409", "422", "429", "5xx",
]

[[operations]]
include-operation-id = "putCredential"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "401", "403", "404", "409", "422", "429", "5xx",
]
"""


@contextmanager
def server(env: dict[str, str], log: Path) -> Iterator[str]:
    """A `jupyter osmo` subprocess on 127.0.0.1, its output in `log` (a pipe nobody reads
    would fill and stall it); yields the API's base URL."""
    port = free_port()
    out = log.open("w")
    proc = subprocess.Popen(
        [*jupyter_osmo(), f"--port={port}"],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/osmo/api/v1"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if call(f"{base}/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(20)
        out.close()


@pytest.mark.timeout(240)  # 34 operations, three phases, on a shared 2-core CI machine
def test_schemathesis_finds_nothing(osmo_env: dict[str, str], tmp_path: Path) -> None:
    with server(osmo_env, tmp_path / "server.log") as base:
        status, body = call(f"{base}/workflows", {"spec": HELLO})
        assert status == 201
        wf_id = body["id"]
        deadline = time.monotonic() + 20
        while call(f"{base}/workflows/{wf_id}")[1]["status"] != "COMPLETED":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        config = tmp_path / "schemathesis.toml"
        config.write_text(CONFIG.format(wf_id=wf_id))
        report = tmp_path / "report.json"
        # fmt: off
        args = [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
            "run", f"{base}/openapi.json",
            "--header", f"Authorization: token {TOKEN}",
            "--checks", "all",
            "--max-examples", MAX_EXAMPLES, "--seed", SEED,
            "--request-timeout", "10",
            "--report", "json", "--report-json-path", str(report),
        ]
        # fmt: on
        run = subprocess.run(
            args,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
        )
    result = json.loads(report.read_text())
    assert run.returncode == 0 and not result["failures"], run.stdout[-6000:]
    assert "Traceback" not in (tmp_path / "server.log").read_text()
    assert not result["errors"], run.stdout[-6000:]
    ops = result["operations"]
    # every operation but the document's own URL, which schemathesis leaves out
    assert ops["tested"] == ops["total"] == len(_documented() - {("GET", "/openapi.json")})
    assert all(p["status"] == "success" for p in result["phases"].values()), result["phases"]
    assert result["test_cases"]["generated"] > 100


def _documented() -> set[tuple[str, str]]:
    doc = openapi("x")
    return {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}


def test_every_route_and_method_is_documented() -> None:
    routes = set()
    for pattern, handler in handlers():
        if not pattern.startswith(f"/{API_PREFIX}/"):
            continue  # jupyter_server's /metrics, guarded by the extension (operations.md)
        if issubclass(handler, (websocket.WebSocketHandler, ProxyHandler)):
            continue  # OpenAPI 3 cannot describe a WebSocket, nor a task's web app (proxy, links)
        path = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", pattern).removeprefix("/osmo/api/v1")
        routes |= {(m, path) for m in handler_methods(handler) if m != "OPTIONS"}
    assert routes == _documented()


def test_every_operation_documents_its_errors() -> None:
    doc = openapi("x")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            if op.get("security") != []:
                assert {"401", "403"} <= codes, (method, path)
            if "{" in path:
                assert "404" in codes, (method, path)
            if any(p["in"] == "query" for p in op.get("parameters", [])) or "requestBody" in op:
                assert "400" in codes, (method, path)
            for code in codes - {"200", "201", "204"}:
                schema = op["responses"][code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"}


@pytest.mark.parametrize(("method", "body"), [("DELETE", None), ("PUT", b"{}")])
async def test_an_unsupported_method_is_405_with_allow(jp_fetch, osmo, method, body):
    from tornado.httpclient import HTTPClientError

    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("osmo", "api", "v1", "workflows", method=method, body=body)
    assert e.value.code == 405
    assert e.value.response is not None
    assert e.value.response.headers["Allow"] == "GET, POST, OPTIONS"
    assert json.loads(e.value.response.body)["message"]


async def test_an_empty_status_filter_is_a_bad_value(api):
    err = await api("GET", "workflows", params={"status": ""}, status=400)
    assert err["details"][0]["field"] == "status.0"


async def test_a_body_is_read_strictly(api):
    body = {"spec": HELLO, "validation_only": 0}
    err = await api("POST", "workflows", body=body, status=400)
    assert err["details"][0]["field"] == "validation_only"


async def test_listed_workflows_carry_set_values_as_an_object(api):
    await api("POST", "workflows", body={"spec": HELLO, "set_values": {"a": 1}}, status=201)
    (row,) = await api("GET", "workflows")
    assert row["set_values"] == {"a": 1}


def test_event_model_is_what_the_events_websocket_sends() -> None:
    """EventModel (the events stream's type in clients' generated code) has exactly the keys
    of Event.to_dict(), with their types."""
    sent = Event(
        type="task.status", workflow_id="w-1", ts=1.5, id=3, group_name="g", task="t",
        retry_id=0, status="RUNNING", payload={"node": "n"},
    ).to_dict()  # fmt: skip
    assert set(EventModel.model_fields) == set(sent)
    assert EventModel.model_validate(sent, strict=True).model_dump() == sent
    assert "EventModel" in openapi("0")["components"]["schemas"]
