"""Workflow data -> Problems: pydantic's errors made human, and rules needing the whole workflow.

Cross-field rules run on the plain data (dicts and lists, as parsed), so they also run when the
schema check failed: one pass reports everything. They skip whatever has the wrong type (the
schema check reports that) and never raise.

Field paths use the spelling of the YAML: `workflow.tasks[2].exitActions.COMPLETE`.
"""

from __future__ import annotations

import datetime
import difflib
import posixpath
import re
import types
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

import networkx as nx
from pydantic import BaseModel, TypeAdapter, ValidationError

from ..dag import WorkflowDAG, acyclic
from ..errors import Problem
from .models import NAME_PATTERN, RESERVED_DIR, Workflow, WorkflowSpec, decode_base64
from .templating import TOKEN

if TYPE_CHECKING:
    from .loader import Positions

Path = tuple[str | int, ...]

_FIELD_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")
_BOOL: TypeAdapter[bool] = TypeAdapter(bool)
NAME_MAX = 255  # bytes in one file name, on every file system a task may run on
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


class _Reporter:
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


# --- schema errors -----------------------------------------------------------------------------

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
    report = _Reporter(file, positions)
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


def _schema_problem(report: _Reporter, path: Path, is_key: bool, errs: list[Any]) -> None:
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
        return (
            f"invalid name {_show(value)}",
            "use letters, digits, '-', '_' and '.', beginning and ending with a letter "
            "or digit, at most 64 characters",
        )
    return str(err["msg"]), None


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


# --- cross-field rules -------------------------------------------------------------------------


@dataclass(slots=True)
class _Task:
    path: Path  # ("workflow", "groups", 0, "tasks", 1)
    data: dict[str, Any]
    name: str | None
    node: str | None  # its node in the group graph: its group's name, or its own at top level
    group: int | None  # index of its group in workflow.groups


@dataclass
class _Group:
    path: Path
    name: str | None
    tasks: list[_Task] = field(default_factory=list)


def validate_workflow(
    workflow: Workflow, *, file: str | None = None, positions: Positions | None = None
) -> list[Problem]:
    """The cross-field problems of a built Workflow (e.g. one assembled in a notebook)."""
    return check_workflow_data(
        workflow.model_dump(by_alias=True, exclude_none=True), file=file, positions=positions
    )


def check_workflow_data(
    wf: dict[str, Any], *, file: str | None = None, positions: Positions | None = None
) -> list[Problem]:
    """The cross-field problems of the `workflow:` mapping as parsed, valid or not."""
    report = _Reporter(file, positions)
    tasks, groups = _collect(wf)
    first: dict[str, _Task] = {}
    for t in tasks:
        if t.name is None:
            continue
        if t.name in first:
            report(
                f"duplicate task name '{t.name}'; also defined at "
                f"{report.where((*first[t.name].path, 'name'))}",
                (*t.path, "name"),
            )
        else:
            first[t.name] = t
    _check_groups(report, groups, first)
    resources = wf.get("resources", {})
    defined = set(resources) if isinstance(resources, dict) else None
    edges: dict[tuple[str, str], tuple[_Task, int]] = {}  # group edge -> (task, input)
    for t in tasks:
        _check_task(report, t, first, defined, edges)
    _check_cycle(report, first, edges)
    return report.problems


def _collect(wf: dict[str, Any]) -> tuple[list[_Task], list[_Group]]:
    """Every task (groups' too) and group, in the order the file gives them."""
    tasks: list[_Task] = []
    groups: list[_Group] = []
    for section, items in wf.items():
        if section not in ("tasks", "groups") or not isinstance(items, list):
            continue
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            name = _str(item.get("name"))
            if section == "tasks":
                tasks.append(_Task(("workflow", "tasks", i), item, name, name, None))
                continue
            group = _Group(("workflow", "groups", i), name)
            members = item.get("tasks")
            for j, t in enumerate(members if isinstance(members, list) else []):
                if isinstance(t, dict):
                    group.tasks.append(
                        _Task((*group.path, "tasks", j), t, _str(t.get("name")), name, len(groups))
                    )
            groups.append(group)
            tasks.extend(group.tasks)
    return tasks, groups


def _check_groups(report: _Reporter, groups: list[_Group], first: dict[str, _Task]) -> None:
    seen: dict[str, _Group] = {}
    for g in groups:
        label = f"'{g.name}'" if g.name else field_path(g.path)
        if g.name is not None:
            other = first.get(g.name)
            if g.name in seen:
                report(
                    f"duplicate group name '{g.name}'; also defined at "
                    f"{report.where((*seen[g.name].path, 'name'))}",
                    (*g.path, "name"),
                )
            elif other is not None and other.group is None:
                report(
                    f"group name '{g.name}' is also the name of a top-level task (at "
                    f"{report.where((*other.path, 'name'))}); group and task names share "
                    "one namespace",
                    (*g.path, "name"),
                )
            seen.setdefault(g.name, g)
        flags = [(t, _as_bool(t.data.get("lead", False))) for t in g.tasks]
        if not g.tasks or any(flag is None for _, flag in flags):
            continue  # the schema check reports an empty group or a lead that is not a boolean
        leads = [t for t, flag in flags if flag]
        if not leads:
            report(f"group {label} has no lead task; mark one task with lead: true", g.path)
        elif len(leads) > 1:
            names = ", ".join(f"'{t.name}'" for t in leads)
            report(
                f"group {label} has {len(leads)} lead tasks ({names}); exactly one task may "
                "have lead: true",
                (*leads[1].path, "lead"),
            )


def _check_task(
    report: _Reporter,
    t: _Task,
    first: dict[str, _Task],
    defined: set[str] | None,
    edges: dict[tuple[str, str], tuple[_Task, int]],
) -> None:
    # Runs once per task of a possibly huge workflow: paths are built only to report.
    data = t.data
    inputs = _list(data.get("inputs"))
    input_tasks: list[str] = []
    for i, inp in enumerate(inputs):
        if not isinstance(inp, dict):
            continue
        src = inp.get("task")
        if isinstance(src, str):
            input_tasks.append(src)
            _check_input_task(report, t, i, src, first, edges)
        if "regex" in inp or "dataset" in inp:
            _check_regexes(report, (*t.path, "inputs", i), inp)
    for key in ("outputs", "checkpoint"):
        if key in data:
            for i, item in enumerate(_list(data[key])):
                if isinstance(item, dict):
                    _check_regexes(report, (*t.path, key, i), item)
    resource = data.get("resource")
    if (
        isinstance(resource, str)
        and resource != "default"
        and defined is not None
        and resource not in defined
    ):
        hint = report.suggest(resource, defined) or (
            f"defined resources: {', '.join(sorted(defined))}"
            if defined
            else "define it under workflow.resources"
        )
        report(f"unknown resource '{resource}'", (*t.path, "resource"), hint=hint)
    for key in ("command", "args"):
        for i, v in enumerate(_list(data.get(key))):
            if isinstance(v, str) and "{{" in v:
                _check_tokens(report, t, (key, i), v, len(inputs), input_tasks, first)
    env = data.get("environment")
    if isinstance(env, dict):
        for k, v in env.items():
            if isinstance(v, str) and "{{" in v:
                _check_tokens(report, t, ("environment", k), v, len(inputs), input_tasks, first)
    for i, f in enumerate(_list(data.get("files"))):
        contents = f.get("contents") if isinstance(f, dict) else None
        if isinstance(contents, str) and "{{" in contents:
            _check_tokens(
                report, t, ("files", i, "contents"), contents, len(inputs), input_tasks, first
            )
    if "files" in data:
        _check_files(report, t.path, _list(data["files"]))


def _check_input_task(
    report: _Reporter,
    t: _Task,
    i: int,
    src: str,
    first: dict[str, _Task],
    edges: dict[tuple[str, str], tuple[_Task, int]],
) -> None:
    other = first.get(src)
    if other is not None and src != t.name and (t.group is None or other.group != t.group):
        if other.node is not None and t.node is not None and other.node != t.node:
            edges.setdefault((other.node, t.node), (t, i))
        return
    path = (*t.path, "inputs", i, "task")
    if other is None:
        report(f"unknown input task '{src}'", path, hint=report.suggest(src, first))
    elif src == t.name:
        report(f"task '{src}' takes its own output as input", path)
    else:
        report(
            f"input task '{src}' is in the same group as '{t.name}'; tasks of a group start "
            "together, so one cannot wait for another's output",
            path,
        )


def _check_cycle(
    report: _Reporter, first: dict[str, _Task], edges: dict[tuple[str, str], tuple[_Task, int]]
) -> None:
    if acyclic(edges):
        return
    graph: nx.DiGraph = nx.DiGraph(list(edges))
    task_group = {name: t.node for name, t in first.items() if t.node is not None}
    cycle = WorkflowDAG(graph, task_group).find_cycle()
    if cycle:
        t, i = edges[(cycle[-2], cycle[-1])]
        report(
            f"cycle: {' -> '.join(cycle)}",
            (*t.path, "inputs", i, "task"),
            hint="a task cannot wait, directly or through others, for its own output",
        )


def _check_tokens(
    report: _Reporter,
    t: _Task,
    where: Path,
    text: str,
    n_inputs: int,
    input_tasks: list[str],
    first: dict[str, _Task],
) -> None:
    """{{input:N}}, {{input:TASK}} and {{host:TASK}} in one of the task's strings."""
    for m in TOKEN.finditer(text):
        kind, arg = m.group(2), m.group(3)
        if kind == "input" and arg.isdigit():
            if int(arg) < n_inputs:
                continue
            has = f"{n_inputs} input{'s' if n_inputs != 1 else ''}" if n_inputs else "no inputs"
            message = f"{{{{input:{arg}}}}} but the task has {has}"
            hint = "inputs are numbered from 0 in the order of `inputs:`"
        elif kind == "input" and arg not in input_tasks:
            message = f"{{{{input:{arg}}}}} but the task has no input from task '{arg}'"
            hint = f"add `- task: {arg}` under inputs"
        elif kind == "host" and arg not in first:
            message = f"{{{{host:{arg}}}}} names no task of this workflow"
            hint = report.suggest(arg, first)
        else:
            continue
        report(message, (*t.path, *where), hint=hint, needle=m.group(0))


def _check_files(report: _Reporter, task: Path, files: list[Any]) -> None:
    """What a task's `files:` would fail on at launch, refused now as OSMO refuses it at submit:
    empty, folder-like, escaping, reserved (/osmo/) or repeated paths; invalid base64."""
    seen: dict[str, int] = {}
    for i, f in enumerate(files):
        if not isinstance(f, dict):
            continue
        at = (*task, "files", i)
        path = f.get("path")
        if isinstance(path, str):
            problem = _file_path_problem(path)
            if problem:
                report(problem[0], (*at, "path"), hint=problem[1])
            else:
                norm = posixpath.normpath(path)
                if norm in seen:
                    report(
                        f"duplicate file path {path!r}; also written by "
                        f"{report.where((*task, 'files', seen[norm], 'path'))}",
                        (*at, "path"),
                        hint="each file of a task needs its own path",
                    )
                seen.setdefault(norm, i)
        contents = f.get("contents")
        if isinstance(contents, str) and _as_bool(f.get("base64", False)):
            try:
                decode_base64(contents)
            except ValueError as e:
                report(
                    f"contents are not valid base64: {e}",
                    (*at, "contents"),
                    hint="standard base64 (A-Z a-z 0-9 + /, '=' padding; line breaks are "
                    "ignored), or drop `base64: true` for plain text",
                )


def _file_path_problem(path: str) -> tuple[str, str] | None:
    """(message, what is valid) for a `files:` path no task can have, else None."""
    valid = "a file path, relative to the task's directory or absolute"
    if not path.strip():
        return "file path is empty", valid
    if "\0" in path:
        return "file path contains a NUL character", valid
    norm = posixpath.normpath(path)
    if norm in (".", "/") or path.endswith("/"):
        return f"file path {path!r} names a folder, not a file", valid
    if norm == ".." or norm.startswith("../"):
        return f"file path {path!r} leaves the task's directory", valid
    if norm == RESERVED_DIR or norm.startswith(RESERVED_DIR + "/"):
        return (
            f"file path {path!r} is under {RESERVED_DIR}/, which OSMO reserves",
            f"any path outside {RESERVED_DIR}/",
        )
    if any(len(part.encode()) > NAME_MAX for part in norm.split("/")):
        return f"file path has a name longer than {NAME_MAX} bytes", valid
    return None


def _check_regexes(report: _Reporter, path: Path, item: dict[str, Any]) -> None:
    """`regex` of an input/output/checkpoint and of its dataset must compile."""
    dataset = item.get("dataset")
    for where, value in (
        ((*path, "regex"), item.get("regex")),
        ((*path, "dataset", "regex"), dataset.get("regex") if isinstance(dataset, dict) else None),
    ):
        if isinstance(value, str):
            try:
                re.compile(value)
            except re.error as e:
                at = f" at position {e.pos}" if e.pos is not None else ""
                report(f"invalid regex {value!r}: {e.msg}{at}", where)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _as_bool(value: Any) -> bool | None:
    try:
        return _BOOL.validate_python(value)
    except ValidationError:
        return None
