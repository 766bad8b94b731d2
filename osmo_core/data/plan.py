"""Submit-time checks of a workflow's data fields against this server: storage URLs it can
reach, dataset names, and the named credentials a task asks for. Each problem names its field
(the loader turns it into file:line), so a bad spec fails before anything runs.

Also how an upstream task's output reaches a downstream task (`inputs: [{task: A}]`): by its
path where both run on backends whose tasks share a disk (`Backend.outputs_by_path`), else
through storage: A's own output `url`, or else `OsmoConfig.intermediate_url`; with neither,
the workflow is refused at submit."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import InputError, Problem
from ..spec.models import Task, Workflow, task_fields
from .credentials import POLICY
from .refs import parse_ref, validate_name
from .storage import redact

if TYPE_CHECKING:
    from ..backends.base import Backend
    from ..config import PoolConfig

# memory:// lives in one process: the agent, which moves the data, is another.
SCHEMES = ("", "file", "s3", "s3a", "az", "abfs", "abfss")


def url_problem(url: str, where: str) -> Problem | None:
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


def unshared(backends: Mapping[str, Backend]) -> set[str]:
    """The backends whose tasks cannot read another task's output by its path."""
    return {name for name, b in backends.items() if not b.outputs_by_path}


def backend_of(workflow: Workflow, task: Task, pool: PoolConfig) -> str | None:
    """The backend `task` runs on in `pool` (its platform's); None: no such platform (the
    scheduler's check names that)."""
    platform = workflow.resource_of(task).platform or pool.default_platform
    return pool.backend_of(platform) if platform in pool.platforms else None


def apart(
    workflow: Workflow, up: Task, down: Task, pool: PoolConfig, unshared: Collection[str]
) -> str | None:
    """The backend (of `unshared`: those whose tasks share no disk) that keeps `down` from
    reading `up`'s output by its path; None: the path works."""
    for task in (down, up):
        backend = backend_of(workflow, task, pool)
        if backend in unshared:
            return backend
    return None


def own_url(task: Task) -> str | None:
    """The first output `url` of `task` as written: downstream tasks read it there."""
    return next((o.url for o in task.outputs if o.url), None)


def intermediate(base: str, workflow_id: str, task: str, retry_id: int) -> str:
    """Where an attempt's output is kept for downstream tasks under `OsmoConfig.intermediate_url`
    (per attempt: a rerun never mixes its files with a lost attempt's partial upload)."""
    return f"{base.rstrip('/')}/{workflow_id}/{task}/{retry_id}"


def upstream_url(base: str, workflow_id: str, up: Task, retry_id: int) -> str:
    """Where a downstream task apart from `up` reads its output, as written (tokens resolved at
    launch): `up`'s own output url, else its attempt's folder under `base`
    (OsmoConfig.intermediate_url)."""
    return own_url(up) or intermediate(base, workflow_id, up.name, retry_id)


def _flow_problems(
    workflow: Workflow, pool: PoolConfig, unshared: Collection[str], base: str
) -> list[Problem]:
    """`{task: A}` inputs that cannot reach their task: tasks apart, and no storage to use."""
    by_name = {t.name: t for _, t in task_fields(workflow)}
    problems: list[Problem] = []
    for where, task in task_fields(workflow):
        for i, inp in enumerate(task.inputs):
            up = by_name.get(inp.task or "")
            if up is None or base or own_url(up):
                continue
            backend = apart(workflow, up, task, pool, unshared)
            if backend is not None:
                problems.append(
                    Problem(
                        f"task {task.name!r} reads the output of task {up.name!r}; on "
                        f"backend {backend!r} tasks do not share a disk",
                        field=f"{where}.inputs[{i}].task",
                        hint="set OsmoConfig.intermediate_url (a storage URL, e.g. "
                        f"s3://bucket/osmo) or give task {up.name!r} an output url",
                    )
                )
    return problems


def check(
    workflow: Workflow,
    credentials: Mapping[str, Mapping[str, Any]],
    pool: PoolConfig | None,
    unshared: Collection[str],
    intermediate_url: str,
) -> list[Problem]:
    """Every problem with the data fields of `workflow`, one Problem each. `pool`: where it
    runs (None: an unknown pool, which the scheduler's check names); `unshared`: the backends
    whose tasks share no disk; `intermediate_url`: the storage for outputs read across them."""
    problems: list[Problem] = []
    if pool is not None:
        problems += _flow_problems(workflow, pool, unshared, intermediate_url)

    def url(u: str, where: str) -> None:
        if "{{" in u.split("//", 1)[-1].split("/", 1)[0]:
            return  # a token in the bucket: checked when it is resolved, at launch
        p = url_problem(u, where)
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
