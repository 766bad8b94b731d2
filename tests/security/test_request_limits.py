"""Every request costs bounded time and memory, and the server reads no file for its caller
(issue 14, points 4 and 6): each attack from the hostile-user review, against a real headless
server (PAT users), answered with a 4xx and the JSON error body, quickly and without the
memory the attack asked for."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from osmo_core.agent.workdir import LOG, attempt_dir
from osmo_core.service import Service
from osmo_core.wire import attempt_key
from tests.conftest import osmo_cli
from tests.interactive.conftest import until

MiB = 1024 * 1024
HELLO = "workflow:\n  name: hello\n  tasks:\n  - name: t\n    command: [echo, hi]\n"
TEMPLATE_BUDGET = 1.0  # seconds: a render is stopped after this long


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any]) -> dict[str, Any]:
    """The headless server (tests/interactive/jupyter/conftest.py) with some limits lowered so
    that each attack is quick to send; the rest keep their defaults."""
    jp_server_config["OsmoConfig"].update(
        max_request_bytes=4 * MiB,
        max_spec_bytes=2 * MiB,
        template_timeout=TEMPLATE_BUDGET,
        max_tasks_per_workflow=20_000,
    )
    return jp_server_config


@pytest.fixture
def osmo_data_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """On a RAM disk for the loop-latency test: what it measures is how the engine yields,
    not how long the disk under a shared CI machine takes to checkpoint SQLite's WAL."""
    if "cancelled" not in request.node.name or not Path("/dev/shm").is_dir():
        yield tmp_path / "osmo"
        return
    folder = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="osmo-test-"))
    yield folder / "osmo"
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def mallory(pat: Any) -> dict[str, str]:
    return dict(await pat("mallory"))


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def assert_error_body(body: dict[str, Any]) -> None:
    assert set(body) >= {"message", "reason", "details"}, body


async def submit(api: Any, who: dict[str, str], spec: Any, status: int, **extra: Any) -> Any:
    body = await api("POST", "workflows", body={"spec": spec, **extra}, headers=who, status=status)
    if status >= 400:
        assert_error_body(body)
    return body


def alias_bomb(levels: int = 9, where: str = "default-values") -> str:
    """545 bytes that expand 9-fold per level (the review's attack): 9^9 ≈ 387 million nodes."""
    lines = [f"{where}:", "  a0: &a0 [x,x,x,x,x,x,x,x,x]"]
    for i in range(1, levels):
        lines.append(f"  a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n" + HELLO


# --- YAML and JSON shapes ----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["default-values", "x-anchors"])
async def test_an_alias_bomb_is_refused_at_once(api: Any, mallory: Any, where: str) -> None:
    before = peak_rss_mib()
    t0 = time.monotonic()
    body = await submit(api, mallory, alias_bomb(where=where), 422, dry_run=True)
    assert time.monotonic() - t0 < 1.0
    assert peak_rss_mib() - before < 50  # the reply was 351 MB, the server 1.1 GiB
    assert "YAML nodes" in body["message"]
    (d,) = body["details"]
    assert d["line"] == 8 and "max_spec_nodes" in d["hint"]


async def test_a_recursive_alias_is_refused(api: Any, mallory: Any) -> None:
    body = await submit(api, mallory, "workflow: &w\n  name: w\n  x: *w\n", 422)
    assert "contains it" in body["message"]


async def test_deep_nesting_is_refused(api: Any, mallory: Any) -> None:
    deep = HELLO + "    environment: {A: " + "[" * 5000 + "]" * 5000 + "}\n"
    body = await submit(api, mallory, deep, 422)
    assert "max_spec_depth" in body["details"][0]["hint"]
    nested: Any = "x"
    for _ in range(200):
        nested = [nested]
    body = await submit(api, mallory, {"workflow": {"name": "w", "tasks": nested}}, 422)
    assert "deeper than 64" in body["message"]


async def test_a_100000_deep_json_body_is_a_400(api: Any, mallory: Any) -> None:
    deep = '{"spec": ' + "[" * 100_000 + "]" * 100_000 + "}"
    body = await api("POST", "workflows", body=deep, headers=mallory, status=400)
    assert_error_body(body)
    assert "nests too deeply" in body["message"]


async def test_a_lone_surrogate_is_a_4xx(api: Any, mallory: Any) -> None:
    text = HELLO.replace("hello", "\\ud800")  # as JSON sends it: a valid escape, no character
    raw = '{"spec": "' + text.replace("\n", "\\n") + '"}'
    body = await api("POST", "workflows", body=raw, headers=mallory, status=400)
    assert "lone surrogate" in body["message"]
    raw = '{"spec": {"workflow": {"name": "\\udfff", "tasks": []}}}'
    await api("POST", "workflows", body=raw, headers=mallory, status=400)
    # a pair is a character, and fine
    raw = '{"spec": "' + HELLO.replace("\n", "\\n").replace("[echo, hi]", "[echo, \\ud83d\\ude00]")
    await api("POST", "workflows", body=raw + '", "dry_run": true}', headers=mallory, status=200)


async def test_spec_and_request_size_limits(api: Any, mallory: Any, jp_fetch: Any) -> None:
    big = HELLO + "# " + "x" * (2 * MiB) + "\n"
    body = await submit(api, mallory, big, 422)
    assert "max_spec_bytes" in body["details"][0]["hint"]
    huge = json.dumps({"spec": "#" * (5 * MiB)})
    t0 = time.monotonic()
    body = await api("POST", "workflows", body=huge, headers=mallory, status=413)
    assert "max_request_bytes" in body["message"] and time.monotonic() - t0 < 2


async def test_tasks_per_workflow(api: Any, mallory: Any) -> None:
    tasks = [{"name": f"t{i}", "command": ["true"]} for i in range(20_001)]
    body = await submit(api, mallory, {"workflow": {"name": "many", "tasks": tasks}}, 422)
    assert "max_tasks_per_workflow" in body["message"]


# --- templates -----------------------------------------------------------------------------------


LOOPS = (
    "workflow:\n  name: w\n  tasks:\n"
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    "  - name: t\n    command: [echo]\n"
)
TEMPLATE_ATTACKS = {
    "nested range": (LOOPS, "template_max_steps"),
    "repetition": ("workflow:\n  name: '{{ 'x' * 10**9 }}'\n", "max_rendered_bytes"),
    "ljust": ("workflow:\n  name: '{{ 'x'.ljust(10**9) }}'\n", "max_rendered_bytes"),
    "center filter": ("workflow:\n  name: '{{ 'x'|center(10**9) }}'\n", "max_rendered_bytes"),
    "format width": ("workflow:\n  name: '{{ '%999999999d' % 1 }}'\n", "max_rendered_bytes"),
    "doubling list": (
        "{% set ns = namespace(x=[1]) %}{% for i in range(64) %}{% set ns.x = [ns.x, ns.x] %}"
        "{% endfor %}workflow:\n  name: '{{ ns.x|join }}'\n",
        "max_spec_nodes|template_timeout",  # walking the value takes ~0.4 s: load decides
    ),
    "doubling string": (
        "{% set ns = namespace(x='ab') %}{% for i in range(64) %}{% set ns.x = ns.x ~ ns.x %}"
        "{% endfor %}workflow:\n  name: '{{ ns.x|length }}'\n",
        "max_rendered_bytes",
    ),
    "macro tree": (
        "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}"
        "workflow:\n  name: '{{ f(60) }}'\n",
        "template_",  # steps or time, whichever comes first
    ),
}


@pytest.mark.parametrize("attack", sorted(TEMPLATE_ATTACKS))
async def test_a_template_is_stopped_within_its_budget(
    api: Any, mallory: Any, jp_fetch: Any, attack: str
) -> None:
    """Refused within the budget (TEMPLATE_BUDGET), while the server keeps
    answering others: the render runs off the event loop."""
    text, knob = TEMPLATE_ATTACKS[attack]
    before = peak_rss_mib()
    t0 = time.monotonic()
    sub = asyncio.ensure_future(submit(api, mallory, text, 422))
    worst = 0.0
    while not sub.done():
        t = time.monotonic()
        await jp_fetch("osmo", "api", "v1", "health")
        worst = max(worst, time.monotonic() - t)
        await asyncio.sleep(0.01)
    body = await sub
    assert time.monotonic() - t0 < 2.5, attack
    assert any(k in body["details"][0]["hint"] for k in knob.split("|")), body
    assert peak_rss_mib() - before < 100
    # The render shares the GIL with the loop: the worst poll was 0.12-0.15 s on an idle
    # 2-core VM (macro tree, nested range), 0.29 s with a second test worker on the other
    # core and 0.52 s with Chromium there too. A render on the loop stalls it for its whole
    # budget: what is asserted is that the loop answered well within it.
    assert worst < 0.8 * TEMPLATE_BUDGET, f"/health took {worst:.3f}s during the render"


async def test_templates_within_the_budget_still_render(api: Any, mallory: Any) -> None:
    text = (
        "default-values:\n  n: 300\nworkflow:\n  name: w\n  tasks:\n"
        "{% for i in range(n) %}  - name: t{{ i }}\n    command: [echo, '{{ 'ab' * 3 }}']\n"
        "{% endfor %}"
    )
    body = await submit(api, mallory, text, 200, dry_run=True)
    assert body["rendered"].count("name: t") == 300


# --- query numbers and pages -----------------------------------------------------------------


async def test_huge_numbers_and_pages_are_400s(api: Any, mallory: Any, service: Service) -> None:
    wf = (await submit(api, mallory, HELLO, 201))["id"]
    for path, params in [
        ("workflows", {"offset": str(2**70)}),
        ("workflows", {"limit": str(2**70)}),
        ("workflows", {"limit": "1001"}),
        (f"workflows/{wf}/tasks/t/logs", {"start": str(2**70)}),
        (f"workflows/{wf}/tasks/t/logs", {"retry_id": str(2**64)}),
        (f"workflows/{wf}/tasks/t/logs", {"limit": "10001"}),
    ]:
        body = await api("GET", path, params=params, headers=mallory, status=400)
        assert_error_body(body)
    assert await api("GET", "workflows", params={"limit": "1000"}, headers=mallory)


async def test_logs_answer_a_bounded_page_of_a_big_log(
    api: Any, mallory: Any, service: Service
) -> None:
    """A ~100 MB log: without `limit` a page of log_page_size lines; any page is read in
    constant memory, off the loop, whatever `start` is."""
    wf = (await submit(api, mallory, HELLO, 201))["id"]
    await asyncio.wait_for(service.wait(wf), 30)
    backend = service.backends["local"]
    log = attempt_dir(backend.root, attempt_key(wf, "t", 0)) / LOG  # type: ignore[attr-defined]
    line = b"2026-01-01T00:00:00.000000Z stdout " + b"y" * 64 + b"\n"
    with log.open("ab") as f:
        for _ in range(100):
            f.write(line * 10_000)  # 1,000,000 lines
    assert log.stat().st_size > 90 * MiB
    before = peak_rss_mib()
    t0 = time.monotonic()
    page = await api("GET", f"workflows/{wf}/tasks/t/logs", headers=mallory)
    assert len(page) == 1000 and page[0]["text"] == "hi"
    tail = await api(
        "GET", f"workflows/{wf}/tasks/t/logs", params={"start": "999990"}, headers=mallory
    )
    assert [ln["n"] for ln in tail] == list(range(999_991, 1_000_002))
    assert (
        await api(
            "GET", f"workflows/{wf}/tasks/t/logs", params={"start": str(2**40)}, headers=mallory
        )
        == []
    )
    last = await api("GET", f"workflows/{wf}/tasks/t/logs", params={"tail": "3"}, headers=mallory)
    assert [ln["n"] for ln in last] == [999_999, 1_000_000, 1_000_001]
    assert time.monotonic() - t0 < 5
    assert peak_rss_mib() - before < 60


# --- bulk changes yield the loop ---------------------------------------------------------------


async def test_health_answers_within_100ms_while_10000_tasks_are_cancelled(
    api: Any, mallory: Any, jp_fetch: Any, service: Service
) -> None:
    tasks = [{"name": f"t{i}", "command": ["sleep", "60"]} for i in range(10_000)]
    wf = (await submit(api, mallory, {"workflow": {"name": "big", "tasks": tasks}}, 201))["id"]
    await until(lambda: service.engine.queue_length > 9_000, what="the tasks queued")
    gc.collect()  # earlier tests' garbage: its collection is not what this measures
    t0 = time.monotonic()
    cancel = asyncio.ensure_future(
        api("POST", f"workflows/{wf}/cancel", headers=mallory, status=200)
    )
    latencies: list[float] = []
    while not cancel.done():
        t = time.monotonic()
        await jp_fetch("osmo", "api", "v1", "health")
        latencies.append(time.monotonic() - t)
        await asyncio.sleep(0.005)
    await cancel
    took = time.monotonic() - t0
    latencies.sort()
    p95, worst = latencies[int(len(latencies) * 0.95)], latencies[-1]
    print(f"cancel of 10,000 tasks: {took:.2f}s; /health p95 {p95 * 1000:.0f} ms,", end=" ")
    print(f"worst {worst * 1000:.0f} ms over {len(latencies)} polls")
    # Before: one 14-30 s stall. Measured here: p95 15-37 ms. The worst poll is a full
    # collection of the cyclic GC: this process (pytest, the Jupyter server and the 10,000
    # tasks) holds ~590,000 objects, which a generation-2 pass takes 0.2-0.45 s to walk on an
    # idle 2-core VM (gc.callbacks; 0.59 s with a second test worker on the other core), and
    # the cancel triggers a few. A stalled loop is still seconds: it fails well above 1 s.
    assert len(latencies) >= 10
    assert p95 <= 0.1, latencies[-10:]
    assert worst <= 1.0, latencies[-10:]
    assert await asyncio.wait_for(service.wait(wf), 60) == "FAILED_CANCELED"


# --- no server-side file reads -----------------------------------------------------------------


def localpath_spec(path: str) -> str:
    return HELLO + f"    files:\n    - path: /tmp/x\n      localpath: {path}\n"


async def test_localpath_is_refused_without_touching_the_path(
    api: Any, mallory: Any, tmp_path: Path
) -> None:
    """/etc/shadow, a FIFO (which hung the server), a file whose reads would show in its
    atime, and a missing path: each a 422 naming the field, the same for all (no oracle)."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    watched = tmp_path / "secret"
    watched.write_text("secret")
    os.utime(watched, (1_000_000, 2_000_000))  # atime < mtime: any read moves the atime
    answers = []
    for path in ["/etc/shadow", str(fifo), str(watched), "/nonexistent/x", "../../etc/passwd"]:
        t0 = time.monotonic()
        body = await submit(api, mallory, localpath_spec(path), 422)
        assert time.monotonic() - t0 < 1
        (d,) = body["details"]
        assert d["field"] == "workflow.tasks[0].files[0].localpath"
        assert d["line"] == 8
        answers.append(body["message"])
    assert len(set(answers)) == 1, answers
    assert os.stat(watched).st_atime == 1_000_000
    # also as a dict, and through validation only
    spec = {
        "workflow": {
            "name": "w",
            "tasks": [
                {
                    "name": "t",
                    "command": ["true"],
                    "files": [{"path": "/x", "localpath": str(fifo)}],
                }
            ],
        }
    }
    await submit(api, mallory, spec, 422, validation_only=True)


async def test_osmo_workflow_submit_sends_localpath_inline(
    cli_env: Any, tmp_path: Path, service: Service
) -> None:
    """The CLI reads the file (relative to the spec's folder) and the task sees it; a FIFO is
    refused by the CLI at once, naming the file."""
    env, _ = cli_env
    folder = tmp_path / "proj"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "in.txt").write_text("from the client\n")
    target = f"/tmp/osmo-lp-{uuid.uuid4().hex}.txt"
    spec = folder / "wf.yaml"
    spec.write_text(
        "workflow:\n  name: lp\n  tasks:\n  - name: t\n"
        f"    command: [sh, -c, 'cat {target}; rm -f {target}']\n"
        f"    files:\n    - path: {target}\n      localpath: data/in.txt\n"
    )

    async def osmo(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *osmo_cli(*args),
            env=env,
            cwd=tmp_path,  # not the spec's folder: paths are relative to the spec
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    rc, out, err = await osmo("workflow", "submit", str(spec), "--format", "json")
    assert rc == 0, err
    wf = json.loads(out)["id"]
    assert await asyncio.wait_for(service.wait(wf), 30) == "COMPLETED"
    lines = await service.logs(wf, "t")
    assert [ln.text for ln in lines] == ["from the client"]

    os.mkfifo(folder / "data" / "pipe")
    spec.write_text(spec.read_text().replace("data/in.txt", "data/pipe"))
    t0 = time.monotonic()
    rc, out, err = await osmo("workflow", "submit", str(spec))
    assert rc != 0 and time.monotonic() - t0 < 20
    assert "data/pipe" in err and "not a regular file" in err, err


async def test_client_submit_sends_localpath_inline(
    pat: Any, jp_http_port: int, jp_base_url: str, tmp_path: Path, service: Service
) -> None:
    """osmo_jupyter.Client (what the magics and cells use) reads localpath relative to `base`
    for YAML text, and to the file's folder for a path."""
    from osmo_jupyter import Client

    token = (await pat("mallory"))["Authorization"].split()[1]
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}".rstrip("/")
    (tmp_path / "in.txt").write_text("via Client\n")
    target = f"/tmp/osmo-lp-{uuid.uuid4().hex}.txt"
    text = (
        "workflow:\n  name: lpc\n  tasks:\n  - name: t\n"
        f"    command: [sh, -c, 'cat {target}; rm -f {target}']\n"
        f"    files:\n    - path: {target}\n      localpath: in.txt\n"
    )
    wf = await asyncio.to_thread(lambda: Client(url, token).submit(text, base=tmp_path).id)
    assert await asyncio.wait_for(service.wait(wf), 30) == "COMPLETED"
    assert [ln.text for ln in await service.logs(wf, "t")] == ["via Client"]


async def test_clients_page_through_a_log_longer_than_a_page(
    cli_env: Any, api: Any, service: Service
) -> None:
    """The server answers a page; `osmo workflow logs` and Workflow.logs() still give all."""
    env, headers = cli_env
    spec = "workflow:\n  name: long\n  tasks:\n  - name: t\n    command: [seq, '2500']\n"
    wf = (await submit(api, headers, spec, 201))["id"]
    assert await asyncio.wait_for(service.wait(wf), 30) == "COMPLETED"
    assert len(await api("GET", f"workflows/{wf}/tasks/t/logs", headers=headers)) == 1000
    proc = await asyncio.create_subprocess_exec(
        *osmo_cli("workflow", "logs", wf, "--task", "t"), env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert out.decode().split() == [str(i) for i in range(1, 2501)]
