"""A real `jupyter osmo` server (subprocess, 127.0.0.1, known token, private data dir) shared by
the notebook tests, and an environment pointing kernels and clients at it.

The server is started once per session (it takes seconds on the shared CI cores); each test
gets unique workflow names, so they never see each other's workflows.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from osmo_jupyter.server_env import ENV_TOKEN, ENV_URL
from tests.conftest import free_port

TOKEN = "notebook-test-token"
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Server:
    url: str
    token: str
    home: Path
    env: dict[str, str]  # for subprocesses and kernels: PYTHONPATH, OSMO_HOME, server URL


def wait_until_up(url: str, proc: subprocess.Popen[str], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/osmo/api/v1/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not answer in time")
        time.sleep(0.2)


def base_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [str(REPO), env.get("PYTHONPATH", "")] if p
    )  # kernels and agents import this checkout
    env["OSMO_HOME"] = str(tmp / "osmo")
    env["XDG_CONFIG_HOME"] = str(tmp / "config")  # no stored login leaks in
    env["JUPYTER_RUNTIME_DIR"] = str(tmp / "runtime")
    env.pop("OSMO_STORE_URL", None)
    for k in (ENV_URL, ENV_TOKEN):
        env.pop(k, None)
    return env


@contextmanager
def jupyter(app: str, root: Path, env: dict[str, str], *args: str) -> Iterator[str]:
    """`app` ("lab": JupyterLab; "notebook": Notebook 7; "osmo": the headless server) on
    127.0.0.1 with the test token, serving `root`; yields its URL. Stopped afterwards, with the
    agent it started. Its output goes to a file beside `root` (a pipe nobody reads would stop
    the server once a long session's log filled it)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = root.parent / f"jupyter-{app}-{port}.log"
    argv = {
        "lab": [sys.executable, "-m", "jupyterlab", "--no-browser", "--LabApp.news_url=",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        "notebook": [sys.executable, "-m", "notebook", "--no-browser"],
        "osmo": [sys.executable, "-c", "from osmo_jupyter.app import main; main()"],
    }[app]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*argv, "--allow-root", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
             "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
             f"--ServerApp.root_dir={root}", *args],
            env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
    try:
        wait_until_up(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        stop_agent(Path(env["OSMO_HOME"]))


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("osmo-server")
    env = base_env(tmp)
    # Tasks and kernels here run this checkout's Python, which lives under /root (0700) on the
    # test machines: out of reach of per-user task identities, which tests/security covers.
    with jupyter("osmo", tmp, env, "--OsmoConfig.task_isolation=none") as url:
        yield Server(url, TOKEN, Path(env["OSMO_HOME"]), {**env, ENV_URL: url, ENV_TOKEN: TOKEN})


def stop_agent(home: Path) -> None:
    """Agents outlive their engine by design; the tests' agent must not outlive the tests."""
    if not (home / "agent.lock").exists():
        return
    from osmo_core.backends.local import LocalBackend

    asyncio.run(LocalBackend("local", {"root": str(home)}).shutdown_agent(force=True))


@pytest.fixture
def server_env(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """This process looks like a kernel of that server: a bare Client() finds it."""
    for k, v in server.env.items():
        if k in (ENV_URL, ENV_TOKEN, "XDG_CONFIG_HOME", "OSMO_HOME"):
            monkeypatch.setenv(k, v)
    return server


_counter = iter(range(1, 1_000_000))


@pytest.fixture
def wf_name(request: pytest.FixtureRequest) -> str:
    """A workflow name unique in the session (the server numbers each name's runs)."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    return f"{base}-{next(_counter)}"
