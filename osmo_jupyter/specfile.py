"""A spec as the notebook hands it over (a file, YAML text or a dict): where it comes from,
renaming its workflow, and a server's refusal as problems located in the user's file.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from osmo_core.client import ApiError
from osmo_core.errors import InputError, OsmoError, PlacementError, Problem, SpecError


def spec_source(spec: str | Path | dict[str, Any]) -> tuple[str | dict[str, Any], str | None]:
    """(YAML text or dict, file name for error messages)."""
    if isinstance(spec, dict):
        return spec, None
    if isinstance(spec, Path) or ("\n" not in spec and spec.endswith((".yaml", ".yml"))):
        path = Path(spec).expanduser()
        try:
            return path.read_text(encoding="utf-8"), str(spec)
        except OSError as e:
            raise InputError(f"cannot read {spec}: {e.strerror}") from None
    return spec, None


def with_workflow_name(spec: str | dict[str, Any], name: str) -> str | dict[str, Any]:
    """The spec with `workflow.name` set to `name`; YAML text keeps its line numbers when the
    name is already there (so the validator's lines still match the user's text)."""
    if isinstance(spec, dict):
        return {**spec, "workflow": {**(spec.get("workflow") or {}), "name": name}}
    try:
        root = yaml.compose(spec)
    except yaml.YAMLError:
        return spec  # the server reports the syntax error, located
    wf = _mapping_value(root, "workflow")
    node = _mapping_value(wf, "name")
    if node is not None and isinstance(node, yaml.ScalarNode):
        start, end = node.start_mark.index, node.end_mark.index
        return spec[:start] + yaml.safe_dump(name, default_style='"').strip() + spec[end:]
    data = yaml.safe_load(spec)
    if not isinstance(data, dict):
        return spec
    return with_workflow_name(data, name)  # type: ignore[return-value]


def _mapping_value(node: Any, key: str) -> Any:
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if getattr(k, "value", None) == key), None)


def located(e: ApiError, file: str | None) -> OsmoError:
    """A server's 400/422 as the validator's located problems (in the user's file's name)."""
    if e.status not in (400, 422):
        return e
    problems = [
        Problem(
            message=str(d.get("message", "")),
            field=str(d.get("field") or ""),
            file=file if file and d.get("file") in (None, "<spec>") else d.get("file"),
            line=d.get("line"),
            column=d.get("column"),
            hint=d.get("hint"),
        )
        for d in e.details
    ] or [Problem(e.message)]
    cls = {"placement": PlacementError, "invalid spec": SpecError}.get(e.reason or "", InputError)
    return cls(problems)


def renamed(e: InputError, file: str | None) -> InputError:
    if file is None:
        return e
    problems = [replace(p, file=file) if p.file in (None, "<spec>") else p for p in e.problems]
    return type(e)(problems)
