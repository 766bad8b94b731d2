"""Workflow labels as OSMO has them (`src/lib/utils/workflow_labels.py`): Kubernetes label
syntax for keys and values, at most MAX_LABELS a workflow; `--label KEY=VALUE` on submit sets
one over the spec's, and `list --label KEY=SELECTOR` filters on them, a selector being a value
with `*` wildcards and `(a|b)` alternatives (`project=(sim_*|hil_*)`)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping

from ..errors import InputError, Problem

MAX_LABELS = 16
MAX_PATTERNS = 32  # patterns one selector may expand to
_NAME = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_DNS = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
_PREFIX = re.compile(rf"(?=.{{1,253}}$){_DNS}(?:\.{_DNS})*")
_VALID = "letters, digits, '-', '_' and '.', at most 63, beginning and ending alphanumeric"


def key_problem(key: str) -> str | None:
    """Why `key` is not a label key (`[prefix/]name`, a DNS prefix), else None."""
    prefix, _, name = key.rpartition("/")
    if "/" in prefix or (prefix and not _PREFIX.fullmatch(prefix)) or not _NAME.fullmatch(name):
        return f"invalid label key {key!r} (a name of {_VALID}, after an optional DNS prefix/)"
    return None


def value_problem(value: str) -> str | None:
    if not _NAME.fullmatch(value):
        return f"invalid label value {value!r} ({_VALID})"
    return None


def label_problems(labels: Mapping[str, str], field: str) -> list[Problem]:
    """What is wrong with a workflow's labels, each naming `field` (and the key)."""
    problems = [
        Problem(why, field=f"{field}.{k}")
        for k, v in labels.items()
        for why in (key_problem(k), value_problem(v))
        if why is not None
    ]
    if len(labels) > MAX_LABELS:
        problems.append(Problem(f"{len(labels)} labels; at most {MAX_LABELS}", field=field))
    return problems


def selector_patterns(text: str) -> tuple[str, list[str]]:
    """`KEY=SELECTOR` -> (key, the glob patterns a value may match), unchecked: a selector no
    label can match matches nothing (the server's filter); parse_selector checks it."""
    key, _, selector = text.partition("=")
    alternatives = [
        p.strip("()").split("|") if p.startswith("(") else [p] for p in _parts(selector)
    ]
    product = itertools.product(*alternatives)
    return key, ["".join(c) for c in itertools.islice(product, MAX_PATTERNS + 1)]


def parse_selector(text: str) -> tuple[str, list[str]]:
    """`KEY=SELECTOR` -> (key, patterns), as OSMO's CLI checks it; InputError if invalid."""
    if "=" not in text:
        raise InputError(Problem(f"{text!r} is not KEY=SELECTOR", field="--label"))
    key, patterns = selector_patterns(text)
    if why := key_problem(key):
        raise InputError(Problem(why, field="--label"))
    if len(patterns) > MAX_PATTERNS:
        why = f"expands to more than {MAX_PATTERNS} patterns"
    elif (
        bad := next((p for p in patterns if value_problem(p.replace("*", "x"))), None)
    ) is not None:
        why = f"has a pattern {bad!r} that no label value matches ({_VALID}; '*' is any run)"
    else:
        return key, patterns
    raise InputError(Problem(f"selector {text!r} {why}", field="--label"))


def _parts(selector: str) -> list[str]:
    """'a(b|c)d' -> ['a', '(b|c)', 'd']."""
    return [p for p in re.split(r"(\([^()]*\))", selector) if p]
