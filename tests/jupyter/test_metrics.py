"""Prometheus metrics: scraped from the real server's `/metrics` after real workflows ran."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import HTTPClientError

from osmo_jupyter.app import OsmoApp
from osmo_jupyter.metrics import LAG_INTERVAL
from tests.conftest import EXAMPLES

SERIAL = (EXAMPLES / "serial.yaml").read_text()
# Two 1-CPU tasks side by side on a 1-CPU backend: one runs, the other waits for capacity.
TWO_SLEEPERS = """\
workflow:
  name: sleepers
  resources:
    default:
      cpu: 1
  tasks:
  - name: a
    command: [sleep, "30"]
  - name: b
    command: [sleep, "30"]
"""


@pytest.fixture
def jp_server_config(
    jp_server_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    jp_server_config["OsmoConfig"]["backends"]["local"]["cpus"] = 1
    monkeypatch.setenv("OSMO_METRICS_INTERVAL", "0.2")  # for the agent the server spawns
    return jp_server_config


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(jp_fetch: Any) -> Samples:
    resp = await jp_fetch("metrics")
    assert resp.headers["Content-Type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(resp.body.decode())
        for s in fam.samples
    }


def by_status(samples: Samples, name: str) -> dict[str, float]:
    return {dict(labels)["status"]: v for (n, labels), v in samples.items() if n == name}


async def wait_for(api: Any, wf_id: str, predicate: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        wf = await api("GET", f"workflows/{wf_id}")
        if predicate(wf):
            return wf
        assert time.monotonic() < deadline, wf
        await asyncio.sleep(0.1)


async def test_metrics_after_a_workflow_ran(api, jp_fetch, osmo):
    wf_id = (await api("POST", "workflows", body={"spec": SERIAL}, status=201))["id"]
    await wait_for(api, wf_id, lambda wf: wf["status"] == "COMPLETED")
    await api("GET", f"workflows/{wf_id}")
    await asyncio.sleep(LAG_INTERVAL * 1.5)  # at least one probe of the loop
    m = await scrape(jp_fetch)

    workflows = by_status(m, "osmo_workflows")
    assert workflows["COMPLETED"] == 1
    assert sum(workflows.values()) == 1
    assert "FAILED_CANCELED" in workflows, "every status is listed, zeros included"
    # task gauges cover unfinished workflows only (a scrape never scans task history)
    tasks = by_status(m, "osmo_tasks")
    assert "RUNNING" in tasks and sum(tasks.values()) == 0
    assert m[("osmo_engine_queue_length", ())] == 0
    assert m[("osmo_engine_inbox_length", ())] == 0
    assert 0 <= m[("osmo_event_loop_lag_seconds", ())] < 5
    # API latency is jupyter_server's own histogram, labelled by our handler class
    submitted = (
        "http_request_duration_seconds_count",
        (
            ("handler", "osmo_jupyter.server.workflows.WorkflowsHandler"),
            ("method", "POST"),
            ("status_code", "201"),
        ),
    )
    assert m[submitted] >= 1


async def test_running_and_queued_tasks(api, jp_fetch, osmo):
    wf_id = (await api("POST", "workflows", body={"spec": TWO_SLEEPERS}, status=201))["id"]
    await wait_for(
        api, wf_id, lambda wf: "RUNNING" in {t["status"] for t in wf["tasks"]}, timeout=30
    )
    m = await scrape(jp_fetch)
    assert by_status(m, "osmo_workflows")["RUNNING"] == 1
    tasks = by_status(m, "osmo_tasks")
    assert tasks["RUNNING"] == 1
    assert sum(tasks.values()) == 2
    assert m[("osmo_engine_queue_length", ())] == 1, "the second task waits for the CPU"
    assert m[("osmo_pool_queued_tasks", (("pool", "local"),))] == 1
    assert m[("osmo_pool_gpus", (("kind", "capacity"), ("pool", "local")))] >= 0  # its GPUs
    assert ("osmo_pool_gpus", (("kind", "quota"), ("pool", "local"))) not in m  # no quota set
    assert m[("osmo_pool_used_gpus", (("pool", "local"), ("priority", "NORMAL")))] == 0
    # the running sleeper's usage, once its agent sampled it (every 0.2 s here)
    for _ in range(100):
        m = await scrape(jp_fetch)
        if m.get(("osmo_tasks_memory_bytes", (("pool", "local"),)), 0) > 0:
            break
        await asyncio.sleep(0.1)
    assert 0 < m[("osmo_tasks_memory_bytes", (("pool", "local"),))] < 2**30  # one `sleep`
    assert m[("osmo_tasks_cpu_cores", (("pool", "local"),))] < 0.5

    await api("POST", f"workflows/{wf_id}/cancel")
    await wait_for(api, wf_id, lambda wf: wf["status"] == "FAILED_CANCELED")
    m = await scrape(jp_fetch)
    assert by_status(m, "osmo_tasks")["RUNNING"] == 0
    assert m[("osmo_engine_queue_length", ())] == 0


async def test_event_loop_lag_is_seen(jp_fetch, osmo):
    # The test shares the server's loop: block it as a slow handler would, long enough that a
    # probe's wake-up falls inside the block and comes at least 0.2 s late.
    time.sleep(LAG_INTERVAL + 0.2)
    await asyncio.sleep(LAG_INTERVAL * 1.5)
    m = await scrape(jp_fetch)
    assert m[("osmo_event_loop_lag_seconds", ())] >= 0.15


async def test_metrics_need_authentication(jp_fetch, jp_auth_header, osmo):
    for headers in ({"Authorization": ""}, {"Authorization": "token wrong"}):
        with pytest.raises(HTTPClientError) as e:
            await jp_fetch("metrics", headers=headers)
        assert e.value.code == 401  # not 403: no credentials (MetricsHandler)
        assert e.value.response is not None
        assert e.value.response.headers["WWW-Authenticate"].startswith("Bearer")
    # Prometheus sends its credentials as a Bearer token (README)
    token = jp_auth_header["Authorization"].split()[-1]
    resp = await jp_fetch("metrics", headers={"Authorization": f"Bearer {token}"})
    assert b"osmo_engine_queue_length" in resp.body


async def test_gauges_leave_the_registry_when_the_extension_stops(jp_fetch, osmo: OsmoApp):
    assert "osmo_workflows" in (await jp_fetch("metrics")).body.decode()
    assert osmo.service is not None
    for backend in osmo.service.backends.values():  # stopped, it could not reach its agent
        shutdown = getattr(backend, "shutdown_agent", None)
        if shutdown is not None:
            await shutdown(force=True)
    await osmo.stop_extension()
    assert REGISTRY.get_sample_value("osmo_engine_queue_length") is None
    assert "osmo_workflows" not in (await jp_fetch("metrics")).body.decode()


def test_headless_metrics_need_the_token(osmo_env: dict[str, str], tmp_path: Path) -> None:
    """`jupyter osmo` (its own identity provider and authorizer): /metrics refuses a scrape
    without the token (401, with the challenge) and serves the gauges to a Bearer token, as
    Prometheus sends it."""
    from test_openapi import TOKEN, server  # the same subprocess helper

    with server(osmo_env, tmp_path / "server.log") as base:
        url = base.removesuffix("/osmo/api/v1") + "/metrics"
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)
            assert e.value.code == 401 and e.value.headers["WWW-Authenticate"].startswith("Bearer")
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode()
    assert 'osmo_workflows{status="RUNNING"} 0.0' in text
