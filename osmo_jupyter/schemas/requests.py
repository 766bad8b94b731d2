"""What the REST API reads: request bodies and query strings (pydantic).

Handlers validate with these; a validation failure is a 400 whose `details` name each bad
field.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from osmo_core.states import WorkflowStatus

Priority = Literal["HIGH", "NORMAL", "LOW"]


BIG = 2**53  # numbers in queries: beyond it a database integer overflows (a 400, not a 500)


class SubmitRequest(BaseModel):
    """Body of `POST /workflows`."""

    # strict: a JSON body says what it means (0 is not false, "1" is not a number)
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"spec": "workflow:\n  name: hello\n  tasks:\n  - name: t\n    command: [echo, hi]"}
            ]
        },
    )

    spec: str | dict[str, Any] = Field(description="The workflow: YAML text or a JSON object.")
    set_values: dict[str, Any] = Field(
        default_factory=dict, description="Template values overriding the spec's default-values."
    )
    pool: str | None = Field(
        None, description="Pool to run in (default: the spec's, then the server's)."
    )
    priority: Priority = "NORMAL"
    labels: dict[str, str] = Field(
        default_factory=dict, description="Labels over the spec's (OSMO's `--label`)."
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables for every task, over the spec's (OSMO's `--set-env`).",
    )
    dry_run: bool = Field(
        False, description="Validate and answer the rendered spec; store nothing."
    )
    validation_only: bool = Field(False, description="Validate only; answer {valid: true}.")


class ListQuery(BaseModel):
    """Query string of `GET /workflows` (`status` may repeat or be comma-separated)."""

    model_config = ConfigDict(extra="forbid")

    status: list[WorkflowStatus] = Field(default_factory=list)
    user: str | None = None
    pool: str | None = None
    name: str | None = None
    label: list[Annotated[str, StringConstraints(pattern=r"^[^=]+=.*$")]] = Field(
        default_factory=list,
        max_length=32,
        description="OSMO's `KEY=SELECTOR` label filters, all to match: a value with `*` "
        "wildcards and `(a|b)` alternatives (one no label can match matches nothing).",
    )
    limit: int = Field(
        50, ge=1, le=BIG, description="At most OsmoConfig.max_page_size (default 1000)."
    )
    offset: int = Field(0, ge=0, le=BIG)


class LogsQuery(BaseModel):
    """Query string of `GET /workflows/{id}/tasks/{task}/logs`."""

    model_config = ConfigDict(extra="forbid")

    retry_id: int | None = Field(None, ge=0, le=BIG)
    start: int = Field(0, ge=0, le=BIG, description="0-based index of the first line.")
    limit: int | None = Field(
        None,
        ge=1,
        le=BIG,
        description="Lines in the page: default OsmoConfig.log_page_size (1000), at most "
        "OsmoConfig.max_log_page_size (10,000); page on with `start`.",
    )
    tail: int | None = Field(
        None, ge=1, le=BIG, description="The last `tail` lines (instead of `start`)."
    )


class EventsQuery(BaseModel):
    """Query string of the `events` WebSocket."""

    model_config = ConfigDict(extra="forbid")

    workflow_id: str | None = None
    after: int = Field(
        0, ge=0, le=BIG, description="Last event id seen; stored events after it come first."
    )
    logs: bool = Field(True, description="Include live `task.log` lines.")


class LogFollowQuery(BaseModel):
    """Query string of the log-follow WebSocket."""

    model_config = ConfigDict(extra="forbid")

    retry_id: int | None = Field(
        None,
        ge=0,
        le=BIG,
        description="Follow this attempt only (default: the task, across attempts).",
    )
    start: int = Field(0, ge=0, le=BIG, description="Skip the first `start` lines.")
    batch: bool = Field(
        False,
        description='Send lines as `{"type": "lines", "lines": [...]}`, many to a message '
        '(default: one `{"type": "log"}` message per line).',
    )


class TokenListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(None, description="Admins: one user's tokens.")


class TokenRequest(BaseModel):
    """Body of `POST /tokens`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="What the token is for.")
    user: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$",  # as osmo_core.auth.tokens checks it
        description="Admins: create it for this user.",
    )
    role: Literal["admin", "user"] = Field("user", description="Admins only: `admin`.")
    expires_in_days: float | None = Field(
        None, gt=0, le=3650, description="Lifetime; none = until revoked."
    )


class CredentialQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(None, description="Admins: one user's credentials (`*`: all).")


class CredentialRequest(BaseModel):
    """Body of `PUT /credentials/{name}` (and of `POST /credentials`, with `name`): OSMO's
    `osmo credential set NAME --type TYPE --payload KEY=VALUE ...`."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["DATA", "REGISTRY", "GENERIC"] = Field(
        "GENERIC",
        description="DATA (endpoint, access_key_id, access_key; region, override_url, "
        "addressing_style), REGISTRY (auth or password; registry, username) or GENERIC "
        "(any keys)",
    )
    payload: dict[str, str] = Field(
        min_length=1,
        description="The credential's fields; the secret ones are never returned",
        json_schema_extra={"writeOnly": True},
    )


class CredentialCreate(CredentialRequest):
    name: str = Field(
        pattern=r"^[a-zA-Z]([a-zA-Z0-9_-]*[a-zA-Z0-9])?$",  # OSMO's, as user_credentials checks
        max_length=128,
        description="Letters, digits, - and _, starting with a letter",
    )


class TerminalRequest(BaseModel):
    """Body of `POST .../tasks/{task}/api/terminals` (what JupyterLab's TerminalManager sends)."""

    model_config = ConfigDict(extra="ignore")  # JupyterLab may send `cwd`: the task's is used

    name: str | None = Field(
        None, pattern=r"^\w{1,64}$", description="Name it (default: the next free number)."
    )


class FilesQuery(BaseModel):
    """Query string of `GET .../tasks/{task}/files` and `GET .../files/content`."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(".", max_length=4096, description="Relative to the task's workdir.")


class PutFileQuery(FilesQuery):
    """Query string of `PUT .../tasks/{task}/files/content`."""

    mtime: int | None = Field(None, ge=0, le=2**32 - 1, description="Set this mtime (seconds).")
    mode: int | None = Field(None, ge=0, le=0o7777, description="Set these permission bits.")


class MkdirRequest(BaseModel):
    """Body of `POST .../tasks/{task}/files/dirs`."""

    model_config = ConfigDict(extra="forbid")

    paths: list[str] = Field(max_length=100_000, description="Folders to make (with parents).")


class RestartRequest(BaseModel):
    """Body of `POST /workflows/{wf_id}/restart` (none: the default, OSMO's restart)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    from_task: str | None = Field(
        None, description="Rerun this task's group and everything downstream too."
    )
    all: bool = Field(False, description="Rerun everything (reuse nothing), as a new submit.")


class CacheClearRequest(BaseModel):
    """Body of `POST /cache/clear`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    task: str | None = Field(None, description="Only this task's entries (default: all).")
    user: str | None = Field(
        None,
        description="Admins: only this user's workflows (default: everyone's). Users "
        "always clear their own workflows' entries only.",
    )
