"""A task's context menu in a workflow tab (labextension/src/taskmenu.ts), in a real browser
(Debian's Chromium, driven by Playwright) against a real `jupyter lab` with the local backend:
on a graph node and a table row (a timeline bar has it too) it opens the task's log, shows it in
the side panel, copies its name, and opens a terminal in it — only while it runs; once the
workflow has ended it reruns the workflow from that task (OSMO's restart `--from`). The
terminal's tab comes back after a page reload, on the same shell."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from tests.interactive.test_lab_task_terminal import call, wait_for
from tests.lab.conftest import PANEL_TAB, Lab, browser_page, open_panel
from tests.lab.test_lab_submit import workspace
from tests.lab.test_lab_workflow_view import tab_of, task

SPEC = """\
workflow:
  name: menus
  resources:
    default:
      cpu: 0
  tasks:
  - name: done-one
    command: [sh, -c, "echo finished here"]
  - name: runner
    command: [sleep, "600"]
"""


def test_a_task_menu_opens_its_log_panel_name_and_terminal_while_it_runs(lab: Lab) -> None:
    wf = str(call(lab.url, "POST", "workflows", {"spec": SPEC})["id"])
    wait_for(lambda: task(lab, wf, "runner")["status"] == "RUNNING", "runner running")
    wait_for(lambda: task(lab, wf, "done-one")["status"] == "COMPLETED", "done-one completed")
    try:
        with browser_page(clipboard=True, failed="lab-task-menu-failed") as page:
            task_menu_scenario(page, lab, wf)
            terminal_restored_scenario(page, lab, wf)
            rerun_scenario(page, lab, wf)
    finally:
        cancel_all(lab)


def cancel_all(lab: Lab) -> None:
    """Every workflow of SPEC still going (a test's and its reruns)."""
    for w in call(lab.url, "GET", "workflows?name=menus"):
        if w["status"] in ("PENDING", "RUNNING"):
            call(lab.url, "POST", f"workflows/{w['id']}/cancel")


DISABLED = re.compile(r"\blm-mod-disabled\b")


def menu(page: Page, target: Locator) -> Locator:
    target.click(button="right")
    items = page.locator(".lm-Menu-item")
    expect(items.filter(has_text="Open Log")).to_be_visible()
    return items


def task_menu_scenario(page: Page, lab: Lab, wf: str) -> None:
    panel = open_panel(page, lab)
    page.evaluate(
        "w => window.jupyterapp.commands.execute('osmo:open-workflow-view', {workflowId: w})", wf
    )
    view = tab_of(page, wf)
    done_node = view.locator('g.osmo-graph-node[data-task="done-one"]')
    expect(done_node).to_have_attribute("data-status", "COMPLETED", timeout=30_000)

    # A finished task: no terminal, no rerun while its workflow runs; its log opens in a tab.
    items = menu(page, done_node)
    expect(items.filter(has_text="Open Terminal in Task")).to_have_class(DISABLED)
    expect(items.filter(has_text="Rerun from This Task")).to_have_class(DISABLED)
    items.filter(has_text="Open Log").click()
    log = page.locator(".osmo-log-viewer:visible .osmo-log-line.osmo-log-stdout")
    expect(log).to_have_text(["finished here"], timeout=30_000)

    # Back in the workflow tab: its name copied, then shown in the side panel.
    page.locator(".lm-TabBar-tab", has_text=wf).first.click()
    menu(page, done_node).filter(has_text="Copy Task Name").click()
    assert page.evaluate("navigator.clipboard.readText()") == "done-one"
    menu(page, done_node).filter(has_text="Show in OSMO Panel").click()
    expect(panel.locator('[data-task-details="done-one"]')).to_be_visible(timeout=30_000)

    # A running task, from the task table: a terminal in it.
    view.get_by_role("tab", name="Tasks").click()
    row = view.locator('.osmo-table-row[data-task="runner"]')
    menu(page, row).filter(has_text="Open Terminal in Task").click()
    expect(page.locator(".osmo-task-terminal .xterm").last).to_be_visible(timeout=30_000)
    expect(page.locator(".lm-TabBar-tab.lm-mod-current", has_text="/runner")).to_be_visible()


def terminal_restored_scenario(page: Page, lab: Lab, wf: str) -> None:
    """After task_menu_scenario (a terminal open in runner): a reload brings the tab back on
    the same shell, which still has what was set in it."""
    term = page.locator(".osmo-task-terminal .xterm").last
    term.click()
    page.keyboard.type("export MARK=kept-$((6*7))\n")
    wait_for(
        lambda: any(k.startswith("osmo-task-terminal:") for k in workspace(lab)),
        "the terminal tab saved in the workspace",
        timeout=15,
    )
    page.reload()
    expect(page.locator(PANEL_TAB)).to_be_visible(timeout=60_000)
    tab = page.locator(".lm-TabBar-tab", has_text=f"{wf}/runner")
    expect(tab).to_have_count(1, timeout=30_000)
    tab.click()
    term = page.locator(".osmo-task-terminal:visible .xterm")
    expect(term).to_be_visible(timeout=30_000)
    term.click()
    workdir = Path(str(task(lab, wf, "runner")["workdir"]))
    page.keyboard.type("echo $MARK > restored\n")
    wait_for(lambda: (workdir / "restored").exists(), "the command in the restored terminal")
    wait_for(lambda: (workdir / "restored").read_text() == "kept-42\n", "the same shell's MARK")


def rerun_scenario(page: Page, lab: Lab, wf: str) -> None:
    """The workflow ended (cancelled): a rerun from done-one reruns it, not reuses it as a
    plain restart would; the new workflow is shown in the panel."""
    call(lab.url, "POST", f"workflows/{wf}/cancel")
    page.locator(".lm-TabBar-tab", has_text=wf).first.click()
    view = tab_of(page, wf)
    expect(view.locator(".osmo-wv-status")).to_have_text("FAILED_CANCELED", timeout=30_000)
    view.get_by_role("tab", name="Graph").click()
    done_node = view.locator('g.osmo-graph-node[data-task="done-one"]')
    items = menu(page, done_node)
    expect(items.filter(has_text="Rerun from This Task")).not_to_have_class(DISABLED)
    items.filter(has_text="Rerun from This Task").click()
    wait_for(lambda: len(call(lab.url, "GET", "workflows?name=menus")) == 2, "the rerun")
    fresh = str(call(lab.url, "GET", "workflows?name=menus")[0]["id"])  # newest first
    assert fresh != wf
    again = task(lab, fresh, "done-one")
    assert again["reused_from"] is None  # run again, not reused
    wait_for(lambda: task(lab, fresh, "done-one")["status"] == "COMPLETED", "done-one rerun")
    panel = page.locator("#osmo-panel")
    expect(panel.locator(".osmo-detail-id")).to_have_text(fresh, timeout=30_000)
    # The old workflow's shell ended with its task: a reload does not bring its tab back (nor
    # start a new shell), and the saved layout forgets it.
    page.reload()
    expect(page.locator(PANEL_TAB)).to_be_visible(timeout=60_000)
    page.evaluate("window.jupyterapp.restored.then(() => true)")
    expect(page.locator(".lm-TabBar-tab", has_text=f"{wf}/runner")).to_have_count(0)
    wait_for(
        lambda: not any(k.startswith("osmo-task-terminal:") for k in workspace(lab)),
        "the ended terminal dropped from the workspace",
        timeout=15,
    )
