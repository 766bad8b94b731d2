"""Kubernetes-style quantities and OSMO durations, parsed once into plain numbers."""

from __future__ import annotations

import math
import re

from ..exit_codes import MAX_EXIT_CODE

# Sizes as OSMO's code reads them (src/lib/utils/resource_quantities.py): `G` is a gibibyte like
# `Gi` and `GiB`, not Kubernetes's 10**9, so `memory: 1G` asks for what it asks for in OSMO.
_SIZE_UNITS = {
    "": 1,
    "B": 1,
    **{p: 2 ** (10 * (i + 1)) for i, p in enumerate("KMGTPE")},
    **{p + "i": 2 ** (10 * (i + 1)) for i, p in enumerate("KMGTPE")},
    **{p + "iB": 2 ** (10 * (i + 1)) for i, p in enumerate("KMGTPE")},
    "k": 2**10,
}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGTPE]iB?|[kKMGTPEB]|m)?\s*$")
_DURATION = re.compile(r"^\s*([0-9]+)\s*([smhd])\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_bytes(value: str | int | float) -> int:
    """'16Gi' and '16G' -> 17179869184, '500M' -> 524288000, 1024 -> 1024 (OSMO's units)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 16Gi, 512Mi or 1G")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:  # YAML reads `.inf` and `.nan` as floats
            raise ValueError("size must be a finite, non-negative number")
        return int(value)
    m = _QUANTITY.match(value)
    if not m or m.group(2) == "m":
        raise ValueError(f"{value!r} is not a size; use e.g. 16Gi, 512Mi, 1G or a byte count")
    number, unit = float(m.group(1)), m.group(2) or ""
    return int(number * _SIZE_UNITS[unit])


def parse_cpu(value: str | int | float) -> float:
    """'500m' -> 0.5, '2' -> 2.0, 4 -> 4.0."""
    if isinstance(value, bool):
        raise ValueError("expected a CPU count such as 2, 0.5 or 500m")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError("cpu must be a finite, non-negative number")
        return float(value)
    m = _QUANTITY.match(value)
    if not m or (m.group(2) or "") not in ("", "m"):
        raise ValueError(f"{value!r} is not a CPU count; use e.g. 2, 0.5 or 500m")
    number = float(m.group(1))
    return number / 1000 if m.group(2) == "m" else number


def parse_duration(value: str | int | float) -> float:
    """'8h' -> 28800.0; a bare number is seconds. Mixed units ('1h5m') are refused, as in OSMO."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 10m, 8h or 2d")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value <= 0:
            raise ValueError("duration must be a finite, positive number of seconds")
        return float(value)
    m = _DURATION.match(value)
    if not m:
        raise ValueError(
            f"{value!r} is not a duration; use <integer><unit>, unit one of s, m, h, d"
        )
    seconds = int(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError("duration must be positive")
    return float(seconds)


def parse_exit_codes(value: str | int) -> list[tuple[int, int]]:
    """'0,3-5' -> [(0, 0), (3, 5)]. Any code up to OSMO's highest may be named, as in OSMO: a
    task's own are 0-255, OSMO's reserved ones (exit_codes.py) are 2002-4000."""
    text = str(value).strip()
    if not text:
        raise ValueError("empty exit-code list; use e.g. 0,3-5")
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not m:
            raise ValueError(f"{part!r} is not an exit code or range; use e.g. 0,3-5")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if lo > hi:
            raise ValueError(f"range {part!r} runs backwards; write it low-high")
        if hi > MAX_EXIT_CODE:
            raise ValueError(f"exit code {hi} is out of range 0-{MAX_EXIT_CODE}")
        ranges.append((lo, hi))
    return ranges
