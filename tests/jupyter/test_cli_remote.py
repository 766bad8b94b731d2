"""The remote `osmo` CLI end to end: a real `jupyter osmo` server (a subprocess, shared by the
module) driven by `python -m osmo_core.cli` subprocesses, as a user would run them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, REPO, free_port, osmo_cli
from tests.jupyter.test_headless import TOKEN, call, jupyter_osmo

SLEEP_SPEC = "workflow:\n  name: sleeper\n  tasks:\n  - name: nap\n    command: [sleep, '30']\n"
BAD_SPEC = "workflow:\n  name: bad\n  tasks:\n  - name: t\n    command: [echo]\n    bogus: 1\n"


async def _stop_agent(home: Path) -> None:
    from osmo_core.backends.local import LocalBackend

    await LocalBackend("local", {"root": str(home)}).shutdown_agent(force=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server's URL; its agent is stopped afterwards."""
    root = tmp_path_factory.mktemp("osmo-server")
    env = dict(os.environ)
    env.pop("OSMO_STORE_URL", None)
    env["OSMO_HOME"] = str(root / "home")
    env["XDG_CONFIG_HOME"] = str(root / "config")
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        env[var] = str(root / var.lower())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        jupyter_osmo(f"--port={port}"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "the server exited"
            with contextlib.suppress(OSError):
                if call(f"{url}/osmo/api/v1/health")[0] == 200:
                    break
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)
        if (root / "home" / "agent.lock").exists():
            asyncio.run(_stop_agent(root / "home"))


def osmo(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        osmo_cli(*args), env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def env(osmo_env: dict[str, str], server: str) -> dict[str, str]:
    """A user's environment, logged in to the server."""
    r = osmo(osmo_env, "login", server, "--token", TOKEN)
    assert r.returncode == 0, r.stderr
    return osmo_env


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the server's tasks can write: they run as users of their own (isolation), and
    pytest's tmp_path is its user's alone."""
    d = Path(tempfile.mkdtemp(prefix="osmo-shared-"))
    d.chmod(0o777)
    yield d
    shutil.rmtree(d)


def query(env: dict[str, str], wf_id: str) -> dict[str, Any]:
    r = osmo(env, "workflow", "query", wf_id, "--format", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait_for(env: dict[str, str], wf_id: str, pred: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        wf = query(env, wf_id)
        if pred(wf):
            return wf
        assert time.monotonic() < deadline, wf
        time.sleep(0.2)


def test_login_keeps_credentials_private(osmo_env: dict[str, str], server: str) -> None:
    r = osmo(osmo_env, "login", server + "/", "--token", TOKEN)
    assert r.returncode == 0, r.stderr
    assert f"logged in to {server}" in r.stdout
    path = Path(osmo_env["XDG_CONFIG_HOME"]) / "osmo" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": server, "token": TOKEN}
    assert [p.name for p in path.parent.iterdir()] == ["credentials.json"]  # no temp left
    r = osmo(osmo_env, "logout")
    assert r.returncode == 0 and not path.exists()
    r = osmo(osmo_env, "workflow", "list")
    assert r.returncode == 2
    assert "not logged in: run `osmo login URL --token TOKEN`" in r.stderr


def test_a_remote_list_imports_neither_the_engine_nor_the_spec_models(
    env: dict[str, str],
) -> None:
    """Start-up is a feature: `osmo workflow list` against a server paid ~0.2 s for the spec's
    pydantic models and Jinja, pulled in by `spec.labels` through the package's __init__."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from startup import FORBIDDEN_REMOTE, creeping

    args = ("workflow", "list", "--label", "project=sim_*")
    assert osmo(env, *args).returncode == 0
    assert creeping(osmo_cli(*args), FORBIDDEN_REMOTE, env) == []


def test_submit_wait_runs_to_completion(env: dict[str, str]) -> None:
    r = osmo(env, "workflow", "submit", str(EXAMPLES / "hello.yaml"), "--wait")
    assert r.returncode == 0, r.stdout + r.stderr
    wf_id = r.stdout.splitlines()[0]
    assert re.fullmatch(r"hello-\d+", wf_id)
    assert f"{wf_id}: COMPLETED" in r.stdout
    assert "hello" in r.stdout.splitlines()[-1] and "COMPLETED" in r.stdout.splitlines()[-1]
    assert f"{wf_id} hello COMPLETED exit 0" in r.stderr  # progress on stderr


def test_submit_then_read_commands(env: dict[str, str]) -> None:
    r = osmo(
        env,
        "workflow",
        "submit",
        "-",
        "--priority",
        "HIGH",
        stdin=BAD_SPEC.replace("    bogus: 1\n", "").replace(
            "[echo]", "[sh, -c, 'echo one; echo two; echo three']"
        ),
    )
    assert r.returncode == 0, r.stderr
    wf_id = r.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"bad-\d+", wf_id)
    wf = wait_for(env, wf_id, lambda w: w["status"] == "COMPLETED")
    assert wf["tasks"][0]["name"] == "t"

    r = osmo(env, "workflow", "submit", str(EXAMPLES / "hello.yaml"), "--format", "json")
    assert r.returncode == 0, r.stderr
    hello_id = json.loads(r.stdout)["id"]

    r = osmo(env, "workflow", "list", "--format", "json", "--count", "100")
    ids = [w["id"] for w in json.loads(r.stdout)]
    assert wf_id in ids and hello_id in ids
    r = osmo(env, "workflow", "list", "--format", "json", "--count", "1")
    assert [w["id"] for w in json.loads(r.stdout)] == [hello_id]  # newest first
    r = osmo(env, "workflow", "list", "--format", "json", "--count", "1", "--offset", "1")
    assert [w["id"] for w in json.loads(r.stdout)] == [wf_id]
    r = osmo(env, "workflow", "list", "--status", "FAILED_CANCELED", "--format", "json")
    assert wf_id not in [w["id"] for w in json.loads(r.stdout)]
    r = osmo(env, "workflow", "list")
    assert r.returncode == 0 and wf_id in r.stdout and "COMPLETED" in r.stdout

    r = osmo(env, "workflow", "logs", wf_id, "--task", "t")
    assert r.stdout.splitlines() == ["one", "two", "three"]
    r = osmo(env, "workflow", "logs", wf_id, "--task", "t", "-n", "2", "--format", "json")
    assert [ln["text"] for ln in json.loads(r.stdout)] == ["two", "three"]
    r = osmo(env, "workflow", "logs", wf_id, "--task", "nope")
    assert r.returncode == 4 and "nope" in r.stderr

    r = osmo(env, "workflow", "query", wf_id)
    assert r.returncode == 0 and r.stdout.startswith(f"{wf_id}: COMPLETED")
    r = osmo(env, "workflow", "spec", wf_id)
    assert "echo one; echo two" in r.stdout
    r = osmo(env, "workflow", "spec", wf_id, "--format", "json")
    assert set(json.loads(r.stdout)) == {"original", "rendered", "spec"}
    r = osmo(env, "workflow", "query", "nope-1")
    assert r.returncode == 4


def test_cancel_a_running_workflow(env: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "sleeper.yaml"
    spec.write_text(SLEEP_SPEC)
    r = osmo(env, "workflow", "submit", str(spec))
    assert r.returncode == 0, r.stderr
    wf_id = r.stdout.strip().splitlines()[-1]
    wait_for(env, wf_id, lambda w: any(t["status"] == "RUNNING" for t in w["tasks"]))
    r = osmo(env, "workflow", "cancel", wf_id)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{wf_id}: ")
    wf = wait_for(env, wf_id, lambda w: w["status"] == "FAILED_CANCELED", timeout=20)
    assert wf["end_time"]
    r = osmo(env, "workflow", "cancel", wf_id, "nope-1")
    assert r.returncode == 4  # it already ended; the other does not exist


def test_invalid_spec_is_located(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_SPEC)
    r = osmo(env, "workflow", "submit", str(bad))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "invalid workflow spec:" in r.stderr
    assert f"{bad}:6:5: workflow.tasks[0].bogus: unknown field 'bogus'" in r.stderr
    r = osmo(env, "workflow", "submit", str(bad), "--format", "json")
    assert r.returncode == 2
    assert json.loads(r.stdout)["details"][0]["line"] == 6
    r = osmo(env, "workflow", "submit", str(EXAMPLES / "hello.yaml"), "--pool", "nope")
    assert r.returncode == 3, r.stderr
    assert "pool 'nope' does not exist" in r.stderr
    r = osmo(env, "workflow", "submit", str(EXAMPLES / "hello.yaml"), "--set", "novalue")
    assert r.returncode == 2 and "is not KEY=VALUE" in r.stderr
    r = osmo(env, "workflow", "submit", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "cannot read" in r.stderr


def test_refused_token(osmo_env: dict[str, str], server: str) -> None:
    r = osmo(osmo_env, "login", server, "--token", "wrong")
    assert r.returncode == 1
    assert "the server refused the token: " in r.stderr and "run osmo login again" in r.stderr
    assert not (Path(osmo_env["XDG_CONFIG_HOME"]) / "osmo" / "credentials.json").exists()
    # a token revoked after login
    path = Path(osmo_env["XDG_CONFIG_HOME"]) / "osmo" / "credentials.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"url": server, "token": "wrong"}))
    r = osmo(osmo_env, "workflow", "list")
    assert r.returncode == 1 and "refused the token" in r.stderr


def test_not_logged_in(osmo_env: dict[str, str]) -> None:
    for cmd in (["list"], ["query", "x-1"], ["submit", str(EXAMPLES / "hello.yaml")]):
        r = osmo(osmo_env, "workflow", *cmd)
        assert r.returncode == 2
        assert "not logged in: run `osmo login URL --token TOKEN`" in r.stderr


def test_unreachable_server(osmo_env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # closed
    r = osmo(osmo_env, "login", url, "--token", TOKEN)
    assert r.returncode == 1
    assert f"cannot reach {url}: " in r.stderr
    path = Path(osmo_env["XDG_CONFIG_HOME"]) / "osmo" / "credentials.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"url": url, "token": TOKEN}))
    r = osmo(osmo_env, "workflow", "query", "x-1", "--format", "json")
    assert r.returncode == 1
    assert f"cannot reach {url}" in json.loads(r.stdout)["error"]


def test_tokens_users_and_refusals(env: dict[str, str], tmp_path: Path, server: str) -> None:
    r = osmo(env, "token", "create", "bob-laptop", "--user", "bob", "--expires-in-days", "1")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("osmo_") and "shows it only once" in r.stderr

    bob = {**env, "XDG_CONFIG_HOME": str(tmp_path / "bob-config")}  # bob's own login
    r = osmo(bob, "login", server, "--token", token)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("as bob (user)")
    r = osmo(bob, "workflow", "submit", str(EXAMPLES / "hello.yaml"), "--wait")
    assert r.returncode == 0, r.stderr
    bobs = r.stdout.splitlines()[0]

    r = osmo(env, "workflow", "submit", str(EXAMPLES / "hello.yaml"))
    owners = r.stdout.strip()
    r = osmo(bob, "workflow", "query", owners)
    assert r.returncode == 1
    assert f"not allowed: workflow '{owners}' belongs to another user" in r.stderr
    r = osmo(bob, "workflow", "list", "--format", "json")
    assert [w["id"] for w in json.loads(r.stdout)] == [bobs]
    r = osmo(env, "workflow", "list", "--user", "bob", "--format", "json")
    assert [w["id"] for w in json.loads(r.stdout)] == [bobs]

    r = osmo(bob, "token", "list", "--format", "json")
    (mine,) = json.loads(r.stdout)
    assert mine["user"] == "bob" and "token" not in mine and "hash" not in mine
    r = osmo(env, "token", "revoke", mine["id"])
    assert r.returncode == 0 and f"{mine['id']}: revoked" in r.stdout
    r = osmo(bob, "workflow", "list")
    assert r.returncode == 1
    assert f"personal access token {mine['id']} has been revoked" in r.stderr


def test_credentials_set_list_delete(env: dict[str, str], tmp_path: Path) -> None:
    secret = "omni-password-0123456789"
    key = tmp_path / "id_key"
    key.write_text("-----KEY----- abcdefghijkl\n")
    r = osmo(env, "credential", "set", "omni", "--payload", "user=alice", f"pass={secret}")
    assert r.returncode == 0 and r.stdout.strip() == "Set GENERIC credential omni.", r.stderr
    r = osmo(env, "credential", "set", "ssh", "--payload-file", f"private={key}")
    assert r.returncode == 0, r.stderr
    r = osmo(env, "credential", "set", "lake", "--type", "DATA", "--payload", "endpoint=s3:/x")
    assert r.returncode == 2  # invalid input, each field named
    assert "payload.endpoint" in r.stderr and "payload.access_key_id" in r.stderr
    r = osmo(env, "credential", "set", "x", "--payload", "novalue")
    assert r.returncode == 2 and "--payload[0]" in r.stderr
    r = osmo(env, "credential", "list", "--format", "json")
    listed = json.loads(r.stdout)
    assert [(c["name"], c["keys"]) for c in listed] == [
        ("omni", ["pass", "user"]),
        ("ssh", ["private"]),
    ]
    assert secret not in r.stdout and "abcdefghijkl" not in r.stdout
    r = osmo(env, "credential", "list")
    assert r.stdout.splitlines()[1].split()[:2] == ["omni", "GENERIC"]
    r = osmo(env, "credential", "delete", "omni")
    assert r.returncode == 0 and r.stdout.strip() == "Deleted credential omni."
    r = osmo(env, "credential", "delete", "omni")
    assert r.returncode == 4 and "has no credential 'omni'" in r.stderr


def test_logs_follow_restart_resources_and_version(env: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "ticker.yaml"
    spec.write_text(
        "workflow:\n  name: ticker\n  tasks:\n  - name: tick\n    command: [sh, -c, "
        "'for i in 1 2 3; do echo line $i; sleep 0.2; done']\n"
    )
    wf_id = osmo(env, "workflow", "submit", str(spec)).stdout.strip()
    r = osmo(env, "workflow", "logs", wf_id, "--task", "tick", "-f")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["line 1", "line 2", "line 3"]
    assert "--- tick COMPLETED ---" in r.stderr
    r = osmo(env, "workflow", "logs", wf_id, "--task", "tick", "-f", "-n", "1")
    assert r.stdout.splitlines() == ["line 3"]

    r = osmo(env, "workflow", "restart", wf_id)
    assert r.returncode == 0, r.stderr
    new_id = r.stdout.strip()
    assert new_id != wf_id and new_id.startswith("ticker-")
    wait_for(env, new_id, lambda w: w["status"] == "COMPLETED")

    r = osmo(env, "resource", "list", "--format", "json")
    (node,) = json.loads(r.stdout)
    assert node["pools"] == ["local"] and node["cpu"] > 0
    r = osmo(env, "pool", "list", "--format", "json")
    assert [p["name"] for p in json.loads(r.stdout)] == ["local"]
    r = osmo(env, "version", "--format", "json")
    info = json.loads(r.stdout)
    assert info["client"] == info["server"] and info["url"].startswith("http://127.0.0.1:")


def test_restart_keeps_the_submits_labels_and_env(env: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "greet.yaml"
    spec.write_text(
        "workflow:\n  name: greet\n  tasks:\n  - name: t\n    command: [sh, -c, 'echo $WORD']\n"
    )
    r = osmo(env, "workflow", "submit", str(spec), "--label", "stage=prod", "--set-env", "WORD=hi")
    assert r.returncode == 0, r.stderr
    wf_id = r.stdout.strip()
    wait_for(env, wf_id, lambda w: w["status"] == "COMPLETED")
    r = osmo(env, "workflow", "restart", wf_id, "--all")
    assert r.returncode == 0, r.stderr
    new_id = r.stdout.strip().split()[-1]
    wf = wait_for(env, new_id, lambda w: w["status"] == "COMPLETED")
    assert wf["labels"] == {"stage": "prod"}
    r = osmo(env, "workflow", "logs", new_id, "--task", "t")
    assert r.stdout.splitlines() == ["hi"], r.stderr


def test_submit_wait_timeout(env: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "sleeper.yaml"
    spec.write_text(SLEEP_SPEC)
    r = osmo(env, "workflow", "submit", str(spec), "--wait", "--timeout", "1")
    assert r.returncode == 1
    wf_id = r.stdout.strip().splitlines()[0]
    assert f"{wf_id} is still RUNNING after 1s; it goes on running" in r.stderr
    assert osmo(env, "workflow", "cancel", wf_id).returncode == 0


def test_restart_reuses_completed_groups_and_the_cache_is_cleared_per_owner(
    env: dict[str, str], server: str, tmp_path: Path, shared_dir: Path
) -> None:
    from tests.core.test_restart_cache import CHAIN, runs

    d = shared_dir
    spec = tmp_path / "chain.yaml"
    spec.write_text(CHAIN.format(d=d))
    wf1 = osmo(env, "workflow", "submit", str(spec)).stdout.strip()
    wait_for(env, wf1, lambda w: w["status"] == "FAILED")
    (d / "ok").touch()
    r = osmo(env, "workflow", "restart", wf1)
    assert r.returncode == 0, r.stderr
    wf2 = r.stdout.strip()
    assert f"restarted {wf1} as {wf2}; reused: a" in r.stderr
    wait_for(env, wf2, lambda w: w["status"] == "COMPLETED")
    assert [runs(d, t) for t in "abc"] == [1, 2, 1]
    r = osmo(env, "workflow", "query", wf2)
    assert re.search(rf"a +COMPLETED +exit 0 .*reused from {wf1}/a/0", r.stdout), r.stdout

    r = osmo(env, "workflow", "restart", wf2, "--from", "b", "--all")
    assert r.returncode == 2 and "not allowed with" in r.stderr
    r = osmo(env, "workflow", "restart", wf2, "--from", "zz")
    assert r.returncode == 2 and "no task 'zz'" in r.stderr  # invalid input, naming --from
    r = osmo(env, "workflow", "restart", wf2, "--from", "b", "--format", "json")
    assert json.loads(r.stdout)["reused"] == ["a"]

    r = osmo(env, "cache", "clear", "--task", "a")
    assert r.returncode == 0 and "0 cache entries cleared" in r.stdout, r.stderr
    made = osmo(env, "token", "create", "bob-cache", "--user", "bob").stdout.strip()
    bob = {**env, "XDG_CONFIG_HOME": str(tmp_path / "bob-config")}
    assert osmo(bob, "login", server, "--token", made).returncode == 0
    assert "0 cache entries cleared" in osmo(bob, "cache", "clear").stdout
    r = osmo(bob, "cache", "clear", "--user", "someone")
    assert r.returncode != 0 and "may only clear their own" in r.stderr
