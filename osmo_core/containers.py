"""Whether a task's `image` runs in a container: `OsmoConfig.containers`, overridden by a
pool's or a platform's `containers` key.

    "auto"      in the image where the host's docker/podman answers, else the command runs
                on the host and the task's log says so
    "required"  only in a container: submit refuses a workflow whose pool has no runtime
                (a placement error naming the pool), and an agent whose runtime went away
                fails the task at start
    "off"       always on the host, the image ignored

The agent's side (the runtime, `run` arguments, pulls) is osmo_core/agent/containers.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import Problem
from .spec.models import Workflow, task_fields
from .wire import Node

if TYPE_CHECKING:  # config imports this module
    from .config import PoolConfig

MODES = ("auto", "required", "off")


def config_problems(pools: Mapping[str, Any]) -> list[Problem]:
    """Each pool's and platform's `containers` that is not one of MODES."""
    problems = []
    for name, raw in pools.items():
        if not isinstance(raw, dict):
            continue  # reported by OsmoConfig.pool_configs
        places = [(f"OsmoConfig.pools.{name}", raw)] + [
            (f"OsmoConfig.pools.{name}.platforms.{p}", c)
            for p, c in (raw.get("platforms") or {}).items()
            if isinstance(c, dict)
        ]
        for where, place in places:
            mode = place.get("containers", "auto")
            if mode not in MODES:
                problems.append(
                    Problem(
                        f"containers {mode!r} is not one of {', '.join(MODES)}",
                        field=f"{where}.containers",
                    )
                )
    return problems


def mode_of(default: str, pool: PoolConfig, platform: str) -> str:
    """The mode for tasks of `platform` in `pool`: the platform's, else the
    pool's, else `default` (OsmoConfig.containers)."""
    plat = pool.platforms.get(platform)
    return str((plat.extra.get("containers") if plat else None) or pool.containers or default)


def placement_problems(
    workflow: Workflow,
    pool: PoolConfig,
    default: str,
    platform_of: Callable[[Any], str],
    machines: Callable[[str], list[Node]],
) -> list[Problem]:
    """A task with an image on a "required" platform none of whose machines has a runtime
    (machines not reached yet, or whose runtime is unknown, count as able)."""
    problems = []
    for path, task in task_fields(workflow):
        platform = platform_of(workflow.resource_of(task))
        if not task.image or platform not in pool.platforms:
            continue
        if mode_of(default, pool, platform) != "required":
            continue
        nodes = machines(platform)
        if nodes and all(n.container_runtime == "" for n in nodes):
            problems.append(
                Problem(
                    f"task {task.name!r} has image {task.image!r} and pool {pool.name!r} "
                    f"requires containers (platform {platform!r}), but none of its machines "
                    "has docker or podman",
                    field=f"{path}.image",
                    hint="install podman or docker there, or set the pool's containers to 'auto'",
                )
            )
    return problems
