"""JupyterLab's own Terminal widget (xterm.js), in a real browser (Debian's Chromium driven by
Playwright), opens a shell inside a running task through the per-task terminals API: the same
TerminalManager and Terminal classes JupyterLab uses, given the task's base URL (the recipe in
osmo_jupyter/server/terminals.py). Keystrokes typed into xterm.js run in the task."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.interactive.conftest import long_spec
from tests.notebook.conftest import TOKEN, base_env, jupyter
from tests.notebook.test_browser import CHROMIUM, CHROMIUM_ARGS

OPEN = """async ([wf, task]) => {
  const app = window.jupyterapp;
  const local = await app.commands.execute('terminal:create-new');  // JupyterLab's classes
  const Terminal = local.content.constructor, MainAreaWidget = local.constructor;
  const Manager = app.serviceManager.terminals.constructor;
  const server = app.serviceManager.serverSettings;
  const base = server.baseUrl + 'osmo/api/v1/workflows/' + wf + '/tasks/' + task + '/';
  const settings = {...server, baseUrl: base, wsUrl: base.replace(/^http/, 'ws')};
  const session = await new Manager({serverSettings: settings}).startNew();
  const widget = new MainAreaWidget({content: new Terminal(session)});
  widget.id = 'osmo-task-terminal';
  widget.title.label = wf + '/' + task;
  app.shell.add(widget, 'main');
  app.shell.activateById(widget.id);
  local.dispose();
  return session.name;
}"""


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    env = base_env(tmp_path)
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "jupyter-config")
    with jupyter("lab", tmp_path, env, "--LabApp.expose_app_in_browser=True") as url:
        yield url, env


def call(url: str, method: str, path: str, body: object = None) -> dict[str, object]:
    req = urllib.request.Request(
        f"{url}/osmo/api/v1/{path}",
        None if body is None else json.dumps(body).encode(),
        {"Authorization": f"token {TOKEN}"},
        method=method,
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def wait_for(cond: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_jupyterlabs_terminal_widget_runs_a_shell_in_the_task(lab, tmp_path):
    url, _ = lab
    wf = str(call(url, "POST", "workflows", {"spec": long_spec()})["id"])
    task = f"workflows/{wf}/tasks/main"
    wait_for(lambda: call(url, "GET", task)["status"] == "RUNNING", "the task to run")
    workdir = Path(str(call(url, "GET", task)["workdir"]))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{url}/lab?token={TOKEN}")
            page.wait_for_function("window.jupyterapp && window.jupyterapp.started", timeout=60_000)
            page.evaluate("window.jupyterapp.started")
            name = page.evaluate(OPEN, [wf, "main"])
            term = page.locator("#osmo-task-terminal .xterm")
            term.wait_for(timeout=30_000)
            wait_for(lambda: call(url, "GET", f"{task}/api/terminals/{name}"), "the terminal")
            time.sleep(1.0)  # the shell's prompt
            term.click()
            page.keyboard.type("echo $TASK_SECRET-$((6*7)) > from-lab\n")
            wait_for(lambda: (workdir / "from-lab").exists(), "the command typed into xterm.js")
            wait_for(
                lambda: (workdir / "from-lab").read_text() == "inside-the-task-42\n",
                "the command's output",
                timeout=10,
            )
        finally:
            browser.close()
    call(url, "POST", f"workflows/{wf}/cancel")
