"""Restart OSMO's way (rerun what failed, keep what finished) and the task cache, on the real
engine, local backend and store: marker files count how often each task's command ran."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from osmo_core.errors import Conflict, InputError, SpecError
from osmo_core.service import Service
from osmo_core.spec import load_spec
from tests.conftest import osmo_cli
from tests.core.test_recovery import wait_for

# a -> b -> c; b fails until the file `ok` exists; each appends to its marker file.
CHAIN = """
workflow:
  name: chain
  tasks:
  - name: a
    command: [sh, -c, "echo run >> {d}/a.runs; echo from-a > {{{{output}}}}/x"]
  - name: b
    maxRetries: 0
    inputs: [{{task: a}}]
    command: [sh, -c]
    args: ["echo run >> {d}/b.runs; test -e {d}/ok && cat {{{{input:0}}}}/x >{{{{output}}}}/x"]
  - name: c
    inputs: [{{task: b}}]
    command: [sh, -c, "echo run >> {d}/c.runs; cat {{{{input:0}}}}/x > {d}/c.saw"]
"""


def runs(d: Path, task: str) -> int:
    f = d / f"{task}.runs"
    return len(f.read_text().splitlines()) if f.exists() else 0


def last(svc: Service, wf_id: str) -> dict[str, dict]:
    """Each task's latest attempt."""
    return {t["name"]: t for t in svc.get(wf_id)["tasks"]}


async def test_restart_reruns_the_failed_task_and_downstream_and_reuses_upstream(
    service: Service, tmp_path: Path
) -> None:
    d = tmp_path
    wf1 = await service.submit(CHAIN.format(d=d))
    assert await service.wait(wf1) == "FAILED"
    assert [runs(d, t) for t in "abc"] == [1, 1, 0]

    (d / "ok").touch()
    wf2 = await service.restart(wf1)
    assert await service.wait(wf2) == "COMPLETED"
    # a did not run again; b and c did, and c saw a's output through b
    assert [runs(d, t) for t in "abc"] == [1, 2, 1]
    assert (d / "c.saw").read_text() == "from-a\n"
    tasks = last(service, wf2)
    a1 = last(service, wf1)["a"]
    assert tasks["a"]["status"] == "COMPLETED" and tasks["a"]["reused_from"] == f"{wf1}/a/0"
    assert tasks["a"]["output_path"] == a1["output_path"]  # referenced, not copied
    assert "restart of " + wf1 in tasks["a"]["message"]
    assert tasks["b"]["reused_from"] is None and tasks["c"]["reused_from"] is None
    assert service.get(wf2)["parent_workflow_id"] == wf1
    statuses = [
        (e["task"], e["status"], e["payload"].get("reused_from"))
        for e in service.store.events_since(0, wf2)
        if e["type"] == "task.status" and e["task"] == "a"
    ]
    assert statuses == [("a", "COMPLETED", f"{wf1}/a/0")]
    lines = await service.logs(wf2, "a")
    assert lines[0].stream == "system" and f"the log of {wf1}/a/0 follows" in lines[0].text

    # --from b: a is still reused (from wf1, the attempt that ran), b and c run again
    wf3 = await service.restart(wf2, from_task="b")
    assert await service.wait(wf3) == "COMPLETED"
    assert [runs(d, t) for t in "abc"] == [1, 3, 2]
    assert last(service, wf3)["a"]["reused_from"] == f"{wf1}/a/0"

    # a completed workflow: a plain restart (the panel's button) and --all rerun everything
    for kwargs in ({}, {"rerun_all": True}):
        wf = await service.restart(wf3, **kwargs)
        assert await service.wait(wf) == "COMPLETED"
        assert all(t["reused_from"] is None for t in last(service, wf).values())
    assert [runs(d, t) for t in "abc"] == [3, 5, 4]

    with pytest.raises(InputError, match="no task 'zz'"):
        await service.restart(wf3, from_task="zz")


async def test_a_running_workflow_is_not_restarted(service: Service, tmp_path: Path) -> None:
    spec = "workflow:\n  name: slow\n  tasks:\n  - name: t\n    command: [sh, -c, 'sleep 30']\n"
    wf = await service.submit(spec)
    with pytest.raises(Conflict, match="cancel it first"):
        await service.restart(wf)
    await service.cancel(wf)
    assert await service.wait(wf) == "FAILED_CANCELED"
    again = await service.restart(wf)  # any ended state may be restarted
    await service.cancel(again)
    assert await service.wait(again) == "FAILED_CANCELED"


# One cached task reading a folder (a URL input) and a file from the spec, and one downstream.
CACHED = """
workflow:
  name: cached
  cache: true
  tasks:
  - name: prep
    inputs: [{{url: "{d}/in"}}]
    files: [{{path: /tmp/cfg.txt, contents: "{cfg}"}}]
    command: [sh, -c]
    args: ["echo run >> {d}/prep.runs; cat {{{{input:0}}}}/* /tmp/cfg.txt > {{{{output}}}}/x"]
  - name: use
    cache: false
    inputs: [{{task: prep}}]
    command: [sh, -c, "echo run >> {d}/use.runs; cat {{{{input:0}}}}/x > {d}/use.saw"]
  - name: count
    inputs: [{{task: prep}}]
    command: [sh, -c, "echo run >> {d}/count.runs; wc -c < {{{{input:0}}}}/x > {{{{output}}}}/n"]
"""


async def test_cache_hits_across_workflows_and_misses_when_contents_change(
    service: Service, tmp_path: Path
) -> None:
    d = tmp_path
    (d / "in").mkdir()
    (d / "in" / "data").write_text("v1\n")

    async def run(cfg: str = "c1") -> str:
        wf = await service.submit(CACHED.format(d=d, cfg=cfg))
        assert await service.wait(wf) == "COMPLETED"
        return wf

    wf1 = await run()
    wf2 = await run()
    # the cached tasks ran once (count: its input, prep's reused output, has the same bytes)
    assert (runs(d, "prep"), runs(d, "use"), runs(d, "count")) == (1, 2, 1)
    prep = last(service, wf2)["prep"]
    assert prep["status"] == "COMPLETED" and prep["reused_from"] == f"{wf1}/prep/0"
    assert prep["message"].startswith("cache hit")
    assert (d / "use.saw").read_text() == "v1\nc1"  # downstream read the reused output
    hits = {
        e["task"]: e["payload"]
        for e in service.store.events_since(0, wf2)
        if e["type"] == "task.cache"
    }
    assert hits["prep"]["result"] == "hit" and hits["prep"]["reused_from"] == f"{wf1}/prep/0"
    assert hits["count"]["reused_from"] == f"{wf1}/count/0"
    lines = await service.logs(wf2, "prep")
    assert "cache hit" in lines[0].text

    await run(cfg="c2")  # a `files` entry changed
    assert runs(d, "prep") == 2
    (d / "in" / "data").write_text("v2\n")  # an input's contents changed
    wf4 = await run(cfg="c2")
    assert runs(d, "prep") == 3 and (d / "use.saw").read_text() == "v2\nc2"
    misses = {
        e["task"]: e["payload"]["result"]
        for e in service.store.events_since(0, wf4)
        if e["type"] == "task.cache"
    }
    assert misses == {"prep": "miss", "count": "miss"}  # count: its input's bytes changed
    assert runs(d, "count") == 3

    assert await service.clear_cache(task="use") == 0  # never cached
    assert await service.clear_cache(task="prep", user="someone-else") == 0
    assert await service.clear_cache(task="prep") >= 3
    await run(cfg="c2")
    assert runs(d, "prep") == 4  # cleared: it ran


def test_cache_must_be_a_boolean() -> None:
    with pytest.raises(SpecError, match=r"tasks\[0\]\.cache: expected true or false"):
        load_spec("workflow:\n  name: w\n  tasks:\n  - name: t\n    command: [x]\n    cache: 1\n")


def test_a_killed_engine_leaves_no_cache_entry_until_the_end_is_recorded(
    tmp_path: Path, osmo_env: dict[str, str]
) -> None:
    """The engine is SIGKILLed while a cached task runs; the task ends meanwhile. Until an
    engine records that end, no entry exists (nothing can hit it); the next engine recovers
    the end, and only then does the same task hit."""
    home = Path(osmo_env["OSMO_HOME"])
    d = tmp_path / "d"
    d.mkdir()
    spec = tmp_path / "crash.yaml"
    spec.write_text(
        "workflow:\n  name: crash\n  cache: true\n  tasks:\n  - name: t\n"
        f"    command: [sh, -c, 'echo run >> {d}/t.runs; n=0; while [ ! -e {d}/go ] && "
        "[ $n -lt 600 ]; do sleep 0.1; n=$((n+1)); done; echo out > {{output}}/x']\n"
    )
    engine = subprocess.Popen(
        osmo_cli("workflow", "run", str(spec)),
        env=osmo_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: ("t", "RUNNING") in [r[:2] for r in rows(home)], timeout=30)
    finally:  # also when the wait fails: no engine outlives the test
        engine.send_signal(signal.SIGKILL)
        engine.wait(10)
    (d / "go").touch()
    wait_for(lambda: any((home / "runs").glob("crash-1/t/0/exit.json")), timeout=30)
    ((_, status, key, _),) = rows(home)
    assert status == "RUNNING" and key  # the end happened, but is not recorded
    with sqlite3.connect(f"file:{home / 'osmo.db'}?mode=ro", uri=True) as db:
        found = db.execute(
            "select count(*) from tasks where cache_key = ? and status = 'COMPLETED'", (key,)
        ).fetchone()
    assert found == (0,)

    again = subprocess.run(
        osmo_cli("workflow", "run", str(spec)),
        env=osmo_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert rows(home) == [
        ("t", "COMPLETED", key, None),  # crash-1, recovered
        ("t", "COMPLETED", key, "crash-1/t/0"),  # crash-2: a hit
    ]
    assert runs(d, "t") == 1


def rows(home: Path) -> list[tuple]:
    try:  # read-only: never create the file before the engine does
        with sqlite3.connect(f"file:{home / 'osmo.db'}?mode=ro", uri=True) as db:
            return db.execute(
                "select name, status, cache_key, reused_from from tasks order by workflow_id"
            ).fetchall()
    except sqlite3.OperationalError:  # no file or no tables yet: the engine is starting
        return []


GROUP = """
workflow:
  name: grp
  cache: true
  groups:
  - name: g
    tasks:
    - name: lead
      lead: true
      command: [sh, -c, "echo run >> {d}/lead.runs; echo l > {{{{output}}}}/x"]
    - name: peer
      files: [{{path: /tmp/p.txt, contents: "{p}"}}]
      command: [sh, -c, "echo run >> {d}/peer.runs; cat /tmp/p.txt > {{{{output}}}}/x"]
"""


async def test_a_group_is_reused_only_when_every_task_hits_and_only_for_its_user(
    service: Service, tmp_path: Path
) -> None:
    d = tmp_path

    async def run(p: str, user: str = "ann") -> str:
        wf = await service.submit(GROUP.format(d=d, p=p), user=user)
        assert await service.wait(wf) == "COMPLETED"
        return wf

    await run("p1")
    wf2 = await run("p1")
    assert (runs(d, "lead"), runs(d, "peer")) == (1, 1)
    assert {t["reused_from"] is not None for t in last(service, wf2).values()} == {True}
    # peer misses (its file changed): the lead would hit, but the group runs whole
    wf3 = await run("p2")
    assert (runs(d, "lead"), runs(d, "peer")) == (2, 2)
    reasons = {
        e["task"]: (e["payload"]["result"], e["payload"].get("reason"))
        for e in service.store.events_since(0, wf3)
        if e["type"] == "task.cache"
    }
    assert reasons == {
        "lead": ("miss", "another task of the group missed"),
        "peer": ("miss", "no completed attempt has this key"),
    }
    await run("p2", user="bo")  # another user's entries are not bo's
    assert (runs(d, "lead"), runs(d, "peer")) == (3, 3)
