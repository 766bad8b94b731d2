"""OSMO workflow specs: load (template, parse, validate) with every problem located.

load_spec(text_or_dict, file=..., set_values=...) -> LoadedSpec   (SpecError on problems)
parse_set_values(["k=2"], ["s=2"]) -> {"k": 2, "s": "2"}     (the CLI's --set, --set-string)
validate_workflow(workflow) -> [Problem]                           (cross-field rules)
with_submit_options(loaded, env=..., labels=...) -> LoadedSpec     (--set-env, --label)

The names are imported when first used: a light submodule (`spec.labels`, which a remote
`osmo workflow list` uses) must not cost the loader's pydantic models and Jinja (~0.2 s).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .loader import (
        LoadedSpec,
        Positions,
        load_spec,
        parse_assignments,
        parse_set_values,
        with_submit_options,
    )
    from .models import Workflow, WorkflowSpec
    from .validate import validate_workflow

_WHERE = {
    "LoadedSpec": "loader",
    "Positions": "loader",
    "load_spec": "loader",
    "parse_assignments": "loader",
    "parse_set_values": "loader",
    "with_submit_options": "loader",
    "Workflow": "models",
    "WorkflowSpec": "models",
    "validate_workflow": "validate",
}

__all__ = [
    "LoadedSpec",
    "Positions",
    "Workflow",
    "WorkflowSpec",
    "load_spec",
    "parse_assignments",
    "parse_set_values",
    "validate_workflow",
    "with_submit_options",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once
    return value
