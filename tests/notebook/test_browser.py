"""The quickstart notebook in JupyterLab, in a real browser (Debian's Chromium, driven by
Playwright): run all cells, and the monitor widget shows every task COMPLETED, its log pane
readable (WCAG contrast) in the light and the dark theme.

A screenshot is saved as `notebook-monitor.png` in $OSMO_TEST_ARTIFACTS (default
`test-artifacts/` at the repository root). `.ci/run` installs Chromium from Debian.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.notebook.conftest import REPO, TOKEN, base_env, jupyter

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google on this closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("OSMO_TEST_ARTIFACTS", REPO / "test-artifacts"))


def quickstart_copy(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder holding a copy of the quickstart (the browser saves it), and the server's
    environment: its own homes, no user settings."""
    root = tmp_path / "nb"
    root.mkdir()
    for name in ("quickstart.ipynb", "serial.yaml"):
        shutil.copy(REPO / "examples" / name, root / name)
    env = base_env(tmp_path)
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "jupyter-config")  # no user settings leak in
    return root, env


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[str]:
    """`jupyter lab` with the osmo extension on a copy of the quickstart."""
    root, env = quickstart_copy(tmp_path)
    with jupyter("lab", root, env, "--LabApp.expose_app_in_browser=True") as url:
        yield url


# The log pane's text and background colours as the browser draws them: [r, g, b, a] each.
# null while a colour does not parse (the theme's stylesheet being swapped)
LOG_COLOURS = """(el) => {
  const rgba = (c) => {
    const v = (c.match(/[\\d.]+/g) || []).map(Number);
    return v.length === 3 ? [...v, 1] : v.length === 4 ? v : null;
  };
  const s = getComputedStyle(el);
  const fg = rgba(s.color), bg = rgba(s.backgroundColor);
  return fg && bg ? [fg, bg] : null;
}"""


def log_colours(log: Any, unlike: list[list[float]] | None = None) -> list[list[float]]:
    """The log pane's colours once they parse and (after a theme change) its background is no
    longer `unlike`'s: the new theme has reached it. Bounded: 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = log.evaluate(LOG_COLOURS)
        if got is not None and (unlike is None or got[1] != unlike[1]):
            return got
        time.sleep(0.2)
    raise AssertionError(f"the log pane's colours did not settle (before: {unlike})")


def contrast(fg: list[float], bg: list[float]) -> float:
    """WCAG 2 contrast ratio of text `fg` (its alpha blended over `bg`) on an opaque `bg`."""
    assert bg[3] == 1, f"the log pane's background is not opaque: {bg}"
    text = [fg[3] * f + (1 - fg[3]) * b for f, b in zip(fg[:3], bg[:3], strict=True)]

    def luminance(rgb: list[float]) -> float:
        lin = [c / 255 / 12.92 if c / 255 <= 0.04045 else ((c / 255 + 0.055) / 1.055) ** 2.4
               for c in rgb]  # fmt: skip
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted([luminance(text), luminance(bg[:3])], reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def readable_in_both_themes(page: Page, monitor: Any, dark_shot: str) -> None:
    """The monitor's log pane passes WCAG AA (4.5:1) in the light theme, then in the dark one
    (switched by the app's own command), whose screenshot is saved as `dark_shot`."""
    log = monitor.locator("pre.osmo-log")
    light = log_colours(log)
    assert contrast(*light) >= 4.5
    page.evaluate(
        "window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})"
    )
    body = page.locator("body")
    expect(body).to_have_attribute("data-jp-theme-light", "false", timeout=30_000)
    assert contrast(*log_colours(log, unlike=light)) >= 4.5
    monitor.screenshot(path=str(ARTIFACTS / dark_shot))


def quickstart_completed(page: Page) -> Any:
    """The quickstart's monitor, once it shows the workflow and its three tasks COMPLETED (exit
    code 0) in a three-node DAG."""
    monitor = page.locator(".osmo-monitor").first
    expect(monitor).to_be_visible(timeout=60_000)
    expect(monitor.locator(".osmo-status")).to_have_text("COMPLETED", timeout=120_000)
    for task in ("task1", "task2", "task3"):
        row = monitor.locator(f'tr[data-task="{task}"]')
        expect(row.locator("td").nth(1)).to_have_text("COMPLETED", timeout=30_000)
        expect(row.locator("td").nth(4)).to_have_text("0")  # exit code
    expect(monitor.locator("svg.osmo-dag g[data-task]")).to_have_count(3)
    return monitor


def run_all_cells(page: Page) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()


def test_quickstart_monitor_turns_completed_in_jupyterlab(lab: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(f"{lab}/lab/tree/quickstart.ipynb?token={TOKEN}")
            expect(page.locator(".jp-Notebook")).to_be_visible(timeout=60_000)
            kernel_idle = page.locator(".jp-StatusBar-Widget", has_text="Idle")
            expect(kernel_idle.first).to_be_visible(timeout=60_000)
            try:
                run_all_cells(page)
            except Exception:
                page.screenshot(path=str(ARTIFACTS / "notebook-run-all-failed.png"))
                raise
            monitor = quickstart_completed(page)
            monitor.scroll_into_view_if_needed()
            monitor.screenshot(path=str(ARTIFACTS / "notebook-monitor.png"))
            readable_in_both_themes(page, monitor, "notebook-monitor-dark.png")
        finally:
            browser.close()
    assert (ARTIFACTS / "notebook-monitor.png").stat().st_size > 1000
