"""A real Jupyter server with the osmo extension and the headless identity provider (PATs) and
authorizer, as in tests/jupyter; see tests/jupyter/conftest.py."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from osmo_jupyter.authorizer import OsmoAuthorizer
from osmo_jupyter.identity import OsmoIdentityProvider
from tests.interactive.conftest import long_spec, until
from tests.jupyter.conftest import *  # noqa: F403


@pytest.fixture
def task_runs_dir() -> Iterator[Path]:
    """Where isolated tasks' folders go (the headless server runs as root here, so its tasks
    run as uids of their own): /tmp/pytest-of-root is closed to them, /tmp is not."""
    d = Path(tempfile.mkdtemp(prefix="osmo-tasks-", dir="/tmp"))
    d.chmod(0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def jp_server_config(osmo_data_dir: Path, task_runs_dir: Path) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"osmo_jupyter": True},
            "identity_provider_class": OsmoIdentityProvider,
            "authorizer_class": OsmoAuthorizer,  # as `jupyter osmo` sets them
        },
        "OsmoConfig": {
            "data_dir": str(osmo_data_dir),
            "backends": {"local": {"kind": "local", "idle_timeout": 60}},
            "task_runs_dir": str(task_runs_dir),
        },
    }


@pytest.fixture
async def pat(api: Any) -> Any:
    """`await pat("alice")` → headers with a personal access token for alice."""

    async def make(user: str) -> dict[str, str]:
        made = await api("POST", "tokens", body={"name": "test", "user": user}, status=201)
        return {"Authorization": f"Bearer {made['token']}"}

    return make


@pytest.fixture
async def cli_env(tmp_path: Path, api: Any, jp_http_port: int, jp_base_url: str) -> Any:
    """(environment logged in as alice, alice's API headers)."""
    made = await api("POST", "tokens", body={"name": "cli", "user": "alice"}, status=201)
    config = tmp_path / "config"
    (config / "osmo").mkdir(parents=True)
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    creds = {"url": url.rstrip("/"), "token": made["token"]}
    (config / "osmo" / "credentials.json").write_text(json.dumps(creds))
    env = {**os.environ, "XDG_CONFIG_HOME": str(config), "OSMO_HOME": str(tmp_path / "cli")}
    return env, {"Authorization": f"Bearer {made['token']}"}


async def start_task(api: Any, service: Any, headers: dict[str, str], **kw: Any) -> str:
    """Submit `long_spec(**kw)` over the API as `headers`' user; its id once `main` runs and
    the agent has dialled in."""
    wf = (
        await api("POST", "workflows", body={"spec": long_spec(**kw)}, headers=headers, status=201)
    )["id"]
    await until(lambda: service.task(wf, "main")["status"] == "RUNNING", what="RUNNING")
    await until(lambda: "local" in service.interactive.agents, what="the agent")
    return str(wf)
