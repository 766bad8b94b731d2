"""The REST API against a real Jupyter server with the osmo extension (no mocks)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import pytest
from tornado.websocket import WebSocketHandler

from osmo_jupyter.server.proxy import ProxyHandler
from osmo_jupyter.server.routes import handlers
from tests.conftest import EXAMPLES

SERIAL = (EXAMPLES / "serial.yaml").read_text()
SLEEP = """workflow:
  name: sleeper
  tasks:
  - name: nap
    command: [sleep, "30"]
"""
BAD = """workflow:
  name: bad
  tasks:
  - name: a
    command: [echo]
    resources_typo: 1
"""
TOO_BIG = """workflow:
  name: big
  resources:
    default:
      memory: 1Ei
  tasks:
  - name: a
    command: [echo]
"""
TERMINAL = {"COMPLETED", "FAILED", "FAILED_CANCELED", "FAILED_SUBMISSION", "FAILED_SERVER_ERROR"}
NO_TOKEN = {"Authorization": ""}


async def wait_for(api, wf_id: str, statuses: set[str], timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        wf = await api("GET", f"workflows/{wf_id}")
        if wf["status"] in statuses:
            return wf
        assert time.monotonic() < deadline, f"{wf_id} still {wf['status']}"
        await asyncio.sleep(0.05)


async def test_health_needs_no_token_and_everything_else_does(api):
    assert await api("GET", "health", headers=NO_TOKEN) == {"status": "ok"}
    paths = ("version", "me", "pools", "resources", "tokens", "workflows", "workflows/x")
    paths += ("workflows/x/spec", "workflows/x/tasks/t", "workflows/x/tasks/t/logs")
    for path in paths:
        for headers in (NO_TOKEN, {"Authorization": "token wrong"}):
            err = await api("GET", path, headers=headers, status=401)
            assert err["reason"] == "unauthorized" and "authentication required" in err["message"]
    for path in ("workflows", "workflows/x/cancel", "workflows/x/restart", "tokens"):
        # jupyter_server's rule: a POST with neither a token nor an XSRF cookie is refused first
        err = await api("POST", path, body={"spec": SERIAL}, headers=NO_TOKEN, status=403)
        assert "_xsrf" in err["message"]
    assert await api("GET", "workflows") == []  # nothing was submitted


async def test_version_and_pools(api):
    version = await api("GET", "version")
    assert version["api"] == "v1" and version["version"]
    pools = await api("GET", "pools")
    assert [(p["name"], p["backend"]) for p in pools] == [("local", "local")]
    assert pools[0]["nodes"], "the local agent reports its machine"


async def test_submit_runs_to_completion_with_logs_spec_and_list(api, jp_fetch):
    created = await api("POST", "workflows", body={"spec": SERIAL}, status=201)
    wf_id = created["id"]
    wf = await wait_for(api, wf_id, TERMINAL)
    assert wf["status"] == "COMPLETED"
    assert [(t["name"], t["status"]) for t in wf["tasks"]] == [
        ("task1", "COMPLETED"),
        ("task2", "COMPLETED"),
        ("task3", "COMPLETED"),
    ]
    me = json.loads((await jp_fetch("api", "me")).body)["identity"]["username"]
    assert wf["user"] == me == "alice"  # the submitter is the Jupyter identity

    lines = await api("GET", f"workflows/{wf_id}/tasks/task3/logs")
    assert {"n", "ts", "stream", "text"} <= set(lines[0])
    texts = [ln["text"] for ln in lines if ln["stream"] == "stdout"]
    assert "hello from task1" in texts and "hello from task2" in texts
    page = await api("GET", f"workflows/{wf_id}/tasks/task3/logs", params={"start": 1, "limit": 1})
    assert page == lines[1:2]
    retry0 = await api("GET", f"workflows/{wf_id}/tasks/task3/logs", params={"retry_id": 0})
    assert retry0 == lines

    spec = await api("GET", f"workflows/{wf_id}/spec")
    assert spec["original"] == SERIAL
    assert "task3" in spec["rendered"]
    assert json.loads(spec["spec"])["name"] == "serial"

    listed = await api("GET", "workflows", params={"status": "COMPLETED", "user": me})
    assert [w["id"] for w in listed] == [wf_id]
    assert await api("GET", "workflows", params={"status": "RUNNING,FAILED"}) == []
    # a user lists their own workflows only
    err = await api("GET", "workflows", params={"user": "someone-else"}, status=403)
    assert err["message"] == "'alice' may only list their own workflows"
    assert await api("GET", "workflows", params={"limit": 1, "offset": 1}) == []


async def test_submit_a_dict_spec_with_priority(api):
    spec = {"workflow": {"name": "from-dict", "tasks": [{"name": "t", "command": ["true"]}]}}
    wf_id = (await api("POST", "workflows", body={"spec": spec, "priority": "HIGH"}, status=201))[
        "id"
    ]
    wf = await wait_for(api, wf_id, TERMINAL)
    assert (wf["name"], wf["status"], wf["priority"]) == ("from-dict", "COMPLETED", "HIGH")
    (row,) = [w for w in await api("GET", "workflows") if w["id"] == wf_id]
    assert row["priority"] == "HIGH"  # OSMO's names, not the stored 2


async def test_labels_are_stored_shown_and_filter_the_list(api):
    """OSMO's `labels`: the spec's, with the submit's `labels` over them; `label=KEY=SELECTOR`
    filters the list (all to match; `*` and `(a|b)`); `env` reaches every task."""
    spec = {
        "workflow": {
            "name": "labelled",
            "labels": {"team": "robotics", "stage": "dev"},
            "tasks": [{"name": "t", "command": ["sh", "-c", "echo $GREETING"]}],
        }
    }
    body = {"spec": spec, "labels": {"stage": "prod"}, "env": {"GREETING": "hi"}}
    wf_id = (await api("POST", "workflows", body=body, status=201))["id"]
    plain = (await api("POST", "workflows", body={"spec": SERIAL}, status=201))["id"]
    wf = await wait_for(api, wf_id, TERMINAL)
    assert wf["labels"] == {"team": "robotics", "stage": "prod"}
    logs = await api("GET", f"workflows/{wf_id}/tasks/t/logs")
    assert [ln["text"] for ln in logs if ln["stream"] == "stdout"] == ["hi"]

    async def listed(*selectors: str) -> list[str]:
        rows = await api("GET", "workflows", params={"label": ",".join(selectors)})
        return [r["id"] for r in rows]

    assert await listed("team=robotics") == [wf_id]
    assert await listed("team=rob*", "stage=(dev|prod)") == [wf_id]
    assert await listed("team=robotics", "stage=dev") == []
    assert await listed("team=robo_ics") == []  # `_` is itself, not SQL's any character
    row = next(r for r in await api("GET", "workflows") if r["id"] == plain)
    assert row["labels"] == {}
    assert await listed("team=(a|b c)") == []  # no label can match (the CLI refuses it)
    err = await api("GET", "workflows", params={"label": "team"}, status=400)
    assert err["details"][0]["field"].startswith("label")
    bad = {"spec": SERIAL, "labels": {"bad key": "x"}, "env": {"A=B": "x"}}
    err = await api("POST", "workflows", body=bad, status=422)
    assert [d["field"] for d in err["details"]] == ["--set-env.A=B", "--label.bad key"]
    assert "set_env" not in wf and "set_env" not in row  # kept for a restart, not shown

    # a restart carries the submission's labels and environment (OSMO's restart resubmits them)
    again = (await api("POST", f"workflows/{wf_id}/restart", body={"all": True}, status=201))["id"]
    wf = await wait_for(api, again, TERMINAL)
    assert (wf["status"], wf["labels"]) == ("COMPLETED", {"team": "robotics", "stage": "prod"})
    logs = await api("GET", f"workflows/{again}/tasks/t/logs")
    assert [ln["text"] for ln in logs if ln["stream"] == "stdout"] == ["hi"]
    assert await listed("stage=prod") == [again, wf_id]


async def test_set_values_template_yaml_text(api):
    text = """workflow:
  name: templated
  tasks:
  - name: t
    command: [sh, -c, "echo {{greeting}}"]
default-values:
  greeting: hi
"""
    body = {"spec": text, "set_values": {"greeting": "bonjour"}}
    wf_id = (await api("POST", "workflows", body=body, status=201))["id"]
    wf = await wait_for(api, wf_id, TERMINAL)
    assert wf["status"] == "COMPLETED", wf
    assert wf["set_values"] == {"greeting": "bonjour"}
    lines = await api("GET", f"workflows/{wf_id}/tasks/t/logs")
    assert "bonjour" in [ln["text"] for ln in lines]
    err = await api(
        "POST", "workflows", body={"spec": {"workflow": {}}, "set_values": {"a": 1}}, status=422
    )
    assert err["details"][0]["field"] == "--set"


async def test_dry_run_and_validation_only_store_nothing(api):
    dry = await api("POST", "workflows", body={"spec": SERIAL, "dry_run": True})
    assert dry["pool"] == "local" and "task3" in dry["rendered"]
    valid = await api("POST", "workflows", body={"spec": SERIAL, "validation_only": True})
    assert valid == {"valid": True, "pool": "local"}
    err = await api("POST", "workflows", body={"spec": BAD, "dry_run": True}, status=422)
    assert err["reason"] == "invalid spec"
    assert await api("GET", "workflows") == []


async def test_invalid_spec_is_422_with_line_and_field(api):
    err = await api("POST", "workflows", body={"spec": BAD}, status=422)
    assert err["reason"] == "invalid spec"
    assert "resources_typo" in err["message"]
    (problem,) = err["details"]
    assert problem["field"] == "workflow.tasks[0].resources_typo"
    assert problem["line"] == 6 and problem["column"] == 5
    assert problem["hint"]
    assert await api("GET", "workflows") == []


async def test_unplaceable_spec_is_422_placement(api):
    err = await api("POST", "workflows", body={"spec": TOO_BIG}, status=422)
    assert err["reason"] == "placement"
    (problem,) = err["details"]
    assert problem["field"] == "workflow.resources.default" and problem["line"] == 4
    err = await api("POST", "workflows", body={"spec": SERIAL, "pool": "nope"}, status=422)
    assert err["reason"] == "placement" and "nope" in err["message"]
    assert await api("GET", "workflows") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("{not json", None),
        ("[1, 2]", None),
        ("", None),
        ({"spec": SERIAL, "priority": "URGENT"}, "priority"),
        ({"spec": SERIAL, "colour": "red"}, "colour"),
        ({"set_values": {}}, "spec"),
        ({"spec": SERIAL, "dry_run": "perhaps"}, "dry_run"),
    ],
)
async def test_bad_request_bodies_are_400(api, body, field):
    err = await api("POST", "workflows", body=body, status=400)
    assert err["reason"] == "bad request" and err["message"]
    if field is not None:
        assert field in [d["field"] for d in err["details"]]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("workflows", {"status": "SLEEPY"}, "status.0"),
        ("workflows", {"limit": "many"}, "limit"),
        ("workflows", {"limit": "0"}, "limit"),
        ("workflows", {"offset": "-1"}, "offset"),
        ("workflows", {"colour": "red"}, "colour"),
        ("workflows/x/tasks/t/logs", {"start": "first"}, "start"),
        ("workflows/x/tasks/t/logs", {"retry_id": "-2"}, "retry_id"),
    ],
)
async def test_bad_query_values_are_400(api, path, params, field):
    err = await api("GET", path, params=params, status=400)
    assert err["reason"] == "bad request"
    assert field in [d["field"] for d in err["details"]]


async def test_jupyterlab_cache_buster_query_is_ignored(api):
    # JupyterLab's request helper appends a bare `?<timestamp>` to GETs
    assert isinstance(await api("GET", "workflows", params={"1764210000000": ""}), list)
    err = await api("GET", "workflows", params={"12ab": ""}, status=400)
    assert "12ab" in [d["field"] for d in err["details"]]


async def test_unknown_ids_are_404(api):
    for method, path in [
        ("GET", "workflows/nope"),
        ("GET", "workflows/nope/spec"),
        ("POST", "workflows/nope/cancel"),
        ("GET", "workflows/nope/tasks/t/logs"),
    ]:
        err = await api(method, path, status=404)
        assert err["reason"] == "not found" and "nope" in err["message"]


async def test_cancel_a_running_workflow_then_again_is_409(api):
    wf_id = (await api("POST", "workflows", body={"spec": SLEEP}, status=201))["id"]
    await wait_for(api, wf_id, {"RUNNING"})
    canceled = await api("POST", f"workflows/{wf_id}/cancel")
    assert canceled["id"] == wf_id
    wf = await wait_for(api, wf_id, TERMINAL)
    assert wf["status"] == "FAILED_CANCELED"
    assert [t["status"] for t in wf["tasks"]] == ["FAILED_CANCELED"]
    err = await api("POST", f"workflows/{wf_id}/cancel", status=409)
    assert err["reason"] == "conflict" and "FAILED_CANCELED" in err["message"]
    err = await api("GET", f"workflows/{wf_id}/tasks/other/logs", status=404)
    assert "other" in err["message"]


async def test_unknown_route_under_the_api_is_json_404(jp_fetch, osmo):
    from tornado.httpclient import HTTPClientError

    with pytest.raises(HTTPClientError) as e:
        await jp_fetch("osmo", "api", "v1", "workflows", "x", "y", "z")
    assert e.value.code == 404


async def test_openapi_document_lists_the_routes(api):
    doc = await api("GET", "openapi.json")
    assert doc["openapi"].startswith("3.")
    # the core REST routes are served (test_openapi checks every route list against the doc)
    rest = {
        re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", path).removeprefix("/osmo/api/v1")
        for path, handler in handlers()
        if path.startswith("/osmo/api/v1/")
        and not issubclass(handler, (WebSocketHandler, ProxyHandler))
    }
    assert "/workflows/{wf_id}/restart" in rest and "/tokens/{token_id}" in rest
    assert rest <= set(doc["paths"])
    body = doc["components"]["schemas"]["SubmitRequest"]
    assert body["required"] == ["spec"] and "dry_run" in body["properties"]
    params = [p["name"] for p in doc["paths"]["/workflows"]["get"]["parameters"]]
    assert params == ["status", "user", "pool", "name", "label", "limit", "offset"]
    refs = json.dumps(doc)
    for name in set(re.findall(r"#/components/schemas/(\w+)", refs)):
        assert name in doc["components"]["schemas"], name


async def test_task_restart_and_resources(api, jp_ws_fetch):
    retry = (EXAMPLES / "retry.yaml").read_text()
    wf_id = (await api("POST", "workflows", body={"spec": retry}, status=201))["id"]
    follow = await jp_ws_fetch(
        "osmo", "api", "v1", "workflows", wf_id, "tasks", "flaky", "logs", "follow"
    )
    msgs = []
    while (msg := await follow.read_message()) is not None:
        msgs.append(json.loads(msg))
    # the follow goes on through the reschedule, and ends with the task
    stdout = [m["text"] for m in msgs if m["type"] == "log" and m["stream"] == "stdout"]
    assert stdout == ["attempt 0", "attempt 1"]
    assert {"type": "attempt", "retry_id": 1} in msgs
    assert msgs[-1] == {"type": "end", "status": "COMPLETED", "retry_id": 1}

    await wait_for(api, wf_id, {"COMPLETED"})
    task = await api("GET", f"workflows/{wf_id}/tasks/flaky")
    assert task["status"] == "COMPLETED" and task["retry_id"] == 1
    assert [a["exit_code"] for a in task["attempts"]] == [3, 0]
    await api("GET", f"workflows/{wf_id}/tasks/nope", status=404)

    again = await api("POST", f"workflows/{wf_id}/restart", status=201)
    assert again["restarted"] == wf_id and again["id"] != wf_id
    new = await wait_for(api, again["id"], {"COMPLETED"})
    assert new["name"] == "retry" and new["pool"] == "local"
    spec = await api("GET", f"workflows/{again['id']}/spec")
    assert spec["original"] == retry

    sleeper = (await api("POST", "workflows", body={"spec": SLEEP}, status=201))["id"]
    err = await api("POST", f"workflows/{sleeper}/restart", status=409)
    assert "cancel it first" in err["message"]
    await api("POST", f"workflows/{sleeper}/cancel")

    (node,) = await api("GET", "resources")
    assert node["pools"] == ["local"] and node["cpu"] > 0 and 0 <= node["free_cpu"] <= node["cpu"]
