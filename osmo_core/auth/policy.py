"""Authorization rules, in one place. Each check raises Forbidden with the reason."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..config import PoolConfig
from ..data.credentials import match as credential_for
from ..errors import Forbidden, Problem
from ..spec.models import Input, Output, Workflow, task_fields
from .principal import Principal


def check_owner(who: Principal, owner: str, wf_id: str) -> None:
    """A user acts on their own workflows only; an admin on all."""
    if not who.is_admin and owner != who.name:
        raise Forbidden(
            f"workflow {wf_id!r} belongs to another user; {who.name!r} may only see and act "
            "on their own workflows"
        )


def list_filter(who: Principal, requested_user: str | None) -> str | None:
    """The `user` filter a listing runs with: users are pinned to themselves."""
    if who.is_admin:
        return requested_user
    if requested_user not in (None, who.name):
        raise Forbidden(f"{who.name!r} may only list their own workflows")
    return who.name


def check_pool(who: Principal, pool: PoolConfig) -> None:
    """A pool with allow-lists admits the users, roles and groups listed (and admins)."""
    if who.is_admin or not (pool.users or pool.roles or pool.groups):
        return
    if who.name in pool.users or who.role in pool.roles or pool.groups.intersection(who.groups):
        return
    allowed = [
        *(f"user {u}" for u in sorted(pool.users)),
        *(f"role {r}" for r in pool.roles),
        *(f"group {g}" for g in sorted(pool.groups)),
    ]
    raise Forbidden(
        f"pool {pool.name!r} is open to {', '.join(allowed)}; {who.name!r} (role {who.role}) "
        "is not among them"
    )


def may_see_pool(who: Principal, pool: PoolConfig) -> bool:
    try:
        check_pool(who, pool)
    except Forbidden:
        return False
    return True


def check_port(who: Principal, port: int, declared: list[int], task: str) -> None:
    """Port-forward reaches the ports a task declares (`ports:`); an admin may reach any."""
    if who.is_admin or port in declared:
        return
    raise Forbidden(
        f"task {task!r} does not declare port {port} (declared: {declared or 'none'}); "
        "add it to the task's `ports:` or ask an admin"
    )


def may_use_credential(who: Principal, cred: Mapping[str, Any], pool: str) -> bool:
    """A credential with allow-lists (`users`, `roles`, `pools`) serves admins and whoever one
    of them lists (a user by name, a role, a workflow in a listed pool); without: everyone."""
    users, roles, pools = (cred.get(k) or () for k in ("users", "roles", "pools"))
    if who.is_admin or not (users or roles or pools):
        return True
    return who.name in users or who.role in roles or pool in pools


def _open_to(cred: Mapping[str, Any]) -> str:
    parts = [
        *(f"user {u}" for u in sorted(cred.get("users") or ())),
        *(f"role {r}" for r in cred.get("roles") or ()),
        *(f"pool {p}" for p in cred.get("pools") or ()),
    ]
    return ", ".join(parts)


def credential_problems(
    who: Principal,
    workflow: Workflow,
    credentials: Mapping[str, Mapping[str, Any]],
    pool: str,
    dataset_store: str,
) -> list[Problem]:
    """One Problem per field of `workflow` that would hand `who` a credential not open to them:
    a task's `credentials:` entry, or data moved with one (the longest-prefix `url` match of a
    url input/output or checkpoint, the dataset store's for datasets)."""
    problems: list[Problem] = []

    def check(name: str | None, field: str, use: str) -> None:
        cred = credentials.get(name) if name else None
        if cred is None or may_use_credential(who, cred, pool):
            return
        problems.append(
            Problem(
                f"{use} credential {name!r}, which is open to {_open_to(cred)}; {who.name!r} "
                f"(role {who.role}) in pool {pool!r} is not among them",
                field=field,
                hint="ask an admin for access, or use another credential",
            )
        )

    store_cred = credential_for(credentials, dataset_store)
    for where, task in task_fields(workflow):
        for name in task.credentials:
            check(name, f"{where}.credentials.{name}", "the task asks for")
        moved: list[tuple[str, Sequence[Input | Output]]] = [
            ("inputs", task.inputs),
            ("outputs", task.outputs),
        ]
        for kind, items in moved:
            for i, item in enumerate(items):
                if item.url:
                    by_url = credential_for(credentials, item.url)
                    check(by_url, f"{where}.{kind}[{i}].url", "this URL would use")
                elif item.dataset:
                    check(store_cred, f"{where}.{kind}[{i}].dataset", "the dataset store uses")
        for i, c in enumerate(task.checkpoint):
            check(
                credential_for(credentials, c.url),
                f"{where}.checkpoint[{i}].url",
                "this URL would use",
            )
    return problems
