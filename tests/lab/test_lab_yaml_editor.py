"""A YAML file's editor in a real browser (Debian's Chromium, driven by Playwright) against a
real `jupyter lab` (tests/lab/conftest.py): Validate lists the spec's problems under the editor,
located and linked to their line, and marks them in the text; Submit shows the same problems
and submits nothing until the text is fixed (unsaved: the editor's text is what goes)."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.interactive.test_lab_task_terminal import call
from tests.lab.conftest import Lab, browser_page, open_panel

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
    with browser_page(failed="lab-yaml-tools-failed") as page:
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
