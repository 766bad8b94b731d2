"""Authorization rules, in one place. Each check raises Forbidden with the reason."""

from __future__ import annotations

from ..config import PoolConfig
from ..errors import Forbidden
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
    """A pool with allow-lists admits the users and roles listed (and admins)."""
    if who.is_admin or not (pool.users or pool.roles):
        return
    if who.name in pool.users or who.role in pool.roles:
        return
    allowed = [*(f"user {u}" for u in sorted(pool.users)), *(f"role {r}" for r in pool.roles)]
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
