"""What one spec may cost the server: its size, its YAML nodes (aliases expanded), its depth,
and the template's render budget. A spec past a limit is a SpecError naming the limit and the
OsmoConfig knob that sets it, found before the cost is paid: nodes are counted as the YAML
events arrive (an alias counts the nodes it repeats), so a 545-byte alias bomb is refused after
a few hundred events, not after building 351 MB.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypedDict

import yaml
from yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    NodeEvent,
)

from ..errors import Problem, SpecError

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class SpecLimits:
    """Defaults as in OsmoConfig; `knob` names the trait in every message."""

    spec_bytes: int = 8 * 1024 * 1024
    nodes: int = 1_000_000
    depth: int = 64
    template_steps: int = 1_000_000
    template_seconds: float = 2.0
    rendered_bytes: int = 16 * 1024 * 1024


DEFAULT = SpecLimits()


def too_big(what: str, limit: float, knob: str, file: str | None, **where: Any) -> SpecError:
    return SpecError(
        Problem(what, file=file, hint=f"this server's limit: OsmoConfig.{knob} = {limit}", **where)
    )


def check_text(text: str, limits: SpecLimits, file: str | None) -> None:
    """Size and encoding of the text as given (before any parsing)."""
    if len(text) > limits.spec_bytes:  # a cheap bound first: a character is >= 1 byte
        raise too_big(
            f"the spec has {len(text)} characters", limits.spec_bytes, "max_spec_bytes", file
        )
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as e:  # a lone surrogate (e.g. "\ud800" in a JSON string)
        line = text.count("\n", 0, e.start) + 1
        raise SpecError(
            Problem(
                f"the spec is not valid Unicode text: {e.reason} ({text[e.start]!r})",
                file=file,
                line=line,
            )
        ) from None
    if size > limits.spec_bytes:
        raise too_big(f"the spec has {size} bytes", limits.spec_bytes, "max_spec_bytes", file)


class NodeCounter:
    """Counts YAML nodes as a loader composes them, aliases expanded, and nesting depth.

    `start(anchor)` / `end()` around a mapping or sequence, `scalar(anchor)`, `alias(name)`;
    each raises SpecError (located at the event) past a limit.
    """

    __slots__ = ("file", "limits", "n", "opened", "sizes")

    def __init__(self, limits: SpecLimits, file: str | None):
        self.n = 0
        self.sizes: dict[str, int] = {}  # anchor -> nodes it stands for
        self.opened: list[tuple[str | None, int]] = []  # (anchor, n before it) per open level
        self.limits = limits
        self.file = file

    def scalar(self, anchor: str | None, ev: Any) -> None:
        self.n += 1
        if anchor is not None:
            self.sizes[anchor] = 1
        if self.n > self.limits.nodes:
            self.too_many(ev)

    def start(self, anchor: str | None, ev: Any) -> None:
        self.opened.append((anchor, self.n))
        self.n += 1
        if len(self.opened) > self.limits.depth:
            raise too_big(
                f"the spec nests deeper than {self.limits.depth} levels",
                self.limits.depth,
                "max_spec_depth",
                self.file,
                **_at(ev),
            )

    def end(self) -> None:
        anchor, before = self.opened.pop()
        if anchor is not None:
            self.sizes[anchor] = self.n - before

    def alias(self, name: str, ev: Any) -> None:
        size = self.sizes.get(name)
        if size is None and any(a == name for a, _ in self.opened):
            raise SpecError(
                Problem(
                    f"alias *{name} refers to a node that contains it", file=self.file, **_at(ev)
                )
            )
        self.n += size or 1
        if self.n > self.limits.nodes:
            self.too_many(ev)

    def too_many(self, ev: Any) -> None:
        raise too_big(
            f"the spec has more than {self.limits.nodes} YAML nodes (aliases counted as the "
            "nodes they repeat)",
            self.limits.nodes,
            "max_spec_nodes",
            self.file,
            **_at(ev),
        )


class _Mark(TypedDict, total=False):
    line: int
    column: int


def _at(ev: Any) -> _Mark:
    mark = getattr(ev, "start_mark", None)
    return {"line": mark.line + 1, "column": mark.column + 1} if mark is not None else {}


def check_yaml(text: str, limits: SpecLimits, file: str | None, first_line: int = 0) -> None:
    """Node and depth limits of YAML text, from its events alone (nothing is built).
    Syntax errors are left to the real parse."""
    count = NodeCounter(limits, file)
    loader = _Loader(text)
    try:
        while (ev := loader.get_event()) is not None:
            if isinstance(ev, AliasEvent):
                assert ev.anchor is not None  # an alias always names its anchor
                count.alias(ev.anchor, ev)
            elif isinstance(ev, CollectionStartEvent):
                count.start(ev.anchor, ev)
            elif isinstance(ev, CollectionEndEvent):
                count.end()
            elif isinstance(ev, NodeEvent):
                count.scalar(ev.anchor, ev)
    except yaml.YAMLError:
        return
    except SpecError as e:
        if first_line:
            raise SpecError(
                [replace(p, line=(p.line or 1) + first_line) for p in e.problems]
            ) from None
        raise
    finally:
        loader.dispose()


def check_data(data: Any, limits: SpecLimits, file: str | None) -> None:
    """Node and depth limits of a spec given as data (a JSON object), walked without
    recursion; a container reached twice (shared in a Python dict) counts each time."""
    n = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        n += 1
        if n > limits.nodes:
            raise too_big(
                f"the spec has more than {limits.nodes} nodes", limits.nodes, "max_spec_nodes", file
            )
        if isinstance(value, Mapping | list | tuple):
            if depth > limits.depth:
                raise too_big(
                    f"the spec nests deeper than {limits.depth} levels",
                    limits.depth,
                    "max_spec_depth",
                    file,
                )
            items = value.values() if isinstance(value, Mapping) else value
            stack.extend((v, depth + 1) for v in items)
        elif isinstance(value, str) and not value.isascii():
            check_text(value, limits, file)  # lone surrogates
