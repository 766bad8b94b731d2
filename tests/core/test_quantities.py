"""Quantity, duration and exit-code parsers: what OSMO files write, and what they must not."""

from __future__ import annotations

import math

import pytest

from osmo_core.spec.quantities import parse_bytes, parse_cpu, parse_duration, parse_exit_codes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("16Gi", 16 * 2**30),
        ("512Mi", 512 * 2**20),
        ("1Ki", 1024),
        ("1.5Gi", 3 * 2**29),
        ("1G", 2**30),  # OSMO's code: G is Gi (resource_quantities.py), not Kubernetes's 10**9
        ("500M", 500 * 2**20),
        ("16GiB", 16 * 2**30),
        ("2k", 2048),
        ("3B", 3),
        ("1024", 1024),
        (" 64Mi ", 64 * 2**20),
        (1024, 1024),
        (0, 0),
    ],
)
def test_bytes(text: str | int, expected: int) -> None:
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["16Gb", "16GB", "500m", "-1", "Gi", "", "1e9"])
def test_bytes_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_bytes(text)


@pytest.mark.parametrize("value", [-1, math.inf, math.nan, True])
def test_bytes_refuses_odd_numbers(value: float) -> None:
    with pytest.raises(ValueError):
        parse_bytes(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("500m", 0.5), ("250m", 0.25), ("2", 2.0), ("0.5", 0.5), (4, 4.0), (1.5, 1.5)],
)
def test_cpu(text: str | float, expected: float) -> None:
    assert parse_cpu(text) == expected


@pytest.mark.parametrize("value", ["1Gi", "2k", "abc", "", -1, math.nan, math.inf, False])
def test_cpu_refused(value: str | float) -> None:
    with pytest.raises(ValueError):
        parse_cpu(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8h", 28800.0),
        ("30s", 30.0),
        ("10m", 600.0),
        ("2d", 172800.0),
        (" 1h ", 3600.0),
        (90, 90.0),
        (0.5, 0.5),
    ],
)
def test_duration(text: str | float, expected: float) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["1h5m", "1.5h", "h", "8 hours", "", "-1h"])
def test_duration_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", ["0s", 0, -5, math.inf, math.nan, True])
def test_duration_must_be_positive_and_finite(value: str | float) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0,1-10,16,20", [(0, 0), (1, 10), (16, 16), (20, 20)]),
        (" 0 , 3 - 5 ", [(0, 0), (3, 5)]),
        (3, [(3, 3)]),
        ("255", [(255, 255)]),
        ("0-255", [(0, 255)]),
        ("0,2010-2014", [(0, 0), (2010, 2014)]),  # OSMO's data-transfer codes
        ("300,3000-3006,4000", [(300, 300), (3000, 3006), (4000, 4000)]),  # any, as in OSMO
    ],
)
def test_exit_codes(text: str | int, expected: list[tuple[int, int]]) -> None:
    assert parse_exit_codes(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5-3", "runs backwards"),
        ("4001", "out of range 0-4000"),
        ("0-99999999", "out of range 0-4000"),
        ("", "empty"),
        ("a", "is not an exit code"),
        ("1-", "is not an exit code"),
        ("-1", "is not an exit code"),
        ("1,,2", "is not an exit code"),
    ],
)
def test_exit_codes_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_exit_codes(text)
