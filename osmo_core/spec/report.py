"""Located problems: field paths in the YAML's spelling (`workflow.tasks[2].exitActions.COMPLETE`)
and the Reporter that turns a message at a path into a Problem with its line and column."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from ..errors import Problem

if TYPE_CHECKING:
    from .loader import Positions

Path = tuple[str | int, ...]  # a field's path: ("workflow", "tasks", 2, "name")

_FIELD_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")
_SUGGESTIONS = 20  # did-you-mean searches per check: each scans every task name


def field_path(path: Sequence[str | int]) -> str:
    """("workflow", "tasks", 2, "name") -> "workflow.tasks[2].name"."""
    out = ""
    for seg in path:
        out += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if out else str(seg))
    return out


def parse_field(text: str) -> list[str | int]:
    """The inverse of field_path."""
    return [int(m.group(1)) if m.group(1) else m.group(2) for m in _FIELD_PART.finditer(text)]


class Reporter:
    """Makes located Problems; positions (when known) give each one its line and column."""

    def __init__(self, file: str | None, positions: Positions | None):
        self.file = file
        self.positions = positions
        self.problems: list[Problem] = []
        self._suggestions = _SUGGESTIONS

    def __call__(
        self,
        message: str,
        path: Path,
        *,
        hint: str | None = None,
        key: bool = False,
        at: Path | None = None,
        needle: str | None = None,
    ) -> None:
        where = (
            self.positions.find(path if at is None else at, key=key, needle=needle)
            if self.positions
            else None
        )
        line, column = where or (None, None)
        self.problems.append(
            Problem(
                message, field=field_path(path), file=self.file, line=line, column=column, hint=hint
            )
        )

    def where(self, path: Path) -> str:
        found = self.positions.find(path) if self.positions else None
        return f"line {found[0]}" if found else field_path(path)

    def suggest(self, word: str, candidates: Collection[str]) -> str | None:
        """'did you mean ...?' for the first few errors: each search is linear in candidates."""
        if self._suggestions <= 0:
            return None
        self._suggestions -= 1
        close = difflib.get_close_matches(word, list(candidates), n=1)
        return f"did you mean '{close[0]}'?" if close else None
