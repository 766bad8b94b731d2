"""Poison never spreads (issue 15): hostile specs go through validate, run and recovery; each is
refused at validate with a located error or fails alone, and the engine keeps serving a good
canary workflow submitted alongside.

The specs are valid YAML built to break later stages: bad base64, odd paths (`..`, absolute,
`/osmo/`, unicode, very long, NUL), huge or non-finite counts, sizes and timeouts, deep nesting,
many tasks, odd names, inputs that make no DAG, argv/environment strings no process can
take. Those refused by a rule alone (the schema takes them, they can be placed) also reach the
engine directly, as a spec stored by an older validator would. Reproducible: hypothesis runs
a fixed seed (OSMO_FAULT_SEED to change it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import time
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from osmo_core.errors import InputError, SpecError
from osmo_core.service import Service
from osmo_core.spec import LoadedSpec, Workflow
from osmo_core.states import WorkflowStatus
from tests.conftest import ServiceFactory

SEED = int(os.environ.get("OSMO_FAULT_SEED", "15"))
EXAMPLES = 100
RUN_AT_MOST = 40  # accepted specs that also run (each phase): the run dominates the cost
MAX_TASKS = 40  # the servers' max_tasks_per_workflow, so that "many tasks" is refused too
SETTLE = 40.0  # seconds every workflow of a phase has to end in

ODD_NAMES = ["t", "t-1", "1abc", "a.b", "x" * 64, "x" * 65, "", "a b", "-a", "ü", "A_b", "a\0"]
ODD_PATHS = [
    "run.sh",
    "/tmp/run.sh",
    "",
    ".",
    "/",
    "..",
    "../x",
    "/osmo/x",
    "/osmo",
    "a\0b",
    "ü/ñ.txt",
    "n" * 300,
    "d/" * 200 + "f",
    "d/",
    "./a",
    "a//b",
    "/tmp/../../etc/x",
]
QUANTITIES = ["1", "500m", "1Gi", "1e309", "-1", "99999999999999Ti", "abc", ".inf", "0"]
# harmless commands: the hostility is in what surrounds them
COMMANDS = [["true"], ["sh", "-c", "exit 3"], ["sh", "-c", "cat ./* >/dev/null"]]
DURATIONS = ["1s", "8h", "1e400s", "0s", "-1s", "99999999999999999999d", "abc"]


def _nested(depth: int) -> Any:
    out: Any = "x"
    for _ in range(depth):
        out = [out]
    return out


texts = st.text(max_size=12)
numbers = st.one_of(st.integers(-3, 10**30), st.floats(allow_nan=True, allow_infinity=True))
quantities = st.one_of(numbers, st.sampled_from(QUANTITIES))
durations = st.one_of(numbers, st.sampled_from(DURATIONS))
contents = st.one_of(texts, st.binary(max_size=24).map(lambda b: base64.b64encode(b).decode()))


def _file(path: str, data: st.DrawFn) -> dict[str, Any]:
    return {"path": path, "contents": data(contents), "base64": data(st.booleans())}


# Each mutation makes one part of a good spec hostile: (workflow mapping, its tasks, draw).
def _odd_file(wf: dict[str, Any], ts: list[dict[str, Any]], draw: st.DrawFn) -> None:
    path = draw(st.one_of(st.sampled_from(ODD_PATHS), texts))
    draw(st.sampled_from(ts)).setdefault("files", []).append(_file(path, draw))


def _repeated_file(wf: dict[str, Any], ts: list[dict[str, Any]], draw: st.DrawFn) -> None:
    t = draw(st.sampled_from(ts))
    t.setdefault("files", []).extend([_file("same", draw), _file("./same", draw)])


def _bad_base64(wf: dict[str, Any], ts: list[dict[str, Any]], draw: st.DrawFn) -> None:
    text = draw(st.sampled_from(["!!!not base64", "aGVsbG8", "aGVs-bG8=", "aGVsbG8=aGVs", "é"]))
    entry = {"path": "b.bin", "contents": text, "base64": True}
    draw(st.sampled_from(ts)).setdefault("files", []).append(entry)


def _odd_resources(wf: dict[str, Any], ts: list[dict[str, Any]], draw: st.DrawFn) -> None:
    key = draw(st.sampled_from(["cpu", "memory", "storage", "gpu"]))
    value = draw(st.integers(-1, 10**6) if key == "gpu" else quantities)
    wf["resources"] = {"default": {key: value}}


def _odd_timeout(wf: dict[str, Any], ts: list[dict[str, Any]], draw: st.DrawFn) -> None:
    wf["timeout"] = {draw(st.sampled_from(["exec_timeout", "queue_timeout"])): draw(durations)}


def _deep(wf: dict[str, Any], ts: list[dict[str, Any]], draw: st.DrawFn) -> None:
    wf["labels"] = {"deep": _nested(draw(st.sampled_from([3, 70, 200])))}


def _many_tasks(wf: dict[str, Any], ts: list[dict[str, Any]], draw: st.DrawFn) -> None:
    ts.extend({"name": f"m{i}", "command": ["true"]} for i in range(MAX_TASKS))


def _odd_name(wf: dict[str, Any], ts: list[dict[str, Any]], draw: st.DrawFn) -> None:
    name = draw(st.one_of(st.sampled_from(ODD_NAMES), texts))
    if draw(st.booleans()):
        wf["name"] = name
    else:
        draw(st.sampled_from(ts))["name"] = name


def _odd_strings(wf: dict[str, Any], ts: list[dict[str, Any]], draw: st.DrawFn) -> None:
    """argv and environment no process can take (NUL, '=' in a name, an empty name)."""
    t = draw(st.sampled_from(ts))
    t["args"] = draw(st.lists(st.one_of(texts, st.just("a\0b")), max_size=2))
    t["environment"] = draw(
        st.dictionaries(st.one_of(texts, st.sampled_from(["", "A=B", "\0"])), texts, max_size=2)
    )


def _odd_task_fields(wf: dict[str, Any], ts: list[dict[str, Any]], draw: st.DrawFn) -> None:
    t = draw(st.sampled_from(ts))
    t["maxRetries"] = draw(st.one_of(st.integers(-1, 10**20), texts))
    t["exitActions"] = {"RESCHEDULE": draw(st.sampled_from(["0-99999999", "2010-2014", "x"]))}
    t["ports"] = draw(st.lists(st.integers(-1, 70000), max_size=2))


def _rewired(wf: dict[str, Any], ts: list[dict[str, Any]], draw: st.DrawFn) -> None:
    """Inputs that make no DAG: a cycle, the task itself, a name that is not there, twins."""
    t = draw(st.sampled_from(ts))
    kind = draw(st.sampled_from(["cycle", "self", "unknown", "twin"]))
    if kind == "twin":
        ts.append({**t, "inputs": []})
        return
    src = {"cycle": ts[-1]["name"], "self": t["name"], "unknown": "nope"}[kind]
    ts[0]["inputs"] = [{"task": src}] if kind == "cycle" else t.get("inputs", [])
    if kind != "cycle":
        t["inputs"] = [{"task": src}]


MUTATIONS = [
    _rewired,
    _odd_file,
    _repeated_file,
    _bad_base64,
    _odd_resources,
    _odd_timeout,
    _deep,
    _many_tasks,
    _odd_name,
    _odd_strings,
    _odd_task_fields,
]


@st.composite
def hostile_specs(draw: st.DrawFn) -> dict[str, Any]:
    """A good workflow (a chain of harmless tasks, with good files) with 0-2 hostile parts."""
    n = draw(st.integers(1, 3))
    ts: list[dict[str, Any]] = [
        {"name": f"t{i}", "command": draw(st.sampled_from(COMMANDS))} for i in range(n)
    ]
    for i, t in enumerate(ts):
        if draw(st.booleans()):
            data = draw(st.binary(max_size=24))
            t["files"] = [{"path": f"f{i}", "contents": base64.b64encode(data).decode()}]
            t["files"][0]["base64"] = True
        if i:
            t["inputs"] = [{"task": ts[i - 1]["name"]}]
    wf: dict[str, Any] = {"name": f"w{draw(st.integers(0, 99))}", "tasks": ts}
    for mutate in draw(st.lists(st.sampled_from(MUTATIONS), max_size=2)):
        mutate(wf, ts, draw)
    return {"workflow": wf}


def canary(name: str = "canary") -> Workflow:
    return Workflow.model_validate(
        {"name": name, "tasks": [{"name": "t", "command": ["sh", "-c", "echo alive"]}]}
    )


class Verdicts:
    """What validate made of each spec: accepted (to run), or refused by a rule only (the
    schema takes it and it can be placed): what an older validator could have stored, which
    goes to the engine directly."""

    def __init__(self) -> None:
        self.accepted: list[LoadedSpec] = []
        self.stored_by_older: list[Workflow] = []
        self.refused = 0


def validate_all(svc: Service) -> Verdicts:
    verdicts = Verdicts()

    @seed(SEED)
    @settings(
        max_examples=EXAMPLES,
        deadline=2000,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(hostile_specs())
    def one(spec: dict[str, Any]) -> None:
        text = yaml.safe_dump(spec, allow_unicode=True, sort_keys=False)
        try:
            loaded = svc.load(text, file="fuzz.yaml")
            svc.check_placement(loaded)
        except InputError as e:  # refused: every problem says where and what
            verdicts.refused += 1
            assert e.problems
            for p in e.problems:
                assert p.message, p
                assert p.line is not None or p.field, p
            with contextlib.suppress(ValueError):  # else the schema refuses it too
                wf = Workflow.model_validate(spec["workflow"])
                if not svc.scheduler.check(wf, svc.config.default_pool):  # it can be placed
                    verdicts.stored_by_older.append(wf)
            return
        verdicts.accepted.append(loaded)

    one()
    return verdicts


async def settle(svc: Service, ids: list[str]) -> dict[str, WorkflowStatus]:
    """Every workflow's end; fails when one has not ended in SETTLE seconds."""
    waits = {asyncio.ensure_future(svc.wait(i)): i for i in ids}
    done, pending = await asyncio.wait(waits, timeout=SETTLE)
    for w in pending:
        w.cancel()
    stuck = {  # each with its tasks and what it asked for, to reproduce it
        waits[w]: (
            [(t["name"], t["status"], t["message"]) for t in svc.get(waits[w])["tasks"]],
            svc.spec(waits[w])["spec"],
        )
        for w in pending
    }
    assert not stuck, f"not ended in {SETTLE}s: {stuck}"
    from collections import Counter

    print("ENDS", Counter(str(w.result()) for w in done))
    return {waits[w]: w.result() for w in done}


async def submit_all(svc: Service, verdicts: Verdicts, *, checked: bool) -> list[str]:
    """The accepted specs (through the front door when `checked`) and the older validator's,
    straight into the engine; one spec refused at submit (too many tasks) is not run."""
    ids = []
    for loaded in verdicts.accepted[:RUN_AT_MOST]:
        try:
            if checked:
                ids.append(await svc.submit(loaded))
            else:
                ids.append(await svc.engine.submit(loaded.workflow))
        except SpecError as e:
            assert "max_tasks_per_workflow" in str(e)
    for wf in verdicts.stored_by_older[:RUN_AT_MOST]:
        # Unvalidated, the engine may refuse it (twin task names break the store's keys):
        # then nothing was created, and the canaries show the engine still serves.
        with contextlib.suppress(Exception):
            ids.append(await svc.engine.submit(wf))
    return ids


async def test_hostile_specs_are_refused_or_fail_alone(
    tmp_path: Path, service_factory: ServiceFactory
) -> None:
    started = time.monotonic()
    svc = await service_factory(tmp_path / "run", max_tasks_per_workflow=MAX_TASKS)
    verdicts = validate_all(svc)
    # the generator reaches every outcome, or the test proves nothing about one of them
    assert verdicts.refused and verdicts.accepted and verdicts.stored_by_older

    # run: the canary completes among them, and the engine still serves after
    first = await svc.engine.submit(canary())
    ids = await submit_all(svc, verdicts, checked=True)
    last = await svc.engine.submit(canary("after"))
    ends = await settle(svc, [first, *ids, last])
    assert ends[first] == ends[last] == WorkflowStatus.COMPLETED
    assert all(s.terminal for s in ends.values())
    for wf_id in ids:  # a poisoned one failed for a reason its tasks show
        if ends[wf_id] == WorkflowStatus.FAILED_SERVER_ERROR:
            assert any(t["message"] for t in svc.get(wf_id)["tasks"]), wf_id

    # recovery: the same specs wait in a store (no CPU to place them), then an engine restarts
    home = tmp_path / "recover"
    stalled = await service_factory(home, local={"cpus": 0}, max_tasks_per_workflow=MAX_TASKS)
    first = await stalled.engine.submit(canary())
    ids = await submit_all(stalled, verdicts, checked=False)
    await stalled.stop()
    restarted = await service_factory(home, max_tasks_per_workflow=MAX_TASKS)
    last = await restarted.engine.submit(canary("after"))
    ends = await settle(restarted, [first, *ids, last])
    assert ends[first] == ends[last] == WorkflowStatus.COMPLETED
    assert all(s.terminal for s in ends.values())
    assert time.monotonic() - started < 60
