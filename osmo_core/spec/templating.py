"""OSMO templating: `default-values`, Jinja rendering, and the special tokens that survive it.

OSMO renders a workflow file with Jinja before reading it as YAML. The values come from the
file's top-level `default-values:` block, overlaid by `--set KEY=VALUE`. The run-time tokens
`{{input:N}}`, `{{input:TASK}}`, `{{output}}`, `{{workflow_id}}` and `{{host:TASK}}` are not
template variables: the platform resolves them when a task starts, so they pass through untouched.

Line numbers are kept: `default-values` is blanked out rather than cut, and problems found before
rendering point at the file as written.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import Problem
from .limits import DEFAULT, SpecLimits, check_yaml

if TYPE_CHECKING:  # Jinja is imported by a render that needs it (most specs do not: 25-40 ms)
    from jinja2 import nodes

    from .sandbox import BudgetSandbox

# A run-time token: group 1 is output/workflow_id, groups 2:3 are input|host and its argument.
TOKEN = re.compile(r"\{\{\s*(?:(output|workflow_id)|(input|host):([A-Za-z0-9_.-]+))\s*\}\}")
# Names the platform owns: OSMO ignores them in default-values and --set, and so do we.
RESERVED = frozenset({"workflow_id", "output", "input", "host"})

_DEFAULTS_KEY = "default-values"
_DEFAULTS_LINE = re.compile(r"^default-values\s*:", re.MULTILINE)
# A line that ends the default-values block: anything at column 0 but a comment, a blank line or
# a block-sequence item ("- x" belongs to the block; "---" does not).
_BLOCK_END = re.compile(r"[^\s#-]|--|-\S")
# Tokens are swapped for private-use characters while Jinja runs: Jinja passes them through.
_PLACEHOLDER = re.compile("\ue000([0-9]+)\ue001")


@functools.cache
def _env() -> BudgetSandbox:
    import jinja2

    from .sandbox import BudgetSandbox

    return BudgetSandbox(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
    )


@dataclass
class Rendered:
    text: str  # what the YAML parser reads
    problems: list[Problem] = field(default_factory=list)
    templated: bool = False  # Jinja ran (so YAML line numbers refer to the rendered text)


def needs_jinja(text: str) -> bool:
    """True when the text holds Jinja syntax other than the run-time tokens."""
    if "{{" not in text and "{%" not in text:
        return False
    rest = TOKEN.sub("", text)
    return "{{" in rest or "{%" in rest


def split_default_values(
    text: str, file: str | None, limits: SpecLimits = DEFAULT
) -> tuple[str, dict[str, Any], list[Problem]]:
    """(text with the block blanked, its values, problems) for a top-level default-values block.
    SpecError when the block passes a node or depth limit (an alias bomb)."""
    m = _DEFAULTS_LINE.search(text)
    if m is None:
        return text, {}, []
    lines = text.splitlines(keepends=True)
    start = text.count("\n", 0, m.start())
    end = start + 1
    while end < len(lines) and not _BLOCK_END.match(lines[end]):
        end += 1
    block = "".join(lines[start:end])
    # Keep each line's ending so the spec's line numbers do not move.
    blanked = ["\n" if ln.endswith("\n") else "" for ln in lines[start:end]]
    body = "".join(lines[:start] + blanked + lines[end:])
    check_yaml(block, limits, file, first_line=start)
    try:
        values = (yaml.safe_load(block) or {}).get(_DEFAULTS_KEY)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        line, column = (start + mark.line + 1, mark.column + 1) if mark else (start + 1, None)
        problem = Problem(
            f"YAML syntax error: {e.problem}",
            field=_DEFAULTS_KEY,
            file=file,
            line=line,
            column=column,
        )
        return body, {}, [problem]
    if values is not None and not isinstance(values, dict):
        problem = Problem(
            "default-values must be a mapping of names to values",
            field=_DEFAULTS_KEY,
            file=file,
            line=start + 1,
            column=1,
        )
        return body, {}, [problem]
    return body, values or {}, []


def template_values(defaults: dict[str, Any], set_values: dict[str, Any] | None) -> dict[str, Any]:
    """default-values overlaid by --set, without the reserved names (OSMO ignores those).

    Values come typed (the CLI types `--set` as OSMO does: int, float, else string). One
    deliberate difference: a `true`/`false` string for a boolean default becomes that boolean,
    where OSMO keeps the string (and `{% if flag %}` would be true for "false").
    """
    merged = dict(defaults)
    for k, v in (set_values or {}).items():
        if isinstance(defaults.get(k), bool) and isinstance(v, str):
            v = {"true": True, "false": False}.get(v.strip().lower(), v)
        merged[k] = v
    return {k: v for k, v in merged.items() if k not in RESERVED}


def render(
    text: str, values: dict[str, Any], file: str | None, limits: SpecLimits = DEFAULT
) -> Rendered:
    """Render `text` (default-values already split off) with Jinja, tokens kept verbatim,
    within the render budget of `limits` (a located problem naming the knob past it)."""
    if not needs_jinja(text):
        return Rendered(text)
    import jinja2
    from jinja2 import meta

    from . import sandbox

    env = _env()
    tokens: dict[str, int] = {}

    def protect(m: re.Match[str]) -> str:
        return f"\ue000{tokens.setdefault(m.group(0), len(tokens))}\ue001"

    protected = TOKEN.sub(protect, text)
    with sandbox.spending(limits):
        try:
            ast = env.parse(protected)
        except jinja2.TemplateSyntaxError as e:
            problem = Problem(f"template syntax error: {e.message}", file=file, line=e.lineno)
            return Rendered(text, [problem])
        except RecursionError:
            return Rendered(text, [Problem("the template nests too deeply", file=file)])
        try:
            missing = meta.find_undeclared_variables(ast) - values.keys() - env.globals.keys()
            if missing:
                return Rendered(text, _unresolved(ast, missing, text, file))
            out = sandbox.render(env, ast, values)
        except sandbox.TemplateBudget as e:
            problem = Problem(
                f"template stopped: {e}",
                file=file,
                line=_template_line(e),
                hint=f"OsmoConfig.{e.knob}",
            )
            return Rendered(text, [problem])
        except Exception as e:  # the template is user code: any failure is a problem in the file
            problem = Problem(f"template error: {e}", file=file, line=_template_line(e))
            return Rendered(text, [problem])
    by_index = list(tokens)
    return Rendered(_PLACEHOLDER.sub(lambda m: by_index[int(m.group(1))], out), templated=True)


def _unresolved(
    ast: nodes.Template, missing: set[str], text: str, file: str | None
) -> list[Problem]:
    from jinja2 import nodes

    first: dict[str, int] = {}
    for node in ast.find_all(nodes.Name):
        if node.name in missing and node.ctx == "load":
            first[node.name] = min(first.get(node.name, node.lineno), node.lineno)
    lines = text.splitlines()
    problems = []
    for name in sorted(missing, key=lambda n: (first.get(n, 0), n)):
        line = first.get(name)
        if name in RESERVED:
            message = f"'{name}' is a run-time token, not a template variable"
            hint = f"write it alone, as {{{{{name}}}}}"
        else:
            message = f"template variable '{name}' has no value"
            hint = f"add it under default-values: or pass --set {name}=VALUE"
        column = _column(lines[line - 1], name) if line and line <= len(lines) else None
        problems.append(
            Problem(
                message,
                field=f"{_DEFAULTS_KEY}.{name}",
                file=file,
                line=line,
                column=column,
                hint=hint,
            )
        )
    return problems


def _column(line: str, name: str) -> int | None:
    """1-based column of `name` inside a {{ }} or {% %} on this line."""
    word = re.compile(rf"\b{re.escape(name)}\b")
    for span in re.finditer(r"\{\{.*?(?:\}\}|$)|\{%.*?(?:%\}|$)", line):
        m = word.search(line, span.start(), span.end())
        if m:
            return m.start() + 1
    return None


def _template_line(exc: BaseException) -> int | None:
    """The template line Jinja blames: it rewrites tracebacks to frames named '<template>'."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
