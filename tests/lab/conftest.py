"""The JupyterLab the panel's browser tests run against: a real `jupyter lab` with the osmo
server extension and the local backend, loading this checkout's built extension
(`osmo_jupyter/labextension`) through `extra_labextensions_path`, and Chromium's flags."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright

from tests.notebook.conftest import REPO, TOKEN, base_env, jupyter
from tests.notebook.test_browser import ARTIFACTS, CHROMIUM

BUILD = REPO / "osmo_jupyter" / "labextension"
EXT_NAME = "@osmo-jupyter/labextension"
# The flags; the background-networking ones keep Chromium off the closed network.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

SLOW = """\
workflow:
  name: slow
  tasks:
  - name: nap
    command: [sh, -c, "echo napping; sleep 120"]
"""
BAD = """\
workflow:
  name: bad
  tasks:
  - name: a
    comand: [echo, hi]
"""


@dataclass(frozen=True)
class Lab:
    url: str
    root: Path


def built_extension() -> Path:
    """This checkout's build; (re)built here (needs node and labextension/node_modules) when
    absent or older than a source file, so a test never runs a stale panel."""
    ext = REPO / "labextension"
    sources = [p for d in ("src", "style", "schema") for p in (ext / d).rglob("*") if p.is_file()]
    sources.append(ext / "package.json")
    stamp = BUILD / "package.json"
    if not stamp.exists() or max(p.stat().st_mtime for p in sources) > stamp.stat().st_mtime:
        subprocess.run(["jlpm", "install"], cwd=ext, check=True, timeout=600)  # new deps too
        subprocess.run(["jlpm", "build:prod"], cwd=ext, check=True, timeout=600)
    return BUILD


def checkout_extension(tmp_path: Path) -> Path:
    """A folder for `extra_labextensions_path` holding this checkout's build (not the copy an
    earlier `pip install` left in sys-prefix)."""
    extensions = tmp_path / "labextensions"
    (extensions / EXT_NAME).parent.mkdir(parents=True)
    (extensions / EXT_NAME).symlink_to(built_extension(), target_is_directory=True)
    return extensions


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """`jupyter lab` on a folder holding example workflows, loading this checkout's extension."""
    root = tmp_path / "work"
    root.mkdir()
    shutil.copy(REPO / "examples" / "serial.yaml", root / "serial.yaml")
    (root / "slow.yaml").write_text(SLOW)
    (root / "bad.yaml").write_text(BAD)
    extensions = checkout_extension(tmp_path)
    env = base_env(tmp_path)
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "jupyter-config")  # no user settings leak in
    env["JUPYTERLAB_SETTINGS_DIR"] = str(settings := tmp_path / "lab-settings")
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no news prompt over the panel
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(tmp_path / "lab-workspaces")
    with jupyter(
        "lab",
        root,
        env,
        f"--LabApp.extra_labextensions_path={extensions}",
        "--LabApp.expose_app_in_browser=True",
    ) as url:
        yield Lab(url, root)


PANEL_TAB = '.jp-SideBar .lm-TabBar-tab[data-id="osmo-panel"]'


def open_panel(page: Page, lab: Lab) -> Locator:
    """JupyterLab with the OSMO panel open and its events stream live."""
    page.goto(f"{lab.url}/lab?token={TOKEN}")
    tab = page.locator(PANEL_TAB)
    expect(tab).to_be_visible(timeout=90_000)
    tab.click()
    panel = page.locator("#osmo-panel")
    expect(panel.locator(".osmo-conn")).to_have_text("live", timeout=30_000)
    return panel


def submit_from_context_menu(page: Page, name: str) -> None:
    """Right-click the file in the file browser; the panel comes back with the new workflow."""
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="filebrowser"]').click()
    item = page.locator(".jp-DirListing-item[data-file-type='yaml']", has_text=name)
    item.click(button="right")
    menu_item(page, "Submit to OSMO").click()


def menu_item(page: Page, label: str) -> Locator:
    """The open menu's item labelled exactly `label` ("Submit to OSMO", not "…OSMO…")."""
    return page.locator(".lm-Menu-item").filter(
        has=page.locator(".lm-Menu-itemLabel").get_by_text(label, exact=True)
    )


def submit_from_panel(page: Page, panel: Locator, name: str) -> None:
    """The panel's Submit YAML… button: JupyterLab's file dialog, then the options dialog,
    submitted as it opens."""
    choose_file(page, panel, name)
    submit_options(page).get_by_role("button", name="Submit").click()


def choose_file(page: Page, panel: Locator, name: str) -> None:
    """Submit YAML…, and `name` chosen in the file dialog's folder as it opens."""
    panel.get_by_role("button", name="Submit YAML…").click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator(".jp-DirListing-item", has_text=name).click()
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()


def submit_options(page: Page) -> Locator:
    """The submit dialog's options (pool, priority, values), once open."""
    dialog = page.locator(".jp-Dialog", has=page.locator(".osmo-submit-options"))
    expect(dialog).to_be_visible()
    return dialog


# Every badge's and banner's text and background as the browser draws them.
COLOURS = """(panel) => {
  const rgba = (c) => {
    const v = (c.match(/[\\d.]+/g) || []).map(Number);
    return v.length === 3 ? [...v, 1] : v.length === 4 ? v : null;
  };
  return [...panel.querySelectorAll('.osmo-badge, .osmo-wf-held, .osmo-away, .osmo-empty')]
    .filter(el => el.offsetParent !== null)
    .map(el => {
      const s = getComputedStyle(el);
      return [el.className + ' ' + el.textContent, rgba(s.color), rgba(s.backgroundColor)];
    });
}"""


def opaque_background(panel: Any, colours: list[Any]) -> list[Any]:
    """A transparent background is the panel's (the empty list's row)."""
    base = panel.evaluate("p => getComputedStyle(p).backgroundColor")
    rgb = [float(v) for v in re.findall(r"[\d.]+", base)][:3]
    return [(name, fg, bg if bg and bg[3] == 1 else [*rgb, 1]) for name, fg, bg in colours]


def redrawn(ticking: Locator) -> None:
    """Wait for a redraw: a running duration's text moves on."""
    expect(ticking).not_to_have_text(ticking.text_content() or "", timeout=10_000)


def held_click(page: Page, target: Locator, during: Callable[[], None]) -> None:
    """Press on `target`, run `during`, release: a click that a user's slow press would make."""
    box = target.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    during()
    page.mouse.up()


@contextmanager
def browser_page(clipboard: bool = False, failed: str | None = None) -> Iterator[Page]:
    """A page of a fresh Chromium; `clipboard`: it may read and write the clipboard; `failed`:
    a screenshot of the page is saved as ARTIFACTS/<failed>.png when the block raises. A failure
    also names the page's failed requests, error answers and console errors."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            if clipboard:
                context.grant_permissions(["clipboard-read", "clipboard-write"])
            page = context.new_page()
            seen: list[str] = []
            page.on("requestfailed", lambda r: seen.append(f"{r.method} {r.url}: {r.failure}"))
            page.on(
                "response",
                lambda r: r.status >= 400 and seen.append(f"{r.request.method} {r.url} {r.status}"),
            )
            page.on("console", lambda m: m.type == "error" and seen.append(f"console: {m.text}"))
            try:
                yield page
            except Exception as e:
                e.add_note("the page saw:\n" + "\n".join(seen[-40:]))
                if failed:
                    ARTIFACTS.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(ARTIFACTS / f"{failed}.png"))
                raise
        finally:
            browser.close()
