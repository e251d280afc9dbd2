"""The operational store's tables (SQLAlchemy 2 ORM), their vocabulary and the time type shared by
both backends: naive UTC in the database, aware UTC in Python."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, overload

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
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.errors import InputError
from core.vocabulary import RESOLUTION_OUTCOMES, STATUSES
from escalation.policy import Alerts

UTC = dt.UTC
#: statuses a repeat merges into: an acknowledged escalation has a human on it, so a repeat must
#: not page anyone again
ACTIVE = ("open", "acknowledged")
#: where each status may go; resolved and expired are final (a repeat opens a new escalation)
TRANSITIONS = {
    "open": ("acknowledged", "resolved", "expired"),
    "acknowledged": ("resolved", "expired"),
    "resolved": (),
    "expired": (),
}
ALERT_STATUSES = ("pending", "sent", "failed")
#: what an outbox row is about: an escalation's alert (opened or raised), its re-alert once its
#: response window passed unacknowledged, a due follow-up's reminder, a monitor's breach (no escalation)
TOPICS = ("escalation", "re_alert", "reminder", "monitor")
#: who a workspace user is (serving/workspace): a viewer reads; a CSM works their escalations; a CS lead
#: and an admin see every owner's and the book
ROLES = ("viewer", "csm", "cs_lead", "admin")
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: the longest wait between two attempts of one alert, whatever backoff_seconds * 2**n says
MAX_BACKOFF_SECONDS = Alerts.model_fields["max_backoff_seconds"].default


class UnknownEscalation(InputError):
    """An escalation id the store does not hold (the API answers 404; the command line, bad input)."""


def _one_of(column: str, values: tuple[str, ...]) -> str:
    """A CHECK clause from one of the tuples above, so the database and the code share one list."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


@overload
def utc(value: dt.datetime | str) -> dt.datetime: ...
@overload
def utc(value: None) -> None: ...
@overload
def utc(value: dt.datetime | str | None) -> dt.datetime | None: ...
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
        CheckConstraint(
            f"outcome IS NULL OR {_one_of('outcome', RESOLUTION_OUTCOMES)}", name="ck_status_changes_outcome"
        ),
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


class UserRow(Base):
    """Who may sign in to the workspace (serving/workspace): a display name (for a CSM, as the data
    spells `csm_owner`), a role, and a password hash (never a password: serving/workspace/auth.py)."""

    __tablename__ = "users"
    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]

    __table_args__ = (CheckConstraint(_one_of("role", ROLES), name="ck_users_role"),)


def row_dict(row: Base) -> dict:
    return {column.key: getattr(row, column.key) for column in row.__table__.columns}
