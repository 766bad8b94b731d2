"""The store: Alembic migrations, id allocation, batches; SQLite always, PostgreSQL when
OSMO_TEST_POSTGRES_URL names a server (.ci/run starts one)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

import osmo_core.schema
from osmo_core.errors import NotFound, StoreError
from osmo_core.store import Batch, Store


def _wf_row(name: str) -> dict:
    return {
        "name": name,
        "user": "u",
        "pool": "local",
        "status": "PENDING",
        "priority": 1,
        "spec_original": "",
        "spec_rendered": "",
        "spec_json": "{}",
        "set_values": "{}",
        "submit_time": time.time(),
    }


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path: Path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db' / 'osmo.db'}"
    else:
        url = request.getfixturevalue("pg_database").url
    s = Store(url).open()
    yield s
    s.close()


def _head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    migrations = osmo_core.schema.MIGRATIONS
    cfg.set_main_option("script_location", str(migrations))
    return str(ScriptDirectory.from_config(cfg).get_current_head())


def test_migrations_create_schema_once(store: Store) -> None:
    names = set(inspect(store.engine).get_table_names())
    assert {"workflows", "groups", "tasks", "events", "tokens", "alembic_version"} <= names
    with store.engine.connect() as c:
        assert c.execute(text("select version_num from alembic_version")).scalar() == _head()
    Store(store.url).open().close()  # reopening an up-to-date store is a no-op


def test_schema_head_is_alembics_head_told_without_alembic() -> None:
    """Every start compares the stored revision with `schema_head()` (file names) and imports
    alembic only when they differ: the two must agree."""
    assert osmo_core.schema.schema_head() == _head()


def test_an_up_to_date_store_opens_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'osmo.db'}"
    Store(url).open().close()  # created: migrated by alembic
    probe = (
        "import sys; from osmo_core.store import Store; "
        f"Store({url!r}).open().close(); print('alembic' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_a_store_behind_is_upgraded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'osmo.db'}"
    s = Store(url).open()
    with s.engine.begin() as c:  # as a store written by the release before 0003
        c.execute(text("DROP TABLE user_credentials"))  # 0009
        c.execute(text("ALTER TABLE workflows DROP COLUMN set_env"))  # 0008
        c.execute(text("ALTER TABLE workflows DROP COLUMN role"))  # 0007
        c.execute(text("DROP INDEX ix_tasks_cache_key"))  # 0006
        c.execute(text("ALTER TABLE tasks DROP COLUMN cache_key"))
        c.execute(text("ALTER TABLE tasks DROP COLUMN reused_from"))
        c.execute(text("ALTER TABLE workflows DROP COLUMN parent_workflow_id"))
        c.execute(text("ALTER TABLE tasks DROP COLUMN pending_reason"))  # 0004
        c.execute(text("DROP TABLE workflow_labels"))  # 0005
        c.execute(text("ALTER TABLE tasks DROP COLUMN hold_until"))
        c.execute(text("ALTER TABLE tasks DROP COLUMN hold"))
        c.execute(text("UPDATE alembic_version SET version_num = '0002'"))
    s.close()
    s = Store(url).open()
    columns = {c["name"] for c in inspect(s.engine).get_columns("tasks")}
    assert {"hold", "hold_until", "pending_reason", "reused_from", "cache_key"} <= columns
    assert {"workflow_labels", "user_credentials"} <= set(inspect(s.engine).get_table_names())
    assert {"role", "set_env"} <= {c["name"] for c in inspect(s.engine).get_columns("workflows")}
    assert s.schema_version() == _head()
    s.close()


def test_ids_are_name_n_and_batches_are_atomic(store: Store) -> None:
    b = Batch()
    b.insert("groups", {"name": "g", "status": "SUBMITTING"})
    b.insert(
        "tasks",
        {
            "name": "t",
            "retry_id": 0,
            "group_name": "g",
            "status": "SUBMITTING",
            "create_time": time.time(),
        },
    )
    b.events.append(
        {
            "id": 1,
            "ts": time.time(),
            "type": "workflow.submitted",
            "version": 1,
            "status": "PENDING",
            "payload": {"n": 1},
        }
    )
    assert store.create_workflow(_wf_row("train"), b) == "train-1"
    assert store.create_workflow(_wf_row("train"), Batch()) == "train-2"
    assert store.create_workflow(_wf_row("eval"), Batch()) == "eval-1"

    good = Batch()
    good.update(
        "tasks", {"workflow_id": "train-1", "name": "t", "retry_id": 0, "status": "RUNNING"}
    )
    good.update(
        "tasks",
        {
            "workflow_id": "train-1",
            "name": "t",
            "retry_id": 0,
            "exit_code": 0,
            "status": "COMPLETED",
        },
    )  # merged: last wins
    store.commit(good)
    assert [dict(r)["status"] for r in store.tasks_of("train-1")] == ["COMPLETED"]

    bad = Batch()
    bad.update("tasks", {"workflow_id": "train-1", "name": "t", "retry_id": 0, "status": "FAILED"})
    bad.events.append(
        {"id": 1, "ts": 0.0, "type": "x", "version": 1, "workflow_id": "train-1"}
    )  # duplicate event id: the batch must fail
    with pytest.raises(StoreError, match="could not commit"):
        store.commit(bad)
    assert [dict(r)["status"] for r in store.tasks_of("train-1")] == ["COMPLETED"]
    assert [e["payload"] for e in store.events_since(0)] == [{"n": 1}]
    assert store.max_event_id() == 1


def test_reads(store: Store) -> None:
    for _ in range(3):
        store.create_workflow(_wf_row("w"), Batch())
    assert [r["id"] for r in store.list_workflows(limit=2)] == ["w-3", "w-2"]
    assert [r["id"] for r in store.list_workflows(limit=2, offset=2)] == ["w-1"]
    assert store.unfinished_workflow_ids() == ["w-1", "w-2", "w-3"]
    with pytest.raises(NotFound):
        store.get_workflow("nope-1")


def test_bad_url_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        Store("nosuchdb://x").open()
