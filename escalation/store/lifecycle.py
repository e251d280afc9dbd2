"""The escalations' lifecycle as people work them: listing, detail, status changes, follow-ups and feedback."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    func,
    select,
    update,
)
from sqlalchemy.orm import Session

from core import clock
from core.errors import InputError
from core.vocabulary import OUTCOMES, RESOLUTION_OUTCOMES, STATUSES
from escalation.store.base import StoreBase
from escalation.store.schema import (
    ACTIVE,
    TRANSITIONS,
    EscalationRow,
    FeedbackRow,
    FollowUpRow,
    StatusChangeRow,
    UnknownEscalation,
    row_dict,
    utc,
)


class Lifecycle(StoreBase):
    """Escalations as CS works them: read, acknowledged, resolved, followed up, judged."""

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
        now = utc(now) or clock.now()
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
        now = utc(now) or clock.now()
        with self._transaction() as session:
            out = row_dict(self._escalation(session, escalation_id))
            out["follow_ups"] = _rows_of(session, FollowUpRow, escalation_id, FollowUpRow.due_at, FollowUpRow.id)
            out["history"] = _history(session, escalation_id)
        out["overdue"] = out["status"] == "open" and out["respond_by"] is not None and out["respond_by"] <= now
        return out

    def history(self, escalation_id: int) -> list[dict]:
        """The escalation's status changes, oldest first: who, when, from -> to, outcome, note."""
        with self._transaction() as session:
            self._escalation(session, escalation_id)
            return _history(session, escalation_id)

    @staticmethod
    def _escalation(session: Session, escalation_id: int, *, lock: bool = False) -> EscalationRow:
        # ids are 64-bit integers in every database: a larger one is no escalation, not a driver error
        known = isinstance(escalation_id, int) and 0 < escalation_id < 2**63
        row = session.get(EscalationRow, escalation_id, with_for_update=lock) if known else None
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
        now = utc(now) or clock.now()
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
        now = utc(now) or clock.now()
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
        now = utc(now) or clock.now()
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


def _rows_of(
    session: Session, table: type[FollowUpRow] | type[StatusChangeRow], escalation_id: int, *order: Any
) -> list[dict]:
    """An escalation's rows of a child table (follow-ups, status changes) as dicts, in `order`."""
    return [
        row_dict(row)
        for row in session.scalars(select(table).where(table.escalation_id == escalation_id).order_by(*order))
    ]


def _history(session: Session, escalation_id: int) -> list[dict]:
    """The escalation's status changes, oldest first."""
    return _rows_of(session, StatusChangeRow, escalation_id, StatusChangeRow.at, StatusChangeRow.id)


def _actor(escalation_id: int, by: str | None) -> str:
    """Who acted, required for a human step of the lifecycle: the audit trail must say."""
    if not by or not str(by).strip():
        raise InputError(f"escalation {escalation_id}: --by {by!r}: expected the name of the person acting")
    return str(by).strip()
