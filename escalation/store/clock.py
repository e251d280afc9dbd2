"""The relay's clock (re-alerts, reminders, expiry, each done once) and the leases that let one process do a job."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    delete,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from core import clock
from core.vocabulary import BANDS
from escalation.policy import EscalationPolicy
from escalation.store.base import StoreBase
from escalation.store.messages import _overdue_message, _reminder_message
from escalation.store.recording import enqueue_notice_rows
from escalation.store.schema import (
    ACTIVE,
    EscalationRow,
    FollowUpRow,
    LeaseRow,
    StatusChangeRow,
    row_dict,
    utc,
)


class Clock(StoreBase):
    """What the relay does on its clock, each once per escalation, and who may do it (leases)."""

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
                enqueue_notice_rows(
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
                enqueue_notice_rows(
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
        now = utc(now) or clock.now()
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
