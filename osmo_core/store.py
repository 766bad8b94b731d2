"""The store: SQLAlchemy 2 Core over a SQLite file (WAL) by default, PostgreSQL for teams.

The engine is the only writer. It hands over a batch of row inserts/updates and events and the
store commits them in ONE transaction, so a batch is either wholly persisted or not at all; the
engine announces events only after `commit()` returns. The schema is versioned with Alembic
(`osmo_core/migrations`; the tables are in schema.py) and upgraded when the store opens.

Log lines are not stored here: they live in per-attempt log files; rows keep their location.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    create_engine,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .errors import NotFound, StoreError
from .schema import (
    KEYS,
    MIGRATIONS,
    TABLES,
    events,
    groups,
    schema_head,
    tasks,
    tokens,
    user_credentials,
    workflow_labels,
    workflows,
)

# a row (dict) -> its positional statement parameters
_Params = Callable[[dict[str, Any]], tuple[Any, ...]]


@dataclass
class Batch:
    """Row changes and events committed together. Updates to one row merge (last value wins),
    so a round that moves a task several times writes it once."""

    inserts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    updates: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)

    def insert(self, table: str, row: dict[str, Any]) -> None:
        self.inserts.setdefault(table, []).append(row)

    def update(self, table: str, row: dict[str, Any]) -> None:
        key = tuple(row[k] for k in KEYS[table])
        self.updates.setdefault(table, {}).setdefault(key, {}).update(row)

    def __bool__(self) -> bool:
        return bool(self.inserts or self.updates or self.events)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: a commit survives a crash of the process (what we test); only an OS crash
    # can lose the last transactions. FULL would fsync per commit and cost ~10x per event.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Store:
    def __init__(self, url: str):
        self.url = url
        self._engine: Engine | None = None
        self._writer: Connection | None = None
        self._statements: dict[tuple[str, str, tuple[str, ...]], tuple[str, _Params | None]] = {}

    # --- lifecycle --------------------------------------------------------------------------

    def open(self) -> Store:
        if self.url.startswith("sqlite:///"):
            Path(self.url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        try:
            # A ping per checkout finds a server's dropped connections; a SQLite file has none,
            # and the ping was a query on every read.
            ping = not self.url.startswith("sqlite")
            engine = create_engine(self.url, future=True, pool_pre_ping=ping)
        except Exception as e:
            raise StoreError(f"cannot use store URL {self.url!r}: {e}") from e
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        self._engine = engine
        self._migrate()
        return self

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise StoreError("store is not open")
        return self._engine

    def _migrate(self) -> None:
        """Upgrade to the newest migration. A store already there is told by one query, without
        alembic's import and script scan (0.1-0.2 s on every start of every command)."""
        try:
            with self.engine.connect() as conn:
                current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError:
            current = None  # a new store: no table yet
        if current == schema_head():
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except Exception as e:
            raise StoreError(f"cannot open store {self.url!r}: {e}") from e

    # --- writes (engine only) -------------------------------------------------------------

    def create_workflow(self, row: dict[str, Any], batch: Batch) -> str:
        """Insert a workflow with the next free `NAME-N` id plus `batch` (its groups, tasks and
        first events, whose rows carry workflow_id=None until the id is known)."""
        for _attempt in range(5):
            with self.engine.begin() as conn:
                seq = (
                    conn.execute(
                        select(func.coalesce(func.max(workflows.c.seq), 0)).where(
                            workflows.c.name == row["name"]
                        )
                    ).scalar_one()
                    + 1
                )
                wf_id = f"{row['name']}-{seq}"
                try:
                    conn.execute(insert(workflows), [{**row, "id": wf_id, "seq": seq}])
                except IntegrityError:  # another server took this seq; try the next
                    continue
                self._write(conn, batch, wf_id)
                return wf_id
        raise StoreError(f"could not allocate an id for workflow {row['name']!r}")

    def commit(self, batch: Batch) -> None:
        if batch:
            # The engine's own connection: no pool checkout or liveness ping per round.
            try:
                if self._writer is None:
                    self._writer = self.engine.connect()
                with self._writer.begin():
                    self._write(self._writer, batch, None)
            except Exception as e:
                if self._writer is not None:
                    self._writer.invalidate()  # a broken connection goes, not back to the pool
                    self._writer.close()
                    self._writer = None
                raise StoreError(f"could not commit to {self.url!r}: {e}") from e

    def _write(self, conn: Connection, batch: Batch, wf_id: str | None) -> None:
        def fill(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if wf_id is None:
                return rows
            return [{**r, "workflow_id": r.get("workflow_id") or wf_id} for r in rows]

        # Statements are compiled once per shape and run with the driver's executemany inside
        # SQLAlchemy's transaction: Core's per-execute overhead was most of a round's cost.
        # (dbapi_connection is Optional in SQLAlchemy's types; a connection in use has one)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            for name, rows in batch.inserts.items():
                self._many(cursor, "insert", name, fill(rows))
            for name, by_key in batch.updates.items():
                self._many(cursor, "update", name, fill(list(by_key.values())))
            if batch.events:
                rows = [
                    {
                        **e,
                        "payload": json.dumps(e.get("payload") or {}),
                        "workflow_id": e.get("workflow_id") or wf_id,
                    }
                    for e in batch.events
                ]
                self._many(cursor, "insert", "events", rows)
        finally:
            cursor.close()

    def _many(self, cursor: Any, op: str, table: str, rows: list[dict[str, Any]]) -> None:
        """executemany, one statement per distinct set of columns (in the rows' own key order:
        the rows of one call site share it, and a statement is compiled once per order)."""
        by_cols: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for r in rows:
            by_cols.setdefault(tuple(r), []).append(r)
        for cols, rs in by_cols.items():
            sql, params = self._compiled(op, table, cols)
            cursor.executemany(sql, rs if params is None else map(params, rs))

    def _compiled(self, op: str, name: str, cols: tuple[str, ...]) -> tuple[str, _Params | None]:
        """SQL text for the dialect, and when its parameters are positional, what makes a
        row's tuple of them (in C: this runs for every column of every row written)."""
        found = self._statements.get((op, name, cols))
        if found is None:
            table = TABLES[name]
            if op == "insert":
                stmt: Any = insert(table).values({c: bindparam(c) for c in cols})
            else:
                keys = KEYS[name]
                stmt = (
                    update(table)
                    .where(and_(*(table.c[k] == bindparam(f"k_{k}") for k in keys)))
                    .values({c: bindparam(f"v_{c}") for c in cols if c not in keys})
                )
            compiled = stmt.compile(dialect=self.engine.dialect)
            names = list(compiled.positiontup) if compiled.positional else None
            # map bind names back to row columns (k_/v_ prefixes keep SET and WHERE apart)
            order = [n[2:] if n[:2] in ("k_", "v_") else n for n in names] if names else None
            sql = str(compiled)
            if order is None and op == "update":
                sql = _rename_binds(sql, cols, KEYS[name])
            params = None
            if order is not None:  # itemgetter of one key gives the value, not a tuple
                params = itemgetter(*order) if len(order) > 1 else lambda r, k=order[0]: (r[k],)
            found = self._statements[(op, name, cols)] = (sql, params)
        return found

    # --- reads ---------------------------------------------------------------------------

    def schema_version(self) -> str:
        """The Alembic revision the store is at (a query: it also says the store answers)."""
        with self.engine.connect() as conn:
            return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())

    def max_event_id(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one())

    def count_workflows_by_status(self) -> dict[str, int]:
        """Workflows per status (an index scan: ix_workflows_status); for metrics."""
        q = select(workflows.c.status, func.count()).group_by(workflows.c.status)
        with self.engine.connect() as conn:
            return {status: int(n) for status, n in conn.execute(q)}

    def get_workflow(self, wf_id: str) -> RowMapping:
        with self.engine.connect() as conn:
            row = conn.execute(select(workflows).where(workflows.c.id == wf_id)).mappings().first()
        if row is None:
            raise NotFound(f"workflow {wf_id!r} not found")
        return row

    def workflow_detail(self, wf_id: str) -> tuple[RowMapping, list[RowMapping], list[RowMapping]]:
        """A workflow, its groups and its task attempts, read on one connection with statements
        built once: the hot read behind `GET /workflows/{id}` (three checkouts, pings and
        statement builds were most of its cost)."""
        with self.engine.connect() as conn:
            row = conn.execute(_WORKFLOW, {"wf_id": wf_id}).mappings().first()
            if row is None:
                raise NotFound(f"workflow {wf_id!r} not found")
            return (
                row,
                list(conn.execute(_GROUPS, {"wf_id": wf_id}).mappings()),
                list(conn.execute(_TASKS, {"wf_id": wf_id}).mappings()),
            )

    def list_workflows(
        self,
        *,
        statuses: Sequence[str] | None = None,
        user: str | None = None,
        pool: str | None = None,
        name: str | None = None,
        labels: Sequence[tuple[str, Sequence[str]]] = (),
        limit: int = 50,
        offset: int = 0,
        newest_first: bool = True,
    ) -> list[RowMapping]:
        """`labels`: (key, patterns) a workflow must all match, its value matching one of the
        patterns, in which `*` is any run of characters (spec/labels.py: OSMO's selectors)."""
        # the submitter's role and --set-env are the engine's to read, not a listing's
        cols = [
            c
            for c in workflows.c
            if not c.name.startswith("spec_") and c.name not in ("role", "set_env")
        ]
        q = select(*cols)
        for key, patterns in labels:
            likes = [re.sub(r"([\\%_])", r"\\\1", p).replace("*", "%") for p in patterns]
            q = q.where(
                exists().where(
                    workflow_labels.c.workflow_id == workflows.c.id,
                    workflow_labels.c.key == key,
                    or_(*(workflow_labels.c.value.like(like, escape="\\") for like in likes)),
                )
            )
        if statuses:
            q = q.where(workflows.c.status.in_(list(statuses)))
        if user:
            q = q.where(workflows.c.user == user)
        if pool:
            q = q.where(workflows.c.pool == pool)
        if name:
            q = q.where(workflows.c.name == name)
        order = workflows.c.submit_time.desc() if newest_first else workflows.c.submit_time.asc()
        q = q.order_by(order, workflows.c.seq.desc()).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return list(conn.execute(q).mappings())

    def labels_of(self, wf_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """Each workflow's labels ({} for one without), in one read."""
        found: dict[str, dict[str, str]] = {i: {} for i in wf_ids}
        q = select(workflow_labels).where(workflow_labels.c.workflow_id.in_(list(wf_ids)))
        with self.engine.connect() as conn:
            for r in conn.execute(q):
                found[r.workflow_id][r.key] = r.value
        return found

    def unfinished_workflow_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(workflows.c.id)
                .where(workflows.c.status.in_(["PENDING", "RUNNING", "WAITING"]))
                .order_by(workflows.c.submit_time)
            )
            return [r[0] for r in rows]

    def groups_of(self, wf_id: str) -> list[RowMapping]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(select(groups).where(groups.c.workflow_id == wf_id)).mappings()
            )

    def tasks_of(self, wf_id: str, name: str | None = None) -> list[RowMapping]:
        q = select(tasks).where(tasks.c.workflow_id == wf_id)
        if name is not None:
            q = q.where(tasks.c.name == name)
        with self.engine.connect() as conn:
            return list(conn.execute(q.order_by(tasks.c.create_time, tasks.c.retry_id)).mappings())

    def cache_entry(self, key: str, user: str) -> RowMapping | None:
        """The newest attempt of `user`'s workflows that ran with task-cache key `key` and
        COMPLETED (its outputs recorded): a reused one names it in `reused_from`, so the one
        that ran is found. Per user: another user's outputs are theirs (and, with task
        isolation, not readable by this user's tasks)."""
        owned = select(workflows.c.id).where(workflows.c.user == user)
        q = (
            select(tasks)
            .where(tasks.c.cache_key == key, tasks.c.status == "COMPLETED")
            .where(tasks.c.reused_from.is_(None), tasks.c.workflow_id.in_(owned))
            .order_by(tasks.c.end_time.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(q).mappings().first()

    def clear_cache(self, *, task: str | None = None, user: str | None = None) -> int:
        """Forget task-cache entries (of task `task`, of `user`'s workflows); how many went.
        The engine calls it between rounds: it is a write to task rows."""
        q = update(tasks).where(tasks.c.cache_key.is_not(None)).values(cache_key=None)
        if task is not None:
            q = q.where(tasks.c.name == task)
        if user is not None:
            owned = select(workflows.c.id).where(workflows.c.user == user)
            q = q.where(tasks.c.workflow_id.in_(owned))
        with self.engine.begin() as conn:
            return int(conn.execute(q).rowcount)

    def workflow_owner(self, wf_id: str) -> str:
        with self.engine.connect() as conn:  # on every workflow request: a statement built once
            user = conn.execute(_OWNER, {"wf_id": wf_id}).scalar_one_or_none()
        if user is None:
            raise NotFound(f"workflow {wf_id!r} not found")
        return str(user)

    def events_since(
        self,
        after_id: int = 0,
        workflow_id: str | None = None,
        limit: int = 1000,
        user: str | None = None,
    ) -> list[dict[str, Any]]:
        """Stored events after `after_id`, oldest first; `user`: of that user's workflows only."""
        q = select(events).where(events.c.id > after_id)
        if workflow_id:
            q = q.where(events.c.workflow_id == workflow_id)
        if user is not None:
            owned = select(workflows.c.id).where(workflows.c.user == user)
            q = q.where(events.c.workflow_id.in_(owned))
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(events.c.id).limit(limit)).mappings()
            return [{**r, "payload": json.loads(r["payload"])} for r in rows]

    # --- personal access tokens (not engine state: written directly) ----------------------

    def add_token(self, row: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(tokens), [row])

    def get_token(self, token_id: str) -> RowMapping | None:
        with self.engine.connect() as conn:
            return conn.execute(select(tokens).where(tokens.c.id == token_id)).mappings().first()

    def list_tokens(self, user: str | None = None) -> list[RowMapping]:
        q = select(*[c for c in tokens.c if c.name != "hash"])
        if user is not None:
            q = q.where(tokens.c.user == user)
        with self.engine.connect() as conn:
            return list(conn.execute(q.order_by(tokens.c.created_at)).mappings())

    def update_token(self, token_id: str, **values: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(tokens).where(tokens.c.id == token_id).values(**values))

    # --- users' credentials (not engine state: written directly) --------------------------

    @contextmanager
    def _credentials(self, write: bool = False) -> Iterator[Connection]:
        """A connection for the credentials' own reads and writes, which a submit's checks make
        before the engine does: a database gone is a StoreError (503), not the driver's."""
        try:
            with self.engine.begin() if write else self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as e:
            raise StoreError(f"could not use {self.url!r} for credentials: {e}") from e

    def put_credential(self, row: dict[str, Any], replaces: Sequence[str] = ()) -> None:
        """Create or replace `row` (by user and name), and remove the same user's `replaces`
        in the same transaction."""
        uc = user_credentials.c
        with self._credentials(write=True) as conn:
            conn.execute(
                user_credentials.delete().where(
                    uc.user == row["user"], uc.name.in_([row["name"], *replaces])
                )
            )
            conn.execute(insert(user_credentials), [row])

    def credentials_of(self, user: str | None = None) -> list[RowMapping]:
        """`user`'s credentials (everyone's: None), by user and name."""
        q = select(user_credentials)
        if user is not None:
            q = q.where(user_credentials.c.user == user)
        with self._credentials() as conn:
            order = (user_credentials.c.user, user_credentials.c.name)
            return list(conn.execute(q.order_by(*order)).mappings())

    def delete_credential(self, user: str, name: str) -> bool:
        uc = user_credentials.c
        with self._credentials(write=True) as conn:
            gone = conn.execute(user_credentials.delete().where(uc.user == user, uc.name == name))
            return bool(gone.rowcount)


_WORKFLOW = select(workflows).where(workflows.c.id == bindparam("wf_id"))
_OWNER = select(workflows.c.user).where(workflows.c.id == bindparam("wf_id"))
_GROUPS = select(groups).where(groups.c.workflow_id == bindparam("wf_id"))
_TASKS = (
    select(tasks)
    .where(tasks.c.workflow_id == bindparam("wf_id"))
    .order_by(tasks.c.create_time, tasks.c.retry_id)
)


def _rename_binds(sql: str, cols: tuple[str, ...], keys: tuple[str, ...]) -> str:
    """Named paramstyles (psycopg): bind names become the row's own column names."""
    for c in cols:
        prefix = "k_" if c in keys else "v_"
        sql = sql.replace(f"%({prefix}{c})s", f"%({c})s")
    return sql
