"""Cells as tasks: notebook cells recorded as OSMO tasks, composed into a workflow, and back.

A cell `%%osmo task NAME [--image I] [--inputs a,s3://b] [--resource R] [--shell]` becomes a
task whose script is the cell body (run with `python3`, or `sh` with `--shell`), injected as a
file the way OSMO specs do:

    - name: NAME
      image: I
      command: [python3, /cells/NAME.py]
      files: [{path: /cells/NAME.py, contents: <cell body>}]
      inputs: [{task: a}, {url: s3://b}]
      resource: R

In the body, `{{output}}` and `{{input:a}}` are the task's folders (as everywhere in a spec).
Any other task (exit actions, environment...) is a `%%osmo task NAME --spec` cell whose body is
the task's YAML; what the workflow holds besides its tasks (resources, default-values, groups,
timeouts) is a `%%osmo workflow-settings` cell. So YAML → cells → YAML is lossless.
"""

from __future__ import annotations

import copy
import re
import shlex
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from osmo_core.errors import InputError, Problem

CELL_DIR = "/cells"
INTERPRETERS = {"python3": "py", "sh": "sh"}


@dataclass
class CellTasks:
    """The cell-tasks recorded in one kernel, in the order their cells last ran."""

    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # the document without its tasks
    # where each came from: the execution count (`In [n]`) of the cell that last recorded it
    cells: dict[str, int | None] = field(default_factory=dict)
    settings_cell: int | None = None

    def record(self, task: dict[str, Any], cell: int | None = None) -> None:
        self.tasks.pop(task["name"], None)  # re-running a cell moves it to the end
        self.tasks[task["name"]] = task
        self.cells[task["name"]] = cell

    def compose(self, name: str) -> dict[str, Any]:
        """The workflow document: the settings, this name, the tasks."""
        if not self.tasks:
            raise InputError("no cell-tasks recorded yet: run some `%%osmo task NAME` cells first")
        doc = copy.deepcopy(self.settings) or {}
        wf = doc.setdefault("workflow", {})
        doc["workflow"] = {"name": name, **{k: v for k, v in wf.items() if k != "name"}}
        doc["workflow"]["tasks"] = [copy.deepcopy(t) for t in self.tasks.values()]
        return doc

    def locate(self, error: InputError, text: str) -> InputError:
        """`error`, found in `text` (the YAML `compose` made), told in the cells' terms: each
        problem names the cell (`Cell In[5] (%%osmo task train)`) instead of `<spec>:42:13`,
        a problem in a script at its line and column in the cell, and a flag by its name."""
        try:
            contents = _script_starts(text)
        except yaml.YAMLError:
            return error
        names = list(self.tasks)
        problems = []
        for p in error.problems:
            m = _TASK_FIELD.match(p.field)
            if m is None or int(m[1]) >= len(names):
                label = _cell_label(self.settings_cell, "%%osmo workflow-settings")
                problems.append(replace(p, file=label, line=None, column=None))
                continue
            name, rest = names[int(m[1])], m[2] or ""
            label = _cell_label(self.cells.get(name), f"%%osmo task {name}")
            start = contents.get(int(m[1]))
            if rest == "files[0].contents" and start is not None and p.line is not None:
                first, indent = start
                line = p.line - first + 2  # the cell's first line is the magic's
                column = None if p.column is None else p.column - indent
                # the validator's hint in YAML's words, in the flag's
                hint = _INPUT_HINT.sub(r"add \1 to --inputs", p.hint) if p.hint else None
                problems.append(
                    replace(p, field="", file=label, line=line, column=column, hint=hint)
                )
                continue
            flag = _FLAGS.get(rest.split("[")[0]) if _as_script(self.tasks[name]) else None
            problems.append(replace(p, field=flag or rest, file=label, line=None, column=None))
        located = InputError(problems)
        located.total = error.total
        return located

    def sources(self) -> dict[str, str]:
        """Each script's file name (`train.py`) -> the cell it came from, for `annotate`."""
        out = {}
        for name, task in self.tasks.items():
            if _as_script(task) is not None:
                out[task["command"][1].rsplit("/", 1)[-1]] = _cell_label(self.cells.get(name), "")
        return out


_TASK_FIELD = re.compile(r"^workflow\.tasks\[(\d+)\](?:\.(.*))?$")
_INPUT_HINT = re.compile(r"^add `- task: (.+)` under inputs$")
_FLAGS = {"inputs": "--inputs", "outputs": "--output", "resource": "--resource", "image": "--image"}


def _cell_label(count: int | None, magic: str) -> str:
    cell = f"Cell In[{count}]" if count is not None else "the cell"
    return f"{cell} ({magic})" if magic else cell


# A script's line in a traceback: Python's `File ".../cells/x.py", line 3`, sh's
# `.../cells/x.sh: line 3:` (bash) or `.../cells/x.sh: 3:` (dash). On the host the file sits
# under the attempt's folder, in a container at /cells.
_SCRIPT_LINE = re.compile(
    rf'(?:File "[^"]*{CELL_DIR}/(?P<py>[^"/]+\.py)", line (?P<pyline>\d+)'
    rf"|\S*{CELL_DIR}/(?P<sh>[^:/\s]+\.sh): (?:line )?(?P<shline>\d+):)"
)


def annotate(text: str, sources: dict[str, str]) -> str:
    """A log line that names a cell's script, followed by the cell and its line there (the
    script is the cell's body: its line n is the cell's line n + 1, after the magic)."""
    if not sources or CELL_DIR not in text:
        return text

    def cell(m: re.Match[str]) -> str:
        script, line = (m["py"], m["pyline"]) if m["py"] else (m["sh"], m["shline"])
        label = sources.get(script)
        return f"{m[0]} [{label}, line {int(line) + 1}]" if label else m[0]

    return _SCRIPT_LINE.sub(cell, text)


def _script_starts(text: str) -> dict[int, tuple[int, int]]:
    """For each task (by index) whose `files[0].contents` is a block in `text`: the 1-based
    line of its first content line, and that block's indentation."""
    lines = text.splitlines()
    out: dict[int, tuple[int, int]] = {}
    root = yaml.compose(text)
    wf = _get(root, "workflow")
    for i, task in enumerate(getattr(_get(wf, "tasks"), "value", None) or []):
        files = _get(task, "files")
        node = _get(files.value[0], "contents") if files is not None and files.value else None
        if node is None or getattr(node, "style", None) != "|":
            continue
        first = node.start_mark.line + 2  # the block starts on the line after its `|`
        if first - 1 < len(lines):
            body = lines[first - 1]
            out[i] = (first, len(body) - len(body.lstrip(" ")))
    return out


def _get(node: Any, key: str) -> Any:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if getattr(k, "value", None) == key), None)


def script_task(
    name: str,
    body: str,
    *,
    image: str | None = None,
    inputs: list[str] | None = None,
    resource: str | None = None,
    outputs: list[str] | None = None,
    shell: bool = False,
) -> dict[str, Any]:
    """A cell's script as an OSMO task (see the module docstring for the shape)."""
    interpreter = "sh" if shell else "python3"
    path = f"{CELL_DIR}/{name}.{INTERPRETERS[interpreter]}"
    task: dict[str, Any] = {"name": name}
    if image:
        task["image"] = image
    task["command"] = [interpreter, path]
    task["files"] = [{"path": path, "contents": _script_body(body)}]
    if inputs:
        task["inputs"] = [{"url": i} if "://" in i else {"task": i} for i in inputs]
    if outputs:
        task["outputs"] = [{"url": o} for o in outputs]
    if resource:
        task["resource"] = resource
    return task


def _script_body(body: str) -> str:
    """Exactly one final newline: how the body reads back from a cell whatever the editor did."""
    return body.rstrip("\n") + "\n"


def spec_task(name: str, body: str) -> dict[str, Any]:
    """A `--spec` cell: the body is the task's YAML mapping (its name comes from the cell)."""
    try:
        data = yaml.safe_load(body) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise InputError(Problem(f"not YAML: {e}", field=f"task {name}", line=line)) from None
    if not isinstance(data, dict):
        raise InputError(Problem("the cell body must be a YAML mapping", field=f"task {name}"))
    return {"name": name, **{k: v for k, v in data.items() if k != "name"}}


def settings_from(body: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(body) or {}
    except yaml.YAMLError as e:
        raise InputError(f"workflow-settings: not YAML: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("workflow", {}), dict):
        raise InputError("workflow-settings: the body must be a YAML mapping")
    if (data.get("workflow") or {}).get("tasks"):
        raise InputError("workflow-settings: tasks come from `%%osmo task` cells, not here")
    return data


# --- YAML <-> cells ------------------------------------------------------------------------------


def to_yaml(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def cells_from_yaml(text: str) -> list[str]:
    """The cells (source text) that record this workflow's tasks: a settings cell when the
    workflow has more than a name and tasks, then one cell per task."""
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("workflow"), dict):
        raise InputError("not an OSMO workflow: no `workflow:` mapping")
    wf = doc["workflow"]
    tasks = wf.get("tasks") or []
    settings = {k: v for k, v in doc.items() if k != "workflow"}
    rest = {k: v for k, v in wf.items() if k not in ("name", "tasks")}
    settings["workflow"] = rest
    cells = [f"%%osmo workflow-settings\n{to_yaml(settings)}"] if rest or len(settings) > 1 else []
    return cells + [_cell_of(t) for t in tasks]


def _cell_of(task: dict[str, Any]) -> str:
    name = task["name"]
    script = _as_script(task)
    if script is None:
        body = {k: v for k, v in task.items() if k != "name"}
        return f"%%osmo task {name} --spec\n{to_yaml(body)}"
    flags, contents = script
    return f"%%osmo task {' '.join([shlex.quote(name), *flags])}\n{contents}"


def _as_script(task: dict[str, Any]) -> tuple[list[str], str] | None:
    """(magic flags, body) when `task` has exactly the shape `script_task` makes."""
    cmd = task.get("command")
    if not (isinstance(cmd, list) and len(cmd) == 2 and cmd[0] in INTERPRETERS):
        return None
    files = task.get("files")
    if not (isinstance(files, list) and len(files) == 1 and isinstance(files[0], dict)):
        return None
    contents = files[0].get("contents")
    if not isinstance(contents, str):
        return None
    inputs = [next(iter(i.values())) for i in task.get("inputs") or [] if isinstance(i, dict)]
    outputs: list[Any] = [o.get("url") for o in task.get("outputs") or [] if isinstance(o, dict)]
    if any(not isinstance(x, str) for x in [*inputs, *outputs]):
        return None
    flags: list[str] = []
    if task.get("image"):
        flags += ["--image", shlex.quote(str(task["image"]))]
    if inputs:
        flags += ["--inputs", shlex.quote(",".join(inputs))]
    for o in outputs:
        flags += ["--output", shlex.quote(o)]
    if task.get("resource"):
        flags += ["--resource", shlex.quote(str(task["resource"]))]
    if cmd[0] == "sh":
        flags.append("--shell")
    kwargs = {
        "image": task.get("image"),
        "inputs": inputs,
        "resource": task.get("resource"),
        "outputs": outputs,
        "shell": cmd[0] == "sh",
    }
    if script_task(task["name"], contents, **kwargs) != task:
        return None  # anything more (environment, exitActions...): the --spec form keeps it
    if "," in "".join(inputs) or contents != _script_body(contents):
        return None  # a comma in a URL, or blank lines at the end, cannot survive a cell
    return flags, contents


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (scripts) as `|` blocks, so exported YAML reads like the cells."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not any(c in value for c in "\r\t") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
