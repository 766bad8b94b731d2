"""The panel's interactive buttons, in a real browser (Debian's Chromium, driven by Playwright)
against a real `jupyter lab` (tests/lab/conftest.py) with the local backend: a shell in a
running task (JupyterLab's Terminal widget over the per-task terminals API), a new notebook on
the task's kernel, the task's declared port through the server's HTTP proxy in a new tab; Done
on an interactive task waiting for its user and Retry on a failed task held for debugging. A
screenshot of the terminal is saved as `lab-panel-terminal.png` in $OSMO_TEST_ARTIFACTS
(default `test-artifacts/`).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from tests.conftest import free_port
from tests.lab.conftest import CHROMIUM_ARGS, Lab, open_panel, submit_from_panel
from tests.notebook.test_browser import ARTIFACTS, CHROMIUM

# `srv` serves its workdir on a declared port; `ask` ends at once and waits for its user; `dbg`
# fails and is held for debugging. The
# task's python3 is this environment's (it has ipykernel, which the task kernel needs).
WEB = """\
workflow:
  name: web
  tasks:
  - name: srv
    command: [sh, -c, "echo hi > served-by-the-task.txt; exec timeout 120 {serve}"]
    environment:
      PATH: "{bin}:/usr/local/bin:/usr/bin:/bin"
    ports: [{port}]
  - name: ask
    command: [sh, -c, "echo asked"]
    interactive: true
  - name: dbg
    command: [sh, -c, "exit 3"]
    debug: on-failure
"""

# The text of the active terminal tab's xterm.js buffer (JupyterLab draws it on a canvas).
XTERM_TEXT = """() => {
  const term = window.jupyterapp.shell.currentWidget.content._term;
  const buf = term.buffer.active, lines = [];
  for (let i = 0; i < buf.length; i++) lines.push(buf.getLine(i).translateToString(true));
  return lines.join('\\n');
}"""


def test_panel_terminal_notebook_port_done_and_retry(lab: Lab) -> None:
    port = free_port()
    serve = f"python3 -m http.server {port} --bind 127.0.0.1"
    spec = WEB.format(port=port, serve=serve, bin=Path(sys.executable).parent)
    (lab.root / "web.yaml").write_text(spec)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        warnings: list[str] = []  # the panel logs each error it notifies as "osmo: TITLE:"
        page.on("console", lambda m: m.text.startswith("osmo:") and warnings.append(m.text))
        try:
            run_scenario(page, context, lab, port)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "lab-panel-interactive-failed.png"))
            raise
        finally:
            browser.close()
    assert warnings == []
    assert (ARTIFACTS / "lab-panel-terminal.png").stat().st_size > 5000


def run_scenario(page: Page, context: BrowserContext, lab: Lab, port: int) -> None:
    panel = open_panel(page, lab)
    submit_from_panel(page, panel, "web.yaml")
    row = panel.locator('li.osmo-wf[data-id^="web-"]').first
    expect(row).to_have_attribute("data-status", "RUNNING", timeout=60_000)
    detail = panel.locator(".osmo-detail")
    wf = detail.locator(".osmo-detail-id")
    expect(wf).to_have_text(re.compile(r"^web-\d+$"))

    # The interactive task, once its command ended: held, waiting for its user; Done ends it.
    ask = detail.locator('g.osmo-dag-node[data-task="ask"]')
    expect(ask).to_have_attribute("data-hold", "waiting", timeout=30_000)
    expect(ask.locator(".osmo-dag-status")).to_have_text("WAITING FOR YOU")
    ask.click()
    details = detail.locator('[data-task-details="ask"]')
    expect(details.locator(".osmo-hold")).to_have_text(re.compile(r"^waiting for you"))
    details.get_by_role("button", name="Done").click()
    expect(ask).to_have_attribute("data-status", "COMPLETED", timeout=30_000)
    expect(details.get_by_role("button", name="Done")).to_have_count(0)

    # A failed task held for debugging: Retry task runs it again (a second attempt, held again).
    dbg = detail.locator('g.osmo-dag-node[data-task="dbg"]')
    expect(dbg).to_have_attribute("data-hold", "debug", timeout=30_000)
    dbg.click()
    held = detail.locator('[data-task-details="dbg"]')
    expect(held.locator(".osmo-hold")).to_have_text(re.compile(r"^held for debugging until "))
    held.get_by_role("button", name="Retry task").click()
    expect(held.locator(".osmo-attempts tr")).to_have_count(3, timeout=30_000)  # header + 2
    expect(dbg).to_have_attribute("data-hold", "debug", timeout=30_000)

    detail.locator('g.osmo-dag-node[data-task="srv"]').click()
    srv = detail.locator('[data-task-details="srv"]')
    expect(srv.get_by_role("button", name="Open terminal")).to_be_visible()

    # A shell in the task: keys typed into xterm.js run there, the output comes back.
    srv.get_by_role("button", name="Open terminal").click()
    term = page.locator(".osmo-task-terminal .xterm").last
    term.wait_for(timeout=30_000)
    expect(page.locator(".lm-TabBar-tab.lm-mod-current", has_text="/srv")).to_be_visible()
    page.wait_for_function(f"({XTERM_TEXT})().trim().length > 0", timeout=15_000)  # a prompt
    term.click()
    page.keyboard.type("echo term-$((6*7))-$OSMO_TASK_NAME\n")
    page.wait_for_function(f"({XTERM_TEXT})().includes('term-42-srv')", timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "lab-panel-terminal.png"))

    # A new notebook on the task's kernel: the cell runs inside the task.
    srv.get_by_role("button", name="New notebook").click()
    notebook = page.locator(".jp-NotebookPanel:visible")
    expect(notebook.locator(".jp-KernelName")).to_contain_text(
        re.compile(r"OSMO: web-\d+/srv"), timeout=30_000
    )
    # Only an idle kernel takes the cell (one still connecting would drop it).
    idle = page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"OSMO: web-\d+/srv \| Idle"))
    expect(idle).to_be_visible(timeout=30_000)
    notebook.locator(".jp-Cell .cm-content").first.click()
    page.keyboard.type('import os; print("kernel", os.environ["OSMO_TASK_NAME"], 6 * 7)')
    page.keyboard.press("Shift+Enter")
    expect(notebook.locator(".jp-OutputArea-output").first).to_have_text(
        "kernel srv 42", timeout=30_000
    )

    # The declared port in a new browser tab, through the server's proxy into the task: the
    # proxy sends the browser on to the app's link, where the page runs sandboxed.
    with context.expect_page(timeout=15_000) as opened:
        srv.get_by_role("button", name=f"Open port {port}").click()
    proxied = opened.value
    expect(proxied.locator("body")).to_contain_text("served-by-the-task.txt", timeout=15_000)
    assert re.search(r"/osmo/api/v1/apps/[\w-]+\.[\w-]+/$", proxied.url), proxied.url
    proxied.close()

    # Cancel: the task ends, its interactive buttons go.
    detail.get_by_role("button", name=re.compile("^Cancel web-")).click()
    page.locator(".jp-Dialog").get_by_role("button", name="Cancel workflows").click()
    expect(row).to_have_attribute("data-status", "FAILED_CANCELED", timeout=30_000)
    expect(srv.get_by_role("button", name="Open terminal")).to_have_count(0, timeout=15_000)
