"""Pydantic models of OSMO's workflow spec (version 2).

Field names and aliases follow OSMO's documented YAML (`exitActions`, `ignoreNonleadStatus`, ...),
so an OSMO file loads unchanged. Unknown keys are refused (`extra="forbid"`). Quantities and
durations are parsed here, once, into numbers. Cross-field rules that need the whole workflow
(unique names, input references, cycles, leads) live in `spec.validate`.

Extensions of OSMO's spec (documented in the README): `image` is optional (local and SSH hosts
can run a bare command), a task may set `maxRetries`, `ports` (the TCP ports its owner may
port-forward to while it runs), `interactive: true` (after its command succeeds the task holds
its resources and waits for its owner to mark it done) and `debug: on-failure` (after a failed
command it stays up for debugging until retried, canceled or timed out), and `cache: true` on a
task or the workflow (the task cache: a task whose inputs match a completed attempt reuses its
outputs instead of running).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from .quantities import parse_bytes, parse_cpu, parse_duration, parse_exit_codes

# OSMO's rule (`[a-zA-Z]([a-zA-Z0-9_-]*[a-zA-Z0-9])?`), at most 64 characters: names become
# Kubernetes label values and DNS labels there, and task folders and host names here.
NAME_PATTERN = r"^[A-Za-z]([A-Za-z0-9_-]{0,62}[A-Za-z0-9])?$"
RESERVED_TASK_NAME = "osmo-ctrl"  # OSMO's sidecar container; refused as a task name there too


def name_key(name: str) -> str:
    """The name as OSMO compares it: case-insensitive, with '_' the same as '-'."""
    return name.lower().replace("_", "-")


Bytes = Annotated[int, BeforeValidator(parse_bytes)]
Cpu = Annotated[float, BeforeValidator(parse_cpu)]
Seconds = Annotated[float, BeforeValidator(parse_duration)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


def _to_str(v: Any) -> Any:
    # YAML turns `1`, `true` and `1.5` into numbers/bools; commands and env values are strings.
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    return v


Str = Annotated[str, BeforeValidator(_to_str)]


def _exit_codes(v: str) -> str:
    parse_exit_codes(v)  # refused here, the error is located at its action (`COMPLETE: 5-3`)
    return v


ExitCodes = Annotated[str, BeforeValidator(_to_str), AfterValidator(_exit_codes)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=False)

    def to_spec(self) -> dict[str, Any]:
        """The OSMO YAML shape: aliases, no defaults, no Nones."""
        return self.model_dump(by_alias=True, exclude_defaults=True, exclude_none=True, mode="json")


class Resource(Model):
    cpu: Cpu = 1.0
    gpu: int = Field(0, ge=0)
    memory: Bytes | None = None
    storage: Bytes | None = None
    platform: str | None = None
    nodes_excluded: list[str] = Field(default_factory=list, alias="nodesExcluded")
    topology: list[dict[str, Any]] = Field(default_factory=list)
    # Not in OSMO's spec: seconds a preempted task gets between SIGTERM and SIGKILL (to
    # checkpoint); the pool's `preemption_grace` when unset.
    preemption_grace: Seconds | None = Field(None, alias="preemptionGrace")


class Timeout(Model):
    exec_timeout: Seconds | None = None
    queue_timeout: Seconds | None = None


class DatasetRef(Model):
    name: str
    regex: str | None = None
    path: str | None = None
    metadata: list[str] | dict[str, Any] | None = None


class Input(Model):
    """Exactly one of task / url / dataset, with an optional regex filter."""

    task: str | None = None
    url: str | None = None
    dataset: DatasetRef | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Input:
        given = [k for k in ("task", "url", "dataset") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "an input needs exactly one of `task`, `url` or `dataset`"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def previous(self) -> tuple[str, str] | None:
        """(workflow id, task) of `task: <workflow_id>:<task>`, a task of an earlier workflow
        (OSMO's form); None for a task of this workflow or another kind of input."""
        if self.task is None or ":" not in self.task:
            return None
        wf_id, _, name = self.task.partition(":")
        return wf_id, name

    @property
    def task_name(self) -> str | None:
        """The name `{{input:NAME}}` gives this input: its task's (OSMO: the part after ':')."""
        return self.previous[1] if self.previous else self.task


class Output(Model):
    """Exactly one of url / dataset."""

    url: str | None = None
    dataset: DatasetRef | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Output:
        given = [k for k in ("url", "dataset") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("an output needs exactly one of `url` or `dataset`")
        return self


RESERVED_DIR = "/osmo"  # OSMO's own files in a task; a spec's `files:` may not write there


def decode_base64(contents: str) -> bytes:
    """A `files:` entry's `base64: true` contents as bytes: the standard alphabet with its `=`
    padding; whitespace (the line breaks of wrapped `base64` output) is ignored. Anything else
    raises ValueError (binascii.Error): the lenient decoder would drop stray characters and
    write garbage.
    Validation and launch both use this, so what validates decodes."""
    return base64.b64decode("".join(contents.split()), validate=True)


class File(Model):
    path: str
    contents: str | None = None
    localpath: str | None = None
    base64: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> File:
        if (self.contents is None) == (self.localpath is None):
            raise ValueError("a file needs exactly one of `contents` or `localpath`")
        return self


class Checkpoint(Model):
    path: str
    url: str
    frequency: Seconds
    regex: str | None = None


class ExitAction(str, Enum):
    COMPLETE = "COMPLETE"
    FAIL = "FAIL"
    RESCHEDULE = "RESCHEDULE"


def _action_key(v: Any) -> Any:
    # OSMO reads `complete:` as COMPLETE, and its code has no RESTART (only its docs do)
    if not isinstance(v, str):
        return v
    if v.upper() == "RESTART":
        raise ValueError(
            "RESTART is not an exit action (OSMO's code refuses it too); use RESCHEDULE for a "
            "new attempt"
        )
    return v.upper()


ExitActionKey = Annotated[ExitAction, BeforeValidator(_action_key)]


class Task(Model):
    name: Name
    image: str | None = None
    command: list[Str] = Field(min_length=1)
    args: list[Str] = Field(default_factory=list)
    environment: dict[str, Str] = Field(default_factory=dict)
    credentials: dict[str, str | dict[str, str]] = Field(default_factory=dict)
    inputs: list[Input] = Field(default_factory=list)
    outputs: list[Output] = Field(default_factory=list)
    files: list[File] = Field(default_factory=list)
    resource: str = "default"
    exit_actions: dict[ExitActionKey, ExitCodes] = Field(default_factory=dict, alias="exitActions")
    checkpoint: list[Checkpoint] = Field(default_factory=list)
    lead: bool = False
    privileged: bool = False
    host_network: bool = Field(False, alias="hostNetwork")
    volume_mounts: list[str] = Field(default_factory=list, alias="volumeMounts")
    max_retries: int | None = Field(None, alias="maxRetries", ge=0)
    # TCP ports inside the task its owner may port-forward to (an extension, like maxRetries)
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(default_factory=list)
    # Holds (extensions): keep the task's process environment and resources after its command
    # ends, for its owner to exec/attach into (engine/holds.py, agent/holds.py).
    interactive: bool = False
    debug: Literal["on-failure"] | None = None
    # The task cache (an extension; engine/cache.py): reuse a completed attempt's outputs when
    # this task's key matches. None: the workflow's `cache` decides.
    cache: StrictBool | None = None

    @field_validator("exit_actions")
    @classmethod
    def _codes_disjoint(cls, v: dict[ExitAction, str]) -> dict[ExitAction, str]:
        seen: dict[int, ExitAction] = {}
        for action, codes in v.items():
            for lo, hi in parse_exit_codes(codes):
                for code in range(lo, hi + 1):
                    if code in seen and seen[code] != action:
                        # "at" names the action at fault, so the loader points at its line.
                        raise PydanticCustomError(
                            "exit_code_overlap",
                            "exit code {code} is given to both {first} and {at}; each code may "
                            "have one action",
                            {"code": code, "first": seen[code].value, "at": action.value},
                        )
                    seen[code] = action
        return v

    def exit_action(self, code: int) -> ExitAction | None:
        """The action the spec assigns to an exit code, or None (use the default rule)."""
        for action, codes in self.exit_actions.items():
            if any(lo <= code <= hi for lo, hi in parse_exit_codes(codes)):
                return action
        return None


class Group(Model):
    name: Name
    barrier: bool = True
    ignore_nonlead_status: bool = Field(True, alias="ignoreNonleadStatus")
    tasks: list[Task] = Field(min_length=1)

    @property
    def lead(self) -> Task:
        """The task marked `lead: true`; a group of one task is led by it, as in OSMO."""
        leads = [t for t in self.tasks if t.lead]
        return leads[0] if leads else self.tasks[0]


class Workflow(Model):
    name: Name
    pool: str | None = None
    labels: dict[str, Str] = Field(default_factory=dict)
    timeout: Timeout = Field(default_factory=Timeout)
    resources: dict[str, Resource] = Field(default_factory=dict)
    cache: StrictBool = False  # the default of every task's `cache`
    tasks: list[Task] | None = None
    groups: list[Group] | None = None

    @model_validator(mode="after")
    def _tasks_or_groups(self) -> Workflow:
        if not self.tasks and not self.groups:
            raise ValueError("a workflow needs `tasks` or `groups`")
        return self

    def all_groups(self) -> list[Group]:
        """Groups in spec order; each top-level task is a group of its own, named after it
        (and led by it: a group's lead defaults to its first task)."""
        out = list(self.groups or [])
        out += [Group.model_construct(name=t.name, tasks=[t]) for t in self.tasks or []]
        return out

    def all_tasks(self) -> list[Task]:
        return [t for g in self.all_groups() for t in g.tasks]

    def cached(self, task: Task) -> bool:
        """Whether the task cache applies to `task` (its own `cache`, else the workflow's)."""
        return self.cache if task.cache is None else task.cache

    def resource_of(self, task: Task) -> Resource:
        return self.resources.get(task.resource) or Resource()


class WorkflowSpec(Model):
    """The top-level document (after templating; `default-values` is consumed by the loader)."""

    version: int = 2
    workflow: Workflow

    @field_validator("version")
    @classmethod
    def _v2(cls, v: int) -> int:
        if v != 2:
            raise ValueError(f"version {v} is not supported; use version: 2")
        return v


def task_fields(workflow: Workflow) -> Iterator[tuple[str, Task]]:
    """(field path, task) for every task, with the path as the spec writes it."""
    for gi, g in enumerate(workflow.groups or []):
        for ti, t in enumerate(g.tasks):
            yield f"workflow.groups[{gi}].tasks[{ti}]", t
    for ti, t in enumerate(workflow.tasks or []):
        yield f"workflow.tasks[{ti}]", t
