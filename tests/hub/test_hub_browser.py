"""Alice's and bob's OSMO panels in a real browser (Debian's Chromium, driven by Playwright),
each logged in to the Hub with a password: one service, each panel showing its user's own."""

from __future__ import annotations

import pytest

pytest.importorskip("playwright", reason="Playwright drives the browser (pip install -e '.[dev]')")

from playwright.sync_api import Page, expect, sync_playwright

from tests.hub.conftest import PASSWORD, Hub
from tests.lab.conftest import CHROMIUM_ARGS, PANEL_TAB
from tests.notebook.test_browser import ARTIFACTS, CHROMIUM

pytestmark = pytest.mark.timeout(300)


def open_panel_as(page: Page, hub: Hub, user: str) -> None:
    """Log in at the Hub's form, go to the user's Lab, open the OSMO panel (its events live)."""
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
    # logged in: the Hub sends the browser on to the user's running Lab
    page.wait_for_url(f"**/user/{user}/**", timeout=60_000)
    page.goto(f"{hub.lab(user)}/lab")
    tab = page.locator(PANEL_TAB)
    expect(tab).to_be_visible(timeout=120_000)
    tab.click()
    expect(page.locator("#osmo-panel .osmo-conn")).to_have_text("live", timeout=60_000)


def test_each_users_panel_shows_their_own_workflows(hub: Hub, workflows: dict[str, str]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for user, other in (("alice", "bob"), ("bob", "alice")):
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = context.new_page()
                try:
                    open_panel_as(page, hub, user)
                    panel = page.locator("#osmo-panel")
                    row = f'li.osmo-wf[data-id="{workflows[user]}"]'
                    expect(panel.locator(row)).to_be_visible(timeout=30_000)
                    others = f'li.osmo-wf[data-id="{workflows[other]}"]'
                    expect(panel.locator(others)).to_have_count(0)
                except Exception:
                    page.screenshot(path=str(ARTIFACTS / f"hub-panel-{user}-failed.png"))
                    raise
                finally:
                    context.close()
        finally:
            browser.close()
