"""One bad workflow in a data folder fails alone: the engine, its recovery and the other
workflows go on, and `osmo workflow run` / `resume` on that folder keep working.

The poisoned workflows reach the store as they did before validation refused them: submitted
to the engine directly (no validation), or with a stored spec row that no longer loads.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from osmo_core.service import Service
from osmo_core.spec import Workflow
from tests.conftest import ServiceFactory, osmo_cli


def workflow(name: str, files: list[dict[str, object]] | None = None) -> Workflow:
    """A one-task workflow; `files` as written in a spec (the model does not validate them)."""
    task = {"name": "t", "command": ["sh", "-c", "echo ran"], "files": files or []}
    return Workflow.model_validate({"name": name, "tasks": [task]})


BAD_BASE64 = [{"path": "x.bin", "contents": "!!!not base64", "base64": True}]


def rows(home: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(home / "osmo.db") as db:
        return db.execute(query).fetchall()


async def test_a_workflow_that_cannot_launch_fails_alone(service: Service) -> None:
    bad = await service.engine.submit(workflow("bad", BAD_BASE64))
    good = await service.engine.submit(workflow("good"))
    assert str(await service.wait(good)) == "COMPLETED"
    assert str(await service.wait(bad)) == "FAILED_SERVER_ERROR"
    task = service.task(bad, "t")
    assert task["status"] == "FAILED_SERVER_ERROR"
    assert "not valid base64" in task["message"]
    # the engine still takes work
    again = await service.engine.submit(workflow("after"))
    assert str(await service.wait(again)) == "COMPLETED"


async def test_recovery_fails_poisoned_workflows_and_runs_the_rest(
    tmp_path: Path, service_factory: ServiceFactory, osmo_env: dict[str, str]
) -> None:
    home = Path(osmo_env["OSMO_HOME"])
    # No CPU: everything stays SCHEDULING in the store, as if the server died before placing it.
    svc = await service_factory(home, local={"cpus": 0})
    bad = await svc.engine.submit(workflow("bad", BAD_BASE64))
    unloadable = await svc.engine.submit(workflow("unloadable"))
    chain = {"name": "cyclic", "tasks": [{"name": "a", "command": ["true"]}]}
    chain["tasks"].append({"name": "b", "command": ["true"], "inputs": [{"task": "a"}]})
    cyclic = await svc.engine.submit(Workflow.model_validate(chain))
    good = await svc.engine.submit(workflow("good"))
    await svc.stop()
    chain["tasks"][0]["inputs"] = [{"task": "b"}]  # a -> b -> a: no group could ever start
    with sqlite3.connect(home / "osmo.db") as db:  # stored specs that no longer load
        db.execute("update workflows set spec_json = '{\"name\": 1' where id = ?", (unloadable,))
        db.execute(
            "update workflows set spec_json = ? where id = ?",
            (Workflow.model_validate(chain).model_dump_json(by_alias=True), cyclic),
        )

    resumed = subprocess.run(
        osmo_cli("workflow", "resume"), env=osmo_env, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 1, resumed.stderr  # one of those it followed failed
    assert f"{good}: COMPLETED" in resumed.stdout
    assert f"{bad}: FAILED_SERVER_ERROR" in resumed.stdout
    statuses = dict(rows(home, "select id, status from workflows"))
    assert statuses == {
        bad: "FAILED_SERVER_ERROR",
        unloadable: "FAILED_SERVER_ERROR",
        cyclic: "FAILED_SERVER_ERROR",
        good: "COMPLETED",
    }
    messages = dict(rows(home, "select workflow_id, message from tasks where name != 'b'"))
    assert (
        rows(home, f"select message from tasks where workflow_id = '{cyclic}'")
        == [
            (
                "cannot load the stored workflow: SpecError: invalid workflow spec: 1 problem\n"
                "  cycle: a -> b -> a",
            )
        ]
        * 2
    )
    assert "cannot launch" in messages[bad] and "not valid base64" in messages[bad]
    assert messages[unloadable].startswith("cannot load the stored workflow")
    assert rows(home, f"select status from groups where workflow_id = '{unloadable}'") == [
        ("FAILED_SERVER_ERROR",)
    ]

    # The folder is not bricked: another run and another resume work.
    spec = tmp_path / "ok.yaml"
    spec.write_text("workflow:\n  name: ok\n  tasks:\n  - {name: t, command: [true]}\n")
    run = subprocess.run(
        osmo_cli("workflow", "run", str(spec)),
        env=osmo_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "ok-1: COMPLETED" in run.stdout
    resume = subprocess.run(
        osmo_cli("workflow", "resume"), env=osmo_env, capture_output=True, text=True, timeout=120
    )
    assert resume.returncode == 0, resume.stderr
    assert "nothing to resume" in resume.stdout + resume.stderr
    svc = await service_factory(home)  # the unloadable one reads back, with its reason
    (task,) = svc.get(unloadable)["tasks"]
    assert task["status"] == "FAILED_SERVER_ERROR"
    assert svc.task(unloadable, "t")["message"] == messages[unloadable]


async def test_recovery_fails_workflows_whose_pool_or_backend_was_removed(
    tmp_path: Path, service_factory: ServiceFactory
) -> None:
    """An admin removed a pool or a backend while workflows used them: at the restart each of
    those fails alone, saying what is gone; recovery and the other workflows go on."""
    home = tmp_path / "home"
    svc = await service_factory(home, local={"cpus": 0})  # nothing starts: all stay queued
    on_gone_pool = await svc.engine.submit(workflow("gonepool"))
    on_gone_backend = await svc.engine.submit(workflow("gonebackend"))
    good = await svc.engine.submit(workflow("good"))
    await svc.stop()
    with sqlite3.connect(home / "osmo.db") as db:
        db.execute("update workflows set pool = 'gpu' where id = ?", (on_gone_pool,))
        db.execute(  # as if launched on a backend the config no longer has
            "update tasks set status = 'RUNNING', backend = 'jetson', node = 'orin', "
            'alloc = \'{"cpu": 1, "memory": 0, "gpus": []}\' where workflow_id = ?',
            (on_gone_backend,),
        )

    svc = await service_factory(home)
    assert str(await svc.wait(good)) == "COMPLETED"
    assert str(await svc.wait(on_gone_pool)) == "FAILED_SERVER_ERROR"
    assert str(await svc.wait(on_gone_backend)) == "FAILED_SERVER_ERROR"
    assert "its pool 'gpu' is no longer configured" in svc.task(on_gone_pool, "t")["message"]
    message = svc.task(on_gone_backend, "t")["message"]
    assert "launched on backend 'jetson', which is no longer configured" in message
