"""A task's kernel from JupyterLab, in a real browser (Debian's Chromium, driven by Playwright)
against a real `jupyter lab` (tests/lab/conftest.py): "New notebook" on a task whose Python has
no ipykernel says what to install and leaves no notebook behind; when the task ends, the
Launcher's card of its kernel goes and its terminal says so; and the server still stops at once
on SIGTERM (a failed kernel start once left it hanging)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.interactive.test_lab_task_terminal import call
from tests.lab.conftest import Lab, browser_page, open_panel, submit_from_panel
from tests.lab.test_lab_interactive import XTERM_TEXT
from tests.notebook.test_browser import ARTIFACTS

# python3 on the task's PATH, without site-packages: no ipykernel there.
NO_IPYKERNEL = """\
workflow:
  name: bare
  tasks:
  - name: main
    command: [sh, -c, "PATH={bin}:$PATH exec sleep 120"]
"""


def server_pid(tmp_path: Path) -> int:
    """The Lab server's pid, from the server info file it writes in its runtime dir."""
    (info,) = (tmp_path / "runtime").glob("jpserver-*.json")
    return int(info.stem.removeprefix("jpserver-"))


def exited(pid: int) -> bool:
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()  # exited, not reaped
    except FileNotFoundError:
        return True


def test_new_notebook_without_ipykernel_then_the_launcher_card_goes_and_sigterm_stops(
    lab: Lab, tmp_path: Path
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").write_text('#!/bin/sh\nexec /usr/bin/env -i /usr/bin/python3 -I -S "$@"\n')
    (bindir / "python3").chmod(0o755)
    (lab.root / "bare.yaml").write_text(NO_IPYKERNEL.format(bin=bindir))
    with browser_page(failed="lab-task-kernels-failed") as page:
        wf = run_scenario(page, lab)
    assert not list(lab.root.glob("*.ipynb")), "a notebook was left behind"
    assert call(lab.url, "GET", f"workflows/{wf}")["status"] == "FAILED_CANCELED"
    pid = server_pid(tmp_path)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while not exited(pid):
        assert time.monotonic() < deadline, "the server did not stop within 10 s of SIGTERM"
        time.sleep(0.1)


def run_scenario(page: Page, lab: Lab) -> str:
    panel = open_panel(page, lab)
    submit_from_panel(page, panel, "bare.yaml")
    detail = panel.locator(".osmo-detail")
    node = detail.locator('g.osmo-dag-node[data-task="main"]')
    expect(node).to_have_attribute("data-status", "RUNNING", timeout=60_000)
    wf = detail.locator(".osmo-detail-id").inner_text()
    assert re.fullmatch(r"bare-\d+", wf), wf

    # The task's kernel cannot start: the whole message, with what to install, and no notebook.
    node.click()
    details = detail.locator('[data-task-details="main"]')
    details.get_by_role("button", name="New notebook").click()
    toast = page.locator(".Toastify__toast", has_text=f"Could not open a kernel in {wf}/main")
    expect(toast).to_be_visible(timeout=30_000)
    toast.get_by_role("button", name="Details").click()
    message = page.locator(".jp-Dialog .osmo-error-details")
    expect(message).to_contain_text("no ipykernel in the task's Python")
    expect(message).to_contain_text("pip install ipykernel")
    wraps = message.evaluate("e => getComputedStyle(e).whiteSpace")
    assert wraps == "pre-wrap", wraps
    page.locator(".jp-Dialog").get_by_role("button", name="Close").click()
    expect(page.locator(".jp-NotebookPanel")).to_have_count(0)

    # The Launcher's OSMO card offers the running task's kernel; once the task ended, no card
    # (at once, not at JupyterLab's next poll a minute later).
    page.evaluate("window.jupyterapp.commands.execute('launcher:create')")
    card = page.locator('.jp-LauncherCard[data-category="OSMO"]')
    page.locator('.jp-Launcher:visible .jp-LauncherCard[data-category="OSMO"]').click()
    expect(page.locator(".jp-Dialog select.osmo-task-picker")).to_have_text(f"{wf}/main")
    page.locator(".jp-Dialog").get_by_role("button", name="Cancel").click()
    # A shell in the task, open when the task is cancelled: it says so, and stops.
    details.get_by_role("button", name="Open terminal").click()
    page.locator(".osmo-task-terminal .xterm").last.wait_for(timeout=30_000)
    page.wait_for_function(f"({XTERM_TEXT})().trim().length > 0", timeout=15_000)  # a prompt
    call(lab.url, "POST", f"workflows/{wf}/cancel")
    expect(node).to_have_attribute("data-status", "FAILED_CANCELED", timeout=30_000)
    expect(card).to_have_count(0, timeout=10_000)
    closed = re.escape(f"task {wf}/main ended (FAILED_CANCELED") + r".*; this terminal is closed"
    ended = f"new RegExp({json.dumps(closed)}).test(({XTERM_TEXT})())"
    page.wait_for_function(ended, timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "lab-task-terminal-ended.png"))
    return wf
