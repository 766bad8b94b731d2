"""The users' OSMO panels in a real browser (Debian's Chromium, driven by Playwright), each user
logged in to the Hub with a password (conftest.py): alice submits from her panel, bob's panel
does not show it and carol's (a Hub admin) shows it beside bob's; bob is refused a terminal
and a kernel in alice's task and the panel says why; alice opens both from her panel; the
service restarts and the panels reconnect by themselves. And a browser opening the service's
own URL logs in through the Hub's OAuth flow."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("playwright", reason="Playwright drives the browser (pip install -e '.[dev]')")

from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from tests.hub.conftest import PASSWORD, SLEEPER, Hub, call
from tests.lab.conftest import CHROMIUM_ARGS, PANEL_TAB, submit_from_context_menu
from tests.lab.test_lab_interactive import XTERM_TEXT
from tests.notebook.test_browser import ARTIFACTS, CHROMIUM

pytestmark = pytest.mark.timeout(300)

API = "osmo/api/v1"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def log_in(page: Page, hub: Hub, user: str) -> None:
    """The Hub's login form, as `user`."""
    expect(page.locator("#username_input")).to_be_visible(timeout=30_000)
    page.fill("#username_input", user)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")


def open_panels(browser: Browser, hub: Hub, users: tuple[str, ...]) -> dict[str, Page]:
    """A page per user (cookies apart) logged in at the Hub, on the user's Lab with the OSMO
    panel open and its events live. Each step is started on every page before it is awaited
    on any: the browser loads the Labs side by side."""
    pages = {}
    for user in users:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = pages[user] = context.new_page()
        page.goto(f"{hub.url}/hub/login")
        log_in(page, hub, user)
    for user, page in pages.items():
        # logged in: the Hub sends the browser on to the user's running Lab
        page.wait_for_url(f"**/user/{user}/**", timeout=60_000)
        page.goto(f"{hub.lab(user)}/lab", wait_until="commit")
    for page in pages.values():
        tab = page.locator(PANEL_TAB)
        expect(tab).to_be_visible(timeout=120_000)
        tab.click()
    for page in pages.values():
        expect(page.locator("#osmo-panel .osmo-conn")).to_have_text("live", timeout=60_000)
    return pages


def row(page: Page, wf: str) -> Locator:
    return page.locator(f'#osmo-panel li.osmo-wf[data-id="{wf}"]')


def refused(page: Page, command: str, wf: str, title: str) -> None:
    """`command` on `wf`'s task t, as a link or another extension would run it: the panel's
    notification gives the service's refusal, which says why."""
    page.evaluate(
        f"window.jupyterapp.commands.execute({command!r}, {{workflowId: {wf!r}, task: 't'}})"
    )
    toast = page.locator(".Toastify__toast", has_text=f"{title} {wf}/t")
    expect(toast).to_be_visible(timeout=30_000)
    toast.get_by_role("button", name="Details").click()
    message = page.locator(".jp-Dialog .osmo-error-details")
    expect(message).to_have_text(
        f"workflow '{wf}' belongs to another user; 'bob' may only see and act on their own "
        "workflows"
    )
    page.locator(".jp-Dialog").get_by_role("button", name="Close").click()


def test_panels_submit_refuse_open_and_reconnect(
    hub: Hub, workflows: dict[str, str], browser: Browser
) -> None:
    (hub.tmp / "home/alice/team.yaml").write_text(SLEEPER.format(name="team"))
    pages = open_panels(browser, hub, ("alice", "bob", "carol"))
    try:
        run_scenario(hub, workflows, pages)
    except Exception:
        for user, page in pages.items():
            page.screenshot(path=str(ARTIFACTS / f"hub-panel-{user}-failed.png"))
        raise
    finally:
        for page in pages.values():
            page.context.close()


def run_scenario(hub: Hub, workflows: dict[str, str], pages: dict[str, Page]) -> None:
    alice, bob, carol = pages["alice"], pages["bob"], pages["carol"]
    # alice submits from her panel (the file browser's menu); the panel opens the workflow
    submit_from_context_menu(alice, "team.yaml")
    detail = alice.locator("#osmo-panel .osmo-detail")
    expect(detail.locator(".osmo-detail-id")).to_have_text(
        re.compile(r"^team-\d+$"), timeout=60_000
    )
    team = detail.locator(".osmo-detail-id").inner_text()
    node = detail.locator('g.osmo-dag-node[data-task="t"]')
    expect(node).to_have_attribute("data-status", "RUNNING", timeout=60_000)

    # carol, a Hub admin, sees alice's and bob's; bob his own only (carol's saw the event)
    for wf in (team, workflows["bob"]):
        expect(row(carol, wf)).to_be_visible(timeout=30_000)
    expect(row(bob, workflows["bob"])).to_be_visible()
    expect(row(bob, team)).to_have_count(0)
    expect(row(alice, workflows["bob"])).to_have_count(0)

    # bob is refused alice's task, and his panel says why
    refused(bob, "osmo:open-terminal", team, "Could not open a terminal in")
    refused(bob, "osmo:open-notebook", team, "Could not open a kernel in")
    expect(bob.locator(".osmo-task-terminal")).to_have_count(0)
    expect(bob.locator(".jp-NotebookPanel")).to_have_count(0)

    # alice's own terminal and kernel in it, from her panel
    node.click()
    details = detail.locator('[data-task-details="t"]')
    details.get_by_role("button", name="Open terminal").click()
    alice.locator(".osmo-task-terminal .xterm").last.wait_for(timeout=30_000)
    alice.wait_for_function(f"({XTERM_TEXT})().trim().length > 0", timeout=30_000)  # a prompt
    alice.locator(".osmo-task-terminal .xterm").last.click()
    alice.keyboard.type("echo hub-$((6*7))-$OSMO_TASK_NAME\n")
    alice.wait_for_function(f"({XTERM_TEXT})().includes('hub-42-t')", timeout=30_000)
    details.get_by_role("button", name="New notebook").click()
    notebook = alice.locator(".jp-NotebookPanel:visible")
    label = f"OSMO: {team}/t"
    idle = alice.locator(".jp-StatusBar-TextItem", has_text=f"{label} | Idle")
    expect(idle).to_be_visible(timeout=60_000)  # only an idle kernel takes the cell
    notebook.locator(".jp-Cell .cm-content").first.click()
    alice.keyboard.type('import os; print("kernel", os.environ["OSMO_TASK_NAME"], 6 * 7)')
    alice.keyboard.press("Shift+Enter")
    output = notebook.locator(".jp-OutputArea-output").first
    expect(output).to_have_text("kernel t 42", timeout=60_000)

    # the service restarts: the Labs answer 502 meanwhile, the panels reconnect by themselves
    hub.stop_service()
    status, body = call(f"{hub.lab('alice')}/{API}/workflows", hub.tokens["alice"])
    assert status == 502 and "unreachable" in body["message"], body
    for page in (alice, bob):
        expect(page.locator("#osmo-panel .osmo-conn")).to_have_attribute(
            "data-state", "down", timeout=30_000
        )
    hub.start_service()
    hub.wait_service()
    started = time.monotonic()
    for page in (alice, bob):
        expect(page.locator("#osmo-panel .osmo-conn")).to_have_text("live", timeout=30_000)
    print(f"panels live again {time.monotonic() - started:.1f} s after the service answered")
    # and what happens now reaches them: alice's workflow, cancelled, shows so in both
    call(f"{hub.service_url}/{API}/workflows/{team}/cancel", hub.tokens["alice"], "POST", {})
    for page in (alice, carol):
        expect(row(page, team)).to_have_attribute("data-status", "FAILED_CANCELED", timeout=30_000)


def test_a_browser_at_the_service_logs_in_through_the_hub(hub: Hub, browser: Browser) -> None:
    """As Hub services do: no cookie, so the Hub's OAuth flow (its login form first), then
    back at the URL asked for, logged in; scripts still get their 401."""
    me = f"{hub.url}/services/osmo/{API}/me"
    page = browser.new_context().new_page()
    try:
        page.goto(me)
        expect(page).to_have_url(re.compile(r"/hub/login"), timeout=30_000)
        log_in(page, hub, "dave")
        page.wait_for_url(me, timeout=60_000)
        who = json.loads(page.locator("pre").first.inner_text())
        assert (who["name"], who["role"], who["via"]) == ("dave", "admin", "hub"), who
        # the cookie the flow left is the login from now on, for the API's other routes too
        pools = page.goto(f"{hub.url}/services/osmo/{API}/pools")
        assert pools is not None and pools.status == 200, pools
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "hub-oauth-failed.png"))
        raise
    finally:
        page.context.close()
    status, body = call(me, "")  # no browser: a 401 saying what to send, no redirect
    assert status == 401 and "Authorization" in body["message"], body
