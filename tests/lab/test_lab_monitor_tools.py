"""The notebook monitor's Terminal and Notebook buttons in a real browser (Debian's Chromium,
driven by Playwright) against a real `jupyter lab` with this checkout's extension: the widget,
in a notebook's output, asks the extension (an `osmo-open` event, labextension/src/
widgetbridge.ts) for a terminal in the selected running task and for a notebook whose kernel
runs in it. Without the extension the widget names the CLI command instead."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.interactive.test_lab_task_terminal import call, wait_for
from tests.lab.conftest import Lab, browser_page
from tests.lab.test_lab_task_menu import SPEC, cancel_all
from tests.lab.test_lab_workflow_view import task
from tests.notebook.conftest import TOKEN, base_env, jupyter
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


def monitor_of_running(page: Page, lab: Lab) -> tuple[str, Locator]:
    """A workflow whose `runner` runs, and its monitor in a notebook run in the page."""
    wf = str(call(lab.url, "POST", "workflows", {"spec": SPEC})["id"])
    wait_for(lambda: task(lab, wf, "runner")["status"] == "RUNNING", "runner running")
    (lab.root / "mon.ipynb").write_text(
        notebook(f"import osmo_jupyter\nosmo_jupyter.Client().workflow({wf!r}).monitor")
    )
    page.goto(f"{lab.url}/lab/tree/mon.ipynb?token={TOKEN}")
    expect(page.locator(".jp-Notebook")).to_be_visible(timeout=60_000)
    idle = page.locator(".jp-StatusBar-Widget", has_text="Idle")
    expect(idle.first).to_be_visible(timeout=60_000)
    run_all_cells(page)
    monitor = page.locator(".osmo-monitor").first
    expect(monitor.locator('tr[data-task="runner"]')).to_be_visible(timeout=60_000)
    return wf, monitor


def test_monitor_opens_a_terminal_and_a_notebook_in_the_selected_task(lab: Lab) -> None:
    try:
        with browser_page(failed="lab-monitor-tools-failed") as page:
            wf, monitor = monitor_of_running(page, lab)
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
        cancel_all(lab)


@pytest.fixture
def lab_without_extension(tmp_path: Path) -> Iterator[Lab]:
    """`jupyter lab` with the osmo server extension but its lab extension disabled."""
    root = tmp_path / "work"
    root.mkdir()
    env = base_env(tmp_path)
    env["JUPYTER_CONFIG_DIR"] = str(config := tmp_path / "jupyter-config")
    (config / "labconfig").mkdir(parents=True)
    disabled = {"disabledExtensions": {"@osmo-jupyter/labextension": True}}
    (config / "labconfig" / "page_config.json").write_text(json.dumps(disabled))
    with jupyter("lab", root, env) as url:
        yield Lab(url, root)


def test_without_the_extension_the_monitor_names_the_command(lab_without_extension: Lab) -> None:
    lab = lab_without_extension
    try:
        with browser_page(failed="lab-monitor-hint-failed") as page:
            wf, monitor = monitor_of_running(page, lab)
            expect(page.locator("#osmo-panel")).to_have_count(0)  # no extension in this page
            monitor.locator('tr[data-task="runner"]').click()
            terminal = monitor.locator("button.osmo-open-terminal")
            expect(terminal).to_be_enabled(timeout=30_000)
            terminal.click()
            expect(monitor.locator(".osmo-hint")).to_contain_text(f"osmo workflow exec {wf} runner")
            expect(page.locator(".osmo-task-terminal")).to_have_count(0)
    finally:
        cancel_all(lab)
