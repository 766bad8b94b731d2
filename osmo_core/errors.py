"""Every error osmo_core raises on purpose.

    OsmoError
    ├── InputError                 bad input from the user; nothing was changed
    │   ├── SpecError              the workflow file is invalid (problems: file/line/column/field)
    │   ├── PlacementError         the spec is valid but the chosen pool cannot run it
    │   └── ConfigError            a configuration value is invalid (trait + value)
    ├── NotFound                   no such workflow / task / attempt
    ├── Conflict                   the request is valid but the object's state forbids it
    ├── InvalidTransition          a move the transition table forbids: a bug, never user input
    ├── BackendError               a compute backend failed (agent unreachable, launch refused, ...)
    └── StoreError                 the database is unusable (schema too new, unreachable)

Front doors map these to exit codes (CLI) and HTTP statuses (API) in one place each.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located as precisely as we can."""

    message: str
    field: str = ""  # dotted path, e.g. "workflow.tasks[2].inputs[0].task"
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    hint: str | None = None  # what would be valid

    @classmethod
    def unknown_keys(cls, given: Iterable[str], valid: set[str], field: str) -> list[Problem]:
        """[the Problem naming the keys of `given` that are not `valid`], or []."""
        bad = sorted(set(given) - valid)
        if not bad:
            return []
        return [cls(f"unknown keys {bad}", field=field, hint=f"valid: {', '.join(sorted(valid))}")]

    def location(self) -> str:
        if self.file is None and self.line is None:
            return ""
        parts = [self.file or "<spec>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def __str__(self) -> str:
        field = f" {self.field}:" if self.field else ""
        hint = f" ({self.hint})" if self.hint else ""
        where = self.location()
        return f"{where + ':' if where else ''}{field} {self.message}{hint}".strip()

    def to_dict(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class OsmoError(Exception):
    """Root of every error raised by osmo_core on purpose."""


MAX_PROBLEMS = 50  # kept of one error: 10,000 tasks too big for every machine made 1.4 MB


class InputError(OsmoError):
    """Bad input; carries one Problem per thing wrong, found in one pass: the first
    MAX_PROBLEMS of them, and how many there were (`total`)."""

    kind = "invalid input"

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.total = len(problems)
        self.problems: list[Problem] = list(problems[:MAX_PROBLEMS])
        super().__init__(self._summary())

    @property
    def left_out(self) -> str | None:
        """ "... and N more problems" when some were not kept."""
        n = self.total - len(self.problems)
        return f"... and {n} more problem{'s' if n != 1 else ''}" if n else None

    def _summary(self) -> str:
        n = self.total
        head = f"{self.kind}: {n} problem{'s' if n != 1 else ''}"
        more = f"\n  {self.left_out}" if self.left_out else ""
        return head + "".join(f"\n  {p}" for p in self.problems) + more


class SpecError(InputError):
    kind = "invalid workflow spec"


class PlacementError(InputError):
    kind = "cannot place workflow"


class ConfigError(InputError):
    kind = "invalid configuration"


class NotFound(OsmoError):
    pass


class Conflict(OsmoError):
    pass


class Unauthorized(OsmoError):
    """No valid credentials: missing, unknown, expired or revoked token, bad signature."""


class Forbidden(OsmoError):
    """Authenticated, but not allowed: another user's workflow, a pool not open to them.
    `problems` locate each refused field when a spec asks for what its submitter may not use
    (a credential)."""

    def __init__(self, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.problems: list[Problem] = list(problems or [])


class InvalidTransition(OsmoError):
    pass


class BackendError(OsmoError):
    pass


class StoreError(OsmoError):
    pass
