"""Workflow text or dict -> validated WorkflowSpec; every problem located at file:line:column.

Built for size (a 10,000-task file is planned in well under a second): libyaml's C parser emits
events and one tight loop builds the Python objects without keeping positions. Positions are only
needed when something is wrong; then the text is composed once more (C composer) and each
problem's field path is looked up in that node tree (`Positions`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceStartEvent,
)

from ..errors import InputError, Problem, SpecError
from ..gcpause import gc_paused
from . import templating
from .labels import label_problems
from .limits import DEFAULT, NodeCounter, SpecLimits, check_data, check_text
from .models import Workflow, WorkflowSpec
from .report import field_path, parse_field
from .schema_errors import schema_problems
from .validate import check_workflow_data

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Dumper: type[Any] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_STR = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_IMPLICIT = yaml.resolver.Resolver.yaml_implicit_resolvers  # first character -> [(tag, regex)]
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_SCALAR_KINDS = frozenset({"null", "bool", "int", "float", "binary", "timestamp"})
_NOKEY: Any = object()  # a mapping waiting for its next key
_MERGE: Any = object()  # the `<<` merge key
_SKIP: Any = object()  # a key we refused; its value is dropped


def set_value(text: str) -> int | float | str:
    """A `--set` value as OSMO reads it (workflow.py's TemplateSpec): an int, else a float,
    else the string."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_set_values(pairs: Sequence[str], strings: Sequence[str] = ()) -> dict[str, Any]:
    """The CLI's `--set` pairs (["k=v", ...], typed by set_value) then its `--set-string`
    pairs (kept strings), as OSMO applies them: {"k": v, ...}."""
    bad: list[Problem] = []
    values: dict[str, Any] = {k: set_value(v) for k, v in _pairs(pairs, "--set", bad)}
    values.update(_pairs(strings, "--set-string", bad))
    if bad:
        raise SpecError(bad)
    return values


def parse_assignments(pairs: Sequence[str], flag: str) -> dict[str, str]:
    """["k=v", ...] -> {"k": "v"} (`--label`, `--set-env`); SpecError naming `flag`."""
    bad: list[Problem] = []
    found = dict(_pairs(pairs, flag, bad))
    if bad:
        raise SpecError(bad)
    return found


def _pairs(pairs: Sequence[str], flag: str, bad: list[Problem]) -> Iterator[tuple[str, str]]:
    """The (key, value) of each `KEY=VALUE`; a problem in `bad` for each other one."""
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            hint = f"write {flag} KEY=VALUE"
            bad.append(Problem(f"{pair!r} is not KEY=VALUE", field=flag, hint=hint))
        else:
            yield key.strip(), value


def with_submit_options(
    loaded: LoadedSpec,
    env: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> LoadedSpec:
    """OSMO's submit options on a loaded spec (its workflow_service.py): `--set-env` sets every
    task's environment over the spec's, `--label` the workflow's labels over the spec's.
    InputError naming the option for a bad name or label."""
    bad = [
        Problem(f"invalid environment variable name {k!r}", field=f"--set-env.{k}")
        for k in env or {}
        if not k or "=" in k or "\0" in k
    ]
    merged = {**loaded.workflow.labels, **(labels or {})}
    if labels:
        bad += label_problems(merged, "--label")
    if bad:
        raise InputError(bad)
    for task in loaded.workflow.all_tasks():
        task.environment.update(env or {})
    loaded.workflow.labels = merged
    loaded.env = {**loaded.env, **(env or {})}
    return loaded


@dataclass
class LoadedSpec:
    spec: WorkflowSpec
    original: str  # the text as given (for a dict: its YAML dump)
    rendered: str  # the text after templating
    values: dict[str, Any]  # template values used: default-values overlaid by --set
    file: str | None
    positions: Positions | None = field(default=None, repr=False, compare=False)
    # Accepted as OSMO accepts them, but worth saying (a duplicate key: the last one is kept)
    warnings: list[Problem] = field(default_factory=list, compare=False)
    env: dict[str, str] = field(default_factory=dict)  # `--set-env` (with_submit_options)

    @property
    def workflow(self) -> Workflow:
        return self.spec.workflow

    def locate(self, problem: Problem) -> Problem:
        """`problem` (e.g. from a placement check) with this spec's file, line and column."""
        pos = self.positions
        where = pos.locate(problem.field) if pos and problem.field else None
        if pos is None or where is None:
            return replace(problem, file=problem.file or self.file)
        return replace(problem, file=problem.file or pos.name, line=where[0], column=where[1])


def load_spec(
    source: str | Mapping[str, Any],
    *,
    file: str | None = None,
    set_values: dict[str, Any] | None = None,
    limits: SpecLimits = DEFAULT,
) -> LoadedSpec:
    """Parse, template and validate a workflow; SpecError lists every problem found, or the
    first limit it passes (limits.py)."""
    name = file or "<spec>"
    with gc_paused():
        if isinstance(source, str):
            return _load_text(source, name, set_values, limits)
        if isinstance(source, Mapping):
            return _load_dict(source, name, set_values, limits)
    raise SpecError(
        Problem(f"a spec is YAML text or a mapping, not {type(source).__name__}", file=name)
    )


def _load_text(
    text: str, file: str, set_values: dict[str, Any] | None, limits: SpecLimits
) -> LoadedSpec:
    check_text(text, limits, file)
    if set_values:
        check_data(set_values, limits, "--set")
    body, defaults, problems = templating.split_default_values(text, file, limits)
    values = templating.template_values(defaults, set_values)
    if problems:
        raise SpecError(problems)
    rendered = templating.render(body, values, file, limits)
    if rendered.problems:
        raise SpecError(rendered.problems)
    # After a render that moved lines, locations refer to the rendered text: say so.
    moved = rendered.templated and rendered.text.count("\n") != body.count("\n")
    where = f"{file} (rendered)" if moved else file
    positions = Positions(rendered.text, where)
    warnings: list[Problem] = []
    data, problems = _build(rendered.text, where, limits, warnings)
    if data is None:
        raise SpecError(problems)
    spec = _validate(data, where, positions, problems)
    return LoadedSpec(spec, text, rendered.text, values, file, positions, warnings)


def _load_dict(
    source: Mapping[str, Any], file: str, set_values: dict[str, Any] | None, limits: SpecLimits
) -> LoadedSpec:
    """A dict is not templated: `default-values` is dropped and --set is refused."""
    check_data(source, limits, file)
    if set_values:
        raise SpecError(
            Problem(
                "--set applies to YAML text; a dict spec is not templated", field="--set", file=file
            )
        )
    data = {k: v for k, v in source.items() if k != "default-values"}
    try:
        original = yaml.dump(dict(source), Dumper=_Dumper, sort_keys=False)
    except yaml.YAMLError as e:
        raise SpecError(
            Problem(f"the spec holds a value YAML cannot represent: {e}", file=file)
        ) from None
    rendered = (
        original if len(data) == len(source) else yaml.dump(data, Dumper=_Dumper, sort_keys=False)
    )
    spec = _validate(data, file, None, [])
    return LoadedSpec(spec, original, rendered, {}, file, None)


def _validate(
    data: Any, file: str, positions: Positions | None, problems: list[Problem]
) -> WorkflowSpec:
    """Schema and cross-field checks in one pass; raises SpecError with all problems."""
    spec = None
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as e:
        problems = problems + schema_problems(e, data, file, positions)
    workflow = data.get("workflow") if isinstance(data, dict) else None
    if isinstance(workflow, dict):
        problems += check_workflow_data(workflow, file=file, positions=positions)
    if problems or spec is None:
        raise SpecError(
            sorted(problems, key=lambda p: (p.line is None, p.line or 0, p.column or 0))
        )
    return spec


# --- YAML -> Python, fast ----------------------------------------------------------------------


def _build(
    text: str, file: str, limits: SpecLimits = DEFAULT, warnings: list[Problem] | None = None
) -> tuple[Any, list[Problem]]:
    """(data, problems) from YAML text; data is None when the text is not usable YAML.

    Semantics are PyYAML's SafeLoader (YAML 1.1 scalars, anchors, `<<` merges): a duplicate
    key keeps the last value, as OSMO (PyYAML) does, and adds a located entry to `warnings`
    instead of passing in silence. The loop runs once
    per YAML event (a quarter of a million for 10,000 tasks): rare cases live in helpers.
    Nodes (an alias counts the nodes it repeats) and depth are limited (SpecError).
    """
    count = NodeCounter(limits, file)  # containers and aliases; scalars counted in `scalars`
    scalars = 0
    max_nodes = limits.nodes
    problems: list[Problem] = []
    loader = _Loader(text)
    get = loader.get_event
    anchors: dict[str, Any] = {}
    merges: dict[int, list[Any]] = {}  # id(mapping) -> mappings merged into it with `<<`
    plain: set[str] = set()  # plain scalars known to stay strings (keys repeat a lot)
    stack: list[tuple[Any, Any]] = []  # (container, pending key) of each enclosing level
    c: Any = None
    key: Any = None
    try:
        get()  # stream start
        if not isinstance(get(), DocumentStartEvent):
            return None, [
                Problem("the spec is empty; it needs a `workflow:` mapping", file=file, line=1)
            ]
        while True:
            ev = get()
            cls = ev.__class__
            if cls is ScalarEvent:
                scalars += 1
                if scalars + count.n > max_nodes:
                    count.too_many(ev)
                value = ev.value
                if not ev.implicit[0]:  # quoted, block or tagged
                    if ev.tag is not None and ev.tag != "!":
                        value = _construct(ev.tag, ev, key is _NOKEY, problems, file)
                elif value not in plain:  # plain: resolve as YAML 1.1 does
                    for tag, regex in _IMPLICIT.get(value[:1], ()):
                        if regex.match(value):
                            value = _construct(tag, ev, key is _NOKEY, problems, file)
                            break
                    else:
                        plain.add(value)
                if ev.anchor is not None:
                    _anchor(anchors, ev, value, problems, file)
                    count.sizes[ev.anchor] = 1
            elif cls is MappingStartEvent or cls is SequenceStartEvent:
                count.n += scalars  # so an anchor's size includes the scalars inside it
                scalars = 0
                count.start(ev.anchor, ev)
                stack.append((c, key))
                c, key = ({}, _NOKEY) if cls is MappingStartEvent else ([], None)
                if ev.anchor is not None or ev.tag is not None:
                    _start(anchors, ev, c, problems, file)
                continue
            elif cls is AliasEvent:
                count.alias(ev.anchor, ev)
                value = _alias(anchors, ev, problems, file)
            else:  # the end of a mapping or sequence
                count.n += scalars
                scalars = 0
                count.end()
                value = c
                if merges and id(value) in merges:
                    _merge(value, merges.pop(id(value)))
                c, key = stack.pop()
            if not stack:
                return value, problems + _single_document(get, file)
            if key is None:
                c.append(value)
            elif key is _NOKEY:
                if value.__class__ is str and value not in c:
                    key = value
                else:
                    key = _key(value, c, stack, ev, problems, warnings, file)
            elif key is _MERGE:
                _merge_later(merges, c, value, ev, problems, file)
                key = _NOKEY
            else:
                if key is not _SKIP:
                    c[key] = value
                key = _NOKEY
    except yaml.YAMLError as e:
        return None, [_yaml_problem(e, text, file)]
    finally:
        loader.dispose()


def _key(
    value: Any,
    mapping: dict[Any, Any],
    stack: list[tuple[Any, Any]],
    ev: Any,
    problems: list[Problem],
    warnings: list[Problem] | None,
    file: str,
) -> Any:
    """The key to store the next value under: `value`, or _MERGE, or _SKIP (refused)."""
    if value is _MERGE:
        return value
    if isinstance(value, dict | list):
        problems.append(_problem("a mapping key must be a scalar", ev, file))
        return _SKIP
    if value in mapping and warnings is not None:
        path = [*_path(stack[1:]), value]
        warnings.append(_problem(f"duplicate key '{value}'; the last one is kept", ev, file, path))
    return value


def _start(
    anchors: dict[str, Any], ev: Any, container: Any, problems: list[Problem], file: str
) -> None:
    if ev.tag not in (None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
        problems.append(_problem(f"unsupported YAML tag {ev.tag!r}", ev, file))
    if ev.anchor is not None:
        _anchor(anchors, ev, container, problems, file)


def _alias(anchors: dict[str, Any], ev: Any, problems: list[Problem], file: str) -> Any:
    if ev.anchor in anchors:
        return anchors[ev.anchor]
    problems.append(_problem(f"unknown alias *{ev.anchor}", ev, file))
    return None


def _construct(tag: str, ev: ScalarEvent, as_key: bool, problems: list[Problem], file: str) -> Any:
    """A typed scalar, as SafeLoader would build it; a problem for tags it refuses."""
    if tag == _STR:
        return ev.value
    if tag == _MERGE_TAG and as_key:
        return _MERGE
    kind = tag.rpartition(":")[2]
    if not tag.startswith("tag:yaml.org,2002:") or kind not in _SCALAR_KINDS:
        problems.append(
            _problem(f"unsupported YAML tag {ev.tag or tag!r} on {ev.value!r}", ev, file)
        )
        return None
    # types-PyYAML: an event's marks may be the C parser's Mark, which ScalarNode takes too
    node = yaml.ScalarNode(tag, ev.value, ev.start_mark, ev.end_mark)  # type: ignore[arg-type]
    try:
        return _CONSTRUCTOR.yaml_constructors[tag](_CONSTRUCTOR, node)
    except (yaml.YAMLError, ValueError):
        problems.append(_problem(f"{ev.value!r} is not a valid YAML {kind}", ev, file))
        return None


def _anchor(
    anchors: dict[str, Any], ev: Any, value: Any, problems: list[Problem], file: str
) -> None:
    if ev.anchor in anchors:  # PyYAML refuses this too; positions rely on its composer
        problems.append(_problem(f"duplicate anchor &{ev.anchor}", ev, file))
    anchors[ev.anchor] = value


def _merge_later(
    merges: dict[int, list[Any]],
    mapping: dict[Any, Any],
    value: Any,
    ev: Any,
    problems: list[Problem],
    file: str,
) -> None:
    """Note `<<: value` for `mapping`; merged when the mapping ends, as its own keys win."""
    sources = value if isinstance(value, list) else [value]
    if all(isinstance(src, dict) for src in sources):
        merges.setdefault(id(mapping), []).extend(sources)
    else:
        problems.append(_problem("`<<` merges a mapping or a list of mappings", ev, file))


def _merge(mapping: dict[Any, Any], sources: list[dict[Any, Any]]) -> None:
    """Apply `<<` merges: explicit keys win, then earlier sources over later ones."""
    explicit = dict(mapping)
    mapping.clear()
    for src in reversed(sources):
        mapping.update(src)
    mapping.update(explicit)


def _single_document(get: Any, file: str) -> list[Problem]:
    get()  # document end
    ev = get()
    if isinstance(ev, DocumentStartEvent):
        return [_problem("a spec is one YAML document; remove the extra `---`", ev, file)]
    return []


def _path(frames: Sequence[tuple[Any, Any]]) -> list[Any]:
    return [len(cont) if isinstance(cont, list) else k for cont, k in frames]


def _problem(message: str, ev: Any, file: str, path: Sequence[Any] = ()) -> Problem:
    mark = ev.start_mark
    return Problem(
        message, field=field_path(path), file=file, line=mark.line + 1, column=mark.column + 1
    )


def _yaml_problem(e: yaml.YAMLError, text: str, file: str) -> Problem:
    mark = getattr(e, "problem_mark", None)
    if mark is not None:
        context, context_mark = getattr(e, "context", None), getattr(e, "context_mark", None)
        hint = f"{context} at line {context_mark.line + 1}" if context and context_mark else None
        return Problem(
            f"YAML syntax error: {getattr(e, 'problem', e)}",
            file=file,
            line=mark.line + 1,
            column=mark.column + 1,
            hint=hint,
        )
    if isinstance(e, yaml.reader.ReaderError):
        return Problem(
            f"YAML syntax error: {e.reason}", file=file, line=text.count("\n", 0, e.position) + 1
        )
    return Problem(f"YAML syntax error: {e}", file=file)


# --- positions, looked up only for problems ----------------------------------------------------


class Positions:
    """1-based (line, column) of field paths in YAML text; composes the text on first use."""

    def __init__(self, text: str, name: str | None = None):
        self.text = text
        self.name = name  # what problems call the text: its file, maybe "(rendered)"
        self._root: yaml.Node | None = None
        self._composed = False

    def locate(self, field: str, *, key: bool = False) -> tuple[int, int] | None:
        return self.find(parse_field(field), key=key)

    def find(
        self, path: Sequence[str | int], *, key: bool = False, needle: str | None = None
    ) -> tuple[int, int] | None:
        """Where `path` is, else its nearest ancestor: the key's place for a key (key=True) or
        for a mapping or list under a key; the value's own place for a scalar or a list item.

        With `needle`, the place of that text inside the value (e.g. a token in a script).
        """
        node = self._tree()
        if node is None:
            return None
        key_node = None
        i = 0
        while i < len(path):
            seg = path[i]
            if isinstance(node, yaml.MappingNode):
                found = _find_pair(node, path, i)
                if found is None:
                    break
                key_node, node, used = found
                i += used
            elif isinstance(node, yaml.SequenceNode) and isinstance(seg, int):
                if not 0 <= seg < len(node.value):
                    break
                key_node, node = None, node.value[seg]
                i += 1
            else:
                break
        start, end = node.start_mark, node.end_mark
        if needle and i == len(path):
            at = self.text.find(needle, start.index, end.index)
            if at >= 0:
                line = start.line + self.text.count("\n", start.index, at)
                return line + 1, at - self.text.rfind("\n", 0, at)
        if key_node is not None and (key or not isinstance(node, yaml.ScalarNode)):
            return _pos(key_node.start_mark)
        return _pos(start)

    def _tree(self) -> yaml.Node | None:
        if not self._composed:
            self._composed = True
            try:
                self._root = yaml.compose(self.text, Loader=_Loader)
            except yaml.YAMLError:
                self._root = None
        return self._root


def _pos(mark: yaml.Mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def _find_pair(
    node: yaml.MappingNode, path: Sequence[str | int], i: int
) -> tuple[yaml.Node, yaml.Node, int] | None:
    """The (key, value) for path[i] in a mapping; a key holding dots may span segments."""
    for j in range(i + 1, len(path) + 1):
        name = ".".join(str(s) for s in path[i:j])
        found = _pair(node, name)
        if found is not None:
            return found[0], found[1], j - i
        if isinstance(path[j - 1], int):
            break
    return None


def _pair(node: yaml.MappingNode, name: str) -> tuple[yaml.Node, yaml.Node] | None:
    merged: list[yaml.Node] = []
    for k, v in reversed(node.value):  # the last duplicate is the one kept
        if k.tag == _MERGE_TAG:
            merged.extend(v.value if isinstance(v, yaml.SequenceNode) else [v])
        elif isinstance(k, yaml.ScalarNode) and k.value == name:
            return k, v
    for m in reversed(merged):
        if isinstance(m, yaml.MappingNode):
            found = _pair(m, name)
            if found is not None:
                return found
    return None
