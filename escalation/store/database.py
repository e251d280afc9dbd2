"""Opening the store's database (SQLite pragmas and write locking; PostgreSQL as is) and bringing one
made by an earlier version up to this one in place, keeping every row."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    bindparam,
    create_engine,
    event,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.schema import CreateIndex, CreateTable, DefaultClause

from core.urls import SQLITE, sqlite_path
from escalation.store.schema import (
    ACTIVE,
    SQLITE_BUSY_TIMEOUT_MS,
    Base,
    DecisionRow,
    EscalationRow,
    UTCDateTime,
    dumps,
    utc,
)


def _database_url(url: str | Path) -> str:
    """A URL as given; a bare path means a SQLite file (its folder is created)."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return str(url) if "://" in str(url) else f"{SQLITE}{path}"


def _create_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, json_serializer=dumps, pool_pre_ping=True)
    engine = create_engine(url, json_serializer=dumps, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own implicit BEGIN would defeat BEGIN IMMEDIATE below
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")  # a second writer waits instead of failing
        cursor.execute("PRAGMA foreign_keys=ON")  # off by default in SQLite
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # take the write lock up front: a read-then-write (dedupe, outbox claim) cannot interleave
        # with another process's, and there is no lock upgrade to deadlock on
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


#: columns added after the first release: nullable or with a server default, so an older database
#: gains them by ADD COLUMN
ADDED_COLUMNS = {
    "escalations": ("respond_by", "outcome", "realerted_at"),
    "follow_ups": ("done_by", "reminded_at"),
    "alert_outbox": ("topic",),
}


def _upgrade(engine: Engine) -> None:
    """Bring a database made by an earlier version up to this one, keeping every row: new tables
    (create_all), the ADDED_COLUMNS, the respond_by of active escalations (from their last
    decision's window), and the definitions that changed: CHECKs that admit more values (every
    STATUSES, TOPICS), alert_outbox.escalation_id now nullable (notices without an escalation).
    PostgreSQL alters them in place; SQLite cannot, and rebuilds each table that differs."""
    Base.metadata.create_all(engine)
    with engine.begin() as connection:  # SQLite: BEGIN IMMEDIATE, so two processes never upgrade at once
        inspector = inspect(connection)
        added: set[str] = set()
        for table_name, names in ADDED_COLUMNS.items():
            have = {column["name"] for column in inspector.get_columns(table_name)}
            for name in (n for n in names if n not in have):
                column = Base.metadata.tables[table_name].c[name]
                kind = column.type.compile(engine.dialect)
                if column.server_default is not None:  # fills the rows there are
                    assert isinstance(column.server_default, DefaultClause), "added columns default to a literal"
                    kind += f" NOT NULL DEFAULT '{column.server_default.arg}'"
                guard = "IF NOT EXISTS " if engine.dialect.name == "postgresql" else ""
                connection.exec_driver_sql(f"ALTER TABLE {table_name} ADD COLUMN {guard}{name} {kind}")
                added.add(name)
        if "respond_by" in added:
            _backfill_respond_by(connection)
        if engine.dialect.name == "postgresql":
            _alter_postgresql(connection)
    if engine.dialect.name == "sqlite":
        _rebuild_sqlite_tables(engine)


def _alter_postgresql(connection: Any) -> None:
    """PostgreSQL alters in place what SQLite rebuilds: each CHECK whose definition misses a value
    the model now admits is replaced, and alert_outbox.escalation_id drops NOT NULL."""
    for table in Base.metadata.sorted_tables:
        for check in (c for c in table.constraints if isinstance(c, CheckConstraint)):
            definition = connection.scalar(
                text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = :name"), {"name": check.name}
            )
            if definition is None or any(v not in definition for v in re.findall(r"'[^']*'", str(check.sqltext))):
                drop = f"DROP CONSTRAINT {check.name}, " if definition is not None else ""
                connection.exec_driver_sql(
                    f"ALTER TABLE {table.name} {drop}ADD CONSTRAINT {check.name} CHECK ({check.sqltext})"
                )
    nullable = connection.scalar(
        text(
            "SELECT is_nullable FROM information_schema.columns "
            "WHERE table_name = 'alert_outbox' AND column_name = 'escalation_id' AND table_schema = current_schema()"
        )
    )
    if nullable == "NO":
        connection.exec_driver_sql("ALTER TABLE alert_outbox ALTER COLUMN escalation_id DROP NOT NULL")


def _backfill_respond_by(connection: Any) -> None:
    """Active escalations recorded before respond_by existed: opened_at + their last decision's
    window, in one statement (only active ones can be overdue)."""
    window = DecisionRow.payload["response_window_minutes"].as_integer()
    rows = connection.execute(
        select(EscalationRow.id, EscalationRow.opened_at, window)
        .join(DecisionRow, DecisionRow.id == EscalationRow.last_decision_id)
        .where(EscalationRow.status.in_(ACTIVE), EscalationRow.respond_by.is_(None), window.is_not(None))
    ).all()
    if rows:
        escalations = Base.metadata.tables[EscalationRow.__tablename__]
        connection.execute(
            update(escalations)
            .where(escalations.c.id == bindparam("key"))
            .values(respond_by=bindparam("due", type_=UTCDateTime())),
            [{"key": key, "due": utc(opened) + dt.timedelta(minutes=minutes)} for key, opened, minutes in rows],
        )


def _sqlite_stale(cursor: Any, table: Any) -> bool:
    """The table's stored definition differs from the model's where ALTER cannot follow: a CHECK
    whose text is not the model's (a status or topic added), or a column whose nullability changed."""
    stored = cursor.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table.name,)
    ).fetchone()[0]
    if any(f"CHECK ({c.sqltext})" not in stored for c in table.constraints if isinstance(c, CheckConstraint)):
        return True
    not_null = {row[1]: bool(row[3]) for row in cursor.execute(f"PRAGMA table_info({table.name})")}
    return any(not_null.get(c.name, not c.nullable) != (not c.nullable) for c in table.columns if not c.primary_key)


def _rebuild_sqlite_tables(engine: Engine) -> None:
    """SQLite cannot alter a CHECK or a NOT NULL: each table whose definition differs from the
    model's is rebuilt (SQLite's documented 12-step procedure: new table, copy, drop, rename,
    indexes), with foreign keys off and under the write lock, all in one transaction."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if not any(_sqlite_stale(cursor, table) for table in Base.metadata.sorted_tables):
            return  # up to date: no write lock taken
        cursor.execute("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction: set before BEGIN
        cursor.execute("BEGIN IMMEDIATE")
        try:
            # none if another process rebuilt meanwhile
            stale = [table for table in Base.metadata.sorted_tables if _sqlite_stale(cursor, table)]
            for table in stale:
                name = table.name
                create = str(CreateTable(table).compile(dialect=engine.dialect)).replace(
                    f"CREATE TABLE {name} ", f"CREATE TABLE {name}_new ", 1
                )
                columns = ", ".join(column.name for column in table.columns)
                cursor.execute(create)
                cursor.execute(f"INSERT INTO {name}_new ({columns}) SELECT {columns} FROM {name}")
                cursor.execute(f"DROP TABLE {name}")
                cursor.execute(f"ALTER TABLE {name}_new RENAME TO {name}")
                for index in table.indexes:
                    cursor.execute(str(CreateIndex(index).compile(dialect=engine.dialect)))
            broken = cursor.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(
                    f"rebuilding {[t.name for t in stale]} would break {len(broken)} foreign key(s): {broken[:3]}"
                )
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
    finally:
        raw.close()
