"""OSMO workflow specs: load (template, parse, validate) with every problem located.

load_spec(text_or_dict, file=..., set_values=...) -> LoadedSpec   (SpecError on problems)
parse_set_values(["k=2"], ["s=2"]) -> {"k": 2, "s": "2"}     (the CLI's --set, --set-string)
validate_workflow(workflow) -> [Problem]                           (cross-field rules)
with_submit_options(loaded, env=..., labels=...) -> LoadedSpec     (--set-env, --label)
"""

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
