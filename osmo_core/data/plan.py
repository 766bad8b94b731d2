"""Submit-time checks of a workflow's data fields against this server: storage URLs it can
reach, dataset names, and the named credentials a task asks for. Each problem names its field
(the loader turns it into file:line), so a bad spec fails before anything runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..errors import InputError, Problem
from ..spec.models import Workflow, task_fields
from .credentials import POLICY
from .refs import parse_ref, validate_name
from .storage import redact

# memory:// lives in one process: the agent, which moves the data, is another.
SCHEMES = ("", "file", "s3", "s3a", "az", "abfs", "abfss")


def _url_problem(url: str, where: str) -> Problem | None:
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        return Problem(
            f"unsupported storage URL {redact(url)!r}",
            field=where,
            hint="use s3://, az://, abfs://, file:// or a path",
        )
    if scheme in ("s3", "s3a", "az", "abfs", "abfss") and not urlsplit(url).netloc:
        return Problem(f"storage URL {redact(url)!r} names no bucket/container", field=where)
    return None


def _ref_problems(ref: str, where: str, output: bool) -> list[Problem]:
    try:
        if output:  # name[:tag]; the version is the store's to give
            name, _, tag = ref.partition(":")
            validate_name(name)
            if tag:
                parse_ref(f"{name}:{tag}")
                if tag.isdigit() or tag == "latest":
                    raise InputError(
                        Problem(
                            f"an output dataset takes a tag, not a version: {ref!r}",
                            hint="versions are numbered by the store",
                        )
                    )
        else:
            parse_ref(ref)
    except InputError as e:
        return [Problem(p.message, field=where, hint=p.hint) for p in e.problems]
    return []


def _unsupported(ref: Any, where: str, fields: tuple[str, ...]) -> list[Problem]:
    """OSMO dataset fields this platform does not implement: refused, not silently ignored."""
    return [
        Problem(f"`{f}` of a dataset is not supported here", field=f"{where}.{f}")
        for f in ("metadata", *fields)
        if getattr(ref, f, None) is not None
    ]


def check(workflow: Workflow, credentials: Mapping[str, Mapping[str, Any]]) -> list[Problem]:
    """Every problem with the data fields of `workflow`, one Problem each."""
    problems: list[Problem] = []

    def url(u: str, where: str) -> None:
        if "{{" in u.split("//", 1)[-1].split("/", 1)[0]:
            return  # a token in the bucket: checked when it is resolved, at launch
        p = _url_problem(u, where)
        if p:
            problems.append(p)

    for where, task in task_fields(workflow):
        for i, inp in enumerate(task.inputs):
            if inp.url:
                url(inp.url, f"{where}.inputs[{i}].url")
            elif inp.dataset:
                problems += _ref_problems(
                    inp.dataset.name, f"{where}.inputs[{i}].dataset.name", False
                )
                problems += _unsupported(inp.dataset, f"{where}.inputs[{i}].dataset", ("path",))
        for i, out in enumerate(task.outputs):
            if out.url:
                url(out.url, f"{where}.outputs[{i}].url")
            elif out.dataset:
                problems += _ref_problems(
                    out.dataset.name, f"{where}.outputs[{i}].dataset.name", True
                )
                problems += _unsupported(out.dataset, f"{where}.outputs[{i}].dataset", ())
        for i, c in enumerate(task.checkpoint):
            url(c.url, f"{where}.checkpoint[{i}].url")
        for name, use in task.credentials.items():
            field = f"{where}.credentials.{name}"
            cred = credentials.get(name)
            if cred is None:
                problems.append(
                    Problem(
                        f"credential {name!r} is not configured on this server",
                        field=field,
                        hint=f"configured: {', '.join(sorted(credentials)) or 'none'} "
                        "(OsmoConfig.credentials)",
                    )
                )
            elif isinstance(use, dict):
                for var, key in use.items():
                    if key not in cred or key in POLICY:
                        problems.append(
                            Problem(
                                f"credential {name!r} has no key {key!r} (for ${var})",
                                field=f"{field}.{var}",
                                hint=f"its keys: {', '.join(sorted(set(cred) - set(POLICY)))}",
                            )
                        )
    return problems
