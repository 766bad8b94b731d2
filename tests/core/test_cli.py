"""The `osmo` CLI as a user runs it: a subprocess, exit codes, messages."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import EXAMPLES, osmo_cli


def osmo(
    env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        osmo_cli(*args), env=env, capture_output=True, text=True, input=stdin, timeout=timeout
    )


BAD = """workflow:
  name: bad
  tasks:
  - name: a
    comand: [echo]
  - name: b
    command: [true]
    inputs:
    - task: nope
"""


def test_parsing_imports_no_command_code() -> None:
    """Start-up time is a feature: building the parser and parsing imports none of what the
    commands run (the Service and its store, the client, the interactive modules)."""
    probe = (
        "import sys\n"
        "from osmo_core.cli import build_parser\n"
        "build_parser().parse_args(['workflow', 'validate', 'x.yaml'])\n"
        "heavy = ('osmo_core.service', 'osmo_core.client', 'osmo_core.interactive', "
        "'osmo_core.spec', 'sqlalchemy', 'asyncssh', 'rich')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_validate_ok(osmo_env: dict[str, str]) -> None:
    r = osmo(osmo_env, "workflow", "validate", str(EXAMPLES / "serial.yaml"))
    assert r.returncode == 0, r.stderr
    assert "valid (3 tasks, pool local)" in r.stdout


def test_validate_reports_every_problem_with_line_and_field(
    osmo_env: dict[str, str], tmp_path: Path
) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(BAD)
    r = osmo(osmo_env, "workflow", "validate", str(f))
    assert r.returncode == 2
    assert f"{f}:5:5: workflow.tasks[0].comand: unknown field 'comand'" in r.stderr
    assert "did you mean 'command'" in r.stderr
    assert "workflow.tasks[1].inputs[0].task" in r.stderr and f"{f}:9:" in r.stderr
    j = osmo(osmo_env, "workflow", "validate", str(f), "--format", "json")
    details = json.loads(j.stdout)["details"]
    assert j.returncode == 2
    assert {(d["line"], d["field"]) for d in details} >= {
        (5, "workflow.tasks[0].comand"),
        (9, "workflow.tasks[1].inputs[0].task"),
    }


def test_validate_placement_is_exit_3(osmo_env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "big.yaml"
    f.write_text(
        "workflow:\n  name: big\n  resources:\n    default:\n      memory: 1Ei\n"
        "  tasks:\n  - name: t\n    command: [true]\n"
    )
    r = osmo(osmo_env, "workflow", "validate", str(f))
    assert r.returncode == 3, r.stderr
    assert "cannot place workflow" in r.stderr
    assert f"{f}:4:" in r.stderr and "workflow.resources.default" in r.stderr
    assert "more than any machine of platform 'local'" in r.stderr


def test_run_failure_exit_1_and_plain_progress(osmo_env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "fail.yaml"
    f.write_text(
        "workflow:\n  name: fail\n  tasks:\n  - name: t\n    command: [sh, -c, 'exit 7']\n"
        "  - name: u\n    command: [true]\n    inputs: [{task: t}]\n"
    )
    r = osmo(osmo_env, "workflow", "run", str(f))
    assert r.returncode == 1
    assert "fail-1 t RUNNING" in r.stderr and "fail-1 t FAILED exit 7" in r.stderr
    assert "fail-1: FAILED" in r.stdout
    assert "FAILED_UPSTREAM" in r.stdout


def test_run_from_stdin_with_logs(osmo_env: dict[str, str]) -> None:
    r = osmo(
        osmo_env,
        "workflow",
        "run",
        "-",
        "--logs",
        stdin="workflow:\n  name: s\n  tasks:\n  - name: t\n    command: [echo, hi]\n",
    )
    assert r.returncode == 0, r.stderr
    assert "[t] hi" in r.stderr


def test_dry_run_prints_rendered_spec(osmo_env: dict[str, str]) -> None:
    r = osmo(
        osmo_env,
        "workflow",
        "run",
        str(EXAMPLES / "templated.yaml"),
        "--dry-run",
        "--set",
        "shards=2",
        "name=tiny",
    )
    assert r.returncode == 0, r.stderr
    assert "name: tiny" in r.stdout and "shard-1" in r.stdout and "shard-2" not in r.stdout
    assert not (Path(osmo_env["OSMO_HOME"]) / "osmo.db").exists()  # nothing ran, nothing stored


def test_bad_arguments(osmo_env: dict[str, str], tmp_path: Path) -> None:
    r = osmo(osmo_env, "workflow", "run", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "cannot read" in r.stderr
    r = osmo(osmo_env, "workflow", "validate", str(EXAMPLES / "hello.yaml"), "--set", "novalue")
    assert r.returncode == 2 and "novalue" in r.stderr


def test_one_engine_per_data_dir(osmo_env: dict[str, str], tmp_path: Path) -> None:
    # The first run's task waits for `go` (at most 60 s), not a fixed time: under load the
    # second CLI once started after the first had already finished, and got the lock
    go = tmp_path / "go"
    f = tmp_path / "slow.yaml"
    f.write_text(
        "workflow:\n  name: slow\n  tasks:\n  - name: t\n    command: [sh, -c]\n"
        f"    args: ['n=0; while [ ! -e {go} ] && [ $n -lt 600 ]; do sleep 0.1; n=$((n+1));"
        " done']\n"
    )
    first = subprocess.Popen(
        osmo_cli("workflow", "run", str(f)),
        env=osmo_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        lock = Path(osmo_env["OSMO_HOME"]) / "engine.lock"
        while not (lock.exists() and lock.read_text()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = osmo(osmo_env, "workflow", "run", str(EXAMPLES / "hello.yaml"))
        assert second.returncode == 4
        assert "another osmo engine" in second.stderr
    finally:
        go.touch()
        assert first.wait(30) == 0


def test_pool_list(osmo_env: dict[str, str]) -> None:
    r = osmo(osmo_env, "pool", "list", "--format", "json")
    assert r.returncode == 0, r.stderr
    pools = json.loads(r.stdout)
    assert pools[0]["name"] == "local" and pools[0]["nodes"][0]["cpu"] >= 1
    assert (pools[0]["quota"], pools[0]["fair_share"], pools[0]["queued"]) == (None, "fifo", 0)
    assert pools[0]["used"]["NORMAL"] == {"gpu": 0, "cpu": 0.0, "memory": 0}
    r = osmo(osmo_env, "pool", "list")
    assert r.returncode == 0, r.stderr
    assert "  quota: none | capacity: gpu " in r.stdout
    assert "GPUs used: HIGH 0; NORMAL 0; LOW 0 | borrowed: 0 GPUs | queued: 0" in r.stdout


def test_ctrl_c_cancels_the_workflow(osmo_env: dict[str, str], tmp_path: Path) -> None:
    f = tmp_path / "slow.yaml"
    f.write_text("workflow:\n  name: slow\n  tasks:\n  - name: t\n    command: [sleep, '30']\n")
    proc = subprocess.Popen(
        osmo_cli("workflow", "run", str(f)),
        env=osmo_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 15
    log = Path(osmo_env["OSMO_HOME"]) / "runs" / "slow-1" / "t" / "0" / "attempt.json"
    while not log.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # At once: the CLI may still be inside submit (a Ctrl-C there was once lost)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "interrupted: canceling" in err
    assert "slow-1: FAILED_CANCELED" in out and "canceled by user" in out


def test_ten_thousand_problems_are_told_as_the_first_fifty_and_a_count(
    tmp_path: Path, osmo_env: dict[str, str]
) -> None:
    """10,000 tasks too big for every machine: the error is 50 located lines and a count (it
    was a 1.4 MB message), on the CLI as on the API (InputError keeps MAX_PROBLEMS)."""
    tasks = "".join(f"  - {{name: t{i}, command: [true], resource: big}}\n" for i in range(10_000))
    spec = tmp_path / "big.yaml"
    spec.write_text(
        "workflow:\n  name: big\n  resources:\n    big: {memory: 100Ti}\n  tasks:\n" + tasks
    )
    out = osmo(osmo_env, "workflow", "validate", str(spec))
    assert out.returncode == 3, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 52, lines[:3]  # the kind, 50 problems, the count
    assert "task 't0' asks" in lines[1], lines[1]
    assert lines[-1] == "  ... and 9950 more problems"


def test_validate_asks_the_container_runtime_only_for_a_spec_with_an_image(
    osmo_env: dict[str, str], tmp_path: Path
) -> None:
    """`podman info` costs ~0.5 s, most of a validate: a spec without an image never needs its
    answer. `podman` here is a script on PATH that notes each call and answers as podman."""
    calls = tmp_path / "podman-calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    podman = bin_dir / "podman"
    podman.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho ok\n')
    podman.chmod(0o755)
    env = {**osmo_env, "PATH": f"{bin_dir}:{osmo_env.get('PATH', '')}"}
    r = osmo(env, "workflow", "validate", str(EXAMPLES / "hello.yaml"))
    assert r.returncode == 0, r.stderr
    assert not calls.exists(), calls.read_text()
    image = tmp_path / "image.yaml"
    image.write_text(
        "workflow:\n  name: img\n  tasks:\n  - name: a\n    image: busybox\n"
        "    command: [echo, hi]\n"
    )
    r = osmo(env, "workflow", "validate", str(image))
    assert r.returncode == 0, r.stderr
    assert "info" in calls.read_text()
