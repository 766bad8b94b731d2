"""What a spec must pass before it may run: parsing and validation within the server's limits,
then placement on its pools (capacity, data paths, credentials' reach).

It needs only the configuration, the scheduler and the backends' machine listings: no store,
engine or interactive hub, so `osmo workflow validate` starts without importing them (the
Service builds its scheduler and backends here and admits through the same object).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import containers
from .backends.base import Backend
from .backends.registry import make_backend
from .config import OsmoConfig
from .data import plan as data_plan
from .data.credentials import without_policy
from .errors import PlacementError
from .scheduler import Scheduler
from .spec import LoadedSpec, load_spec, with_submit_options


class Admission:
    def __init__(self, config: OsmoConfig):
        self.config = config
        self.pools = config.pool_configs()
        self.limits = config.spec_limits()
        self.scheduler = Scheduler(self.pools)
        self.backends: dict[str, Backend] = {
            name: make_backend(name, spec, config.data_dir)
            for name, spec in config.backends.items()
        }
        for backend in self.backends.values():  # handed to agents privately (data/credentials)
            backend.credentials = without_policy(config.credentials)
            backend.pools = {p.name: p for p in self.pools.values() if p.backend == backend.name}

    async def load_capacity(self, *, runtimes: bool = True) -> None:
        """Each backend's machines, for a placement check in a process that runs no engine;
        `runtimes=False` when no task has an image (their probe is most of a local listing)."""
        for name, backend in self.backends.items():
            self.scheduler.set_nodes(name, await backend.nodes(runtimes=runtimes))

    def load(
        self,
        source: str | Mapping[str, Any],
        *,
        file: str | None = None,
        set_values: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
    ) -> LoadedSpec:
        """Parse and validate a spec within this server's limits (SpecError on any problem);
        `env` and `labels`: OSMO's `--set-env` and `--label` (with_submit_options)."""
        loaded = load_spec(source, file=file, set_values=set_values, limits=self.limits)
        return with_submit_options(loaded, env, labels)

    def check_quota(self, loaded: LoadedSpec, pool: str, priority: int) -> None:
        """PlacementError when NORMAL/HIGH work asks more than the pool's quota holds."""
        if problems := self.scheduler.check_quota(loaded.workflow, pool, priority):
            raise PlacementError([loaded.locate(p) for p in problems])

    def check_placement(
        self,
        loaded: LoadedSpec,
        pool: str | None = None,
        own: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> str:
        """The pool the workflow would run in; PlacementError when it cannot run there.
        `own`: the submitter's credentials (auth/user_credentials.py), over the admin's."""
        pool = pool or loaded.workflow.pool or self.config.default_pool
        problems = self.scheduler.check(loaded.workflow, pool)
        if not problems:  # the pool exists and its platforms are known
            problems += containers.placement_problems(
                loaded.workflow,
                self.scheduler.pools[pool],
                self.config.containers,
                lambda res: self.scheduler.platform_of(pool, res),
                lambda platform: self.scheduler.nodes_of(pool, platform),
            )
        problems += data_plan.check(
            loaded.workflow,
            {**self.config.credentials, **(own or {})},
            self.pools.get(pool),
            data_plan.unshared(self.backends),
            self.config.intermediate_url,
        )
        if problems:
            raise PlacementError([loaded.locate(p) for p in problems])
        return pool
