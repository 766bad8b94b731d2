"""The submit dialog in a real browser (Debian's Chromium, driven by Playwright) against a real
`jupyter lab` (tests/lab/conftest.py): after the file, a pool, a priority and `--set` values,
each remembered — pool and priority from the last submit, values per file, the folder the file
dialog opens in — across a reload; a values line that is not KEY=VALUE is named in the dialog
and nothing is submitted. The YAML editor's Submit uses what its file was last submitted with,
its Submit… asks first."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from playwright.sync_api import Page, expect

from tests.interactive.test_lab_task_terminal import call, wait_for
from tests.lab.conftest import (
    PANEL_TAB,
    Lab,
    browser_page,
    menu_item,
    open_panel,
    submit_options,
)
from tests.notebook.conftest import TOKEN

TRAIN = """\
workflow:
  name: {{ name }}
  resources:
    default:
      cpu: 0
  tasks:
  - name: t
    command: [sh, -c, "echo lr={{ lr }}"]
default-values:
  name: train
  lr: 0.5
"""


SUBMIT_STATE = "@osmo-jupyter/labextension:submit"  # the state database's key


def workflows(lab: Lab) -> list[dict[str, Any]]:
    return call(lab.url, "GET", "workflows")  # type: ignore[return-value]


def workspace(lab: Lab) -> dict[str, Any]:
    """JupyterLab's default workspace as its server holds it."""
    req = urllib.request.Request(
        f"{lab.url}/lab/api/workspaces/default", headers={"Authorization": f"token {TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["data"]  # type: ignore[no-any-return]


def test_submit_dialog_asks_pool_priority_values_and_remembers_them(lab: Lab) -> None:
    (lab.root / "exp").mkdir()
    (lab.root / "exp" / "train.yaml").write_text(TRAIN)
    with browser_page(failed="lab-submit-failed") as page:
        submit_scenario(page, lab)
        editor_scenario(page, lab)


def open_submit(page: Page, *folders: str) -> Any:
    """Submit YAML…, into `folders` in the file dialog, train.yaml chosen: the options."""
    panel = page.locator("#osmo-panel")
    panel.get_by_role("button", name="Submit YAML…").click()
    files = page.locator(".jp-Dialog")
    for folder in folders:
        files.locator(".jp-DirListing-item", has_text=folder).dblclick()
    files.locator(".jp-DirListing-item", has_text="train.yaml").click()
    files.locator(".jp-Dialog-button.jp-mod-accept").click()
    return submit_options(page)


def submit_scenario(page: Page, lab: Lab) -> None:
    panel = open_panel(page, lab)
    # First time: the file dialog opens at the root, the options at their defaults.
    options = open_submit(page, "exp")
    expect(options.locator(".jp-Dialog-header")).to_contain_text("Submit train.yaml")
    pool, priority = options.get_by_label("Pool"), options.get_by_label("Priority")
    values = options.get_by_label("Values (--set KEY=VALUE, one per line)")
    expect(pool).to_have_value("")
    expect(pool.locator("option[value='local']")).to_have_count(1)  # the server's pools
    expect(priority).to_have_value("NORMAL")
    expect(values).to_have_value("")
    pool.select_option("local")
    priority.select_option("HIGH")
    values.fill("lr=0.01\nname=tuned")
    options.get_by_role("button", name="Submit").click()

    detail = panel.locator(".osmo-detail")
    expect(detail.locator(".osmo-detail-id")).to_contain_text("tuned-", timeout=30_000)
    [wf] = workflows(lab)
    assert (wf["pool"], wf["priority"]) == ("local", "HIGH")
    got = call(lab.url, "GET", f"workflows/{wf['id']}")
    assert got["set_values"] == {"lr": 0.01, "name": "tuned"}  # typed as the CLI types them

    # JupyterLab saves the workspace (its state database) a moment after a change
    wait_for(lambda: SUBMIT_STATE in workspace(lab), "the submit memory saved", timeout=15)
    # After a reload: the file dialog opens in exp/, the options as they were last submitted.
    page.reload()
    expect(page.locator(PANEL_TAB)).to_be_visible(timeout=60_000)
    page.evaluate("window.jupyterapp.shell.activateById('osmo-panel')")
    expect(panel.locator(".osmo-conn")).to_have_text("live", timeout=30_000)
    options = open_submit(page)  # no folder to open: already in exp/
    expect(options.get_by_label("Pool")).to_have_value("local")
    expect(options.get_by_label("Priority")).to_have_value("HIGH")
    values = options.get_by_label("Values (--set KEY=VALUE, one per line)")
    expect(values).to_have_value("lr=0.01\nname=tuned")

    # A line that is not KEY=VALUE: named in the dialog, which stays; nothing is submitted.
    values.fill("lr=0.02\nepochs")
    options.get_by_role("button", name="Submit").click()
    options = submit_options(page)
    expect(options.locator(".osmo-submit-problem")).to_have_text(
        'line 2: "epochs" is not KEY=VALUE'
    )
    expect(options.get_by_label("Values (--set KEY=VALUE, one per line)")).to_have_value(
        "lr=0.02\nepochs"
    )
    options.get_by_role("button", name="Cancel").click()
    expect(page.locator(".jp-Dialog")).to_have_count(0)
    assert len(workflows(lab)) == 1

    # Right-click → "Submit to OSMO…": the same options, for the file right-clicked.
    page.locator('.jp-SideBar .lm-TabBar-tab[data-id="filebrowser"]').click()
    browser = page.locator("#filebrowser")
    browser.locator(".jp-DirListing-item", has_text="exp").dblclick()
    browser.locator(".jp-DirListing-item", has_text="train.yaml").click(button="right")
    menu_item(page, "Submit to OSMO…").click()
    options = submit_options(page)
    values = options.get_by_label("Values (--set KEY=VALUE, one per line)")
    expect(values).to_have_value("lr=0.01\nname=tuned")
    values.fill("name=again")
    options.get_by_role("button", name="Submit").click()
    wait_for(lambda: len(workflows(lab)) == 2, "the second submit")
    again = workflows(lab)[0]  # newest first
    assert (again["name"], again["pool"], again["priority"]) == ("again", "local", "HIGH")


def editor_scenario(page: Page, lab: Lab) -> None:
    """After submit_scenario: exp/train.yaml was last submitted to local, HIGH, name=again."""
    page.evaluate(
        "() => { void window.jupyterapp.commands.execute('docmanager:open',"
        " {path: 'exp/train.yaml'}); }"
    )
    toolbar = page.locator(".jp-MainAreaWidget:visible .jp-Toolbar")
    # Submit: at once, with this file's last options
    toolbar.get_by_role("button", name="Submit", exact=True).click()
    wait_for(lambda: len(workflows(lab)) == 3, "the editor's submit")
    latest = workflows(lab)[0]
    assert (latest["name"], latest["pool"], latest["priority"]) == ("again", "local", "HIGH")
    # Submit…: the dialog, starting from them; what it submits is remembered for the next Submit
    toolbar.get_by_role("button", name="Submit…").click()
    options = submit_options(page)
    values = options.get_by_label("Values (--set KEY=VALUE, one per line)")
    expect(values).to_have_value("name=again")
    values.fill("name=edited")
    options.get_by_label("Priority").select_option("LOW")
    options.get_by_role("button", name="Submit").click()
    wait_for(lambda: len(workflows(lab)) == 4, "the editor's submit with options")
    latest = workflows(lab)[0]
    assert (latest["name"], latest["priority"]) == ("edited", "LOW")
    toolbar.get_by_role("button", name="Submit", exact=True).click()
    wait_for(lambda: len(workflows(lab)) == 5, "the editor's second submit")
    latest = workflows(lab)[0]
    assert (latest["name"], latest["priority"]) == ("edited", "LOW")
