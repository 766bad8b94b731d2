"""Every example in examples/ runs through the real CLI on the embedded default."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, osmo_cli


def run_example(name: str, env: dict[str, str], *extra: str) -> tuple[dict, Path]:
    r = subprocess.run(
        osmo_cli("workflow", "run", str(EXAMPLES / f"{name}.yaml"), "--format", "json", *extra),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    wf = json.loads(r.stdout.strip().splitlines()[-1])
    assert wf["status"] == "COMPLETED"
    return wf, Path(env["OSMO_HOME"]) / "runs" / wf["id"]


def log(run_dir: Path, task: str, retry: int = 0, stream: str | None = None) -> list[str]:
    lines = [
        ln.split(" ", 2) for ln in (run_dir / task / str(retry) / "log").read_text().splitlines()
    ]
    return [text for _, s, text in lines if stream is None or s == stream]


def test_hello(osmo_env: dict[str, str]) -> None:
    _, runs = run_example("hello", osmo_env)
    assert log(runs, "hello") == ["Hello from hello-1, task hello"]


def test_serial_passes_data_down_the_chain(osmo_env: dict[str, str], offline_ubuntu: bool) -> None:
    wf, runs = run_example("serial", osmo_env)
    assert [t["name"] for t in wf["tasks"]] == ["task1", "task2", "task3"]
    assert log(runs, "task2", stream="stdout") == ["task2: read 'hello from task1'"]
    assert log(runs, "task3", stream="stdout") == [
        "task3: read 2 lines:",
        "hello from task1",
        "hello from task2",
    ]
    # in the image where podman runs it (tagged locally), else on the host, the log says so
    ignored = any("ubuntu:24.04 ignored" in line for line in log(runs, "task1", stream="system"))
    assert ignored is not offline_ubuntu


def test_parallel_fan_out_fan_in(osmo_env: dict[str, str]) -> None:
    wf, runs = run_example("parallel", osmo_env)
    assert log(runs, "merge") == ["sum=30"]
    merge = next(t for t in wf["tasks"] if t["name"] == "merge")
    workers = [t for t in wf["tasks"] if t["name"].startswith("worker")]
    assert all(w["end_time"] <= merge["start_time"] for w in workers)


def test_group_tasks_talk(osmo_env: dict[str, str]) -> None:
    wf, runs = run_example("group", osmo_env)
    assert log(runs, "client") == ["client: got hello from the lead"]
    assert log(runs, "server") == ["server: client said thanks"]
    assert {t["name"]: t["status"] for t in wf["tasks"]} == {
        "server": "COMPLETED",
        "client": "COMPLETED",
    }


def test_retry_via_exit_actions(osmo_env: dict[str, str]) -> None:
    wf, runs = run_example("retry", osmo_env)
    assert [(t["retry_id"], t["status"], t["exit_code"]) for t in wf["tasks"]] == [
        (0, "RESCHEDULED", 3),
        (1, "COMPLETED", 0),
    ]
    assert log(runs, "flaky", 0) == ["attempt 0"] and log(runs, "flaky", 1) == ["attempt 1"]


@pytest.mark.parametrize(
    ("sets", "shards", "greeting"), [((), 3, "hello"), (("shards=4", "greeting=hi"), 4, "hi")]
)
def test_templated(
    osmo_env: dict[str, str], sets: tuple[str, ...], shards: int, greeting: str
) -> None:
    extra = ("--set", *sets) if sets else ()
    wf, runs = run_example("templated", osmo_env, *extra)
    assert len(wf["tasks"]) == shards + 1
    assert log(runs, "gather") == [f"{greeting} from shard {i} of {shards}" for i in range(shards)]
