"""The OSMO side panel in JupyterLab, in a real browser (Debian's Chromium, driven by
Playwright) against a real `jupyter lab` with the osmo server extension and the local backend.

The lab loads this checkout's built extension (`osmo_jupyter/labextension`, built by `pip
install -e .` or `jlpm build:prod` in labextension/) through `extra_labextensions_path`, and the
test checks that the page loaded that very build. Screenshots of the panel in the light and dark
themes are saved as `lab-panel-light.png` / `lab-panel-dark.png` in $OSMO_TEST_ARTIFACTS
(default `test-artifacts/`).
"""

from __future__ import annotations

import json
import re
import urllib.request

from playwright.sync_api import Locator, Page, WebSocketRoute, expect, sync_playwright

from tests.lab.conftest import (
    BUILD,
    CHROMIUM_ARGS,
    EXT_NAME,
    PANEL_TAB,
    Lab,
    open_panel,
    submit_from_context_menu,
    submit_from_panel,
)
from tests.notebook.conftest import TOKEN
from tests.notebook.test_browser import ARTIFACTS, CHROMIUM


def loaded_build(lab: Lab) -> str:
    """The remote entry of our extension that the lab page tells the browser to load."""
    with urllib.request.urlopen(f"{lab.url}/lab?token={TOKEN}", timeout=30) as r:
        html = r.read().decode()
    config = json.loads(
        re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', html, re.S).group(1)  # type: ignore[union-attr]
    )
    ours = [e for e in config["federated_extensions"] if e["name"] == EXT_NAME]
    assert len(ours) == 1, config["federated_extensions"]
    return str(ours[0]["load"])


def workflow_row(panel: Locator, prefix: str) -> Locator:
    return panel.locator(f'li.osmo-wf[data-id^="{prefix}-"]').first


def test_panel_submit_follow_logs_cancel_and_themes(lab: Lab) -> None:
    ours = json.loads((BUILD / "package.json").read_text())["jupyterlab"]["_build"]["load"]
    assert loaded_build(lab) == ours  # the lab serves this checkout's build, not another install
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        warnings: list[str] = []  # the panel logs each error it notifies as "osmo: TITLE:"
        page.on("console", lambda m: m.text.startswith("osmo:") and warnings.append(m.text))
        try:
            run_scenario(page, lab)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "lab-panel-failed.png"))
            raise
        finally:
            browser.close()
    assert not [e for e in errors if "osmo" in e.lower()], errors
    assert [w.split(":")[1].strip() for w in warnings] == ["Could not submit bad.yaml"], warnings
    for theme in ("light", "dark"):
        assert (ARTIFACTS / f"lab-panel-{theme}.png").stat().st_size > 5000


def run_scenario(page: Page, lab: Lab) -> None:
    # The panel's streams of one workflow (logs=true) pass through a route (set before the
    # page loads, as Lab keeps the WebSocket class it found), so the test can send the page
    # what a server sends a client that fell behind.
    detail_streams: list[WebSocketRoute] = []

    def through(ws: WebSocketRoute) -> None:
        ws.connect_to_server()
        detail_streams.append(ws)

    page.route_web_socket(re.compile(r"/osmo/api/v1/events\?.*logs=true"), through)
    panel = open_panel(page, lab)

    # Submit serial.yaml from the panel's button, through JupyterLab's file dialog.
    submit_from_panel(page, panel, "serial.yaml")
    row = workflow_row(panel, "serial")
    expect(row).to_have_attribute("data-status", "COMPLETED", timeout=60_000)
    expect(row.locator(".osmo-wf-progress")).to_have_text("3/3")
    expect(row.locator(".osmo-wf-duration")).to_have_text(re.compile(r"\d"))

    # The DAG: three nodes, all COMPLETED, two edges.
    detail = panel.locator(".osmo-detail")
    expect(detail.locator(".osmo-detail-id")).to_have_text(re.compile(r"^serial-\d+$"))
    nodes = detail.locator("svg.osmo-dag g.osmo-dag-node")
    expect(nodes).to_have_count(3)
    for task in ("task1", "task2", "task3"):
        expect(nodes.and_(page.locator(f'[data-task="{task}"]'))).to_have_attribute(
            "data-status", "COMPLETED", timeout=30_000
        )
    expect(detail.locator("svg.osmo-dag line.osmo-dag-edge")).to_have_count(2)
    # A finished workflow can be restarted, not canceled.
    expect(detail.get_by_role("button", name=re.compile("^Cancel serial-"))).to_be_disabled()
    expect(detail.get_by_role("button", name=re.compile("^Restart serial-"))).to_be_enabled()

    # Keyboard: focus a node, Enter opens its details (attempts, exit code, last log lines).
    detail.locator('g.osmo-dag-node[data-task="task3"]').focus()
    page.keyboard.press("Enter")
    task = detail.locator('[data-task-details="task3"]')
    expect(task.locator("dd").nth(2)).to_have_text("0")  # exit code
    expect(task.locator(".osmo-attempts tr")).to_have_count(2)  # header + one attempt
    expect(task.locator(".osmo-tail")).to_contain_text("hello from task2", timeout=15_000)

    # The log viewer tab: the archived log, the end marker, search.
    task.get_by_role("button", name="Open logs").click()
    viewer = page.locator(".osmo-log-viewer").first
    expect(viewer.locator(".osmo-log-lines")).to_contain_text("hello from task1", timeout=30_000)
    expect(viewer.locator(".osmo-log-lines")).to_contain_text("task3 COMPLETED")
    lines = viewer.locator(".osmo-log-line").count()
    viewer.get_by_label("Search the log").fill("from task2")
    expect(viewer.locator("mark.osmo-log-match")).to_have_text(["from task2"])
    expect(viewer.locator(".osmo-log-line")).to_have_count(lines)  # highlighted, not filtered

    # Pools and resources, with capacity and use.
    panel.locator(".osmo-pools summary").click()
    expect(panel.locator('.osmo-pool[data-pool="local"] .osmo-node meter').first).to_be_visible(
        timeout=15_000
    )

    # A slow workflow from the file browser's context menu, followed live, then canceled.
    submit_from_context_menu(page, "slow.yaml")
    slow = workflow_row(panel, "slow")
    expect(slow).to_have_attribute("data-status", "RUNNING", timeout=60_000)
    expect(detail.locator(".osmo-detail-id")).to_have_text(re.compile(r"^slow-\d+$"))
    detail.locator('g.osmo-dag-node[data-task="nap"]').click()
    nap = detail.locator('[data-task-details="nap"]')
    expect(nap.locator(".osmo-tail")).to_contain_text("napping", timeout=30_000)
    # A resync re-reads the workflow and keeps the task the user is looking at (it once
    # closed its details, and a click that came just before one seemed lost).
    opened = len(detail_streams)
    detail_streams[-1].send(json.dumps({"type": "resync", "dropped": 1}))
    for _ in range(150):  # bounded: 15 s for the re-read and its new stream
        if len(detail_streams) > opened:
            break
        page.wait_for_timeout(100)
    assert len(detail_streams) > opened, "the resync did not re-read the workflow"
    expect(nap.locator(".osmo-tail")).to_contain_text("napping", timeout=15_000)
    nap.get_by_role("button", name="Open logs").click()
    live = page.locator(".osmo-log-viewer:visible")
    expect(live.locator(".osmo-log-lines")).to_contain_text("napping", timeout=30_000)
    expect(live).to_have_attribute("data-state", "live")
    panel.locator(".osmo-wf", has_text="slow-").click()  # back to the panel's selection
    detail.get_by_role("button", name=re.compile("^Cancel slow-")).click()
    page.locator(".jp-Dialog").get_by_role("button", name="Cancel workflows").click()
    expect(slow).to_have_attribute("data-status", "FAILED_CANCELED", timeout=30_000)
    expect(detail.locator(".osmo-detail-status")).to_have_text("FAILED_CANCELED")
    expect(live).to_have_attribute("data-state", "FAILED_CANCELED", timeout=30_000)

    # A bad spec: the server's message (file position and field) as a notification.
    submit_from_context_menu(page, "bad.yaml")
    toast = page.locator(".Toastify__toast", has_text="Could not submit bad.yaml")
    expect(toast).to_contain_text("missing required field 'command'", timeout=15_000)
    toast.get_by_role("button", name="Details").click()
    details = page.locator(".jp-Dialog .osmo-error-details")
    expect(details).to_contain_text("workflow.tasks[0].comand: unknown field 'comand'")
    expect(details).to_contain_text("bad.yaml:5:5: workflow.tasks[0].comand")  # not <spec>:5:5
    expect(details).not_to_contain_text("<spec>")
    page.locator(".jp-Dialog").get_by_role("button", name="Close").click()

    # Screenshots of the panel in both themes, on the serial workflow's details, the sidebar
    # dragged wider as a user would.
    handle = page.locator("#jp-main-split-panel > .lm-SplitPanel-handle").first
    box = handle.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(box["x"] + 260, box["y"] + 200, steps=5)
    page.mouse.up()
    page.locator(PANEL_TAB).click()

    # Restart a finished workflow: a new id, run to the end.
    panel.locator('li.osmo-wf[data-id="serial-1"]').click()
    detail.get_by_role("button", name="Restart serial-1").click()
    expect(detail.locator(".osmo-detail-id")).to_have_text("serial-2")
    again = panel.locator('li.osmo-wf[data-id="serial-2"]')
    expect(again).to_have_attribute("data-status", "COMPLETED", timeout=60_000)
    expect(again.locator(".osmo-wf-progress")).to_have_text("3/3")

    # Keyboard through the list (newest first: serial-2, bad never made one, slow-1, serial-1).
    again.focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(detail.locator(".osmo-detail-id")).to_have_text("slow-1")
    expect(panel.locator('li.osmo-wf[data-id="slow-1"]')).to_have_attribute("aria-selected", "true")

    panel.locator('li.osmo-wf[data-id="serial-2"]').click()
    detail.locator('g.osmo-dag-node[data-task="task2"]').click()
    expect(detail.locator('[data-task-details="task2"] .osmo-tail')).to_contain_text("task2")
    panel.screenshot(path=str(ARTIFACTS / "lab-panel-light.png"))
    page.evaluate(
        "window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})"
    )
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false", timeout=30_000)
    panel.screenshot(path=str(ARTIFACTS / "lab-panel-dark.png"))
