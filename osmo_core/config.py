"""Configuration: one traitlets Configurable, as everywhere in Jupyter.

Set it in `osmo_config.py` (CLI, under the config dir) or `jupyter_server_config.py` /
`jupyter_osmo_config.py` (server, control-plane issue) as `c.OsmoConfig.<trait> = ...`, or
through the environment (`OSMO_HOME`, `OSMO_STORE_URL`). Pools and backends are plain dicts,
validated here into small dataclasses so a typo fails at start with the trait and the value.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traitlets import (
    Bool,
    CaselessStrEnum,
    Dict,
    Float,
    Int,
    List,
    Set,
    TraitError,
    Unicode,
    default,
    validate,
)
from traitlets.config import Config, Configurable
from traitlets.config.loader import PyFileConfigLoader

from .errors import ConfigError, Problem
from .roles import ROLES
from .scheduling_config import SCHEDULING_KEYS, PoolScheduling, pool_scheduling

if TYPE_CHECKING:
    from .spec.limits import SpecLimits

PRIORITIES = {"HIGH": 2, "NORMAL": 1, "LOW": 0}  # stored as numbers: the queue orders by them


def priority_name(stored: int) -> str:
    """The name a stored priority is shown by (OSMO's HIGH/NORMAL/LOW)."""
    return next((k for k, v in PRIORITIES.items() if v == stored), "NORMAL")


# Seconds a preempted task gets between SIGTERM and SIGKILL to checkpoint, unless its pool or
# its spec says otherwise (Kubernetes' default terminationGracePeriodSeconds).
PREEMPTION_GRACE = 30.0


@dataclass(frozen=True)
class PlatformConfig:
    name: str
    # Per-platform limits on what one task may ask; None = the machine's capacity.
    arch: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The backend its machines belong to: the pool's unless the platform names its own, so one
    # pool (and one workflow) can span this machine, SSH hosts and clusters.
    backend: str = ""


@dataclass(frozen=True)
class PoolConfig:
    name: str
    backend: str
    default_platform: str
    platforms: dict[str, PlatformConfig]
    description: str = ""
    # Allow-lists: when any is non-empty, only these users / roles / groups (and admins) may use
    # it. Groups are JupyterHub's (a Principal's `groups`).
    users: frozenset[str] = frozenset()
    roles: tuple[str, ...] = ()
    # Quota, fair share, user weights and limits (osmo_core/scheduling_config.py).
    scheduling: PoolScheduling = field(default_factory=PoolScheduling)
    containers: str = ""  # "": OsmoConfig.containers (osmo_core/containers.py)
    groups: frozenset[str] = frozenset()
    preemption_grace: float = PREEMPTION_GRACE

    def backend_of(self, platform: str) -> str:
        return self.platforms[platform].backend or self.backend

    @property
    def backends(self) -> set[str]:
        return {self.backend_of(p) for p in self.platforms}


def _data_home() -> Path:
    if os.environ.get("OSMO_HOME"):
        return Path(os.environ["OSMO_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local/share")
    return Path(base) / "osmo"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "osmo"


class OsmoConfig(Configurable):
    data_dir = Unicode(
        help="Directory for the embedded store, the agent and task run folders "
        "(default: $OSMO_HOME or $XDG_DATA_HOME/osmo)."
    ).tag(config=True)
    store_url = Unicode(
        help="SQLAlchemy URL of the store: sqlite:///PATH (default, under "
        "data_dir) or postgresql+psycopg://user@host/db. "
        "Env: OSMO_STORE_URL."
    ).tag(config=True)
    backends = Dict(
        help="Compute backends by name: {'local': {'kind': 'local'}, ...}. "
        "Backend-specific keys are passed to the backend."
    ).tag(config=True)
    pools = Dict(
        help="Pools by name: {'local': {'backend': 'local', 'default_platform': "
        "'local', 'platforms': {'local': {}}}}."
    ).tag(config=True)
    default_pool = Unicode(
        "local", help="Pool used when neither the spec nor the request names one."
    ).tag(config=True)
    max_retries = Int(
        0,
        help="Retry budget per task: new attempts created by RESCHEDULE exit "
        "actions or infrastructure failures. 0 (OSMO's `max_retry_per_task` default): "
        "no attempt is retried unless a budget is set here or in a task's `maxRetries`.",
    ).tag(config=True)
    max_tasks_per_workflow = Int(100_000, help="Refuse workflows with more tasks.").tag(config=True)
    # --- what one request may cost (osmo_core/spec/limits.py; the API answers 4xx past them) ---
    max_spec_bytes = Int(
        8 * 1024 * 1024, help="Largest spec text, in UTF-8 bytes (a 10,000-task spec: ~1.3 MB)."
    ).tag(config=True)
    max_spec_nodes = Int(
        1_000_000,
        help="Most YAML nodes in a spec (default-values included), an alias counted as the "
        "nodes it repeats; also the most items a template value may hold "
        "(a 10,000-task spec: ~180,000).",
    ).tag(config=True)
    max_spec_depth = Int(64, help="Deepest nesting of mappings and lists in a spec.").tag(
        config=True
    )
    template_max_steps = Int(
        1_000_000, help="Loop iterations, calls and filters one template render may run."
    ).tag(config=True)
    template_timeout = Float(
        2.0, help="Seconds one template render may take (checked as it runs)."
    ).tag(config=True)
    max_rendered_bytes = Int(
        16 * 1024 * 1024,
        help="Most characters a template may render, and the largest value it may build.",
    ).tag(config=True)
    max_page_size = Int(
        1000, help="Largest `limit` of a listing (GET /workflows and the like)."
    ).tag(config=True)
    log_page_size = Int(
        1000, help="Log lines GET .../logs answers when the request names no `limit`."
    ).tag(config=True)
    max_log_page_size = Int(10_000, help="Largest `limit` of GET .../logs.").tag(config=True)
    max_request_bytes = Int(
        32 * 1024 * 1024,
        help="Largest request body the osmo API reads (413 past it); the Jupyter server's own "
        "ServerApp.max_body_size still bounds every route.",
    ).tag(config=True)
    default_exec_timeout = Float(
        0.0, help="Seconds; per-group exec timeout when the spec sets none. 0 = no limit."
    ).tag(config=True)
    default_queue_timeout = Float(
        0.0, help="Seconds; per-group queue timeout when the spec sets none. 0 = no limit."
    ).tag(config=True)
    hold_timeout = Float(
        3600.0,
        help="Seconds a held task (interactive: true, debug: on-failure) waits for its user "
        "when no exec timeout applies (the spec's timeout.exec_timeout or "
        "default_exec_timeout). 0 = no limit.",
    ).tag(config=True)
    group_stop_grace = Float(
        5.0,
        help="Seconds a group's other tasks get to finish on their own once its lead has "
        "finished; then they are stopped (FAILED_CANCELED).",
    ).tag(config=True)
    subscriber_queue_size = Int(
        10_000,
        help="Events buffered for each live subscriber (an API WebSocket client) before it is "
        "dropped to resync; bounds the memory a slow client can hold.",
    ).tag(config=True)
    cancel_grace = Float(5.0, help="Seconds between SIGTERM and SIGKILL on cancel.").tag(
        config=True
    )
    reconcile_interval = Float(
        5.0,
        help="Seconds between two checks that every INITIALIZING or RUNNING task still has a "
        "process behind it (one request per backend; only while tasks run). A task found "
        "without one ends FAILED_BACKEND_ERROR and is retried per its exit actions. 0 = off.",
    ).tag(config=True)
    credentials = Dict(
        help="Named credentials, OSMO-style: {name: {key: value}}. A data credential has "
        "`url` (a prefix, or a list) and is used for the transfers under it: S3 "
        "(endpoint_url, access_key_id, secret_access_key, session_token, region) or Azure "
        "(account_name, account_key, connection_string, sas_token). Any credential can be "
        "given to a task by the spec's `credentials:` field. Secrets never reach specs, "
        "events or logs (see osmo_core/data/credentials.py). Optional allow-lists `users`, "
        "`roles`, `pools` (lists of names) say who may use one; none = every submitter; "
        "admins always."
    ).tag(config=True)
    dataset_store = Unicode(
        help="Storage URL of the dataset store used by `dataset:` inputs/outputs and "
        "`osmo dataset` (default: $OSMO_DATASET_STORE or <data_dir>/datasets)."
    ).tag(config=True)
    intermediate_url = Unicode(
        help="Storage URL (e.g. s3://bucket/osmo) where a task's output is kept for the "
        "downstream tasks that read it (`inputs: [{task: A}]`) when the two do not share a "
        "disk (a Kubernetes backend): <url>/<workflow id>/<task>/<retry id>/. Empty: such a "
        "workflow is refused at submit unless the upstream task has an output url.",
    ).tag(config=True)

    # --- task isolation (osmo_core/isolation.py, osmo_core/agent/identity.py) --------------
    task_isolation = CaselessStrEnum(
        ["auto", "user", "none"],
        "auto",
        help="Which OS identity local tasks run as. 'user': each OSMO user's tasks run under "
        "a uid of their own (task_uid_range), in a folder of their own (task_runs_dir), and "
        "cannot read the data folder or other users' tasks; needs the server to run as root "
        "(or with CAP_SETUID, CAP_SETGID and CAP_CHOWN). 'none': tasks run as the server's "
        "user (single-user). 'auto': 'user' on a headless team server (`jupyter osmo`) that "
        "can setuid, else 'none'.",
    ).tag(config=True)
    task_uid_range = Unicode(
        "2000000-2099999",
        help="With task isolation: the uids (and same-numbered gids) given to OSMO users, "
        "LO-HI, allocated at a user's first task and kept in <data_dir>/task-uids.json. Two "
        "servers on one host need disjoint ranges; no /etc/passwd entries are needed.",
    ).tag(config=True)
    containers = CaselessStrEnum(
        ["auto", "required", "off"],
        "auto",
        help="Whether a task's `image` runs in a container on the local and SSH backends: "
        "'auto' where docker or podman answers (else on the host, the log says so), "
        "'required' (submit refuses a pool without a runtime), 'off' (always on the host). "
        "A pool's or a platform's `containers` key overrides it (osmo_core/containers.py).",
    ).tag(config=True)
    task_runs_dir = Unicode(
        help="With task isolation: where the tasks' own folders live (the data folder is "
        "0700); every folder above it must be searchable by all (o+x). Default: "
        "/var/lib/osmo-tasks/<16 hex digits of data_dir>.",
    ).tag(config=True)

    # --- interactive access (agents dial home; osmo_core.interactive) --------------------
    interactive_host = Unicode(
        "127.0.0.1",
        help="Address the control plane listens on for agents dialling home (reverse SSH).",
    ).tag(config=True)
    interactive_port = Int(
        0, help="Port for agents dialling home; 0 picks a free one (agents are told which)."
    ).tag(config=True)
    kernel_spares = Int(
        4,
        help="Jupyter kernels started ahead, at most this many at once, in the tasks a user is "
        "about to step into (held tasks: interactive ones waiting for their user, debug ones; "
        "never while a command runs), so a notebook attaches in well under a second instead of "
        "waiting for ipykernel's start. Each costs its task one idle Python process (~60 MB). "
        "Shared fairly: the users with the fewest spares get the next free slot. 0: none.",
    ).tag(config=True)

    # --- auth (the control plane) -------------------------------------------------------
    admin_users = Set(
        Unicode(),
        help="Users with the admin role (see and act on every workflow), whatever "
        "identity they sign in with. The owner of a single-user Jupyter server and "
        "holders of its token are always admins.",
    ).tag(config=True)
    app_proxy_url = Unicode(
        "",
        help="Origin (scheme://host[:port]) where browsers open tasks' web apps (the task "
        "proxy), e.g. `https://apps.lab.example.org`: a host name that reaches this server "
        "and is used for nothing else (browsers share cookies between ports of one host name, "
        "so a port alone is not a separate origin). `{app}` in the host name, e.g. "
        "`https://{app}.apps.lab.example.org` (wildcard DNS), gives every task port its own "
        "origin, so apps are isolated from each other too. Empty: apps are served on this "
        "server's origin in a CSP sandbox (an opaque origin: no cookies, no storage, no "
        "access to the API) — plain pages and dashboards work, web IDEs need an app origin.",
    ).tag(config=True)
    app_link_ttl = Float(
        8 * 3600.0,
        help="Seconds an app link (`/osmo/api/v1/apps/{ticket}/`, made when a browser opens a task "
        "port through the proxy) stays valid; opening the app again makes a new one.",
    ).tag(config=True)
    kernel_token_hours = Float(
        24.0,
        help="Hours a kernel's own token lasts: a kernel this server starts gets "
        "OSMO_SERVER_TOKEN, a personal access token of the user who started it (never the "
        "server's), renewed when it restarts and revoked when it shuts down.",
    ).tag(config=True)
    session_token_minutes = Float(
        15.0,
        help="Minutes a session JWT lasts: what OSMO's CLI gets for its access token at "
        "`{base_url}osmo/api/auth/jwt/access_token` (it asks for a new one before this ends).",
    ).tag(config=True)
    osmo_cli_dev_login = Bool(
        False,
        help="Accept OSMO's `osmo login --method dev` (a bare `x-osmo-user` header, no "
        "credential) for the user this server runs as, who is then its owner. Only for a "
        "single-user server on a machine nobody else can reach.",
    ).tag(config=True)
    hub_group_roles = Dict(
        value_trait=Unicode(),
        key_trait=Unicode(),
        help="Run as a JupyterHub service: the OSMO role each Hub group gives its members, e.g. "
        "`{'osmo-admins': 'admin'}`. A Hub admin is an OSMO admin; everyone else the Hub "
        "authenticates is a `user`. Groups also open pools whose `groups` allow-list names them.",
    ).tag(config=True)
    oidc_issuer = Unicode(
        "", help="OIDC issuer URL; bearer JWTs it signs are accepted. Empty: OIDC off."
    ).tag(config=True)
    oidc_audience = Unicode("osmo", help="Required `aud` of OIDC tokens.").tag(config=True)
    oidc_jwks_url = Unicode(
        "",
        help="The issuer's JWKS URL (default: from <issuer>/.well-known/openid-configuration).",
    ).tag(config=True)
    oidc_username_claim = Unicode(
        "preferred_username", help="Claim naming the user (falls back to `sub`)."
    ).tag(config=True)
    oidc_roles_claim = Unicode(
        "roles", help="Claim (dotted path, e.g. realm_access.roles) listing the user's roles."
    ).tag(config=True)
    oidc_admin_roles = List(
        Unicode(), ["admin"], help="Roles in `oidc_roles_claim` that make a user an admin."
    ).tag(config=True)

    @validate("app_proxy_url")
    def _check_app_proxy_url(self, proposal: Any) -> str:
        url = str(proposal["value"])
        parts = urllib.parse.urlsplit(url.replace("{app}", "app"))
        keyed = "{app}" not in url or (url.count("{app}") == 1 and "//{app}." in url)
        shape = parts.scheme in ("http", "https") and parts.hostname and parts.path in ("", "/")
        if url and not (shape and keyed and not parts.query):
            raise TraitError(
                f"app_proxy_url {url!r}: give scheme://host[:port] (no path), with `{{app}}` "
                "only as the first label of the host name"
            )
        return url

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return str(_data_home())

    @validate("task_uid_range")
    def _check_uid_range(self, proposal: Any) -> str:
        from .agent.identity import parse_range

        try:
            parse_range(proposal["value"])
        except ValueError as e:
            raise ConfigError(Problem(str(e), field="OsmoConfig.task_uid_range")) from None
        return str(proposal["value"])

    @default("dataset_store")
    def _default_dataset_store(self) -> str:
        return os.environ.get("OSMO_DATASET_STORE") or str(Path(self.data_dir) / "datasets")

    @validate("credentials")
    def _check_credentials(self, proposal: Any) -> dict[str, Any]:
        from .data.credentials import validate as validate_credentials

        return validate_credentials(proposal["value"])

    @validate("intermediate_url")
    def _check_intermediate_url(self, proposal: Any) -> str:
        from .data.plan import url_problem

        url = str(proposal["value"])
        problem = url_problem(url, "OsmoConfig.intermediate_url") if url else None
        if problem is not None:
            raise ConfigError(problem)
        return url

    @validate("hub_group_roles")
    def _check_hub_group_roles(self, proposal: Any) -> dict[str, str]:
        value: dict[str, str] = proposal["value"]
        for group, role in value.items():
            if role not in ROLES:
                raise ConfigError(
                    Problem(
                        f"unknown role {role!r}",
                        field=f"OsmoConfig.hub_group_roles.{group}",
                        hint=f"roles: {', '.join(ROLES)}",
                    )
                )
        return value

    @validate("kernel_token_hours", "session_token_minutes")
    def _check_positive(self, proposal: Any) -> float:
        name = proposal["trait"].name
        if not proposal["value"] > 0:
            unit = "hours" if name.endswith("hours") else "minutes"
            raise ConfigError(
                Problem(
                    f"expected a positive number of {unit}, got {proposal['value']!r}",
                    field=f"OsmoConfig.{name}",
                )
            )
        return float(proposal["value"])

    @validate("reconcile_interval")
    def _check_reconcile_interval(self, proposal: Any) -> float:
        if not proposal["value"] >= 0:  # NaN too: a loop with no sleep would spin
            raise ConfigError(
                Problem(
                    f"expected 0 (off) or a positive number of seconds, got {proposal['value']!r}",
                    field="OsmoConfig.reconcile_interval",
                )
            )
        return float(proposal["value"])

    @default("store_url")
    def _default_store_url(self) -> str:
        return os.environ.get("OSMO_STORE_URL") or f"sqlite:///{Path(self.data_dir) / 'osmo.db'}"

    @default("backends")
    def _default_backends(self) -> dict[str, Any]:
        return {"local": {"kind": "local"}}

    @default("pools")
    def _default_pools(self) -> dict[str, Any]:
        return {
            "local": {"backend": "local", "default_platform": "local", "platforms": {"local": {}}}
        }

    @validate("backends")
    def _check_backends(self, proposal: Any) -> dict[str, Any]:
        from .backends.registry import backend_class  # late: `osmo --version` needs none

        value: dict[str, Any] = proposal["value"]
        problems = []
        for name, spec in value.items():
            if not isinstance(spec, dict) or "kind" not in spec:
                problems.append(
                    Problem(
                        f"backend {name!r} needs a 'kind' (e.g. 'local')",
                        field=f"OsmoConfig.backends.{name}",
                    )
                )
            else:
                try:
                    cls = backend_class(spec["kind"], f"OsmoConfig.backends.{name}.kind")
                except ConfigError as e:
                    problems += e.problems
                else:
                    problems += cls.check_config(name, spec)
        if problems:
            raise ConfigError(problems)
        return value

    def spec_limits(self) -> SpecLimits:
        from .spec.limits import SpecLimits  # spec imports config's siblings: import late

        return SpecLimits(
            spec_bytes=self.max_spec_bytes,
            nodes=self.max_spec_nodes,
            depth=self.max_spec_depth,
            template_steps=self.template_max_steps,
            template_seconds=self.template_timeout,
            rendered_bytes=self.max_rendered_bytes,
        )

    def pool_configs(self) -> dict[str, PoolConfig]:
        """Pools validated against the backends; raises ConfigError naming trait and value."""
        problems: list[Problem] = []
        out: dict[str, PoolConfig] = {}
        for name, raw in self.pools.items():
            where = f"OsmoConfig.pools.{name}"
            if not isinstance(raw, dict):
                problems.append(Problem(f"expected a dict, got {raw!r}", field=where))
                continue
            unknown = set(raw) - _POOL_KEYS
            if unknown:
                problems.append(
                    Problem(
                        f"unknown keys {sorted(unknown)}",
                        field=where,
                        hint=f"valid: {', '.join(sorted(_POOL_KEYS))}",
                    )
                )
            users, roles = raw.get("users") or [], raw.get("roles") or []
            groups = raw.get("groups") or []
            for key, names in (("users", users), ("groups", groups)):
                if not _str_list(names):
                    problems.append(
                        Problem(f"expected a list of names, got {names!r}", field=f"{where}.{key}")
                    )
            if not _str_list(roles) or set(roles) - set(ROLES):
                problems.append(
                    Problem(
                        f"expected a list of roles, got {roles!r}",
                        field=f"{where}.roles",
                        hint=f"roles: {', '.join(ROLES)}",
                    )
                )
            grace = _seconds(raw.get("preemption_grace", PREEMPTION_GRACE))
            if grace is None:
                problems.append(
                    Problem(
                        f"expected seconds (a number >= 0 or a duration such as 30s, 2m), got "
                        f"{raw.get('preemption_grace')!r}",
                        field=f"{where}.preemption_grace",
                    )
                )
            backend = raw.get("backend", "local")
            if backend not in self.backends:
                problems.append(
                    Problem(
                        f"backend {backend!r} is not configured",
                        field=where,
                        hint=f"configured: {sorted(self.backends)}",
                    )
                )
            platforms = {
                p: PlatformConfig(
                    p,
                    arch=(c or {}).get("arch"),
                    extra=dict(c or {}),
                    backend=(c or {}).get("backend") or backend,
                )
                for p, c in (raw.get("platforms") or {name: {}}).items()
            }
            for p in platforms.values():
                problems += _platform_problems(p, self.backends, f"{where}.platforms.{p.name}")
            default_platform = raw.get("default_platform") or next(iter(platforms))
            if default_platform not in platforms:
                problems.append(
                    Problem(
                        f"default_platform {default_platform!r} is not one of "
                        f"its platforms {sorted(platforms)}",
                        field=where,
                    )
                )
            scheduling, bad = pool_scheduling(raw, where)
            problems += bad
            out[name] = PoolConfig(
                name,
                backend,
                default_platform,
                platforms,
                raw.get("description", ""),
                users=frozenset(users),
                roles=tuple(roles),
                scheduling=scheduling,
                containers=raw.get("containers", ""),
                groups=frozenset(groups),
                preemption_grace=PREEMPTION_GRACE if grace is None else grace,
            )
        from .containers import config_problems
        from .data.credentials import pool_problems

        problems += config_problems(self.pools)
        problems += pool_problems(self.credentials, self.pools)
        if self.default_pool not in self.pools:
            problems.append(
                Problem(
                    f"default_pool {self.default_pool!r} is not a configured pool",
                    field="OsmoConfig.default_pool",
                    hint=f"configured: {sorted(self.pools)}",
                )
            )
        if problems:
            raise ConfigError(problems)
        return out


def _platform_problems(p: PlatformConfig, backends: dict[str, Any], where: str) -> list[Problem]:
    if p.backend not in backends:
        return [
            Problem(
                f"backend {p.backend!r} is not configured",
                field=f"{where}.backend",
                hint=f"configured: {sorted(backends)}",
            )
        ]
    from .backends.registry import backend_class  # late: `osmo --version` needs none

    known = backend_class(backends[p.backend]["kind"]).host_names(backends[p.backend])
    if known is None:
        return []
    hosts = p.extra.get("hosts") or []
    if not isinstance(hosts, list) or set(hosts) - set(known):
        return [
            Problem(
                f"hosts {hosts!r} are not all hosts of backend {p.backend!r}",
                field=f"{where}.hosts",
                hint=f"its hosts: {', '.join(known)}",
            )
        ]
    return []


_POOL_KEYS = {
    "backend",
    "default_platform",
    "platforms",
    "description",
    "users",
    "roles",
    "containers",
    "groups",
    "preemption_grace",
} | SCHEDULING_KEYS


def _seconds(value: Any) -> float | None:
    """A number of seconds >= 0, or a duration string ('30s', '2m'); None when it is neither."""
    from .spec.quantities import parse_duration

    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if 0 <= value < float("inf") else None
    try:
        return parse_duration(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _str_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> OsmoConfig:
    """Build the config from a Python config file (default: <config dir>/osmo_config.py if it
    exists) plus keyword overrides."""
    cfg = Config()
    file = Path(path) if path else config_dir() / "osmo_config.py"
    if file.exists():
        cfg.merge(PyFileConfigLoader(file.name, path=str(file.parent)).load_config())
    for key, value in overrides.items():
        if value is not None:
            cfg.OsmoConfig[key] = value
    try:
        return OsmoConfig(config=cfg)
    except ConfigError:
        raise
    except Exception as e:  # traitlets' TraitError: name the trait and value
        raise ConfigError(Problem(str(e), field="OsmoConfig")) from e
