"""The panel's states and the Launcher, in a real browser (Debian's Chromium, driven by
Playwright) against a real `jupyter lab` (tests/lab/conftest.py) with the local backend:

- 50 running tasks give the Launcher one OSMO card (which asks for the task), not 100 kernel
  cards; when they end, none;
- held tasks (waiting for their user, held for debugging) look held, have a banner with Done and
  Retry, a count in the list and a notification; the settings registry turns that off, and its
  default pool is the one a submit from Lab asks for;
- an empty list says how to start, an empty filtered list offers to clear the filter, and while
  the server is away the panel says so and its actions wait; every badge and banner is readable
  in the dark theme (contrast checked);
- the workflow list: full names, times, sort, filters, its context menu and a bulk cancel.

The log tab is tested in test_lab_logs.py, a YAML file's editor in test_lab_yaml_editor.py.
"""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

from playwright.sync_api import Page, WebSocketRoute, expect

from tests.interactive.test_lab_task_terminal import call, wait_for
from tests.lab.conftest import (
    COLOURS,
    PANEL_TAB,
    Lab,
    browser_page,
    held_click,
    opaque_background,
    open_panel,
    redrawn,
    submit_from_panel,
)
from tests.notebook.conftest import TOKEN
from tests.notebook.test_browser import ARTIFACTS, contrast

MANY = 50
PLUGIN = "@osmo-jupyter/labextension:plugin"

NEEDS = """\
workflow:
  name: needs
  resources:
    default:
      cpu: 0
  tasks:
  - name: desk
    command: [sh, -c, "echo at the desk"]
    interactive: true
  - name: flaky
    command: [sh, -c, "echo broken; exit 3"]
    debug: on-failure
"""


def many_spec(n: int) -> str:
    tasks = "".join(f"  - name: t{i:02d}\n    command: [sleep, '120']\n" for i in range(n))
    return f"workflow:\n  name: many\n  resources:\n    default:\n      cpu: 0\n  tasks:\n{tasks}"


def running(lab: Lab, wf: str) -> int:
    tasks: list[dict[str, Any]] = call(lab.url, "GET", f"workflows/{wf}")["tasks"]  # type: ignore[assignment]
    return sum(t["status"] == "RUNNING" for t in tasks)


def test_fifty_running_tasks_give_the_launcher_one_osmo_card_and_none_once_they_end(
    lab: Lab,
) -> None:
    wf = str(call(lab.url, "POST", "workflows", {"spec": many_spec(MANY)})["id"])
    wait_for(lambda: running(lab, wf) == MANY, f"{MANY} running tasks", timeout=90)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser_page(failed="lab-launcher-failed") as page:
        open_panel(page, lab)
        page.evaluate("window.jupyterapp.commands.execute('launcher:create')")
        launcher = page.locator(".jp-Launcher").last
        osmo = launcher.locator('.jp-LauncherCard[data-category="OSMO"]')
        expect(osmo).to_have_count(1, timeout=30_000)
        # the server's own kernel still has its notebook and console cards; tasks have none
        expect(
            launcher.locator('.jp-LauncherCard[data-category="Notebook"]').first
        ).to_be_attached()
        expect(launcher.locator('.jp-LauncherCard[title^="OSMO: "]')).to_have_count(0)
        cards = launcher.locator(".jp-LauncherCard").count()
        assert cards < 20, f"{cards} Launcher cards for {MANY} running tasks"
        page.screenshot(path=str(ARTIFACTS / "lab-launcher-many-tasks.png"))

        # The card asks which task; every running one is offered.
        osmo.click()
        picker = page.locator(".jp-Dialog select.osmo-task-picker")
        expect(picker.locator("option")).to_have_count(MANY, timeout=30_000)
        expect(picker.locator("option").first).to_have_text(f"{wf}/t00")
        page.locator(".jp-Dialog").get_by_role("button", name="Cancel").click()
        expect(page.locator(".jp-Dialog")).to_have_count(0)

        call(lab.url, "POST", f"workflows/{wf}/cancel")
        expect(osmo).to_have_count(0, timeout=30_000)  # no card for tasks that ended
        expect(
            launcher.locator('.jp-LauncherCard[data-category="Notebook"]').first
        ).to_be_attached()


def write_settings(lab: Lab, **values: object) -> None:
    """The user's OSMO settings, as the Settings Editor saves them (read at page load)."""
    folder = lab.root.parent / "lab-settings" / "@osmo-jupyter" / "labextension"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plugin.jupyterlab-settings").write_text(json.dumps(values))


def test_held_tasks_stand_out_and_notify_unless_the_settings_say_not(lab: Lab) -> None:
    # The settings registry knows the panel's schema (Settings Editor → OSMO).
    req = urllib.request.Request(
        f"{lab.url}/lab/api/settings/{PLUGIN}", headers={"Authorization": f"token {TOKEN}"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        schema = json.loads(r.read())["schema"]
    assert set(schema["properties"]) == {"defaultPool", "refreshSeconds", "notifyHeld"}
    (lab.root / "needs.yaml").write_text(NEEDS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser_page(failed="lab-held-failed") as page:
        held_scenario(page, lab)


def held_scenario(page: Page, lab: Lab) -> None:
    panel = open_panel(page, lab)
    submit_from_panel(page, panel, "needs.yaml")
    detail = panel.locator(".osmo-detail")
    expect(detail.locator(".osmo-detail-id")).to_have_text(re.compile(r"^needs-\d+$"))
    wf = detail.locator(".osmo-detail-id").inner_text()

    # Both tasks held: their own colour and words, not a blue RUNNING.
    for task, shown in (("desk", "WAITING FOR YOU"), ("flaky", "HELD (DEBUG)")):
        node = detail.locator(f'g.osmo-dag-node[data-task="{task}"]')
        expect(node).to_have_class(re.compile(r"\bosmo-status-held\b"), timeout=60_000)
        expect(node).to_have_attribute("data-status", "RUNNING")
        expect(node.locator(".osmo-dag-status")).to_have_text(shown)
    # A banner at the top of the workflow, with what each waits for and its button.
    banner = detail.locator(".osmo-held-banner")
    expect(banner).to_contain_text("2 tasks need you")
    flaky = banner.locator('[data-held-task="flaky"]')
    expect(flaky).to_contain_text(re.compile(r"held for debugging until .*exit code 3"))
    expect(banner.locator('[data-held-task="desk"]')).to_contain_text("waiting for you")
    # The list counts them, and filters on them.
    row = panel.locator(f'li.osmo-wf[data-id="{wf}"]')
    expect(row.locator(".osmo-wf-held")).to_have_text("2 held")
    panel.get_by_label("Filter by status").select_option("held")
    expect(panel.locator("li.osmo-wf")).to_have_count(1)
    panel.get_by_label("Filter by status").select_option("")
    # A notification per task that became held, with a way to it.
    toast = page.locator(".Toastify__toast", has_text=f"{wf}/flaky is held for debugging")
    expect(toast).to_be_visible(timeout=30_000)
    waiting = page.locator(".Toastify__toast", has_text=f"{wf}/desk is waiting for you")
    expect(waiting).to_be_visible()
    detail.locator(".osmo-close").click()
    toast.get_by_role("button", name="Show").click()
    expect(detail.locator('[data-task-details="flaky"]')).to_be_visible(timeout=15_000)
    page.screenshot(path=str(ARTIFACTS / "lab-held-light.png"))

    # Done from the banner: one left; Retry: a new attempt, held again after it fails again.
    banner.locator('[data-held-task="desk"]').get_by_role("button", name="Done").click()
    expect(detail.locator('g.osmo-dag-node[data-task="desk"]')).to_have_attribute(
        "data-status", "COMPLETED", timeout=30_000
    )
    expect(row.locator(".osmo-wf-held")).to_have_text("1 held")
    expect(banner).to_contain_text("1 task needs you")
    flaky.get_by_role("button", name="Retry task").click()
    attempts = detail.locator('[data-task-details="flaky"] .osmo-attempts tr')
    expect(attempts).to_have_count(3, timeout=30_000)  # header + 2
    expect(flaky).to_be_visible(timeout=30_000)
    expect(row.locator(".osmo-wf-held")).to_have_text("1 held")

    # Cancel ends the hold: no banner, no count.
    call(lab.url, "POST", f"workflows/{wf}/cancel")
    expect(row).to_have_attribute("data-status", "FAILED_CANCELED", timeout=30_000)
    expect(banner).to_have_count(0)
    expect(row.locator(".osmo-wf-held")).to_have_count(0)

    # Settings: no notifications; submits ask for another pool (the server says it is unknown).
    write_settings(lab, notifyHeld=False, defaultPool="nowhere")
    page.reload()
    expect(page.locator(PANEL_TAB)).to_be_visible(timeout=60_000)
    page.evaluate("window.jupyterapp.shell.activateById('osmo-panel')")  # restored open or not
    expect(panel.locator(".osmo-conn")).to_have_text("live", timeout=30_000)
    submit_from_panel(page, panel, "needs.yaml")
    refused = page.locator(".Toastify__toast", has_text="Could not submit needs.yaml")
    expect(refused).to_contain_text("nowhere", timeout=15_000)
    second = str(call(lab.url, "POST", "workflows", {"spec": NEEDS})["id"])
    expect(panel.locator(f'li.osmo-wf[data-id="{second}"] .osmo-wf-held')).to_have_text(
        "2 held", timeout=60_000
    )
    expect(page.locator(".Toastify__toast", has_text=f"{second}/")).to_have_count(0)
    call(lab.url, "POST", f"workflows/{second}/cancel")


# The events stream's WebSocket, through Playwright: `up` passes it to the server; while down,
# every (re)connection is refused at once, as when the server is gone.
class EventsLink:
    def __init__(self, page: Page) -> None:
        self.up = True
        self.open: list[WebSocketRoute] = []
        page.route_web_socket(re.compile(r"/osmo/api/v1/events"), self.route)

    def route(self, ws: WebSocketRoute) -> None:
        if self.up:
            ws.connect_to_server()
            self.open.append(ws)
        else:
            ws.close(code=1011, reason="the test's server is away")

    def cut(self) -> None:
        self.up = False
        for ws in self.open:
            ws.close(code=1011, reason="the test's server is away")
        self.open.clear()


def test_empty_filtered_and_reconnecting_states_readable_in_dark(lab: Lab) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser_page(failed="lab-states-failed") as page:
        states_scenario(page, lab)


def states_scenario(page: Page, lab: Lab) -> None:
    link = EventsLink(page)
    panel = open_panel(page, lab)
    # Nothing yet: how to start, with the submit one click away.
    hint = panel.locator(".osmo-empty-hint")
    expect(hint).to_contain_text("No workflows yet")
    expect(hint.get_by_role("button", name="submit a workflow YAML")).to_be_enabled()

    wf = str(call(lab.url, "POST", "workflows", {"spec": NEEDS})["id"])
    row = panel.locator(f'li.osmo-wf[data-id="{wf}"]')
    expect(row.locator(".osmo-wf-held")).to_have_text("2 held", timeout=60_000)
    # A filter that matches nothing says so, and clears in one click.
    panel.get_by_label("Search workflows").fill("no-such-workflow")
    expect(panel.locator(".osmo-empty")).to_contain_text("No workflow matches the filter")
    panel.get_by_role("button", name="Clear filter").click()
    expect(row).to_be_visible()
    expect(panel.get_by_label("Search workflows")).to_have_value("")

    # The server goes away: the panel says so and what needs the server waits.
    row.click()
    detail = panel.locator(".osmo-detail")
    cancel = detail.get_by_role("button", name=f"Cancel {wf}")
    expect(cancel).to_be_enabled()
    detail.locator('g.osmo-dag-node[data-task="flaky"]').click()  # its held badge, measured below
    expect(detail.locator('[data-task-details="flaky"] .osmo-status-held')).to_be_visible()
    link.cut()
    away = panel.locator(".osmo-away")
    expect(away).to_be_visible(timeout=15_000)
    expect(away).to_contain_text("Reconnecting to the server")
    expect(panel.locator(".osmo-conn")).to_have_text("reconnecting…")
    for button in (
        panel.get_by_role("button", name="Submit YAML…"),
        panel.get_by_role("button", name="Refresh"),
        cancel,
        detail.locator(".osmo-held-banner").get_by_role("button", name="Done"),
        detail.locator(".osmo-held-banner").get_by_role("button", name="Retry task"),
    ):
        expect(button).to_be_disabled()
    # Still the list and the graph, and the parts that need no server.
    expect(row).to_be_visible()
    expect(detail.locator(".osmo-close")).to_be_enabled()

    # Readable in the dark theme: every badge, the count and the banner (WCAG AA, 4.5).
    page.evaluate(
        "window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})"
    )
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false", timeout=30_000)
    page.wait_for_timeout(500)  # the theme's stylesheet applied
    panel.screenshot(path=str(ARTIFACTS / "lab-states-dark.png"))
    colours = opaque_background(panel, panel.evaluate(COLOURS))
    names = " ".join(c[0] for c in colours)
    for part in ("osmo-status-held", "osmo-wf-held", "osmo-away", "osmo-status-running"):
        assert part in names, names
    low = [(n, round(contrast(fg, bg), 2)) for n, fg, bg in colours if contrast(fg, bg) < 4.5]
    assert not low, low

    # Back: live again, the actions with it.
    link.up = True
    expect(panel.locator(".osmo-conn")).to_have_text("live", timeout=30_000)
    expect(away).to_be_hidden()
    expect(cancel).to_be_enabled()
    expect(panel.get_by_role("button", name="Submit YAML…")).to_be_enabled()
    call(lab.url, "POST", f"workflows/{wf}/cancel")


QUICK = """\
workflow:
  name: {name}
  resources:
    default:
      cpu: 0
  tasks:
  - name: a
    command: [echo, hi]
"""
LONG = "train-shard-0-with-a-name-longer-than-the-panel-is-wide"

# How many of the list's rows are wholly in its visible box.
ROWS_IN_VIEW = """(list) => {
  const box = list.getBoundingClientRect();
  return [...list.querySelectorAll('li.osmo-wf')].filter(li => {
    const r = li.getBoundingClientRect();
    return r.top >= box.top - 1 && r.bottom <= box.bottom + 1;
  }).length;
}"""


def test_workflow_list_names_times_sort_filters_menu_and_bulk_cancel(lab: Lab) -> None:
    for i in range(11):
        labels = {"team": "vision" if i % 2 else "speech"}
        call(lab.url, "POST", "workflows", {"spec": QUICK.format(name="quick"), "labels": labels})
    call(lab.url, "POST", "workflows", {"spec": QUICK.format(name=LONG)})
    one = {"spec": many_spec(1)}
    running_ids = [str(call(lab.url, "POST", "workflows", one)["id"]) for _ in "ab"]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser_page(clipboard=True, failed="lab-list-failed") as page:
        list_scenario(page, lab, running_ids)


def list_scenario(page: Page, lab: Lab, running_ids: list[str]) -> None:
    panel = open_panel(page, lab)
    rows = panel.locator("li.osmo-wf")
    expect(rows).to_have_count(14, timeout=30_000)
    for wf in running_ids:
        expect(panel.locator(f'li.osmo-wf[data-id="{wf}"]')).to_have_attribute(
            "data-status", "RUNNING", timeout=60_000
        )
    # More than 9 rows at once; full names (wrapped, never cut); start time and duration.
    assert panel.locator(".osmo-workflows").evaluate(ROWS_IN_VIEW) >= 10
    long = panel.locator(f'li.osmo-wf[data-id="{LONG}-1"]')
    expect(long.locator(".osmo-wf-id")).to_have_text(f"{LONG}-1")
    assert long.locator(".osmo-wf-id").evaluate("e => e.scrollWidth <= e.clientWidth")
    expect(long.locator(".osmo-wf-meta")).to_contain_text("started ", timeout=30_000)
    expect(long.locator(".osmo-wf-duration")).to_have_text(re.compile(r"\d"))
    panel.screenshot(path=str(ARTIFACTS / "lab-list-light.png"))

    # Sort and filters: by name, oldest first; a label; a user.
    sort = panel.get_by_label("Sort workflows")
    sort.select_option("name")
    expect(rows.first).to_have_attribute("data-id", running_ids[0])
    sort.select_option("oldest")
    expect(rows.first).to_have_attribute("data-id", "quick-1")
    panel.get_by_label("Search workflows").fill("team=vision")
    expect(rows).to_have_count(5)
    panel.get_by_label("Search workflows").fill("")
    users = panel.get_by_label("Filter by user")
    expect(users.locator("option")).to_have_count(2)  # anyone, and the one user here
    users.select_option(index=1)
    expect(rows).to_have_count(14)
    sort.select_option("newest")

    # The context menu: copy the id, view the spec, restart a finished workflow.
    quick = panel.locator('li.osmo-wf[data-id="quick-1"]')
    menu = page.locator(".lm-Menu")
    quick.click(button="right")
    expect(menu.locator(".lm-Menu-item", has_text="Cancel…")).to_have_class(
        re.compile(r"lm-mod-disabled")
    )  # it ended
    menu.locator(".lm-Menu-item", has_text="Copy ID").click()
    page.wait_for_function("navigator.clipboard.readText().then(t => t === 'quick-1')")
    # The list redraws every second while a workflow runs, keeping the rows it has: the menu
    # acts on the row it was opened on after a redraw.
    ticking = panel.locator(f'li.osmo-wf[data-id="{running_ids[0]}"] .osmo-wf-duration')
    row = quick.element_handle()
    quick.click(button="right")
    redrawn(ticking)
    assert row.evaluate("row => row.isConnected")
    menu.locator(".lm-Menu-item", has_text="View Spec").click()
    expect(page.locator(".osmo-spec-view:visible")).to_contain_text("name: quick")
    quick.click(button="right")
    menu.locator(".lm-Menu-item", has_text="Restart").click()
    restarted = page.locator(".Toastify__toast", has_text="Restarted quick-1 as quick-12")
    expect(restarted).to_be_visible(timeout=15_000)
    expect(panel.locator(".osmo-detail-id")).to_have_text("quick-12")
    # A press that a redraw interrupts still clicks: the browser drops a click whose element
    # was replaced between press and release, and the view redraws every second.
    zoom = panel.locator(".osmo-detail button.osmo-zoom")
    expect(zoom).to_have_attribute("aria-pressed", "true")
    held_click(page, zoom, during=lambda: redrawn(ticking))
    expect(zoom).to_have_attribute("aria-pressed", "false")

    # Cancel asks first; "Keep running" keeps it running.
    first = panel.locator(f'li.osmo-wf[data-id="{running_ids[0]}"]')
    first.click(button="right")
    menu.locator(".lm-Menu-item", has_text="Cancel…").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text(f"Cancel {running_ids[0]}?")
    dialog.get_by_role("button", name="Keep running").click()
    expect(first).to_have_attribute("data-status", "RUNNING")

    # Select both running workflows (Ctrl-click) and cancel them at once.
    second = panel.locator(f'li.osmo-wf[data-id="{running_ids[1]}"]')
    page.keyboard.down("Control")
    held_click(page, first, during=lambda: redrawn(first.locator(".osmo-wf-duration")))
    page.keyboard.up("Control")
    second.click(modifiers=["Control"])
    expect(panel.locator(".osmo-bulk")).to_contain_text("2 selected")
    second.click(button="right")
    expect(menu.locator(".lm-Menu-item", has_text="Cancel 2 Workflows…")).to_be_visible()
    page.keyboard.press("Escape")
    panel.get_by_role("button", name="Cancel selected").click()
    expect(dialog).to_contain_text("Cancel 2 workflows?")
    dialog.get_by_role("button", name="Cancel workflows").click()
    expect(page.locator(".Toastify__toast", has_text="Canceled ")).to_contain_text(
        ", ".join(running_ids), timeout=15_000
    )
    for row in (first, second):
        expect(row).to_have_attribute("data-status", "FAILED_CANCELED", timeout=30_000)
    expect(panel.locator(".osmo-bulk")).to_be_hidden()
