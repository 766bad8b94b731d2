"""The request and answer shapes of OSMO's API, as its CLI sends and reads them.

Queries come from `requests` (`params=`): lists repeat their key, booleans are `True`/`False`.
A parameter OSMO's CLI may send that this server does not act on is not silently dropped: it is
either accepted and said so (a warning in the answer) or refused naming it (`extra="forbid"`).
"""

from __future__ import annotations

import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from osmo_core.config import priority_name as stored_priority_name
from osmo_core.states import TaskStatus, WorkflowStatus

from ...schemas import Priority

BIG = 2**31 - 1


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- auth -----------------------------------------------------------------------------------


class TokenExchange(BaseModel):
    """Body of `POST api/auth/jwt/access_token`."""

    model_config = ConfigDict(extra="forbid", strict=True)
    token: str = Field(min_length=1)


class AccessTokenQuery(_Query):
    """`POST api/auth/access_token/{name}`: OSMO's `token set` options."""

    expires_at: datetime.date | None = None
    description: str = ""  # accepted; not stored here (a token has a name only)
    roles: list[str] = Field(default_factory=list)


# --- workflows ------------------------------------------------------------------------------


class SubmitBody(BaseModel):
    """Body of `POST api/pool/{pool}/workflow`: the file, and for a templated one the
    template it was rendered from (`uploaded_templated_spec`), which is stored as the
    workflow's original spec (`osmo workflow spec --template`)."""

    model_config = ConfigDict(extra="forbid")
    file: str
    set_variables: list[str] = Field(default_factory=list)
    set_string_variables: list[str] = Field(default_factory=list)
    uploaded_templated_spec: str | None = None


class SubmitQuery(_Query):
    priority: Priority = "NORMAL"
    dry_run: bool = False
    validation_only: bool = False
    workflow_id: str | None = None  # resubmit a stored workflow's spec
    label: list[str] = Field(default_factory=list)
    env_vars: list[str] = Field(default_factory=list)


class ListQuery(_Query):
    """`GET api/workflow`: OSMO's `workflow list` filters this server acts on."""

    users: list[str] = Field(default_factory=list)
    statuses: list[WorkflowStatus] = Field(default_factory=list)
    pools: list[str] = Field(default_factory=list)
    all_pools: bool = False
    all_users: bool = False
    name: str | None = None
    order: Literal["ASC", "DESC", "asc", "desc"] = "DESC"
    limit: int = Field(20, ge=1, le=BIG)
    offset: int = Field(0, ge=0, le=BIG)


class QueryQuery(_Query):
    verbose: bool = False


class CancelQuery(_Query):
    force: bool = False
    message: str | None = None


class SpecQuery(_Query):
    use_template: bool = False


class LogsQuery(_Query):
    task_name: str | None = None
    retry_id: int | None = Field(None, ge=0)
    last_n_lines: int | None = Field(None, ge=1, le=BIG)


class PoolQuery(_Query):
    pools: list[str] = Field(default_factory=list)
    all_pools: bool = False
    platforms: list[str] = Field(default_factory=list)


class TaskListQuery(_Query):
    """`GET api/task`: `osmo task list`; `summary` (`--summary`) and `aggregate_by_workflow`
    (`--aggregate-by-workflow`) add up the listed tasks' resources per user, pool and
    priority (and workflow)."""

    users: list[str] = Field(default_factory=list)
    statuses: list[TaskStatus] = Field(default_factory=list)
    pools: list[str] = Field(default_factory=list)
    nodes: list[str] = Field(default_factory=list)
    all_pools: bool = False
    all_users: bool = False
    workflow_id: str | None = None
    order: Literal["ASC", "DESC"] = "ASC"
    limit: int = Field(20, ge=1, le=BIG)
    offset: int = Field(0, ge=0, le=BIG)
    priority: list[Priority] = Field(default_factory=list)
    summary: bool = False
    aggregate_by_workflow: bool = False


class ProfileUpdate(BaseModel):
    """Body of `POST api/profile/settings`: only the default pool is kept here."""

    model_config = ConfigDict(extra="forbid")
    pool: str | None = None
    email_notification: bool | None = None
    slack_notification: bool | None = None


class GenericCredential(BaseModel):
    model_config = ConfigDict(extra="forbid")
    credential: dict[str, Any]


class CredentialBody(BaseModel):
    """Body of `POST api/credentials/{name}` (OSMO's CredentialOptions, as its CLI's
    credential_payload.py wraps a payload): exactly one of the three."""

    model_config = ConfigDict(extra="forbid")
    data_credential: dict[str, Any] | None = None
    registry_credential: dict[str, Any] | None = None
    generic_credential: GenericCredential | None = None


# --- answers --------------------------------------------------------------------------------


class SubmitResponse(BaseModel):
    """A submission, a dry run (`spec`) or a validation (`logs`)."""

    name: str
    overview: str | None = None
    logs: str | None = None
    spec: str | None = None
    dashboard_url: str | None = None
    warnings: list[str] = Field(default_factory=list)


class ListEntry(BaseModel):
    user: str
    name: str
    workflow_uuid: str
    submit_time: str
    start_time: str | None
    end_time: str | None
    queued_time: float
    duration: float | None
    status: str
    overview: str
    logs: str
    error_logs: str | None
    pool: str
    priority: str
    labels: dict[str, str] = Field(default_factory=dict)


class TaskEntry(BaseModel):
    name: str
    retry_id: int
    status: str
    failure_message: str | None
    exit_code: int | None
    logs: str
    error_logs: str | None
    events: str
    scheduling_start_time: str | None
    start_time: str | None
    end_time: str | None
    pod_name: str
    task_uuid: str
    node_name: str | None
    lead: bool


class GroupEntry(BaseModel):
    name: str
    status: str
    start_time: str | None
    end_time: str | None
    failure_message: str | None
    tasks: list[TaskEntry]


class WorkflowQuery(BaseModel):
    name: str
    uuid: str
    submitted_by: str
    spec: str
    template_spec: str
    logs: str
    events: str
    overview: str
    tags: list[str] = Field(default_factory=list)
    submit_time: str
    start_time: str | None
    end_time: str | None
    duration: float | None
    status: str
    pool: str
    priority: str
    labels: dict[str, str] = Field(default_factory=dict)
    groups: list[GroupEntry]


def dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


def priority_name(priority: int | str) -> str:
    """A priority as OSMO names it (HIGH, NORMAL, LOW): the Service's rows carry the name
    already, the store's the number."""
    return priority if isinstance(priority, str) else stored_priority_name(priority)
