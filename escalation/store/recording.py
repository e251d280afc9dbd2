"""Recording decisions: the audit row, the escalation it opens, merges into or raises, its alerts; and notices."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import (
    insert,
    select,
)
from sqlalchemy.orm import Session

from core import clock
from core.errors import InputError
from core.vocabulary import BANDS
from escalation.decision import Decision
from escalation.payloads import build_payload, notice_payload
from escalation.policy import EscalationPolicy
from escalation.store.base import StoreBase
from escalation.store.messages import _check_message, alert_view, idempotency_key
from escalation.store.schema import (
    ACTIVE,
    TOPICS,
    AlertRow,
    DecisionRow,
    EscalationRow,
    FollowUpRow,
    StatusChangeRow,
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
    return utc(now) or utc(decision.decided_at) or clock.now()


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


def enqueue_notice_rows(
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


class Recording(StoreBase):
    """Decisions into the audit trail and escalations, with their alerts in the same transaction."""

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
        now = utc(now) or clock.now()
        with self._transaction() as session:
            self._lock_key(session, f"notice|{topic}|{dedupe}")
            return enqueue_notice_rows(session, topic, dedupe, message, list(dict.fromkeys(destinations)), policy, now)
