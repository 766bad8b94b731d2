"""The notebook widget in plain Notebook 7 (issue 20), in a real browser (Debian's Chromium,
driven by Playwright) against a real `jupyter notebook` with the osmo extensions: the
quickstart's monitor turns COMPLETED and stays readable in the dark theme; its Notebook button
opens a notebook on the task's kernel in a new browser tab (as Notebook 7 opens any new
document), and its Terminal button, which has no tab to open in there, names the CLI command."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.interactive.test_lab_task_terminal import call, wait_for
from tests.lab.conftest import Lab, browser_page, checkout_extension
from tests.lab.test_lab_monitor_tools import kernels_in_sessions, notebook
from tests.lab.test_lab_task_menu import SPEC, cancel_all
from tests.lab.test_lab_workflow_view import task
from tests.notebook.conftest import TOKEN, jupyter
from tests.notebook.test_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    quickstart_completed,
    quickstart_copy,
    readable_in_both_themes,
    run_all_cells,
)


@pytest.fixture
def notebook7(tmp_path: Path) -> Iterator[Lab]:
    """`jupyter notebook` (Notebook 7) with this checkout's extension on a copy of the
    quickstart."""
    root, env = quickstart_copy(tmp_path)
    extensions = checkout_extension(tmp_path)
    with jupyter(
        "notebook",
        root,
        env,
        # both: the page's config comes from Notebook 7, the bundle's files from Lab's handler
        f"--JupyterNotebookApp.extra_labextensions_path={extensions}",
        f"--LabApp.extra_labextensions_path={extensions}",
        "--JupyterNotebookApp.expose_app_in_browser=True",
    ) as url:
        yield Lab(url, root)


def open_notebook(page: Page, nb: Lab, path: str) -> None:
    """`path` open in Notebook 7's notebook page, its kernel idle (the top bar's status)."""
    page.goto(f"{nb.url}/notebooks/{path}?token={TOKEN}")
    expect(page.locator(".jp-Notebook")).to_be_visible(timeout=60_000)
    idle = "() => window.jupyterapp?.shell.currentWidget?.sessionContext?.kernelDisplayStatus"
    deadline = time.monotonic() + 60
    while page.evaluate(idle) != "idle":
        assert time.monotonic() < deadline, "the notebook's kernel did not become idle"
        time.sleep(0.2)


def test_quickstart_monitor_turns_completed_in_notebook_7(notebook7: Lab) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            open_notebook(page, notebook7, "quickstart.ipynb")
            assert page.evaluate("window.jupyterapp.name") == "Jupyter Notebook"  # not Lab
            run_all_cells(page)
            monitor = quickstart_completed(page)
            readable_in_both_themes(page, monitor, "notebook7-monitor-dark.png")
        finally:
            browser.close()


def test_in_notebook_7_the_monitor_opens_a_notebook_tab_and_names_the_terminal_command(
    notebook7: Lab,
) -> None:
    nb = notebook7
    wf = str(call(nb.url, "POST", "workflows", {"spec": SPEC})["id"])
    try:
        wait_for(lambda: task(nb, wf, "runner")["status"] == "RUNNING", "runner running")
        (nb.root / "mon.ipynb").write_text(
            notebook(f"import osmo_jupyter\nosmo_jupyter.Client().workflow({wf!r}).monitor")
        )
        with browser_page(failed="notebook7-monitor-tools-failed") as page:
            open_notebook(page, nb, "mon.ipynb")
            expect(page.locator("#osmo-panel")).to_have_count(1)  # the extension is loaded
            run_all_cells(page)
            monitor = page.locator(".osmo-monitor").first
            monitor.locator('tr[data-task="runner"]').click(timeout=60_000)

            terminal = monitor.locator("button.osmo-open-terminal")
            expect(terminal).to_be_enabled(timeout=30_000)
            terminal.click()
            hint = monitor.locator(".osmo-hint")
            expect(hint).to_contain_text(f"osmo workflow exec {wf} runner")

            with page.context.expect_page(timeout=60_000) as opened:
                monitor.locator("button.osmo-open-notebook").click()
            tab = opened.value
            tab.wait_for_load_state()
            assert "/notebooks/" in tab.url, tab.url
            kernel = f"osmo--{wf}--runner".lower()
            wait_for(lambda: kernel in kernels_in_sessions(nb), "a notebook on the task")
    finally:
        cancel_all(nb)


def test_in_notebook_7_a_panel_view_is_offered_in_jupyterlab_and_no_shell_starts(
    notebook7: Lab,
) -> None:
    """Notebook 7's page holds one document: a workflow tab, log tab or task terminal asked
    of the panel there opens nothing there. A dialog offers it in JupyterLab, in a new browser
    tab that opens at the workflow and the task's log; a terminal starts no shell."""
    nb = notebook7
    wf = str(call(nb.url, "POST", "workflows", {"spec": SPEC})["id"])
    try:
        wait_for(lambda: task(nb, wf, "runner")["status"] == "RUNNING", "runner running")
        with browser_page(failed="notebook7-open-in-lab-failed") as page:
            open_notebook(page, nb, "quickstart.ipynb")
            execute = "([c, a]) => { void window.jupyterapp.commands.execute(c, a); }"
            dialog = page.locator(".jp-Dialog")

            page.evaluate(execute, ["osmo:open-terminal", {"workflowId": wf, "task": "runner"}])
            expect(dialog).to_contain_text(f"A terminal in {wf}/runner opens in a JupyterLab")
            dialog.get_by_role("button", name="Cancel").click()
            expect(dialog).to_have_count(0)
            shells = call(nb.url, "GET", f"workflows/{wf}/tasks/runner/api/terminals")
            assert shells == [], shells

            page.evaluate(execute, ["osmo:open-logs", {"workflowId": wf, "task": "runner"}])
            expect(dialog).to_contain_text("Open in JupyterLab")
            expect(page.locator(".osmo-log-view, .osmo-workflow-view")).to_have_count(0)
            with page.context.expect_page(timeout=60_000) as opened:
                dialog.get_by_role("button", name="Open JupyterLab").click()
            lab = opened.value
            view = lab.locator(f'.osmo-workflow-view[data-workflow="{wf}"]')
            expect(view).to_have_count(1, timeout=90_000)
            log = lab.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="runner")
            expect(log).to_have_count(1, timeout=30_000)
            assert "osmo-" not in lab.url, lab.url  # a reload does not open them again
            lab.screenshot(path=str(ARTIFACTS / "notebook7-opened-in-lab.png"))
    finally:
        cancel_all(nb)
