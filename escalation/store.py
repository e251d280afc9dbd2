"""The operational store: every decision (the audit trail), the escalations they open or merge
into, the alert outbox, follow-ups and CS feedback.

One SQLAlchemy 2 model, two backends (docs/design.md, storage): a SQLite file by default (zero set-up,
one machine) and PostgreSQL by URL when several workers share it. The only backend-specific code
is how a writer serialises itself: SQLite takes the database write lock at BEGIN (`BEGIN
IMMEDIATE`), PostgreSQL takes a transaction-scoped advisory lock per dedupe key and claims outbox
rows with `FOR UPDATE SKIP LOCKED`; both make "look for an open escalation, else create one" safe
against a concurrent writer.

The policy is given at construction (`Store(url, policy)`): the cooldown and the alert routing are
properties of the deployment, and one store serves one policy at a time. `record()` also accepts
`policy=` to replay history under another policy.

Every public method is one transaction. `record()` commits the escalation and its outbox rows
together, before anything is sent (`escalation.alerts.deliver` reads the outbox afterwards): a
crash after the commit loses no alert, a crash before it loses the whole decision, never half.

The outbox also holds notices that belong to no escalation (`enqueue_notice`: a monitor's
breach) and the relay's re-alerts and reminders (escalation/relay.py drives them: `realert_overdue`,
`remind_follow_ups`, `expire_stale`, each marking what it did in the same transaction, so each
happens once). `take_lease` lets one process at a time do a job such as the relay's polling.

Times are UTC. Naive datetimes are read as UTC (as everywhere in the platform); values are stored
as naive UTC in both backends and come back timezone-aware.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.schema import CreateIndex, CreateTable

from core.errors import InputError
from core.vocabulary import BANDS, OUTCOMES, RESOLUTION_OUTCOMES, STATUSES
from escalation.decision import Decision
from escalation.payloads import alert_facts, build_payload, notice_payload
from escalation.policy import Alerts, EscalationPolicy

UTC = dt.timezone.utc
#: statuses a repeat merges into: an acknowledged escalation has a human on it, so a repeat must
#: not page anyone again
ACTIVE = ("open", "acknowledged")
#: where each status may go; resolved and expired are final (a repeat opens a new escalation)
TRANSITIONS = {"open": ("acknowledged", "resolved", "expired"), "acknowledged": ("resolved", "expired"), "resolved": (), "expired": ()}
ALERT_STATUSES = ("pending", "sent", "failed")
#: what an outbox row is about: an escalation's alert (opened or raised), its re-alert once its
#: response window passed unacknowledged, a due follow-up's reminder, a monitor's breach (no escalation)
TOPICS = ("escalation", "re_alert", "reminder", "monitor")
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: the longest wait between two attempts of one alert, whatever backoff_seconds * 2**n says
MAX_BACKOFF_SECONDS = Alerts.model_fields["max_backoff_seconds"].default


class UnknownEscalation(InputError):
    """An escalation id the store does not hold (the API answers 404; the command line, bad input)."""


def _one_of(column: str, values: tuple[str, ...]) -> str:
    """A CHECK clause from one of the tuples above, so the database and the code share one list."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def utc(value: dt.datetime | str | None) -> dt.datetime | None:
    """An aware UTC datetime from a datetime or an ISO string; naive means UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if not isinstance(value, dt.datetime):
        raise InputError(f"expected a datetime or an ISO 8601 string, got {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json_default(value: Any) -> Any:
    # numpy scalars (rule inputs, probabilities) and datetimes reach the payloads
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True)


class UTCDateTime(TypeDecorator):
    """Naive UTC in the database (SQLite has no time zones; one meaning in both backends), aware
    UTC in Python."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> dt.datetime | None:
        value = utc(value)
        return None if value is None else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Any) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


#: 64-bit keys on PostgreSQL; SQLite autoincrements only an INTEGER PRIMARY KEY
ID = BigInteger().with_variant(Integer(), "sqlite")
JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    type_annotation_map = {dict: JSONType, dt.datetime: UTCDateTime()}


class DecisionRow(Base):
    """Every decision, escalating or not: the audit trail replays from `payload`."""

    __tablename__ = "decisions"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(128))
    ticket_id: Mapped[str | None] = mapped_column(String(128))
    band: Mapped[str] = mapped_column(String(16))
    escalate: Mapped[bool]
    dedupe_key: Mapped[str] = mapped_column(String(256))
    policy_version: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[dt.datetime]
    recorded_at: Mapped[dt.datetime]
    payload: Mapped[dict]

    __table_args__ = (Index("ix_decisions_account_decided", "account_id", "decided_at"),)


class EscalationRow(Base):
    """One escalation per (account, primary reason) while it keeps recurring within the cooldown."""

    __tablename__ = "escalations"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(256))
    severity: Mapped[int]
    band: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str | None] = mapped_column(String(128))
    owner: Mapped[str | None] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), default="open")
    opened_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    occurrences: Mapped[int] = mapped_column(default=1)
    last_decision_id: Mapped[int] = mapped_column(ID, ForeignKey("decisions.id"))
    package: Mapped[dict | None]
    ticket_id: Mapped[str | None] = mapped_column(String(128))
    #: when the response window ends (opening or raising time + the decision's window); None: no window
    respond_by: Mapped[dt.datetime | None]
    #: one of RESOLUTION_OUTCOMES once resolved
    outcome: Mapped[str | None] = mapped_column(String(16))
    #: when the relay re-alerted it for its passed response window (once: None until then)
    realerted_at: Mapped[dt.datetime | None]

    __table_args__ = (
        CheckConstraint(_one_of("status", STATUSES), name="ck_escalations_status"),
        CheckConstraint("occurrences >= 1", name="ck_escalations_occurrences"),
        Index("ix_escalations_dedupe", "dedupe_key", "status", "updated_at"),
        Index("ix_escalations_status", "status", "severity"),
    )


class AlertRow(Base):
    """The transactional outbox: an alert exists here before anyone tries to send it."""

    __tablename__ = "alert_outbox"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    #: None for a notice about no escalation (a monitor's breach)
    escalation_id: Mapped[int | None] = mapped_column(ID, ForeignKey("escalations.id"), index=True)
    topic: Mapped[str] = mapped_column(String(16), default="escalation", server_default="escalation")
    destination: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict]
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime]
    sent_at: Mapped[dt.datetime | None]

    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'failed')", name="ck_alert_outbox_status"),
        CheckConstraint(_one_of("topic", TOPICS), name="ck_alert_outbox_topic"),
        Index("ix_alert_outbox_due", "status", "next_attempt_at"),
    )


class FollowUpRow(Base):
    """docs/escalation-practice.md: a follow-up within 24 hours of every handoff (a missing one often fails it)."""

    __tablename__ = "follow_ups"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    escalation_id: Mapped[int] = mapped_column(ID, ForeignKey("escalations.id"), index=True)
    due_at: Mapped[dt.datetime]
    done_at: Mapped[dt.datetime | None]
    done_by: Mapped[str | None] = mapped_column(String(256))
    #: when the relay reminded the owner that it fell due (once: None until then)
    reminded_at: Mapped[dt.datetime | None]

    __table_args__ = (Index("ix_follow_ups_due", "done_at", "due_at"),)


class StatusChangeRow(Base):
    """The lifecycle's audit trail: who moved an escalation from one status to another, when, and
    why (from_status is None for the opening, by the policy)."""

    __tablename__ = "escalation_status_changes"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    escalation_id: Mapped[int] = mapped_column(ID, ForeignKey("escalations.id"))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str | None] = mapped_column(String(256))
    at: Mapped[dt.datetime]
    outcome: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(_one_of("to_status", STATUSES), name="ck_status_changes_to"),
        CheckConstraint(f"outcome IS NULL OR {_one_of('outcome', RESOLUTION_OUTCOMES)}", name="ck_status_changes_outcome"),
        Index("ix_status_changes_escalation", "escalation_id", "at"),
    )


class FeedbackRow(Base):
    """CS rates each handoff and records the outcome; both flow back into evaluation."""

    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    escalation_id: Mapped[int] = mapped_column(ID, ForeignKey("escalations.id"), index=True)
    rating: Mapped[int]
    comment: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16), default="unknown")
    created_at: Mapped[dt.datetime]

    __table_args__ = (
        CheckConstraint("rating BETWEEN 1 AND 5", name="ck_feedback_rating"),
        CheckConstraint("outcome IN ('saved', 'churned', 'unknown')", name="ck_feedback_outcome"),
    )


class LeaseRow(Base):
    """Who does a job that one process at a time should do (the relay's polling), until when."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(256))
    expires_at: Mapped[dt.datetime]


@dataclass(frozen=True)
class RecordResult:
    """What `record()` did. action: audit_only (no escalation), created, merged (a repeat within
    the cooldown), raised (a repeat with a higher severity: merged and alerted again)."""

    decision_id: int
    action: str
    escalation_id: int | None = None
    occurrences: int = 0
    alerts_enqueued: int = 0


def idempotency_key(escalation_id: int, dedupe_key: str, opened_at: dt.datetime, destination: str, severity: int) -> str:
    """Deterministic: the same alert always has the same key, so a receiver can drop a retry.
    The dedupe key and opening time are in it so that two databases (a test run, a restored
    backup) that both reach escalation #1 never share a key at the same receiver."""
    raw = f"{escalation_id}|{dedupe_key}|{utc(opened_at).isoformat()}|{destination}|{severity}"
    return hashlib.sha256(raw.encode()).hexdigest()


def _database_url(url: str | Path) -> str:
    """A URL as given; a bare path means a SQLite file (its folder is created)."""
    text = str(url)
    if "://" not in text:
        Path(text).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{Path(text).expanduser()}"
    if text.startswith("sqlite:///") and not text.startswith("sqlite:///:memory:") and len(text) > len("sqlite:///"):
        Path(text[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return text


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
ADDED_COLUMNS = {"escalations": ("respond_by", "outcome", "realerted_at"), "follow_ups": ("done_by", "reminded_at"),
                 "alert_outbox": ("topic",)}


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
            definition = connection.scalar(text("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = :name"),
                                           {"name": check.name})
            if definition is None or any(v not in definition for v in re.findall(r"'[^']*'", str(check.sqltext))):
                drop = f"DROP CONSTRAINT {check.name}, " if definition is not None else ""
                connection.exec_driver_sql(f"ALTER TABLE {table.name} {drop}ADD CONSTRAINT {check.name} CHECK ({check.sqltext})")
    nullable = connection.scalar(text("SELECT is_nullable FROM information_schema.columns "
                                      "WHERE table_name = 'alert_outbox' AND column_name = 'escalation_id' AND table_schema = current_schema()"))
    if nullable == "NO":
        connection.exec_driver_sql("ALTER TABLE alert_outbox ALTER COLUMN escalation_id DROP NOT NULL")


def _backfill_respond_by(connection: Any) -> None:
    """Active escalations recorded before respond_by existed: opened_at + their last decision's
    window, in one statement (only active ones can be overdue)."""
    window = DecisionRow.payload["response_window_minutes"].as_integer()
    rows = connection.execute(select(EscalationRow.id, EscalationRow.opened_at, window)
                              .join(DecisionRow, DecisionRow.id == EscalationRow.last_decision_id)
                              .where(EscalationRow.status.in_(ACTIVE), EscalationRow.respond_by.is_(None), window.is_not(None))).all()
    if rows:
        connection.execute(update(EscalationRow.__table__).where(EscalationRow.__table__.c.id == bindparam("key"))
                           .values(respond_by=bindparam("due", type_=UTCDateTime())),
                           [{"key": key, "due": utc(opened) + dt.timedelta(minutes=minutes)} for key, opened, minutes in rows])


def _sqlite_stale(cursor: Any, table: Any) -> bool:
    """The table's stored definition differs from the model's where ALTER cannot follow: a CHECK
    whose text is not the model's (a status or topic added), or a column whose nullability changed."""
    stored = cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table.name,)).fetchone()[0]
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
            stale = [table for table in Base.metadata.sorted_tables if _sqlite_stale(cursor, table)]  # none if another process rebuilt meanwhile
            for table in stale:
                name = table.name
                create = str(CreateTable(table).compile(dialect=engine.dialect)).replace(f"CREATE TABLE {name} ", f"CREATE TABLE {name}_new ", 1)
                columns = ", ".join(column.name for column in table.columns)
                cursor.execute(create)
                cursor.execute(f"INSERT INTO {name}_new ({columns}) SELECT {columns} FROM {name}")
                cursor.execute(f"DROP TABLE {name}")
                cursor.execute(f"ALTER TABLE {name}_new RENAME TO {name}")
                for index in table.indexes:
                    cursor.execute(str(CreateIndex(index).compile(dialect=engine.dialect)))
            broken = cursor.execute("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"rebuilding {[t.name for t in stale]} would break {len(broken)} foreign key(s): {broken[:3]}")
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
    finally:
        raw.close()


def _row_dict(row: Base) -> dict:
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}


def _when(decision: Decision, now: dt.datetime | None) -> dt.datetime:
    """When a decision is recorded: `now` if given, else the decision's own time, else the clock."""
    return utc(now) or utc(decision.decided_at) or dt.datetime.now(UTC)


def _respond_by(decision: Decision, now: dt.datetime) -> dt.datetime | None:
    """The end of the decision's response window, counted from when it was recorded."""
    minutes = decision.response_window_minutes
    return None if minutes is None else now + dt.timedelta(minutes=minutes)


def _audit_row(decision: Decision, now: dt.datetime) -> dict:
    return {"account_id": decision.account_id, "ticket_id": decision.ticket_id, "band": decision.band, "escalate": decision.escalate,
            "dedupe_key": decision.dedupe_key, "policy_version": decision.policy_version, "model_version": decision.model_version,
            "decided_at": utc(decision.decided_at) or now, "recorded_at": now, "payload": decision.to_dict()}


class Store:
    """The operational store on a SQLite file or PostgreSQL database; tables are created if missing.

    `url`: `sqlite:///path.db`, a bare path (SQLite), or `postgresql+psycopg://user:pw@host/db`.
    `policy`: cooldown and alert routing used by `record()` (defaults: EscalationPolicy()).
    """

    def __init__(self, url: str | Path, policy: EscalationPolicy | None = None):
        self.url = _database_url(url)
        self.policy = policy or EscalationPolicy()
        self.engine = _create_engine(self.url)
        _upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def _lock_key(self, session: Session, key: str) -> None:
        """Serialise writers of one dedupe key (PostgreSQL; SQLite is serialised by BEGIN IMMEDIATE)."""
        if self.engine.dialect.name == "postgresql":
            lock_id = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
            session.execute(select(func.pg_advisory_xact_lock(lock_id)))

    # ------------------------------------------------------------------ decisions and escalations

    def record(self, decision: Decision, package: dict | None = None, now: dt.datetime | None = None,
               *, policy: EscalationPolicy | None = None) -> RecordResult:
        """Store the decision; open, merge into or raise an escalation; enqueue its alerts.

        A repeat (same dedupe key) within `cooldown_hours` of an active escalation's last update
        merges into it: occurrences + 1, package replaced when one is given, no new alert. A
        repeat with a higher severity merges too, and raises the escalation's severity, band,
        queue and owner and alerts again. Otherwise a new escalation opens with a follow-up and
        one outbox row per destination of its queue, if its band reaches `alerts.min_band`.
        `now` defaults to the decision's own `decided_at`.
        """
        policy = policy or self.policy
        now = _when(decision, now)
        if not decision.escalate:  # most ticket updates: an audit row only
            return self.record_all([(decision, None, now)])[0]
        with self._transaction() as session:
            audit = DecisionRow(**_audit_row(decision, now))
            session.add(audit)
            session.flush()

            self._lock_key(session, decision.dedupe_key)
            since = now - dt.timedelta(hours=policy.cooldown_hours)
            current = session.scalars(
                select(EscalationRow)
                .where(EscalationRow.dedupe_key == decision.dedupe_key, EscalationRow.status.in_(ACTIVE),
                       EscalationRow.updated_at >= since)
                .order_by(EscalationRow.updated_at.desc(), EscalationRow.id.desc())
                .limit(1)
                .with_for_update()
            ).first()

            if current is not None:
                current.occurrences += 1
                current.updated_at = max(current.updated_at, now)
                current.last_decision_id = audit.id
                if package is not None:
                    current.package = package
                if decision.severity <= current.severity:
                    return RecordResult(audit.id, "merged", current.id, current.occurrences)
                current.severity = decision.severity
                current.band = max(current.band, decision.band, key=BANDS.index)
                current.queue = decision.queue or current.queue
                current.owner = decision.owner or current.owner
                current.respond_by = min(filter(None, (current.respond_by, _respond_by(decision, now))), default=None)
                alerts = self._enqueue_alerts(session, current, decision, package if package is not None else current.package, now, policy)
                return RecordResult(audit.id, "raised", current.id, current.occurrences, alerts)

            escalation = EscalationRow(
                account_id=decision.account_id, reason=decision.primary_reason or "unknown", dedupe_key=decision.dedupe_key,
                severity=decision.severity, band=decision.band, queue=decision.queue, owner=decision.owner, status="open",
                opened_at=now, updated_at=now, occurrences=1, last_decision_id=audit.id, package=package, ticket_id=decision.ticket_id,
                respond_by=_respond_by(decision, now),
            )
            session.add(escalation)
            session.flush()
            session.add(StatusChangeRow(escalation_id=escalation.id, from_status=None, to_status="open", actor="policy", at=now,
                                        note=f"{escalation.reason} (policy {decision.policy_version})"))
            due = utc(decision.follow_up_due) or now + dt.timedelta(hours=policy.windows.follow_up_hours)
            session.add(FollowUpRow(escalation_id=escalation.id, due_at=due))
            alerts = self._enqueue_alerts(session, escalation, decision, package, now, policy)
            return RecordResult(audit.id, "created", escalation.id, 1, alerts)

    def record_all(self, items: list[tuple[Decision, dict | None, dt.datetime | None]]) -> list[RecordResult]:
        """`record` for several decisions (the API's ticket updates that arrived together), in order.
        The decisions that do not escalate, most of them, are written in one transaction without the
        ORM's unit of work (one commit for the lot); each escalating one goes through `record`."""
        out: list[RecordResult | None] = [None] * len(items)
        quiet = [(k, _audit_row(d, _when(d, n))) for k, (d, _, n) in enumerate(items) if not d.escalate]
        if quiet:
            with self.engine.begin() as connection:  # one INSERT .. RETURNING for all of them, ids in their order
                ids = connection.execute(insert(DecisionRow).returning(DecisionRow.id, sort_by_parameter_order=True), [row for _, row in quiet]).scalars()
                for (k, _), decision_id in zip(quiet, ids, strict=True):
                    out[k] = RecordResult(decision_id=decision_id, action="audit_only")
        for k, (decision, package, now) in enumerate(items):
            if decision.escalate:
                out[k] = self.record(decision, package, now)
        return out  # type: ignore[return-value]

    def _enqueue_alerts(self, session: Session, escalation: EscalationRow, decision: Decision, package: dict | None,
                        now: dt.datetime, policy: EscalationPolicy) -> int:
        """One outbox row per destination of the escalation's queue; the payload is built now, so
        a later flush sends exactly what was decided, whatever the policy has become."""
        settings = policy.alerts
        if BANDS.index(escalation.band) < BANDS.index(settings.min_band):
            return 0
        names = settings.by_queue.get(escalation.queue or "", settings.default)
        if not names:
            return 0
        view = alert_view(escalation, decision)
        rows = []
        for name in names:
            spec = settings.destinations[name]
            key = idempotency_key(escalation.id, escalation.dedupe_key, escalation.opened_at, name, escalation.severity)
            rows.append({
                "escalation_id": escalation.id, "destination": name, "kind": spec["kind"], "url": spec["url"],
                "payload": build_payload(spec["kind"], view, package, idempotency_key=key), "idempotency_key": key,
                "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now,
            })
        session.execute(insert(AlertRow), rows)
        return len(rows)

    # ------------------------------------------------------------------ notices (no escalation or about one)

    def enqueue_notice(self, topic: str, dedupe: str, message: dict, destinations: list[str], now: dt.datetime | None = None,
                       *, policy: EscalationPolicy | None = None) -> int:
        """Queue a notice in the outbox, one row per destination (names of `alerts.destinations`),
        for the relay to send like any alert. `message` = {"title": str, "text": str, "facts":
        {name: str | number}}. The idempotency key is sha256(topic|dedupe|destination) and a row
        whose key is already in the outbox is skipped: `dedupe` = f"{monitor}|{date}" sends at most
        one notice per monitor and day. Returns the rows enqueued."""
        policy = policy or self.policy
        if topic not in TOPICS:
            raise InputError(f"topic {topic!r}: expected one of {list(TOPICS)}")
        if not isinstance(dedupe, str) or not dedupe:
            raise InputError(f"dedupe {dedupe!r}: expected a non-empty string (e.g. 'monitor|2026-03-02')")
        _check_message(message)
        if isinstance(destinations, str) or not isinstance(destinations, (list, tuple)):
            raise InputError(f"destinations {destinations!r}: expected a list of destination names")
        unknown = [name for name in destinations if name not in policy.alerts.destinations]
        if unknown:
            raise InputError(f"destinations {unknown}: not under alerts.destinations in escalation.yaml; "
                             f"expected some of {sorted(policy.alerts.destinations)}")
        now = utc(now) or dt.datetime.now(UTC)
        with self._transaction() as session:
            self._lock_key(session, f"notice|{topic}|{dedupe}")
            return self._enqueue_notice(session, topic, dedupe, message, list(dict.fromkeys(destinations)), policy, now)

    @staticmethod
    def _enqueue_notice(session: Session, topic: str, dedupe: str, message: dict, names: list[str], policy: EscalationPolicy,
                        now: dt.datetime, escalation_id: int | None = None) -> int:
        """The outbox rows of one notice, skipping destinations whose key is already there (a
        writer of the same dedupe is serialised by the caller's lock)."""
        keys = {name: hashlib.sha256(f"{topic}|{dedupe}|{name}".encode()).hexdigest() for name in names}
        if not keys:
            return 0
        seen = set(session.scalars(select(AlertRow.idempotency_key).where(AlertRow.idempotency_key.in_(list(keys.values())))))
        rows = []
        for name, key in keys.items():
            if key in seen:
                continue
            spec = policy.alerts.destinations[name]
            rows.append({"escalation_id": escalation_id, "topic": topic, "destination": name, "kind": spec["kind"], "url": spec["url"],
                         "payload": notice_payload(spec["kind"], topic, message, idempotency_key=key, escalation_id=escalation_id),
                         "idempotency_key": key, "status": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now})
        if rows:
            session.execute(insert(AlertRow), rows)
        return len(rows)

    # ------------------------------------------------------------------ the relay's clock

    def realert_overdue(self, now: dt.datetime, *, policy: EscalationPolicy | None = None, limit: int = 500) -> int:
        """Re-alert, once, each open escalation whose response window (respond_by) passed at `now`
        without acknowledgement: to its queue's destinations (as its first alert, when its band
        reached `alerts.min_band`), saying how long it is overdue. Returns the escalations re-alerted."""
        policy = policy or self.policy
        now = utc(now)
        settings = policy.alerts
        with self._transaction() as session:
            rows = session.scalars(
                select(EscalationRow)
                .where(EscalationRow.status == "open", EscalationRow.respond_by <= now, EscalationRow.realerted_at.is_(None))
                .order_by(EscalationRow.respond_by, EscalationRow.id).limit(limit).with_for_update(skip_locked=True)).all()
            for row in rows:
                row.realerted_at = now
                if BANDS.index(row.band) < BANDS.index(settings.min_band):
                    continue
                names = settings.by_queue.get(row.queue or "", settings.default)
                self._enqueue_notice(session, "re_alert", f"{row.id}|{row.dedupe_key}|{utc(row.opened_at).isoformat()}",
                                     _overdue_message(row, now), names, policy, now, escalation_id=row.id)
            return len(rows)

    def remind_follow_ups(self, now: dt.datetime, *, policy: EscalationPolicy | None = None, limit: int = 500) -> int:
        """Remind the owner, once, of each follow-up that fell due at `now` (not done, its
        escalation still active): to `alerts.by_owner[owner]`, else the queue's destinations with
        the owner named. Returns the follow-ups reminded."""
        policy = policy or self.policy
        now = utc(now)
        settings = policy.alerts
        with self._transaction() as session:
            pairs = session.execute(
                select(FollowUpRow, EscalationRow).join(EscalationRow, EscalationRow.id == FollowUpRow.escalation_id)
                .where(FollowUpRow.done_at.is_(None), FollowUpRow.reminded_at.is_(None), FollowUpRow.due_at <= now,
                       EscalationRow.status.in_(ACTIVE))
                .order_by(FollowUpRow.due_at, FollowUpRow.id).limit(limit).with_for_update(skip_locked=True, of=FollowUpRow)).all()
            for follow_up, row in pairs:
                follow_up.reminded_at = now
                names = settings.by_owner.get(row.owner or "") or settings.by_queue.get(row.queue or "", settings.default)
                self._enqueue_notice(session, "reminder", f"{follow_up.id}|{row.id}|{row.dedupe_key}|{utc(follow_up.due_at).isoformat()}",
                                     _reminder_message(row, follow_up, now), names, policy, now, escalation_id=row.id)
            return len(pairs)

    def expire_stale(self, now: dt.datetime, *, policy: EscalationPolicy | None = None, limit: int = 500) -> int:
        """Expire each active escalation nobody updated (no repeat, no status change) for
        `windows.expire_after_hours` at `now`: status expired by actor "relay", in the audit trail,
        its follow-ups closed. Returns how many expired."""
        policy = policy or self.policy
        now = utc(now)
        hours = policy.windows.expire_after_hours
        with self._transaction() as session:
            rows = session.scalars(
                select(EscalationRow).where(EscalationRow.status.in_(ACTIVE), EscalationRow.updated_at <= now - dt.timedelta(hours=hours))
                .order_by(EscalationRow.updated_at, EscalationRow.id).limit(limit).with_for_update(skip_locked=True)).all()
            if not rows:
                return 0
            note = f"not resolved within {hours} hours of its last update (windows.expire_after_hours)"
            session.add_all([StatusChangeRow(escalation_id=row.id, from_status=row.status, to_status="expired", actor="relay", at=now, note=note)
                             for row in rows])
            ids = [row.id for row in rows]
            for row in rows:
                row.status, row.updated_at = "expired", now
            session.execute(update(FollowUpRow).where(FollowUpRow.escalation_id.in_(ids), FollowUpRow.done_at.is_(None)).values(done_at=now))
            return len(rows)

    # ------------------------------------------------------------------ leases

    def take_lease(self, name: str, holder: str, seconds: float, now: dt.datetime | None = None) -> bool:
        """Hold the lease `name` for `seconds` from `now` if it is free, expired or already ours
        (renewed); False while someone else holds it. One holder at a time across processes and
        machines sharing the store (a job one of them should do, e.g. the relay's polling)."""
        now = utc(now) or dt.datetime.now(UTC)
        until = now + dt.timedelta(seconds=seconds)
        try:
            with self._transaction() as session:
                row = session.get(LeaseRow, name, with_for_update=True)
                if row is None:
                    session.add(LeaseRow(name=name, holder=holder, expires_at=until))
                    return True
                if row.holder != holder and row.expires_at > now:
                    return False
                row.holder, row.expires_at = holder, until
                return True
        except IntegrityError:  # PostgreSQL: another process inserted the first row meanwhile
            return False

    def release_lease(self, name: str, holder: str) -> None:
        """Give the lease up (at shutdown) so another process takes it at once, not when it expires."""
        with self._transaction() as session:
            session.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder))

    def lease(self, name: str) -> dict | None:
        with self._transaction() as session:
            row = session.get(LeaseRow, name)
            return None if row is None else _row_dict(row)

    def list_escalations(self, *, queue: str | None = None, owner: str | None = None, status: str | None = None,
                         overdue: bool = False, now: dt.datetime | None = None, package: bool = False) -> list[dict]:
        """Escalations by queue, owner and status (default: the active ones, open or acknowledged),
        most severe first, each with its next follow-up due and whether it is overdue: open, with
        its response window (respond_by) passed at `now` (default: the clock). `overdue=True` keeps
        only those. The handoff package is left out unless `package`: it is large and `show` has it."""
        if status is not None and status not in STATUSES:
            raise InputError(f"status {status!r}: expected one of {list(STATUSES)}")
        now = utc(now) or dt.datetime.now(UTC)
        next_due = (select(FollowUpRow.escalation_id, func.min(FollowUpRow.due_at).label("follow_up_due"))
                    .where(FollowUpRow.done_at.is_(None)).group_by(FollowUpRow.escalation_id).subquery())
        columns = [c for c in EscalationRow.__table__.columns if package or c.key != "package"]
        query = (select(*columns, next_due.c.follow_up_due)
                 .outerjoin(next_due, next_due.c.escalation_id == EscalationRow.id)
                 .where(EscalationRow.status.in_(ACTIVE) if status is None else EscalationRow.status == status)
                 .order_by(EscalationRow.severity.desc(), EscalationRow.opened_at, EscalationRow.id))
        if queue is not None:
            query = query.where(EscalationRow.queue == queue)
        if owner is not None:
            query = query.where(EscalationRow.owner == owner)
        if overdue:
            query = query.where(EscalationRow.status == "open", EscalationRow.respond_by <= now)
        with self._transaction() as session:
            rows = [dict(row._mapping) for row in session.execute(query)]
        for row in rows:
            row["follow_up_due"] = utc(row["follow_up_due"])  # a MIN() comes back untyped
            row["overdue"] = row["status"] == "open" and row["respond_by"] is not None and row["respond_by"] <= now
        return rows

    def open_escalations(self) -> list[dict]:
        """Active escalations (open or acknowledged), most severe first, with their next follow-up due."""
        return self.list_escalations(package=True)

    def get_escalation(self, escalation_id: int) -> dict:
        with self._transaction() as session:
            return _row_dict(self._escalation(session, escalation_id))

    def escalation_detail(self, escalation_id: int, now: dt.datetime | None = None) -> dict:
        """One escalation for `churn escalations show`: its row, whether it is overdue, its
        follow-ups and its audit trail (oldest change first)."""
        now = utc(now) or dt.datetime.now(UTC)
        with self._transaction() as session:
            out = _row_dict(self._escalation(session, escalation_id))
            out["follow_ups"] = [_row_dict(row) for row in session.scalars(
                select(FollowUpRow).where(FollowUpRow.escalation_id == escalation_id).order_by(FollowUpRow.due_at, FollowUpRow.id))]
            out["history"] = [_row_dict(row) for row in session.scalars(
                select(StatusChangeRow).where(StatusChangeRow.escalation_id == escalation_id).order_by(StatusChangeRow.at, StatusChangeRow.id))]
        out["overdue"] = out["status"] == "open" and out["respond_by"] is not None and out["respond_by"] <= now
        return out

    def history(self, escalation_id: int) -> list[dict]:
        """The escalation's status changes, oldest first: who, when, from -> to, outcome, note."""
        return self.escalation_detail(escalation_id)["history"]

    @staticmethod
    def _escalation(session: Session, escalation_id: int, *, lock: bool = False) -> EscalationRow:
        row = session.get(EscalationRow, escalation_id, with_for_update=lock)
        if row is None:
            raise UnknownEscalation(f"escalation_id {escalation_id!r}: no such escalation; expected the id of a recorded escalation")
        return row

    def set_status(self, escalation_id: int, status: str, now: dt.datetime | None = None, *, owner: str | None = None,
                   actor: str | None = None, outcome: str | None = None, note: str | None = None) -> dict:
        """Move an escalation along its lifecycle (TRANSITIONS: resolved and expired are final) and
        record the change, who made it and why in the audit trail; optionally reassign it.
        `outcome` (one of RESOLUTION_OUTCOMES) goes with resolving only. Resolving or expiring it
        closes its pending follow-ups: nobody should be chased for a closed case."""
        if status not in STATUSES:
            raise InputError(f"status {status!r}: expected one of {list(STATUSES)}")
        if outcome is not None and outcome not in RESOLUTION_OUTCOMES:
            raise InputError(f"escalation {escalation_id}: outcome {outcome!r}: expected one of {list(RESOLUTION_OUTCOMES)}")
        if outcome is not None and status != "resolved":
            raise InputError(f"escalation {escalation_id}: an outcome goes with status 'resolved', not {status!r}")
        now = utc(now) or dt.datetime.now(UTC)
        with self._transaction() as session:
            row = self._escalation(session, escalation_id, lock=True)
            allowed = TRANSITIONS[row.status]
            if status not in allowed:
                was = f"already {row.status}" if row.status == status else row.status
                if allowed:
                    raise InputError(f"escalation {escalation_id} is {was}: expected a move to {' or '.join(allowed)}, not to {status}")
                raise InputError(f"escalation {escalation_id} is {was}, which is final: expected an {' or '.join(ACTIVE)} escalation "
                                 f"to become {status}")
            session.add(StatusChangeRow(escalation_id=escalation_id, from_status=row.status, to_status=status, actor=actor, at=now,
                                        outcome=outcome, note=note))
            row.status, row.updated_at = status, now
            if outcome is not None:
                row.outcome = outcome
            if owner is not None:
                row.owner = owner
            if not TRANSITIONS[status]:
                session.execute(update(FollowUpRow).where(FollowUpRow.escalation_id == escalation_id, FollowUpRow.done_at.is_(None))
                                .values(done_at=now))
            return _row_dict(row)

    def acknowledge(self, escalation_id: int, by: str, now: dt.datetime | None = None, *, note: str | None = None) -> dict:
        """Someone has the escalation in hand: it stops counting as overdue and is not paged again."""
        return self.set_status(escalation_id, "acknowledged", now, actor=_actor(escalation_id, by), note=note)

    def resolve(self, escalation_id: int, outcome: str, by: str, note: str | None = None, now: dt.datetime | None = None) -> dict:
        """Close the escalation with what CS found (RESOLUTION_OUTCOMES), which evaluation learns from."""
        if outcome not in RESOLUTION_OUTCOMES:
            raise InputError(f"escalation {escalation_id}: outcome {outcome!r}: expected one of {list(RESOLUTION_OUTCOMES)}")
        return self.set_status(escalation_id, "resolved", now, actor=_actor(escalation_id, by), outcome=outcome, note=note)

    # ------------------------------------------------------------------ follow-ups and feedback

    def follow_ups(self, due_by: dt.datetime | None = None) -> list[dict]:
        """Follow-ups not done, of escalations not closed, oldest due first; only those due at or
        before `due_by` when it is given."""
        query = (select(FollowUpRow.id, FollowUpRow.escalation_id, FollowUpRow.due_at, EscalationRow.account_id,
                        EscalationRow.owner, EscalationRow.queue, EscalationRow.band, EscalationRow.reason, EscalationRow.status)
                 .join(EscalationRow, EscalationRow.id == FollowUpRow.escalation_id)
                 .where(FollowUpRow.done_at.is_(None), EscalationRow.status.in_(ACTIVE))
                 .order_by(FollowUpRow.due_at, FollowUpRow.id))
        if due_by is not None:
            query = query.where(FollowUpRow.due_at <= utc(due_by))
        with self._transaction() as session:
            return [dict(row._mapping) for row in session.execute(query)]

    def due_follow_ups(self, now: dt.datetime) -> list[dict]:
        """Follow-ups not done, due at or before `now`, of escalations not resolved; oldest first."""
        return self.follow_ups(due_by=now)

    def complete_follow_up(self, escalation_id: int, now: dt.datetime | None = None, *, by: str | None = None) -> int:
        """Mark the escalation's pending follow-ups done (by whom, when); returns how many were."""
        by = None if by is None else _actor(escalation_id, by)
        now = utc(now) or dt.datetime.now(UTC)
        with self._transaction() as session:
            self._escalation(session, escalation_id)
            result = session.execute(update(FollowUpRow).where(FollowUpRow.escalation_id == escalation_id, FollowUpRow.done_at.is_(None))
                                     .values(done_at=now, done_by=by))
            return result.rowcount

    def add_feedback(self, escalation_id: int, rating: int, comment: str | None = None, outcome: str = "unknown",
                     now: dt.datetime | None = None) -> int:
        """CS's rating of a handoff (1-5) and the outcome (saved, churned, unknown); returns its id."""
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise InputError(f"rating {rating!r}: expected a whole number from 1 to 5")
        if outcome not in OUTCOMES:
            raise InputError(f"outcome {outcome!r}: expected one of {list(OUTCOMES)}")
        now = utc(now) or dt.datetime.now(UTC)
        with self._transaction() as session:
            self._escalation(session, escalation_id)
            row = FeedbackRow(escalation_id=escalation_id, rating=rating, comment=comment, outcome=outcome, created_at=now)
            session.add(row)
            session.flush()
            return row.id

    def feedback(self) -> list[dict]:
        with self._transaction() as session:
            return [_row_dict(row) for row in session.scalars(select(FeedbackRow).order_by(FeedbackRow.id))]

    # ------------------------------------------------------------------ alert outbox

    def pending_alerts(self, now: dt.datetime | None = None) -> list[dict]:
        """Pending alerts due at `now` (all pending ones when `now` is None), oldest first."""
        query = select(AlertRow).where(AlertRow.status == "pending")
        if now is not None:
            query = query.where(AlertRow.next_attempt_at <= utc(now))
        with self._transaction() as session:
            return [_row_dict(row) for row in session.scalars(query.order_by(AlertRow.next_attempt_at, AlertRow.id))]

    def alerts(self) -> list[dict]:
        with self._transaction() as session:
            return [_row_dict(row) for row in session.scalars(select(AlertRow).order_by(AlertRow.id))]

    def next_alert_due(self) -> dt.datetime | None:
        """When the earliest pending alert may be tried; None when nothing is pending."""
        with self._transaction() as session:
            return utc(session.scalar(select(func.min(AlertRow.next_attempt_at)).where(AlertRow.status == "pending")))

    def claim_alerts(self, now: dt.datetime, limit: int, lease_seconds: float) -> list[dict]:
        """Take up to `limit` due alerts for sending: each attempt is counted and the row is leased
        (next_attempt_at moved past the sends) so a concurrent flusher skips it; a flusher that
        dies mid-batch leaves its rows to be retried once the lease runs out."""
        now = utc(now)
        with self._transaction() as session:
            rows = session.scalars(
                select(AlertRow)
                .where(AlertRow.status == "pending", AlertRow.next_attempt_at <= now)
                .order_by(AlertRow.next_attempt_at, AlertRow.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return []
            ids = [row.id for row in rows]
            session.execute(update(AlertRow).where(AlertRow.id.in_(ids))
                            .values(attempts=AlertRow.attempts + 1, next_attempt_at=now + dt.timedelta(seconds=lease_seconds)))
            claimed = []
            for row in rows:
                item = _row_dict(row)
                item["attempts"] += 1
                claimed.append(item)
            return claimed

    def release_alerts(self, alert_ids: list[int], now: dt.datetime) -> None:
        """Hand claimed alerts back unsent (a relay shutting down mid-batch): due at `now` again,
        their claim's attempt not counted."""
        if alert_ids:
            with self._transaction() as session:
                session.execute(update(AlertRow).where(AlertRow.id.in_(alert_ids), AlertRow.status == "pending")
                                .values(next_attempt_at=utc(now), attempts=case((AlertRow.attempts > 0, AlertRow.attempts - 1), else_=0)))

    def mark_sent(self, alert_id: int, now: dt.datetime) -> None:
        with self._transaction() as session:
            session.execute(update(AlertRow).where(AlertRow.id == alert_id, AlertRow.status == "pending")
                            .values(status="sent", sent_at=utc(now), last_error=None))

    def mark_attempt_failed(self, alert_id: int, now: dt.datetime, error: str, *, max_attempts: int, backoff_seconds: float,
                            max_backoff_seconds: float = MAX_BACKOFF_SECONDS) -> str:
        """A failed attempt: 'failed' once `max_attempts` are used, else 'retried' after
        backoff_seconds * 2**(attempts - 1), at most `max_backoff_seconds`."""
        now = utc(now)
        with self._transaction() as session:
            row = session.get(AlertRow, alert_id, with_for_update=True)
            if row is None or row.status != "pending":
                return "skipped"
            row.last_error = error[:2000]
            if row.attempts >= max_attempts:
                row.status = "failed"
                return "failed"
            delay = min(max_backoff_seconds, backoff_seconds * 2 ** max(row.attempts - 1, 0))
            row.next_attempt_at = now + dt.timedelta(seconds=delay)
            return "retried"

    # ------------------------------------------------------------------ counts

    def counts(self) -> dict[str, int]:
        """Rows per table and alerts per status: for tests and the health check."""
        with self._transaction() as session:
            out = {table.__tablename__: session.scalar(select(func.count()).select_from(table)) or 0
                   for table in (DecisionRow, EscalationRow, AlertRow, FollowUpRow, FeedbackRow, StatusChangeRow)}
            by_status = dict(session.execute(select(AlertRow.status, func.count()).group_by(AlertRow.status)).all())
            open_count = session.scalar(select(func.count()).select_from(EscalationRow).where(EscalationRow.status.in_(ACTIVE)))
        out.update({f"alerts_{status}": by_status.get(status, 0) for status in ALERT_STATUSES})
        out["escalations_active"] = open_count or 0
        return out


def _actor(escalation_id: int, by: str | None) -> str:
    """Who acted, required for a human step of the lifecycle: the audit trail must say."""
    if not by or not str(by).strip():
        raise InputError(f"escalation {escalation_id}: --by {by!r}: expected the name of the person acting")
    return str(by).strip()


def _check_message(message: Any) -> None:
    """A notice's message: {"title": str, "text": str, "facts": {name: str | number}}."""
    expected = 'expected {"title": str, "text": str, "facts": {name: str | number}}'
    if not isinstance(message, dict) or set(message) != {"title", "text", "facts"}:
        raise InputError(f"message {message!r}: {expected}")
    for field in ("title", "text"):
        if not isinstance(message[field], str) or not message[field].strip():
            raise InputError(f"message field {field!r}: got {message[field]!r}; {expected}")
    facts = message["facts"]
    if not isinstance(facts, dict) or any(not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (str, int, float))
                                          for k, v in facts.items()):
        raise InputError(f"message field 'facts': got {facts!r}; {expected}")


def _duration(delta: dt.timedelta) -> str:
    minutes = max(0, round(delta.total_seconds() / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} days {hours % 24} h"


def _escalation_facts(row: EscalationRow) -> tuple[str, dict]:
    # the account's name and the reason as the first alert read them
    facts = alert_facts(alert_view(row), row.package)
    return facts["account"], {"escalation_id": row.id, "account": facts["account"], "band": row.band, "queue": row.queue or "none",
                              "owner": row.owner or "unassigned", "reason": facts["reason"]}


def _overdue_message(row: EscalationRow, now: dt.datetime) -> dict:
    account, facts = _escalation_facts(row)
    late = now - utc(row.respond_by)
    text_ = (f"Not acknowledged: the response window ended {utc(row.respond_by):%Y-%m-%d %H:%M} UTC, {_duration(late)} ago. "
             f"{facts['reason']}. Owner {facts['owner']}, queue {facts['queue']}.")
    return {"title": f"OVERDUE {row.band.upper()} churn escalation #{row.id}: {account}"[:150], "text": text_,
            "facts": {**facts, "respond_by": utc(row.respond_by).isoformat(), "overdue_minutes": round(late.total_seconds() / 60, 1)}}


def _reminder_message(row: EscalationRow, follow_up: FollowUpRow, now: dt.datetime) -> dict:
    account, facts = _escalation_facts(row)
    owner = row.owner or "unassigned"
    text_ = (f"{owner}: the follow-up on escalation #{row.id} ({account}) was due {utc(follow_up.due_at):%Y-%m-%d %H:%M} UTC "
             f"({_duration(now - utc(follow_up.due_at))} ago). {facts['reason']}. Mark it done with `churn follow-ups done {row.id}`.")
    return {"title": f"Follow-up due for {owner}: {account}"[:150], "text": text_,
            "facts": {**facts, "follow_up_id": follow_up.id, "due_at": utc(follow_up.due_at).isoformat()}}


def alert_view(escalation: EscalationRow | dict, decision: Decision | None = None) -> dict:
    """The escalation as the alert payloads see it: its row plus the decision's window, follow-up
    and the primary rule's sentence (kept out of the escalations table, which holds state only)."""
    view = _row_dict(escalation) if isinstance(escalation, Base) else dict(escalation)
    view.pop("package", None)
    for key in ("opened_at", "updated_at", "respond_by"):
        if isinstance(view.get(key), dt.datetime):
            view[key] = view[key].isoformat()
    if decision is not None:
        detail = next((rule.detail for rule in decision.rules if rule.rule == decision.primary_reason), None)
        view.update(detail=detail, priority=decision.priority, response_window_minutes=decision.response_window_minutes,
                    follow_up_due=decision.follow_up_due, policy_version=decision.policy_version,
                    model_version=decision.model_version, frustrated=decision.frustrated, high_value=decision.high_value,
                    renewal_near=decision.renewal_near)
    return view
