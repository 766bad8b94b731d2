"""Workflow data -> Problems: the rules that need the whole workflow (pydantic's errors made
human: schema_errors.py).

Cross-field rules run on the plain data (dicts and lists, as parsed), so they also run when the
schema check failed: one pass reports everything. They skip whatever has the wrong type (the
schema check reports that) and never raise.

Field paths use the spelling of the YAML: `workflow.tasks[2].exitActions.COMPLETE`.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from ..acyclic import acyclic
from ..errors import Problem
from .labels import MAX_LABELS, key_problem, value_problem
from .models import (
    NAME_PATTERN,
    RESERVED_DIR,
    RESERVED_TASK_NAME,
    Workflow,
    decode_base64,
    name_key,
)
from .report import Path, Reporter, field_path
from .templating import TOKEN

if TYPE_CHECKING:
    from .loader import Positions

_BOOL: TypeAdapter[bool] = TypeAdapter(bool)
NAME_MAX = 255  # bytes in one file name, on every file system a task may run on


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
    report = Reporter(file, positions)
    if wf.get("tasks") and wf.get("groups"):
        report(
            "Cannot use both groups and tasks in the same workflow",
            ("workflow", "groups"),
            key=True,
            hint="put the top-level tasks into groups of their own, or the groups' tasks "
            "into `tasks`",
        )
    _check_labels(report, wf.get("labels"))
    tasks, groups = _collect(wf)
    first: dict[str, _Task] = {}
    for t in tasks:
        if t.name is not None and name_key(t.name) == RESERVED_TASK_NAME:
            report(
                f"task name '{t.name}' is reserved (OSMO's control container)", (*t.path, "name")
            )
        if t.name is not None:
            first.setdefault(t.name, t)
    _check_names(report, tasks, groups)
    _check_groups(report, groups)
    resources = wf.get("resources", {})
    defined = set(resources) if isinstance(resources, dict) else None
    edges: dict[tuple[str, str], tuple[_Task, int]] = {}  # group edge -> (task, input)
    for t in tasks:
        _check_task(report, t, first, defined, edges)
    _check_cycle(report, first, edges)
    return report.problems


def _check_labels(report: Reporter, labels: Any) -> None:
    """OSMO's label syntax (spec/labels.py); a value of the wrong type is the schema's."""
    if not isinstance(labels, dict):
        return
    for k, v in labels.items():
        why = key_problem(str(k))
        if why is None and isinstance(v, str | int | float):
            why = value_problem(str(v))
        if why is not None:
            report(why, ("workflow", "labels", str(k)), key=True)
    if len(labels) > MAX_LABELS:
        report(f"{len(labels)} labels; at most {MAX_LABELS}", ("workflow", "labels"), key=True)


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


def _check_names(report: Reporter, tasks: list[_Task], groups: list[_Group]) -> None:
    """Tasks and groups share one namespace, compared as OSMO does (`Task_1` is `task-1`)."""
    seen: dict[str, tuple[str, Path]] = {}
    named: list[tuple[str, str, Path]] = [("group", g.name, g.path) for g in groups if g.name]
    named += [("task", t.name, t.path) for t in tasks if t.name]
    named.sort(key=lambda n: n[2])  # spec order: a group comes before its tasks
    for kind, name, path in named:
        earlier = seen.get(name_key(name))
        if earlier is None:
            seen[name_key(name)] = (name, path)
            continue
        same = f"'{name}'" if earlier[0] == name else f"'{name}' (the same as '{earlier[0]}')"
        report(
            f"duplicate {kind} name {same}; also defined at {report.where((*earlier[1], 'name'))}",
            (*path, "name"),
            hint="tasks and groups share one namespace; names ignore case and '_' is '-'",
        )


def _check_groups(report: Reporter, groups: list[_Group]) -> None:
    for g in groups:
        label = f"'{g.name}'" if g.name else field_path(g.path)
        flags = [(t, _as_bool(t.data.get("lead", False))) for t in g.tasks]
        if not g.tasks or any(flag is None for _, flag in flags):
            continue  # the schema check reports an empty group or a lead that is not a boolean
        leads = [t for t, flag in flags if flag]
        if not leads and len(g.tasks) > 1:  # a group of one is led by it, as in OSMO
            report(f"group {label} has no lead task; mark one task with lead: true", g.path)
        elif len(leads) > 1:
            names = ", ".join(f"'{t.name}'" for t in leads)
            report(
                f"group {label} has {len(leads)} lead tasks ({names}); exactly one task may "
                "have lead: true",
                (*leads[1].path, "lead"),
            )


def _check_task(
    report: Reporter,
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
        if isinstance(src, str) and ":" in src:  # <workflow_id>:<task>, of an earlier workflow
            wf_id, _, name = src.partition(":")
            input_tasks.append(name)
            if not (re.fullmatch(NAME_PATTERN, wf_id) and re.fullmatch(NAME_PATTERN, name)):
                report(
                    f"invalid input task {src!r}",
                    (*t.path, "inputs", i, "task"),
                    hint="a task of this workflow, or <workflow_id>:<task> for a task of an "
                    "earlier one",
                )
        elif isinstance(src, str):
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
    report: Reporter,
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
    report: Reporter, first: dict[str, _Task], edges: dict[tuple[str, str], tuple[_Task, int]]
) -> None:
    if acyclic(edges):
        return
    import networkx as nx  # only to name the cycle (acyclic.py says why)

    from ..dag import WorkflowDAG

    graph: nx.DiGraph[str] = nx.DiGraph(list(edges))
    task_group = {name: t.node for name, t in first.items() if t.node is not None}
    cycle = WorkflowDAG(graph, task_group).find_cycle()
    if cycle:
        t, i = edges[(cycle[-2], cycle[-1])]
        report(
            f"cycle: {_short_cycle(cycle)}",
            (*t.path, "inputs", i, "task"),
            hint="a task cannot wait, directly or through others, for its own output",
        )


CYCLE_ENDS = 5  # names shown at each end of a long cycle


def _short_cycle(cycle: list[str]) -> str:
    """'a -> b -> a'; a long cycle keeps its first and last few names and says how many it
    left out (a 3,000-task cycle made a 26 KB line)."""
    if len(cycle) <= 2 * CYCLE_ENDS + 1:
        return " -> ".join(cycle)
    left_out = len(cycle) - 2 * CYCLE_ENDS
    head, tail = " -> ".join(cycle[:CYCLE_ENDS]), " -> ".join(cycle[-CYCLE_ENDS:])
    return f"{head} -> ... ({left_out} more) ... -> {tail} ({len(cycle) - 1} groups)"


def _check_tokens(
    report: Reporter,
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
            hint: str | None = "inputs are numbered from 0 in the order of `inputs:`"
        elif kind == "input" and arg not in input_tasks:
            message = f"{{{{input:{arg}}}}} but the task has no input from task '{arg}'"
            hint = f"add `- task: {arg}` under inputs"
        elif kind == "host" and arg not in first:
            message = f"{{{{host:{arg}}}}} names no task of this workflow"
            hint = report.suggest(arg, first)
        else:
            continue
        report(message, (*t.path, *where), hint=hint, needle=m.group(0))


def _check_files(report: Reporter, task: Path, files: list[Any]) -> None:
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


def _check_regexes(report: Reporter, path: Path, item: dict[str, Any]) -> None:
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
