"""The alert outbox as the relay reads and marks it, and the store's counts."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    case,
    func,
    select,
    update,
)

from escalation.store.base import StoreBase
from escalation.store.schema import (
    ACTIVE,
    ALERT_STATUSES,
    MAX_BACKOFF_SECONDS,
    AlertRow,
    DecisionRow,
    EscalationRow,
    FeedbackRow,
    FollowUpRow,
    StatusChangeRow,
    row_dict,
    utc,
)


class Outbox(StoreBase):
    """The outbox rows the relay claims, sends and marks; the counts the CLI and the API report."""

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
