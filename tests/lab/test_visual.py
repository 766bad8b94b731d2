"""The baseline comparison (visual.py) on the reviewed baselines themselves: a picture matches
itself, and a node drawn in another colour is caught."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from tests.lab.visual import BASELINES, MAX_DIFF_RATIO, differing


@pytest.mark.parametrize("name", ["workflow-graph-light", "workflow-graph-dark"])
def test_a_recoloured_node_is_caught_and_the_same_picture_is_not(name: str) -> None:
    # its top left corner (the legend, the first nodes and edges): pixelmatch is pure Python
    baseline = Image.open(BASELINES / f"{name}.png").convert("RGBA").crop((0, 0, 480, 600))
    diff = Image.new("RGBA", baseline.size)
    assert differing(baseline, baseline.copy(), diff) == 0
    changed = baseline.copy()
    side = int((MAX_DIFF_RATIO * baseline.width * baseline.height) ** 0.5) + 8
    ImageDraw.Draw(changed).rectangle((40, 60, 40 + side, 60 + side), fill=(200, 30, 30, 255))
    assert differing(baseline, changed, diff) > MAX_DIFF_RATIO * baseline.width * baseline.height
