"""The Store: one transaction per public method (see escalation/store/__init__.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import (
    case,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import InputError
from core.vocabulary import BANDS, OUTCOMES, RESOLUTION_OUTCOMES, STATUSES
from escalation.decision import Decision
from escalation.payloads import build_payload, notice_payload
from escalation.policy import EscalationPolicy
from escalation.store.database import _create_engine, _database_url, _upgrade
from escalation.store.messages import _check_message, _overdue_message, _reminder_message, alert_view, idempotency_key
from escalation.store.schema import (
    ACTIVE,
    ALERT_STATUSES,
    MAX_BACKOFF_SECONDS,
    ROLES,
    TOPICS,
    TRANSITIONS,
    UTC,
    AlertRow,
    DecisionRow,
    EscalationRow,
    FeedbackRow,
    FollowUpRow,
    LeaseRow,
    StatusChangeRow,
    UnknownEscalation,
    UserRow,
    row_dict,
    utc,
)


@dataclass(frozen=True)
class RecordResult:
    """What `record()` did. action: audit_only (no escalation), created, merged (a repeat within
    the cooldown), raised (a repeat with a higher severity: merged and alerted again)."""

    decision_id: int
    action: str
    escalation_id: int | None = None
    occurrences: int = 0
    alerts_enqueued: int = 0


def _when(decision: Decision, now: dt.datetime | None) -> dt.datetime:
    """When a decision is recorded: `now` if given, else the decision's own time, else the clock."""
    return utc(now) or utc(decision.decided_at) or dt.datetime.now(UTC)


def _respond_by(decision: Decision, now: dt.datetime) -> dt.datetime | None:
    """The end of the decision's response window, counted from when it was recorded."""
    minutes = decision.response_window_minutes
    return None if minutes is None else now + dt.timedelta(minutes=minutes)


def _audit_row(decision: Decision, now: dt.datetime) -> dict:
    return {
        "account_id": decision.account_id,
        "ticket_id": decision.ticket_id,
        "band": decision.band,
        "escalate": decision.escalate,
        "dedupe_key": decision.dedupe_key,
        "policy_version": decision.policy_version,
        "model_version": decision.model_version,
        "decided_at": utc(decision.decided_at) or now,
        "recorded_at": now,
        "payload": decision.to_dict(),
    }


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

    def record(
        self,
        decision: Decision,
        package: dict | None = None,
        now: dt.datetime | None = None,
        *,
        policy: EscalationPolicy | None = None,
    ) -> RecordResult:
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
                .where(
                    EscalationRow.dedupe_key == decision.dedupe_key,
                    EscalationRow.status.in_(ACTIVE),
                    EscalationRow.updated_at >= since,
                )
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
                alerts = self._enqueue_alerts(
                    session, current, decision, package if package is not None else current.package, now, policy
                )
                return RecordResult(audit.id, "raised", current.id, current.occurrences, alerts)

            escalation = EscalationRow(
                account_id=decision.account_id,
                reason=decision.primary_reason or "unknown",
                dedupe_key=decision.dedupe_key,
                severity=decision.severity,
                band=decision.band,
                queue=decision.queue,
                owner=decision.owner,
                status="open",
                opened_at=now,
                updated_at=now,
                occurrences=1,
                last_decision_id=audit.id,
                package=package,
                ticket_id=decision.ticket_id,
                respond_by=_respond_by(decision, now),
            )
            session.add(escalation)
            session.flush()
            session.add(
                StatusChangeRow(
                    escalation_id=escalation.id,
                    from_status=None,
                    to_status="open",
                    actor="policy",
                    at=now,
                    note=f"{escalation.reason} (policy {decision.policy_version})",
                )
            )
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
                ids = connection.execute(
                    insert(DecisionRow).returning(DecisionRow.id, sort_by_parameter_order=True),
                    [row for _, row in quiet],
                ).scalars()
                for (k, _), decision_id in zip(quiet, ids, strict=True):
                    out[k] = RecordResult(decision_id=decision_id, action="audit_only")
        for k, (decision, package, now) in enumerate(items):
            if decision.escalate:
                out[k] = self.record(decision, package, now)
        return out  # type: ignore[return-value]

    def _enqueue_alerts(
        self,
        session: Session,
        escalation: EscalationRow,
        decision: Decision,
        package: dict | None,
        now: dt.datetime,
        policy: EscalationPolicy,
    ) -> int:
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
            rows.append(
                {
                    "escalation_id": escalation.id,
                    "destination": name,
                    "kind": spec["kind"],
                    "url": spec["url"],
                    "payload": build_payload(spec["kind"], view, package, idempotency_key=key),
                    "idempotency_key": key,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
            )
        session.execute(insert(AlertRow), rows)
        return len(rows)

    # ------------------------------------------------------------------ notices (no escalation or about one)

    def enqueue_notice(
        self,
        topic: str,
        dedupe: str,
        message: dict,
        destinations: list[str],
        now: dt.datetime | None = None,
        *,
        policy: EscalationPolicy | None = None,
    ) -> int:
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
            raise InputError(
                f"destinations {unknown}: not under alerts.destinations in escalation.yaml; "
                f"expected some of {sorted(policy.alerts.destinations)}"
            )
        now = utc(now) or dt.datetime.now(UTC)
        with self._transaction() as session:
            self._lock_key(session, f"notice|{topic}|{dedupe}")
            return self._enqueue_notice(session, topic, dedupe, message, list(dict.fromkeys(destinations)), policy, now)

    @staticmethod
    def _enqueue_notice(
        session: Session,
        topic: str,
        dedupe: str,
        message: dict,
        names: list[str],
        policy: EscalationPolicy,
        now: dt.datetime,
        escalation_id: int | None = None,
    ) -> int:
        """The outbox rows of one notice, skipping destinations whose key is already there (a
        writer of the same dedupe is serialised by the caller's lock)."""
        keys = {name: hashlib.sha256(f"{topic}|{dedupe}|{name}".encode()).hexdigest() for name in names}
        if not keys:
            return 0
        seen = set(
            session.scalars(select(AlertRow.idempotency_key).where(AlertRow.idempotency_key.in_(list(keys.values()))))
        )
        rows = []
        for name, key in keys.items():
            if key in seen:
                continue
            spec = policy.alerts.destinations[name]
            rows.append(
                {
                    "escalation_id": escalation_id,
                    "topic": topic,
                    "destination": name,
                    "kind": spec["kind"],
                    "url": spec["url"],
                    "payload": notice_payload(
                        spec["kind"], topic, message, idempotency_key=key, escalation_id=escalation_id
                    ),
                    "idempotency_key": key,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
            )
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
                .where(
                    EscalationRow.status == "open",
                    EscalationRow.respond_by <= now,
                    EscalationRow.realerted_at.is_(None),
                )
                .order_by(EscalationRow.respond_by, EscalationRow.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                row.realerted_at = now
                if BANDS.index(row.band) < BANDS.index(settings.min_band):
                    continue
                names = settings.by_queue.get(row.queue or "", settings.default)
                self._enqueue_notice(
                    session,
                    "re_alert",
                    f"{row.id}|{row.dedupe_key}|{utc(row.opened_at).isoformat()}",
                    _overdue_message(row, now),
                    names,
                    policy,
                    now,
                    escalation_id=row.id,
                )
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
                select(FollowUpRow, EscalationRow)
                .join(EscalationRow, EscalationRow.id == FollowUpRow.escalation_id)
                .where(
                    FollowUpRow.done_at.is_(None),
                    FollowUpRow.reminded_at.is_(None),
                    FollowUpRow.due_at <= now,
                    EscalationRow.status.in_(ACTIVE),
                )
                .order_by(FollowUpRow.due_at, FollowUpRow.id)
                .limit(limit)
                .with_for_update(skip_locked=True, of=FollowUpRow)
            ).all()
            for follow_up, row in pairs:
                follow_up.reminded_at = now
                names = settings.by_owner.get(row.owner or "") or settings.by_queue.get(
                    row.queue or "", settings.default
                )
                self._enqueue_notice(
                    session,
                    "reminder",
                    f"{follow_up.id}|{row.id}|{row.dedupe_key}|{utc(follow_up.due_at).isoformat()}",
                    _reminder_message(row, follow_up, now),
                    names,
                    policy,
                    now,
                    escalation_id=row.id,
                )
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
                select(EscalationRow)
                .where(EscalationRow.status.in_(ACTIVE), EscalationRow.updated_at <= now - dt.timedelta(hours=hours))
                .order_by(EscalationRow.updated_at, EscalationRow.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return 0
            note = f"not resolved within {hours} hours of its last update (windows.expire_after_hours)"
            session.add_all(
                [
                    StatusChangeRow(
                        escalation_id=row.id,
                        from_status=row.status,
                        to_status="expired",
                        actor="relay",
                        at=now,
                        note=note,
                    )
                    for row in rows
                ]
            )
            ids = [row.id for row in rows]
            for row in rows:
                row.status, row.updated_at = "expired", now
            session.execute(
                update(FollowUpRow)
                .where(FollowUpRow.escalation_id.in_(ids), FollowUpRow.done_at.is_(None))
                .values(done_at=now)
            )
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
            return None if row is None else row_dict(row)

    def list_escalations(
        self,
        *,
        queue: str | None = None,
        owner: str | None = None,
        status: str | None = None,
        overdue: bool = False,
        now: dt.datetime | None = None,
        package: bool = False,
    ) -> list[dict]:
        """Escalations by queue, owner and status (default: the active ones, open or acknowledged),
        most severe first, each with its next follow-up due and whether it is overdue: open, with
        its response window (respond_by) passed at `now` (default: the clock). `overdue=True` keeps
        only those. The handoff package is left out unless `package`: it is large and `show` has it."""
        if status is not None and status not in STATUSES:
            raise InputError(f"status {status!r}: expected one of {list(STATUSES)}")
        now = utc(now) or dt.datetime.now(UTC)
        next_due = (
            select(FollowUpRow.escalation_id, func.min(FollowUpRow.due_at).label("follow_up_due"))
            .where(FollowUpRow.done_at.is_(None))
            .group_by(FollowUpRow.escalation_id)
            .subquery()
        )
        columns = [c for c in EscalationRow.__table__.columns if package or c.key != "package"]
        query = (
            select(*columns, next_due.c.follow_up_due)
            .outerjoin(next_due, next_due.c.escalation_id == EscalationRow.id)
            .where(EscalationRow.status.in_(ACTIVE) if status is None else EscalationRow.status == status)
            .order_by(EscalationRow.severity.desc(), EscalationRow.opened_at, EscalationRow.id)
        )
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
            return row_dict(self._escalation(session, escalation_id))

    def escalation_detail(self, escalation_id: int, now: dt.datetime | None = None) -> dict:
        """One escalation for `churn escalations show`: its row, whether it is overdue, its
        follow-ups and its audit trail (oldest change first)."""
        now = utc(now) or dt.datetime.now(UTC)
        with self._transaction() as session:
            out = row_dict(self._escalation(session, escalation_id))
            out["follow_ups"] = [
                row_dict(row)
                for row in session.scalars(
                    select(FollowUpRow)
                    .where(FollowUpRow.escalation_id == escalation_id)
                    .order_by(FollowUpRow.due_at, FollowUpRow.id)
                )
            ]
            out["history"] = [
                row_dict(row)
                for row in session.scalars(
                    select(StatusChangeRow)
                    .where(StatusChangeRow.escalation_id == escalation_id)
                    .order_by(StatusChangeRow.at, StatusChangeRow.id)
                )
            ]
        out["overdue"] = out["status"] == "open" and out["respond_by"] is not None and out["respond_by"] <= now
        return out

    def history(self, escalation_id: int) -> list[dict]:
        """The escalation's status changes, oldest first: who, when, from -> to, outcome, note."""
        return self.escalation_detail(escalation_id)["history"]

    @staticmethod
    def _escalation(session: Session, escalation_id: int, *, lock: bool = False) -> EscalationRow:
        row = session.get(EscalationRow, escalation_id, with_for_update=lock)
        if row is None:
            raise UnknownEscalation(
                f"escalation_id {escalation_id!r}: no such escalation; expected the id of a recorded escalation"
            )
        return row

    def set_status(
        self,
        escalation_id: int,
        status: str,
        now: dt.datetime | None = None,
        *,
        owner: str | None = None,
        actor: str | None = None,
        outcome: str | None = None,
        note: str | None = None,
    ) -> dict:
        """Move an escalation along its lifecycle (TRANSITIONS: resolved and expired are final) and
        record the change, who made it and why in the audit trail; optionally reassign it.
        `outcome` (one of RESOLUTION_OUTCOMES) goes with resolving only. Resolving or expiring it
        closes its pending follow-ups: nobody should be chased for a closed case."""
        if status not in STATUSES:
            raise InputError(f"status {status!r}: expected one of {list(STATUSES)}")
        if outcome is not None and outcome not in RESOLUTION_OUTCOMES:
            raise InputError(
                f"escalation {escalation_id}: outcome {outcome!r}: expected one of {list(RESOLUTION_OUTCOMES)}"
            )
        if outcome is not None and status != "resolved":
            raise InputError(f"escalation {escalation_id}: an outcome goes with status 'resolved', not {status!r}")
        now = utc(now) or dt.datetime.now(UTC)
        with self._transaction() as session:
            row = self._escalation(session, escalation_id, lock=True)
            allowed = TRANSITIONS[row.status]
            if status not in allowed:
                was = f"already {row.status}" if row.status == status else row.status
                if allowed:
                    raise InputError(
                        f"escalation {escalation_id} is {was}: expected a move to {' or '.join(allowed)}, not to {status}"
                    )
                raise InputError(
                    f"escalation {escalation_id} is {was}, which is final: expected an {' or '.join(ACTIVE)} escalation "
                    f"to become {status}"
                )
            session.add(
                StatusChangeRow(
                    escalation_id=escalation_id,
                    from_status=row.status,
                    to_status=status,
                    actor=actor,
                    at=now,
                    outcome=outcome,
                    note=note,
                )
            )
            row.status, row.updated_at = status, now
            if outcome is not None:
                row.outcome = outcome
            if owner is not None:
                row.owner = owner
            if not TRANSITIONS[status]:
                session.execute(
                    update(FollowUpRow)
                    .where(FollowUpRow.escalation_id == escalation_id, FollowUpRow.done_at.is_(None))
                    .values(done_at=now)
                )
            return row_dict(row)

    def acknowledge(
        self, escalation_id: int, by: str, now: dt.datetime | None = None, *, note: str | None = None
    ) -> dict:
        """Someone has the escalation in hand: it stops counting as overdue and is not paged again."""
        return self.set_status(escalation_id, "acknowledged", now, actor=_actor(escalation_id, by), note=note)

    def resolve(
        self, escalation_id: int, outcome: str, by: str, note: str | None = None, now: dt.datetime | None = None
    ) -> dict:
        """Close the escalation with what CS found (RESOLUTION_OUTCOMES), which evaluation learns from."""
        if outcome not in RESOLUTION_OUTCOMES:
            raise InputError(
                f"escalation {escalation_id}: outcome {outcome!r}: expected one of {list(RESOLUTION_OUTCOMES)}"
            )
        return self.set_status(
            escalation_id, "resolved", now, actor=_actor(escalation_id, by), outcome=outcome, note=note
        )

    # ------------------------------------------------------------------ follow-ups and feedback

    def follow_ups(self, due_by: dt.datetime | None = None) -> list[dict]:
        """Follow-ups not done, of escalations not closed, oldest due first; only those due at or
        before `due_by` when it is given."""
        query = (
            select(
                FollowUpRow.id,
                FollowUpRow.escalation_id,
                FollowUpRow.due_at,
                EscalationRow.account_id,
                EscalationRow.owner,
                EscalationRow.queue,
                EscalationRow.band,
                EscalationRow.reason,
                EscalationRow.status,
            )
            .join(EscalationRow, EscalationRow.id == FollowUpRow.escalation_id)
            .where(FollowUpRow.done_at.is_(None), EscalationRow.status.in_(ACTIVE))
            .order_by(FollowUpRow.due_at, FollowUpRow.id)
        )
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
            result = session.execute(
                update(FollowUpRow)
                .where(FollowUpRow.escalation_id == escalation_id, FollowUpRow.done_at.is_(None))
                .values(done_at=now, done_by=by)
            )
            return result.rowcount  # type: ignore[attr-defined]  # an UPDATE's Result is a CursorResult

    def add_feedback(
        self,
        escalation_id: int,
        rating: int,
        comment: str | None = None,
        outcome: str = "unknown",
        now: dt.datetime | None = None,
    ) -> int:
        """CS's rating of a handoff (1-5) and the outcome (saved, churned, unknown); returns its id."""
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
            raise InputError(f"rating {rating!r}: expected a whole number from 1 to 5")
        if outcome not in OUTCOMES:
            raise InputError(f"outcome {outcome!r}: expected one of {list(OUTCOMES)}")
        now = utc(now) or dt.datetime.now(UTC)
        with self._transaction() as session:
            self._escalation(session, escalation_id)
            row = FeedbackRow(
                escalation_id=escalation_id, rating=rating, comment=comment, outcome=outcome, created_at=now
            )
            session.add(row)
            session.flush()
            return row.id

    def feedback(self) -> list[dict]:
        with self._transaction() as session:
            return [row_dict(row) for row in session.scalars(select(FeedbackRow).order_by(FeedbackRow.id))]

    # ------------------------------------------------------------------ workspace users

    def add_user(self, username: str, name: str, role: str, password_hash: str, now: dt.datetime | None = None) -> dict:
        """A new workspace user; an InputError naming the field for a bad value or a taken username."""
        row = _user_values(username, name, role, password_hash)
        now = utc(now) or dt.datetime.now(UTC)
        try:
            with self._transaction() as session:
                if session.get(UserRow, row["username"]) is not None:
                    raise InputError(
                        f"username {row['username']!r}: already a user; expected a new username "
                        "(`churn users set-password` changes a password)"
                    )
                session.add(UserRow(**row, created_at=now, updated_at=now))
        except IntegrityError:  # the same username added by another process meanwhile
            raise InputError(f"username {row['username']!r}: already a user; expected a new username") from None
        return self.user(row["username"]) or {}

    def user(self, username: str) -> dict | None:
        """One user's row (with its password hash), None when there is no such user."""
        with self._transaction() as session:
            row = session.get(UserRow, username)
            return None if row is None else row_dict(row)

    def users(self) -> list[dict]:
        """Every user, by username, with their password hash."""
        with self._transaction() as session:
            return [row_dict(row) for row in session.scalars(select(UserRow).order_by(UserRow.username))]

    def set_password(self, username: str, password_hash: str, now: dt.datetime | None = None) -> dict:
        """Replace a user's password hash (their sessions end: the workspace checks the hash they signed in with)."""
        if not password_hash:
            raise InputError("password_hash: expected the hash of a password, got nothing")
        with self._transaction() as session:
            row = session.get(UserRow, username)
            if row is None:
                raise InputError(f"username {username!r}: no such user; expected one listed by `churn users list`")
            row.password_hash, row.updated_at = password_hash, utc(now) or dt.datetime.now(UTC)
            return row_dict(row)

    def remove_user(self, username: str) -> None:
        """Delete a user (what they did stays in the audit trail under their name)."""
        with self._transaction() as session:
            removed = session.execute(delete(UserRow).where(UserRow.username == username))
            if removed.rowcount == 0:  # type: ignore[attr-defined]  # a DELETE's Result is a CursorResult
                raise InputError(f"username {username!r}: no such user; expected one listed by `churn users list`")

    # ------------------------------------------------------------------ alert outbox

    def pending_alerts(self, now: dt.datetime | None = None) -> list[dict]:
        """Pending alerts due at `now` (all pending ones when `now` is None), oldest first."""
        query = select(AlertRow).where(AlertRow.status == "pending")
        if now is not None:
            query = query.where(AlertRow.next_attempt_at <= utc(now))
        with self._transaction() as session:
            return [row_dict(row) for row in session.scalars(query.order_by(AlertRow.next_attempt_at, AlertRow.id))]

    def alerts(self) -> list[dict]:
        with self._transaction() as session:
            return [row_dict(row) for row in session.scalars(select(AlertRow).order_by(AlertRow.id))]

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
            session.execute(
                update(AlertRow)
                .where(AlertRow.id.in_(ids))
                .values(attempts=AlertRow.attempts + 1, next_attempt_at=now + dt.timedelta(seconds=lease_seconds))
            )
            claimed = []
            for row in rows:
                item = row_dict(row)
                item["attempts"] += 1
                claimed.append(item)
            return claimed

    def release_alerts(self, alert_ids: list[int], now: dt.datetime) -> None:
        """Hand claimed alerts back unsent (a relay shutting down mid-batch): due at `now` again,
        their claim's attempt not counted."""
        if alert_ids:
            with self._transaction() as session:
                session.execute(
                    update(AlertRow)
                    .where(AlertRow.id.in_(alert_ids), AlertRow.status == "pending")
                    .values(
                        next_attempt_at=utc(now), attempts=case((AlertRow.attempts > 0, AlertRow.attempts - 1), else_=0)
                    )
                )

    def mark_sent(self, alert_id: int, now: dt.datetime) -> None:
        with self._transaction() as session:
            session.execute(
                update(AlertRow)
                .where(AlertRow.id == alert_id, AlertRow.status == "pending")
                .values(status="sent", sent_at=utc(now), last_error=None)
            )

    def mark_attempt_failed(
        self,
        alert_id: int,
        now: dt.datetime,
        error: str,
        *,
        max_attempts: int,
        backoff_seconds: float,
        max_backoff_seconds: float = MAX_BACKOFF_SECONDS,
    ) -> str:
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
            out = {
                table.__tablename__: session.scalar(select(func.count()).select_from(table)) or 0
                for table in (DecisionRow, EscalationRow, AlertRow, FollowUpRow, FeedbackRow, StatusChangeRow)
            }
            by_status = dict(session.execute(select(AlertRow.status, func.count()).group_by(AlertRow.status)).all())
            open_count = session.scalar(
                select(func.count()).select_from(EscalationRow).where(EscalationRow.status.in_(ACTIVE))
            )
        out.update({f"alerts_{status}": by_status.get(status, 0) for status in ALERT_STATUSES})
        out["escalations_active"] = open_count or 0
        return out


#: a username: letters, digits and . _ @ -, starting with a letter or digit (it goes in URLs and logs as is)
USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def _user_values(username: str, name: str, role: str, password_hash: str) -> dict:
    """A user's columns, checked: each bad one named with what was expected."""
    if not isinstance(username, str) or not USERNAME.fullmatch(username):
        raise InputError(
            f"username {username!r}: expected 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        )
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > 256:
        raise InputError(
            f"name {name!r}: expected the person's name (as the data spells a CSM owner), 1 to 256 characters"
        )
    if role not in ROLES:
        raise InputError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    if not password_hash:
        raise InputError("password_hash: expected the hash of a password, got nothing")
    return {"username": username, "name": name.strip(), "role": role, "password_hash": password_hash}


def _actor(escalation_id: int, by: str | None) -> str:
    """Who acted, required for a human step of the lifecycle: the audit trail must say."""
    if not by or not str(by).strip():
        raise InputError(f"escalation {escalation_id}: --by {by!r}: expected the name of the person acting")
    return str(by).strip()
