"""The notebook monitor's Terminal and Notebook buttons in a real browser (Debian's Chromium,
driven by Playwright) against a real `jupyter lab` with this checkout's extension: the widget,
in a notebook's output, asks the extension (an `osmo-open` event, labextension/src/
widgetbridge.ts) for a terminal in the selected running task and for a notebook whose kernel
runs in it."""

from __future__ import annotations

import json
import urllib.request

from playwright.sync_api import expect

from tests.interactive.test_lab_task_terminal import call, wait_for
from tests.lab.conftest import Lab, browser_page
from tests.lab.test_lab_task_menu import SPEC
from tests.lab.test_lab_workflow_view import task
from tests.notebook.conftest import TOKEN
from tests.notebook.test_browser import run_all_cells


def notebook(source: str) -> str:
    cell = {"cell_type": "code", "metadata": {}, "source": source, "outputs": []}
    return json.dumps(
        {
            "cells": [{**cell, "execution_count": None}],
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


def kernels_in_sessions(lab: Lab) -> list[str]:
    req = urllib.request.Request(
        f"{lab.url}/api/sessions", headers={"Authorization": f"token {TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return [s["kernel"]["name"] for s in json.loads(resp.read())]


def test_monitor_opens_a_terminal_and_a_notebook_in_the_selected_task(lab: Lab) -> None:
    wf = str(call(lab.url, "POST", "workflows", {"spec": SPEC})["id"])
    wait_for(lambda: task(lab, wf, "runner")["status"] == "RUNNING", "runner running")
    (lab.root / "mon.ipynb").write_text(
        notebook(f"import osmo_jupyter\nosmo_jupyter.Client().workflow({wf!r}).monitor")
    )
    try:
        with browser_page(failed="lab-monitor-tools-failed") as page:
            page.goto(f"{lab.url}/lab/tree/mon.ipynb?token={TOKEN}")
            expect(page.locator(".jp-Notebook")).to_be_visible(timeout=60_000)
            idle = page.locator(".jp-StatusBar-Widget", has_text="Idle")
            expect(idle.first).to_be_visible(timeout=60_000)
            run_all_cells(page)
            monitor = page.locator(".osmo-monitor").first
            expect(monitor.locator('tr[data-task="runner"]')).to_be_visible(timeout=60_000)
            # A finished task: nothing to open in it.
            monitor.locator('tr[data-task="done-one"]').click()
            expect(monitor.locator("button.osmo-open-terminal")).to_be_disabled()
            expect(monitor.locator("button.osmo-open-notebook")).to_be_disabled()
            # The running one: a terminal tab in it, then a notebook on a kernel in it.
            monitor.locator('tr[data-task="runner"]').click()
            terminal = monitor.locator("button.osmo-open-terminal")
            expect(terminal).to_be_enabled(timeout=30_000)
            terminal.click()
            expect(page.locator(".osmo-task-terminal .xterm").last).to_be_visible(timeout=30_000)
            tab = page.locator(".lm-TabBar-tab", has_text=f"{wf}/runner")
            expect(tab).to_have_count(1)
            expect(monitor.locator(".osmo-hint")).to_have_count(0)  # handled by the extension
            page.locator(".lm-TabBar-tab", has_text="mon.ipynb").click()
            monitor.locator("button.osmo-open-notebook").click()
            kernel = f"osmo--{wf}--runner".lower()
            wait_for(lambda: kernel in kernels_in_sessions(lab), "a notebook on the task's kernel")
    finally:
        call(lab.url, "POST", f"workflows/{wf}/cancel")
