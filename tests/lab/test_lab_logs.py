"""The log tab in a real browser (Debian's Chromium, driven by Playwright) against a real
`jupyter lab` (tests/lab/conftest.py) with the local backend: the attempt picker, times, wrap
and download; line numbers, search, copy and the jumps between a log and its task; a 12,000-line
log drawn 5,000 lines at a time, searched in every line."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.interactive.test_lab_task_terminal import call, wait_for
from tests.lab.conftest import Lab, browser_page, open_panel

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
    with browser_page(failed="lab-logs-failed") as page:
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
        expect(attempt.locator("option")).to_have_text(["all attempts", "attempt 1", "attempt 2"])
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
    with browser_page(clipboard=True, failed="lab-log-search-failed") as page:
        log_jumps_scenario(page, lab, wf)


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
