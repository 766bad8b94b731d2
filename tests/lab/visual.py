"""Screenshots compared with reviewed baselines (`tests/lab/baselines/`), as galata's
`toMatchSnapshot` compares them: pixelmatch's perceptual colour distance (threshold 0.1),
anti-aliased pixels ignored, and at most MAX_DIFF_RATIO of the pixels allowed to differ. What
moves from run to run (durations, a task whose outcome races) is masked.

A failed comparison leaves the screenshot and a diff image in ARTIFACTS. To take a new
baseline, review that screenshot and run the test with OSMO_UPDATE_BASELINES=1.

The baselines are this project's CI machine's rendering (Debian's Chromium and fonts, at the
fixtures' 1400 x 1000 viewport); another machine's fonts may need its own.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image
from pixelmatch.contrib.PIL import pixelmatch
from playwright.sync_api import Locator

from tests.notebook.test_browser import ARTIFACTS

BASELINES = Path(__file__).parent / "baselines"
MAX_DIFF_RATIO = 0.002
THRESHOLD = 0.1


def differing(expected: Image.Image, actual: Image.Image, diff: Image.Image) -> int:
    """How many pixels of `actual` differ from `expected` (drawn red into `diff`)."""
    return int(pixelmatch(expected, actual, diff, threshold=THRESHOLD))


def assert_matches_baseline(target: Locator, name: str, mask: list[Locator]) -> None:
    png = target.screenshot(animations="disabled", caret="hide", mask=mask)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.png").write_bytes(png)
    baseline = BASELINES / f"{name}.png"
    if os.environ.get("OSMO_UPDATE_BASELINES") == "1":
        BASELINES.mkdir(exist_ok=True)
        baseline.write_bytes(png)
        return
    assert baseline.exists(), (
        f"no baseline {baseline}: review {ARTIFACTS / name}.png, then run with "
        "OSMO_UPDATE_BASELINES=1"
    )
    actual = Image.open(io.BytesIO(png)).convert("RGBA")
    expected = Image.open(baseline).convert("RGBA")
    assert actual.size == expected.size, (
        f"{name}: {actual.size} against the baseline's {expected.size}"
    )
    diff = Image.new("RGBA", actual.size)
    bad = differing(expected, actual, diff)
    ratio = bad / (actual.width * actual.height)
    print(f"{name}: {bad} of {actual.width} x {actual.height} pixels differ from the baseline")
    if ratio > MAX_DIFF_RATIO:
        diff.save(ARTIFACTS / f"{name}-diff.png")
        raise AssertionError(
            f"{name}: {bad} pixels ({ratio:.2%}) differ from {baseline}, over "
            f"{MAX_DIFF_RATIO:.2%}: see {ARTIFACTS / name}.png and {name}-diff.png"
        )
