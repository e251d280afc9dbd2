"""The escalation lifecycle as JSON documents: one function per action, answering what the API's
lifecycle endpoints return (serving/service.py) and what `churn escalations` / `churn follow-ups`
print with --json (pipelines/commands/escalations.py). Both call these, so they cannot drift apart.

The store (escalation/store/) checks statuses, outcomes and transitions and names what was
expected, and raises UnknownEscalation (HTTP 404) for an id it does not hold; these functions add
only the JSON form (times as ISO 8601). Nothing here imports BentoML or click.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from core.errors import InputError


def jsonable(value: Any) -> Any:
    """Rows of the store as JSON values: datetimes as ISO 8601 (with their UTC offset)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def read_time(value: dt.datetime | str | None, field: str) -> dt.datetime | None:
    """escalation.store.utc, with a bad time named by the field (or flag) it came in."""
    from escalation.store import utc

    try:
        return utc(value)
    except ValueError:
        raise InputError(f"{field} {value!r}: expected an ISO 8601 time, e.g. 2026-03-11T09:00:00Z") from None


def list_escalations(
    store: Any, *, queue: str | None = None, owner: str | None = None, status: str | None = None, overdue: bool = False
) -> dict:
    """{"escalations": [...], "count": n}: by queue, owner and status (default: open and
    acknowledged), most severe first, each with its next follow-up due and `overdue`."""
    rows = store.list_escalations(queue=queue, owner=owner, status=status, overdue=overdue)
    return {"escalations": jsonable(rows), "count": len(rows)}


def show_escalation(store: Any, escalation_id: int) -> dict:
    """{"escalation": {...}}: its row, handoff package, `overdue`, `follow_ups` and `history` (the audit trail)."""
    return {"escalation": jsonable(store.escalation_detail(escalation_id))}


def acknowledge(store: Any, escalation_id: int, by: str, note: str | None = None) -> dict:
    """{"escalation": {...}} after `by` acknowledged it (open -> acknowledged)."""
    return {"escalation": jsonable(store.acknowledge(escalation_id, by, note=note))}


def resolve(store: Any, escalation_id: int, outcome: str, by: str, note: str | None = None) -> dict:
    """{"escalation": {...}} after `by` resolved it with `outcome` (escalation.store.RESOLUTION_OUTCOMES)."""
    return {"escalation": jsonable(store.resolve(escalation_id, outcome, by, note))}


def follow_ups(store: Any, due_by: dt.datetime | str | None = None) -> dict:
    """{"follow_ups": [...], "count": n}: pending follow-ups of active escalations, oldest due
    first; only those due at or before `due_by` when it is given."""
    rows = store.follow_ups(due_by=read_time(due_by, "due_by"))
    return {"follow_ups": jsonable(rows), "count": len(rows)}


def follow_up_done(store: Any, escalation_id: int, by: str) -> dict:
    """{"escalation_id", "done", "by"}: the escalation's pending follow-up marked done by `by`;
    an InputError when it has none pending."""
    done = store.complete_follow_up(escalation_id, by=by)
    if not done:
        raise InputError(
            f"escalation {escalation_id}: no pending follow-up; expected an escalation listed by `churn follow-ups list`"
        )
    return {"escalation_id": escalation_id, "done": done, "by": by}
