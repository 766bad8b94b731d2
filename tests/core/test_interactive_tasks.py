"""Held tasks: `interactive: true` waits for its user after its command, `debug: on-failure`
keeps a failed task up for debugging until it is retried. Real agent, real processes, exec over
the agent's dial-home SSH connection; restarts of the control plane in between."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from osmo_core.errors import Conflict, NotFound, SpecError
from osmo_core.service import Service
from tests.conftest import make_config, osmo_cli
from tests.interactive.conftest import until

INTERACTIVE = """
workflow:
  name: {name}
  {timeout}
  tasks:
  - name: setup
    interactive: true
    command: [sh, -c]
    args: ["echo prepared > notes; echo from-setup > {{{{output}}}}/x"]
    environment:
      TASK_SECRET: inside-the-task
  - name: after
    inputs: [{{task: setup}}]
    command: [sh, -c]
    args: ["cat {{{{input:0}}}}/x {{{{input:0}}}}/added"]
"""

DEBUG = """
workflow:
  name: dbg
  tasks:
  - name: flaky
    debug: on-failure
    command: [sh, -c]
    args: ["echo attempt-$OSMO_RETRY_ID > state; test -e {fixed} || {{ echo broken >&2; exit 3; }}"]
  - name: after
    inputs: [{{task: flaky}}]
    command: [echo, downstream-ran]
"""


def interactive_spec(name: str = "itask", exec_timeout: str | None = None) -> str:
    timeout = f"timeout: {{exec_timeout: {exec_timeout}}}" if exec_timeout else ""
    return INTERACTIVE.format(name=name, timeout=timeout)


async def _exec(svc: Service, wf: str, task: str, *argv: str) -> tuple[bytes, int]:
    sess = await svc.interactive.exec(wf, task, list(argv))
    out = b""
    while chunk := await asyncio.wait_for(sess.read(), 10):
        out += chunk
    return out, (await sess.wait())["exit_code"]


async def _held(svc: Service, wf: str, task: str, flag: str) -> dict[str, Any]:
    t = await until(
        lambda: (t := svc.task(wf, task))[flag] and t, timeout=20, what=f"{task} {flag}"
    )
    await until(lambda: "local" in svc.interactive.agents, what="the agent to dial home")
    return t


def _events(svc: Service, wf: str, type_: str) -> list[dict[str, Any]]:
    return [e for e in svc.store.events_since(0, wf) if e["type"] == type_]


async def test_interactive_task_waits_for_done_then_downstream_runs(service: Service) -> None:
    wf = await service.submit(interactive_spec())
    t = await _held(service, wf, "setup", "waiting_for_user")
    assert t["status"] == "RUNNING" and t["hold"] == "interactive"
    assert "osmo workflow done" in t["message"] and t["hold_until"] > 0  # hold_timeout default
    assert service.task(wf, "after")["status"] == "WAITING"
    assert service.get(wf)["status"] == "RUNNING"
    # the user works inside the task: its cwd and environment, and its {{output}}
    out, code = await _exec(
        service,
        wf,
        "setup",
        "sh",
        "-c",
        'cat notes; echo $TASK_SECRET; echo added > "$OSMO_OUTPUT/added"',
    )
    assert (out, code) == (b"prepared\ninside-the-task\n", 0)
    held = _events(service, wf, "task.hold")
    assert held[0]["payload"]["hold"] == "interactive"

    assert await service.done(wf, "setup") == {
        "id": wf,
        "task": "setup",
        "retry_id": 0,
        "hold": "done",
    }
    assert await asyncio.wait_for(service.wait(wf), 20) == "COMPLETED"
    setup = service.task(wf, "setup")
    assert (setup["status"], setup["exit_code"], setup["message"]) == (
        "COMPLETED",
        0,
        "marked done by the user",
    )
    assert not setup["waiting_for_user"]
    lines = [ln.text for ln in await service.logs(wf, "after")]
    assert lines == ["from-setup", "added"]  # the output, with what the user added, went on
    with pytest.raises(Conflict, match="already ended COMPLETED"):
        await service.done(wf, "setup")


async def test_done_and_retry_refuse_what_is_not_held(service: Service) -> None:
    wf = await service.submit(interactive_spec())
    with pytest.raises(Conflict, match=r"task 'after' of itask-1 is WAITING; done needs an"):
        await service.done(wf, "after")
    await _held(service, wf, "setup", "waiting_for_user")
    with pytest.raises(Conflict, match=r"RUNNING \(waiting for its user\); retry needs a task"):
        await service.retry(wf, "setup")
    with pytest.raises(NotFound, match="no task 'nope'"):
        await service.done(wf, "nope")
    with pytest.raises(NotFound):
        await service.done("nope-1", "setup")
    await service.cancel(wf)
    assert await asyncio.wait_for(service.wait(wf), 20) == "FAILED_CANCELED"
    setup = service.task(wf, "setup")
    assert (setup["status"], setup["message"]) == ("FAILED_CANCELED", "canceled by user")
    assert service.task(wf, "after")["status"] == "FAILED_CANCELED"


async def test_interactive_task_times_out_with_a_clear_message(service: Service) -> None:
    wf = await service.submit(interactive_spec(exec_timeout="2s"))
    await _held(service, wf, "setup", "waiting_for_user")
    assert await asyncio.wait_for(service.wait(wf), 20) == "FAILED_EXEC_TIMEOUT"
    setup = service.task(wf, "setup")
    assert setup["status"] == "FAILED_EXEC_TIMEOUT"
    assert setup["message"] == (
        "exec timeout: interactive task not marked done within 2s "
        "(`osmo workflow done WF TASK` ends it)"
    )
    assert service.task(wf, "after")["status"] == "FAILED_UPSTREAM"


async def test_debug_on_failure_holds_then_retry_reruns_only_it(
    service: Service, tmp_path: Path
) -> None:
    fixed = tmp_path / "fixed"
    wf = await service.submit(DEBUG.format(fixed=fixed))
    t = await _held(service, wf, "flaky", "held_for_debugging")
    assert (t["status"], t["exit_code"], t["hold"]) == ("RUNNING", 3, "debug")
    assert t["message"].startswith("exit code 3; held for debugging until ")
    assert t["message"].endswith(f"`osmo workflow retry {wf} flaky` re-runs it")
    assert service.get(wf)["status"] == "RUNNING"  # not FAILED while it is held
    assert service.task(wf, "after")["status"] == "WAITING"
    # the failed attempt's workdir and environment are there to look at
    out, code = await _exec(service, wf, "flaky", "sh", "-c", "cat state; echo $OSMO_RETRY_ID")
    assert (out, code) == (b"attempt-0\n0\n", 0)

    fixed.touch()  # the user fixes the cause
    assert (await service.retry(wf, "flaky"))["retry_id"] == 1
    assert await asyncio.wait_for(service.wait(wf), 20) == "COMPLETED"
    flaky = service.task(wf, "flaky")
    assert [(a["retry_id"], a["status"], a["exit_code"]) for a in flaky["attempts"]] == [
        (0, "FAILED", 3),
        (1, "COMPLETED", 0),
    ]
    assert flaky["attempts"][0]["message"] == "exit code 3; retried by the user"
    after = service.task(wf, "after")
    assert [a["retry_id"] for a in after["attempts"]] == [0]  # ran once, after the retry
    assert [ln.text for ln in await service.logs(wf, "after")] == ["downstream-ran"]


async def test_cancel_releases_a_task_held_for_debugging(service: Service, tmp_path: Path) -> None:
    wf = await service.submit(DEBUG.format(fixed=tmp_path / "never"))
    await _held(service, wf, "flaky", "held_for_debugging")
    await service.cancel(wf)
    assert await asyncio.wait_for(service.wait(wf), 20) == "FAILED_CANCELED"
    flaky = service.task(wf, "flaky")
    assert (flaky["status"], flaky["exit_code"], flaky["held_for_debugging"]) == (
        "FAILED_CANCELED",
        3,
        False,
    )
    assert len(flaky["attempts"]) == 1
    # the holder process is gone: the agent has no running attempt left
    backend = service.backends["local"]
    states = await backend.status([f"{wf}/flaky/0"])
    assert states[f"{wf}/flaky/0"].state == "exited"


async def test_held_tasks_survive_a_control_plane_restart(
    service_factory: Any, tmp_path: Path
) -> None:
    data = tmp_path / "osmo"
    first = Service(make_config(data))
    await first.start()
    wi = await first.submit(interactive_spec())
    wd = await first.submit(DEBUG.format(fixed=tmp_path / "fixed"))
    await _held(first, wi, "setup", "waiting_for_user")
    await _held(first, wd, "flaky", "held_for_debugging")
    await first.stop()  # the agent and the holders go on

    second = await service_factory(data)
    assert second.task(wi, "setup")["waiting_for_user"]
    assert second.task(wd, "flaky")["held_for_debugging"]
    cmd = 'cat notes; echo added > "$OSMO_OUTPUT/added"'
    assert await _exec(second, wi, "setup", "sh", "-c", cmd) == (b"prepared\n", 0)
    await second.done(wi, "setup")
    (tmp_path / "fixed").touch()
    await second.retry(wd, "flaky")
    # a decision taken just before a crash is carried out by the next engine
    assert await asyncio.wait_for(second.wait(wi), 20) == "COMPLETED"
    assert await asyncio.wait_for(second.wait(wd), 20) == "COMPLETED"


async def test_a_decision_persisted_before_a_restart_is_carried_out(
    service_factory: Any, tmp_path: Path
) -> None:
    data = tmp_path / "osmo"
    first = Service(make_config(data))
    await first.start()
    wf = await first.submit(interactive_spec())
    await _held(first, wf, "setup", "waiting_for_user")
    # the decision is committed, but the engine stops before the agent hears of it
    first.backends["local"].release = _never  # type: ignore[method-assign]
    await _exec(first, wf, "setup", "sh", "-c", 'echo added > "$OSMO_OUTPUT/added"')
    await first.done(wf, "setup")
    await first.stop()
    second = await service_factory(data)
    assert await asyncio.wait_for(second.wait(wf), 20) == "COMPLETED"


async def _never(key: str) -> None:
    await asyncio.Event().wait()


@pytest.mark.parametrize(
    ("field", "value", "expect"),
    [
        ("debug", "sometimes", "debug: expected 'on-failure', got 'sometimes'"),
        ("interactive", "maybe", "interactive: expected true or false, got 'maybe'"),
    ],
)
def test_bad_hold_values_are_located(field: str, value: str, expect: str) -> None:
    from osmo_core.spec import load_spec

    text = (
        f"workflow:\n  name: x\n  tasks:\n  - name: a\n    command: [true]\n    {field}: {value}\n"
    )
    with pytest.raises(SpecError) as err:
        load_spec(text, file="x.yaml")
    (p,) = err.value.problems
    assert (p.file, p.line, p.field) == ("x.yaml", 6, f"workflow.tasks[0].{field}")
    assert expect in str(err.value)


async def test_a_held_task_outlives_a_killed_engine(osmo_env: dict[str, str]) -> None:
    """`osmo workflow run` is killed (SIGKILL) while its task waits for the user; the next
    engine on the data directory finds it waiting, and `done` finishes the workflow."""
    home = Path(osmo_env["OSMO_HOME"])
    spec = home.parent / "itask.yaml"
    spec.write_text(interactive_spec())
    run = await asyncio.create_subprocess_exec(
        *osmo_cli("workflow", "run", str(spec)),
        env=osmo_env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert run.stderr is not None
    try:
        line = b""
        while b"waiting for the user" not in line:  # the progress output says so
            line = await asyncio.wait_for(run.stderr.readline(), 30)
            assert line, "the run ended before its task waited"
        assert b"`osmo workflow done itask-1 setup` when finished" in line
    finally:
        run.kill()
        await run.wait()
    svc = Service(make_config(home))
    await svc.start()
    try:
        assert svc.task("itask-1", "setup")["waiting_for_user"]
        await _exec(svc, "itask-1", "setup", "sh", "-c", 'echo added > "$OSMO_OUTPUT/added"')
        await svc.done("itask-1", "setup")
        assert await asyncio.wait_for(svc.wait("itask-1"), 20) == "COMPLETED"
    finally:
        await svc.stop()


async def test_a_debug_hold_ends_at_the_hold_timeout(service_factory: Any, tmp_path: Path) -> None:
    svc = await service_factory(hold_timeout=1.5)  # no exec timeout: OsmoConfig.hold_timeout
    wf = await svc.submit(DEBUG.format(fixed=tmp_path / "never"))
    t = await _held(svc, wf, "flaky", "held_for_debugging")
    assert t["hold_until"] - t["start_time"] < 10
    assert await asyncio.wait_for(svc.wait(wf), 20) == "FAILED"
    flaky = svc.task(wf, "flaky")
    assert (flaky["status"], flaky["exit_code"], flaky["message"]) == (
        "FAILED",
        3,
        "exit code 3; held for debugging until the hold timeout (1.5s)",
    )
    assert svc.task(wf, "after")["status"] == "FAILED_UPSTREAM"


async def test_outputs_are_uploaded_once_the_user_is_done(service: Service, tmp_path: Path) -> None:
    dest = tmp_path / "bucket"
    spec = (
        "workflow:\n  name: up\n  tasks:\n  - name: work\n    interactive: true\n"
        f"    command: [sh, -c, 'echo early > {{{{output}}}}/a']\n    outputs: [{{url: {dest}}}]\n"
    )
    wf = await service.submit(spec)
    await _held(service, wf, "work", "waiting_for_user")
    await _exec(service, wf, "work", "sh", "-c", 'echo late > "$OSMO_OUTPUT/b"')
    assert not dest.exists() or not any(dest.iterdir())  # nothing uploaded while it waits
    await service.done(wf, "work")
    assert await asyncio.wait_for(service.wait(wf), 20) == "COMPLETED"
    assert sorted(p.name for p in dest.rglob("*") if p.is_file()) == ["a", "b"]
