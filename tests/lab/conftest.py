"""The JupyterLab the panel's browser tests run against: a real `jupyter lab` with the osmo
server extension and the local backend, loading this checkout's built extension
(`osmo_jupyter/labextension`) through `extra_labextensions_path`, and Chromium's flags."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.notebook.conftest import REPO, TOKEN, base_env, free_port, stop_agent, wait_until_up

BUILD = REPO / "osmo_jupyter" / "labextension"
EXT_NAME = "@osmo-jupyter/labextension"
# The flags; the background-networking ones keep Chromium off the closed network.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

SLOW = """\
workflow:
  name: slow
  tasks:
  - name: nap
    command: [sh, -c, "echo napping; sleep 120"]
"""
BAD = """\
workflow:
  name: bad
  tasks:
  - name: a
    comand: [echo, hi]
"""


@dataclass(frozen=True)
class Lab:
    url: str
    root: Path


def built_extension() -> Path:
    """This checkout's build; built here (needs node and labextension/node_modules) if absent."""
    if not (BUILD / "package.json").exists():
        ext = REPO / "labextension"
        if not (ext / "node_modules").exists():
            subprocess.run(["jlpm", "install"], cwd=ext, check=True, timeout=600)
        subprocess.run(["jlpm", "build:prod"], cwd=ext, check=True, timeout=600)
    return BUILD


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """`jupyter lab` on a folder holding example workflows, loading this checkout's extension."""
    root = tmp_path / "work"
    root.mkdir()
    shutil.copy(REPO / "examples" / "serial.yaml", root / "serial.yaml")
    (root / "slow.yaml").write_text(SLOW)
    (root / "bad.yaml").write_text(BAD)
    extensions = tmp_path / "labextensions"
    (extensions / EXT_NAME).parent.mkdir(parents=True)
    (extensions / EXT_NAME).symlink_to(built_extension(), target_is_directory=True)
    env = base_env(tmp_path)
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "jupyter-config")  # no user settings leak in
    env["JUPYTERLAB_SETTINGS_DIR"] = str(settings := tmp_path / "lab-settings")
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no news prompt over the panel
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(tmp_path / "lab-workspaces")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
         f"--LabApp.extra_labextensions_path={extensions}", "--LabApp.expose_app_in_browser=True",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_until_up(url, proc)
        yield Lab(url, root)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        stop_agent(Path(env["OSMO_HOME"]))
