"""The store's tables (SQLAlchemy Core) and where their migrations live: what a row of each
holds. Reading and writing them is store.py's; a change to them is a migration too
(`osmo_core/migrations/versions`), which is what creates and upgrades a store's tables."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text

MIGRATIONS = Path(__file__).parent / "migrations"


def schema_head() -> str:
    """The newest migration's revision: each file of migrations/versions is named after its
    revision ("0003_task_holds.py" is "0003"), in order (tests/core/test_store.py checks)."""
    return max(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


metadata = MetaData()

workflows = Table(
    "workflows",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("user", String(128), nullable=False),
    Column("pool", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("priority", Integer, nullable=False, default=1),
    Column("file", Text),
    Column("spec_original", Text, nullable=False),
    Column("spec_rendered", Text, nullable=False),
    Column("spec_json", Text, nullable=False),
    Column("set_values", Text, nullable=False, default="{}"),
    Column("set_env", Text, nullable=False, default="{}"),  # --set-env, for a restart
    Column("submit_time", Float, nullable=False),
    Column("start_time", Float),
    Column("end_time", Float),
    Column("message", Text),
    Column("parent_workflow_id", String(128)),  # the workflow a restart made this one from
    Column("role", String(16)),  # the submitter's (fair share's role_weights); None: user
    Index("ix_workflows_name_seq", "name", "seq", unique=True),
    Index("ix_workflows_status", "status"),
    Index("ix_workflows_user", "user"),
)

groups = Table(
    "groups",
    metadata,
    Column("workflow_id", String(128), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("status", String(32), nullable=False),
    Column("scheduling_time", Float),
    Column("start_time", Float),
    Column("end_time", Float),
    Column("message", Text),
)

tasks = Table(
    "tasks",
    metadata,
    Column("workflow_id", String(128), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("retry_id", Integer, primary_key=True),
    Column("group_name", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("exit_code", Integer),
    Column("backend", String(64)),
    Column("node", String(255)),
    Column("alloc", Text),  # JSON: cpu, memory, gpus reserved for this attempt
    Column("workdir", Text),
    Column("output_path", Text),
    Column("log_path", Text),
    Column("cancel_reason", String(32)),  # status to give when the cancelled process exits
    # A held attempt (its command ended, its environment kept; engine/holds.py):
    # interactive | debug while it waits, done | retry once the user decided.
    Column("hold", String(16)),
    Column("hold_until", Float),  # when the hold times out
    Column("create_time", Float, nullable=False),
    Column("start_time", Float),
    Column("end_time", Float),
    Column("message", Text),
    # Why a waiting attempt waits, as the scheduling pass last announced (engine/placement.py)
    Column("pending_reason", Text),
    # A reused attempt (restart, task cache) did not run: the attempt key whose outputs it
    # has. `cache_key`: the task cache's key (engine/cache.py); an attempt with one is a cache
    # entry only once COMPLETED, i.e. after its outputs were recorded.
    Column("reused_from", String(255)),
    Column("cache_key", String(64)),
    Index("ix_tasks_cache_key", "cache_key"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("ts", Float, nullable=False),
    Column("type", String(64), nullable=False),
    Column("version", Integer, nullable=False, default=1),
    Column("workflow_id", String(128), nullable=False),
    Column("group_name", String(64)),
    Column("task", String(64)),
    Column("retry_id", Integer),
    Column("status", String(32)),
    Column("payload", Text, nullable=False, default="{}"),
    Index("ix_events_workflow", "workflow_id", "id"),
)

# A workflow's labels (OSMO's `labels`, with `--label` overrides), one row each, so that a list
# filters on them in SQL on SQLite and PostgreSQL alike.
workflow_labels = Table(
    "workflow_labels",
    metadata,
    Column("workflow_id", String(128), primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Index("ix_workflow_labels_key_value", "key", "value"),
)

# Personal access tokens: only a hash of the secret is kept (see osmo_core.auth.tokens).
tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user", String(128), nullable=False),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("revoked_at", Float),
    Column("last_used_at", Float),
    Index("ix_tokens_user", "user"),
)

# Users' own credentials (osmo_core/auth/user_credentials.py): the public fields as JSON, the
# secret ones sealed with the server's secrets.key (AES-GCM), never returned by any API.
user_credentials = Table(
    "user_credentials",
    metadata,
    Column("user", String(128), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("public", Text, nullable=False),
    Column("sealed", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

TABLES = {
    "workflows": workflows,
    "groups": groups,
    "tasks": tasks,
    "events": events,
    "workflow_labels": workflow_labels,
}
KEYS = {  # each table's primary key, as a row's key in a Batch
    "workflows": ("id",),
    "groups": ("workflow_id", "name"),
    "tasks": ("workflow_id", "name", "retry_id"),
}
