"""pydantic's validation errors made human: each one located, said in the YAML's terms, with
what would be valid and, for a misspelt field or name, a "did you mean"."""

from __future__ import annotations

import datetime
import difflib
import re
import types
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from ..errors import Problem
from .models import (
    NAME_PATTERN,
    WorkflowSpec,
)
from .report import Path, Reporter

if TYPE_CHECKING:
    from .loader import Positions

_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def schema_problems(
    exc: ValidationError, data: Any, file: str | None, positions: Positions | None
) -> list[Problem]:
    """One Problem per pydantic error (union branches folded into one), located in the YAML."""
    found = [(*_clean_loc(err, data), err) for err in exc.errors(include_url=False)]
    # Of a union's branches, those that got further into the value are the ones that matter.
    deeper = {path[:u] for path, _, u, _ in found if u is not None and len(path) > u}
    grouped: dict[tuple[Path, bool], list[Any]] = {}
    for path, is_key, u, err in found:
        if not (u is not None and len(path) == u and path in deeper):
            grouped.setdefault((path, is_key), []).append(err)
    report = Reporter(file, positions)
    for (path, is_key), errs in grouped.items():
        _schema_problem(report, path, is_key, errs)
    return report.problems


def _clean_loc(err: Any, data: Any) -> tuple[Path, bool, int | None]:
    """(path in the data, is the error about a key, where a union branch tag was dropped)."""
    loc = err["loc"]
    path: list[str | int] = []
    cur, is_key, union_at = data, False, None
    for i, seg in enumerate(loc):
        if seg == "[key]":
            is_key = True
        elif _has(cur, seg):
            path.append(seg)
            cur = cur[seg]
        elif i == len(loc) - 1 and err["type"] == "missing":
            path.append(seg)
        elif union_at is None:  # a union branch's tag, e.g. 'str' or 'dict[str,str]'
            union_at = len(path)
    return tuple(path), is_key, union_at


def _has(container: Any, seg: Any) -> bool:
    if isinstance(container, dict):
        return seg in container
    return isinstance(container, list) and isinstance(seg, int) and 0 <= seg < len(container)


def _schema_problem(report: Reporter, path: Path, is_key: bool, errs: list[Any]) -> None:
    err = errs[0]
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == "missing":
        report(f"missing required field '{path[-1]}'", path, at=path[:-1])
    elif kind == "extra_forbidden":
        report(
            f"unknown field '{path[-1]}'",
            path,
            key=True,
            hint=_field_hint(str(path[-1]), path[:-1]),
        )
    elif "at" in ctx:  # a mapping's validator naming the key at fault
        report(err["msg"], (*path, ctx["at"]), key=True)
    elif len(errs) > 1 and all(e["type"] in _EXPECTED for e in errs):
        expected = " or ".join(dict.fromkeys(_EXPECTED[e["type"]] for e in errs))
        report(f"expected {expected}, got {_show(err['input'])}", path, key=is_key)
    else:
        message, hint = _describe(err)
        report(message, path, key=is_key, hint=hint)


def _describe(err: Any) -> tuple[str, str | None]:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", err["msg"])), None
    if kind in _EXPECTED:
        hint = None
        if isinstance(value, datetime.date):  # YAML 1.1 reads an unquoted 2024-01-31 as a date
            hint = f"YAML reads {value} as a date; quote it to keep it as text"
        return f"expected {_EXPECTED[kind]}, got {_show(value)}", hint
    if kind in ("enum", "literal_error"):
        return f"expected {ctx['expected']}, got {_show(value)}", None
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return ("must not be empty" if n == 1 else f"needs at least {n} items"), None
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {
            "greater_than_equal": ">=",
            "greater_than": ">",
            "less_than_equal": "<=",
            "less_than": "<",
        }[kind]
        bound = next(iter(ctx.values()))
        return f"must be {op} {bound}, got {_show(value)}", None
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == NAME_PATTERN:
        rule = (
            "use letters, digits, '-' and '_', beginning with a letter and ending with a "
            "letter or digit, at most 64 characters"
        )
        fixed = _name_fix(value)
        return f"invalid name {_show(value)}", (
            f"did you mean '{fixed}'? ({rule})" if fixed else rule
        )
    return str(err["msg"]), None


def _name_fix(value: Any) -> str | None:
    """The nearest valid name: other characters become '-', the ends are trimmed to a letter
    (start) and a letter or digit (end), the length to 64. None when nothing is left."""
    if not isinstance(value, str):
        return None
    fixed = re.sub(r"[^A-Za-z0-9_-]", "-", value)
    fixed = re.sub(r"^[^A-Za-z]+", "", fixed)[:64]
    fixed = re.sub(r"[_-]+$", "", fixed)
    return fixed if fixed and re.match(NAME_PATTERN, fixed) else None


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, bool):
        return str(value).lower()
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _field_hint(name: str, parent: Path) -> str | None:
    model = _model_at(parent)
    if model is None:
        return None
    fields = [f.alias or n for n, f in model.model_fields.items()]
    close = difflib.get_close_matches(name, fields, n=1)
    return f"did you mean '{close[0]}'?" if close else f"valid fields: {', '.join(fields)}"


def _model_at(path: Path) -> type[BaseModel] | None:
    """The model that holds the mapping at `path`, found by walking the models' annotations."""
    tp: Any = WorkflowSpec
    for seg in path:
        tp = _unwrap(tp)
        origin = get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            tp = next(
                (f.annotation for n, f in tp.model_fields.items() if seg in (n, f.alias)), None
            )
        elif origin is list and isinstance(seg, int):
            tp = get_args(tp)[0]
        elif origin is dict:
            tp = get_args(tp)[1]
        else:
            return None
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and None from a type; of a union keep its model (or first) member."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            tp = (models or members)[0]
        else:
            return tp
