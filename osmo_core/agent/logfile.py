"""An attempt's durable log: one line per output line, `<ISO-8601 UTC> <stream> <text>\\n`.

The agent writes it; the local backend reads it directly (same host). Lines are split on b"\\n"
only, so a text containing "\\r" survives the round trip.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, Literal, cast

from ..wire import LogLine

MAX_LINE = 64 * 1024  # bytes; longer output lines are split into several log lines

Stream = Literal["stdout", "stderr", "system"]


def now() -> float:
    """Seconds, to the microsecond the log keeps, so events and the log agree exactly."""
    return round(time.time(), 6)


def format_line(ts: float, stream: str, text: str) -> bytes:
    stamp = datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{stamp} {stream} {text}\n".encode()


def parse_line(key: str, n: int, raw: bytes) -> LogLine:
    stamp, stream, text = raw.decode("utf-8", "replace").rstrip("\n").split(" ", 2)
    ts = datetime.fromisoformat(stamp[:-1] + "+00:00").timestamp()  # 3.10 lacks "Z"
    return LogLine(key, n, ts, cast(Stream, stream), text)


def read_lines(path: Path, key: str, start: int = 0, limit: int | None = None) -> list[LogLine]:
    """Lines from 0-based index `start`, at most `limit`; a missing log is an empty one.
    Memory holds one chunk and the lines answered, whatever the log's size."""
    out: list[LogLine] = []
    try:
        with open(path, "rb") as f:
            if start and not _skip_lines(f, start):
                return out
            for n, raw in enumerate(f, start + 1):
                if limit is not None and len(out) >= limit:
                    break
                out.append(parse_line(key, n, raw))
    except FileNotFoundError:
        pass
    return out


def _skip_lines(f: BinaryIO, lines: int) -> bool:
    """Move `f` past its first `lines` lines, counting newlines a chunk at a time (C speed);
    False when the file has fewer."""
    left = lines
    while chunk := f.read(1 << 20):
        found = chunk.count(b"\n")
        if found < left:
            left -= found
            continue
        at = -1
        for _ in range(left):
            at = chunk.index(b"\n", at + 1)
        f.seek(at + 1 - len(chunk), 1)
        return True
    return False


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0
