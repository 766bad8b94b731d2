"""Bulk changes in slices: cancelling or starting a 10,000-task workflow is a sequence of steps
run SLICE seconds per engine round (each round then commits and yields the loop), with PAUSE
between rounds, so other requests (GET /health, a colleague's submit) never wait for long.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

SLICE = 0.005  # seconds of steps per engine round
PAUSE = 0.01  # seconds between two rounds, for requests that queued up meanwhile


def run_slice(steps: Iterator[object]) -> bool:
    """Advance `steps` for SLICE seconds, at least 16 steps (between two clock reads); True
    once done."""
    until = time.perf_counter() + SLICE
    while True:
        for _ in range(16):
            if next(steps, None) is None:
                return True
        if time.perf_counter() >= until:
            return False
