"""The panel's states and the Launcher, in a real browser (Debian's Chromium, driven by
Playwright) against a real `jupyter lab` (tests/lab/conftest.py) with the local backend:

- 50 running tasks give the Launcher one OSMO card (which asks for the task), not 100 kernel
  cards; when they end, none;
- held tasks (waiting for their user, held for debugging) look held, have a banner with Done and
  Retry, a count in the list and a notification; the settings registry turns that off, and its
  default pool is the one a submit from Lab asks for;
- an empty list says how to start, an empty filtered list offers to clear the filter, and while
  the server is away the panel says so and its actions wait; every badge and banner is readable
  in the dark theme (contrast checked).
"""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

from playwright.sync_api import Page, WebSocketRoute, expect

from tests.interactive.test_lab_task_terminal import call, wait_for
from tests.lab.conftest import PANEL_TAB, Lab, browser_page, open_panel, submit_from_panel
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
    with browser_page() as page:
        try:
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
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "lab-launcher-failed.png"))
            raise


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
    with browser_page() as page:
        try:
            held_scenario(page, lab)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "lab-held-failed.png"))
            raise


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


def test_empty_filtered_and_reconnecting_states_readable_in_dark(lab: Lab) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser_page() as page:
        try:
            states_scenario(page, lab)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "lab-states-failed.png"))
            raise


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
    with browser_page(clipboard=True) as page:
        try:
            list_scenario(page, lab, running_ids)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "lab-list-failed.png"))
            raise


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
    # The list re-renders every second while a workflow runs: the menu still acts on the row
    # it was opened on after that row's element is gone (it acted on nothing before).
    row = quick.element_handle()
    quick.click(button="right")
    page.wait_for_function("row => !row.isConnected", arg=row, timeout=10_000)
    menu.locator(".lm-Menu-item", has_text="View Spec").click()
    expect(page.locator(".osmo-spec-view:visible")).to_contain_text("name: quick")
    quick.click(button="right")
    menu.locator(".lm-Menu-item", has_text="Restart").click()
    restarted = page.locator(".Toastify__toast", has_text="Restarted quick-1 as quick-12")
    expect(restarted).to_be_visible(timeout=15_000)
    expect(panel.locator(".osmo-detail-id")).to_have_text("quick-12")

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
    first.click(modifiers=["Control"])
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


RETRIED = """\
workflow:
  name: retried
  resources:
    default:
      cpu: 0
  tasks:
  - name: r
    command: [sh, -c, "echo line-of-attempt-$OSMO_RETRY_ID; exit 3"]
    exitActions: {RESCHEDULE: "3"}
    maxRetries: 1
"""


def test_log_viewer_attempt_picker_times_wrap_and_download(lab: Lab) -> None:
    wf = str(call(lab.url, "POST", "workflows", {"spec": RETRIED})["id"])
    wait_for(
        lambda: str(call(lab.url, "GET", f"workflows/{wf}")["status"]).startswith("FAILED"),
        "the retried workflow to fail",
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser_page() as page:
        try:
            open_panel(page, lab)
            page.evaluate(
                "([w, t]) => window.jupyterapp.commands.execute('osmo:open-logs', "
                "{workflowId: w, task: t})",
                [wf, "r"],
            )
            viewer = page.locator(".osmo-log-viewer:visible")
            lines = viewer.locator(".osmo-log-line.osmo-log-stdout")
            expect(lines).to_have_text(["line-of-attempt-0", "line-of-attempt-1"], timeout=30_000)
            attempt = viewer.get_by_label("Attempt")
            expect(attempt.locator("option")).to_have_text(
                ["all attempts", "attempt 1", "attempt 2"]
            )
            attempt.select_option(label="attempt 2")
            expect(lines).to_have_text(["line-of-attempt-1"])
            viewer.get_by_label("Times").check()
            stamp = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} line-of-attempt-1$")
            expect(lines).to_have_text([stamp])
            body = viewer.locator(".osmo-log-lines")
            assert body.evaluate("e => getComputedStyle(e).whiteSpace") == "pre-wrap"
            viewer.get_by_label("Wrap").uncheck()
            assert body.evaluate("e => getComputedStyle(e).whiteSpace") == "pre"
            with page.expect_download() as got:
                viewer.get_by_role("button", name="Download").click()
            assert got.value.suggested_filename == f"{wf}-r.log"
            saved = got.value.path().read_text()
            assert stamp.match(saved.strip()), saved
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "lab-logs-failed.png"))
            raise


SEARCHED = """\
workflow:
  name: searched
  resources:
    default:
      cpu: 0
  tasks:
  - name: talk
    command:
    - sh
    - -c
    - "for i in 1 2 3 4 5 6; do echo out-$i; done; echo Needle-err >&2; echo needle-end"
  - name: after
    command: [sh, -c, "echo after"]
    inputs: [{task: talk}]
"""


def test_log_viewer_numbers_search_copy_and_jumps_between_log_and_task(lab: Lab) -> None:
    wf = str(call(lab.url, "POST", "workflows", {"spec": SEARCHED})["id"])
    wait_for(
        lambda: call(lab.url, "GET", f"workflows/{wf}")["status"] == "COMPLETED",
        "the searched workflow to complete",
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser_page(clipboard=True) as page:
        try:
            log_jumps_scenario(page, lab, wf)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "lab-log-search-failed.png"))
            raise


def dock_tab(page: Page, label: str) -> Any:
    """The main area's tab whose label is exactly `label`."""
    return page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab").filter(
        has=page.locator(".lm-TabBar-tabLabel", has_text=re.compile(f"^{re.escape(label)}$"))
    )


def log_jumps_scenario(page: Page, lab: Lab, wf: str) -> None:
    panel = open_panel(page, lab)
    page.evaluate(
        "w => window.jupyterapp.commands.execute('osmo:open-workflow-view', {workflowId: w})", wf
    )
    view = page.locator(".osmo-workflow-view:visible")
    node = view.locator('g.osmo-graph-node[data-node="talk"]')
    node.click()
    expect(panel.locator('[data-task-details="talk"]')).to_be_visible(timeout=30_000)
    # task → log: L in the workflow tab opens the selected task's log
    page.keyboard.press("l")
    viewer = page.locator(".osmo-log-viewer:visible")
    lines = viewer.locator(".osmo-log-line[data-ln]")
    expect(lines).to_have_count(8, timeout=30_000)
    expect(viewer.locator(".osmo-log-stderr")).to_have_text(["Needle-err"])
    # the gutter shows 1..8 but is not text: a selection of the lines copies no numbers
    assert lines.first.evaluate("e => getComputedStyle(e, '::before').content") == '"1"'
    selected = viewer.locator(".osmo-log-lines").evaluate(
        "e => { const r = document.createRange(); r.selectNodeContents(e);"
        " const s = getSelection(); s.removeAllRanges(); s.addRange(r); return s.toString(); }"
    )
    assert selected.split("\n")[:2] == ["out-1", "out-2"], selected
    search = viewer.get_by_label("Search the log")
    search.fill("NEEDLE")
    marks = viewer.locator("mark.osmo-log-match")
    # stdout and stderr are two pipes: their lines may interleave either way
    expect(marks).to_have_count(2)
    assert sorted(marks.all_text_contents()) == ["Needle", "needle"]
    count = viewer.locator(".osmo-log-count")
    expect(count).to_have_text("\N{EN DASH} of 2")  # none picked yet
    search.press("Enter")
    expect(count).to_have_text("1 of 2")
    expect(marks.nth(0)).to_have_class(re.compile("osmo-log-match-current"))
    search.press("Enter")
    expect(count).to_have_text("2 of 2")
    search.press("Shift+Enter")
    expect(count).to_have_text("1 of 2")
    expect(lines).to_have_count(8)  # search highlights, it does not filter
    shown = lines.all_text_contents()
    assert sorted(shown) == sorted([*(f"out-{i}" for i in range(1, 7)), "Needle-err", "needle-end"])
    viewer.get_by_role("button", name="Copy").click()
    page.wait_for_function(
        "want => navigator.clipboard.readText().then(t => t === want)", arg="\n".join(shown)
    )
    # log → task: select another task in the tab first, so the jump is seen to move it
    view_tab = dock_tab(page, wf)
    view_tab.click()
    view.locator('g.osmo-graph-node[data-node="after"]').click()
    expect(panel.locator('[data-task-details="after"]')).to_be_visible(timeout=30_000)
    dock_tab(page, f"talk · {wf}").click()
    viewer.get_by_role("button", name="Show task").click()
    expect(panel.locator('[data-task-details="talk"]')).to_be_visible(timeout=30_000)
    view_tab.click()
    expect(node).to_have_class(re.compile("osmo-selected"))


TWO_ERRORS = """\
workflow:
  name: two-errors
  tasks:
  - name: a
    command: [echo, a]
    imag: ubuntu
  - name: b
    command: [echo, b]
    inputs: [{task: nowhere}]
"""
CURSOR_LINE = "() => window.jupyterapp.shell.currentWidget.content.editor.getCursorPosition().line"


def test_yaml_editor_validates_into_located_problems_and_submits(lab: Lab) -> None:
    (lab.root / "two.yaml").write_text(TWO_ERRORS)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with browser_page() as page:
        try:
            panel = open_panel(page, lab)
            page.evaluate(
                "() => window.jupyterapp.commands.execute('docmanager:open', {path: 'two.yaml'})"
            )
            toolbar = page.locator(".jp-MainAreaWidget:visible .jp-Toolbar")
            toolbar.get_by_role("button", name="Validate").click()
            problems = page.locator(".osmo-problems:visible")
            expect(problems.locator(".osmo-problems-title")).to_have_text(
                "2 problems in two.yaml", timeout=15_000
            )
            items = problems.locator(".osmo-problem")
            expect(items).to_have_count(2)
            expect(items.nth(0)).to_contain_text("6:5")
            expect(items.nth(0)).to_contain_text("unknown field 'imag'")
            expect(items.nth(1)).to_contain_text("9:")
            expect(items.nth(1)).to_contain_text("nowhere")
            # ...and in the text: underlined where each is, a gutter marker, the message on hover
            editor = page.locator(".jp-MainAreaWidget:visible .cm-editor")
            marked = editor.locator(".cm-line:has(.cm-lintRange-error)")
            expect(marked).to_have_count(2)
            expect(marked.nth(0)).to_have_text("    imag: ubuntu")
            assert "".join(marked.nth(0).locator(".cm-lintRange-error").all_inner_texts()) == (
                "imag: ubuntu"
            )
            expect(editor.locator(".cm-lint-marker-error")).to_have_count(2)
            marked.nth(0).locator(".cm-lintRange-error").first.hover()
            expect(page.locator(".cm-tooltip-lint")).to_contain_text("unknown field 'imag'")
            items.nth(1).locator("a").click()
            assert page.evaluate(CURSOR_LINE) == 8  # 0-based: line 9
            items.nth(0).locator("a").click()
            assert page.evaluate(CURSOR_LINE) == 5
            # Submit shows the same problems, and submits nothing
            toolbar.get_by_role("button", name="Submit", exact=True).click()
            expect(items).to_have_count(2)
            assert call(lab.url, "GET", "workflows?name=two-errors") == []
            # the fixed spec (unsaved: the editor's text is what goes) is submitted and shown
            page.evaluate(
                "() => { const m = window.jupyterapp.shell.currentWidget.context.model;"
                " m.sharedModel.setSource(m.sharedModel.getSource()"
                ".replace('imag:', 'image:').replace('nowhere', 'a')); }"
            )
            toolbar.get_by_role("button", name="Submit", exact=True).click()
            expect(problems).to_have_count(0)
            expect(editor.locator(".cm-lintRange-error")).to_have_count(0)
            expect(panel.locator(".osmo-detail-id")).to_have_text(
                re.compile(r"^two-errors-\d+$"), timeout=15_000
            )
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "lab-yaml-tools-failed.png"))
            raise


BIG_LOG = """\
workflow:
  name: big-log
  resources:
    default:
      cpu: 0
  tasks:
  - name: many
    command: [seq, "1", "12000"]
"""


def test_a_long_log_keeps_the_page_bounded_and_responsive(lab: Lab) -> None:
    wf = str(call(lab.url, "POST", "workflows", {"spec": BIG_LOG})["id"])
    wait_for(
        lambda: call(lab.url, "GET", f"workflows/{wf}")["status"] == "COMPLETED",
        "the big-log workflow to complete",
    )
    with browser_page() as page:
        open_panel(page, lab)
        started = page.evaluate(
            "([w, t]) => { window.jupyterapp.commands.execute('osmo:open-logs',"
            " {workflowId: w, task: t}); return performance.now(); }",
            [wf, "many"],
        )
        viewer = page.locator(".osmo-log-viewer:visible")
        expect(viewer.locator(".osmo-log-line[data-ln]").last).to_have_text("12000", timeout=60_000)
        took = page.evaluate("() => performance.now()") - started
        rows = viewer.locator(".osmo-log-line")
        assert rows.count() == 5000, rows.count()  # the newest only, whatever the log's length
        expect(viewer.locator(".osmo-log-capped")).to_contain_text("The first 7001 lines")
        # A search counts the matches in every line, drawn or not: "1234" is in 1234 (not
        # drawn) and 11234. Enter moves to the first, drawing the rows around it.
        viewer.get_by_label("Search the log").fill("1234")
        count = viewer.locator(".osmo-log-count")
        expect(count).to_have_text("\N{EN DASH} of 2")
        viewer.get_by_label("Search the log").press("Enter")
        expect(count).to_have_text("1 of 2")
        current = viewer.locator(".osmo-log-match-current")
        expect(current.locator("xpath=..")).to_have_attribute("data-ln", "1234")
        expect(current).to_be_in_viewport()
        assert rows.count() == 5000, rows.count()
        expect(viewer.locator(".osmo-log-capped")).to_contain_text("around the match")
        viewer.get_by_label("Search the log").press("Enter")  # the next is drawn there too
        expect(count).to_have_text("2 of 2")
        expect(current.locator("xpath=..")).to_have_attribute("data-ln", "11234")
        # Auto-scroll: back to the newest lines
        viewer.locator(".osmo-log-autoscroll").check()
        expect(viewer.locator(".osmo-log-line[data-ln]").last).to_have_text("12000")
        expect(viewer.locator(".osmo-log-capped")).to_contain_text("The first 7001 lines")
        print(f"12,000-line log: last line drawn {took / 1000:.1f} s after the command")
