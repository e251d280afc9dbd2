"""What the store writes into the outbox besides an escalation's own alert: idempotency keys, the
overdue re-alert's and the follow-up reminder's messages, and the escalation as a payload sees it."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from core.errors import InputError
from escalation.decision import Decision
from escalation.payloads import alert_facts
from escalation.store.schema import Base, EscalationRow, FollowUpRow, row_dict, utc


def idempotency_key(
    escalation_id: int, dedupe_key: str, opened_at: dt.datetime, destination: str, severity: int
) -> str:
    """Deterministic: the same alert always has the same key, so a receiver can drop a retry.
    The dedupe key and opening time are in it so that two databases (a test run, a restored
    backup) that both reach escalation #1 never share a key at the same receiver."""
    raw = f"{escalation_id}|{dedupe_key}|{utc(opened_at).isoformat()}|{destination}|{severity}"
    return hashlib.sha256(raw.encode()).hexdigest()


def _check_message(message: Any) -> None:
    """A notice's message: {"title": str, "text": str, "facts": {name: str | number}}."""
    expected = 'expected {"title": str, "text": str, "facts": {name: str | number}}'
    if not isinstance(message, dict) or set(message) != {"title", "text", "facts"}:
        raise InputError(f"message {message!r}: {expected}")
    for field in ("title", "text"):
        if not isinstance(message[field], str) or not message[field].strip():
            raise InputError(f"message field {field!r}: got {message[field]!r}; {expected}")
    facts = message["facts"]
    if not isinstance(facts, dict) or any(
        not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (str, int, float)) for k, v in facts.items()
    ):
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
    return facts["account"], {
        "escalation_id": row.id,
        "account": facts["account"],
        "band": row.band,
        "queue": row.queue or "none",
        "owner": row.owner or "unassigned",
        "reason": facts["reason"],
    }


def _overdue_message(row: EscalationRow, now: dt.datetime) -> dict:
    assert row.respond_by is not None, "the overdue query selects escalations past their response window"
    account, facts = _escalation_facts(row)
    late = now - utc(row.respond_by)
    text_ = (
        f"Not acknowledged: the response window ended {utc(row.respond_by):%Y-%m-%d %H:%M} UTC, {_duration(late)} ago. "
        f"{facts['reason']}. Owner {facts['owner']}, queue {facts['queue']}."
    )
    return {
        "title": f"OVERDUE {row.band.upper()} churn escalation #{row.id}: {account}"[:150],
        "text": text_,
        "facts": {
            **facts,
            "respond_by": utc(row.respond_by).isoformat(),
            "overdue_minutes": round(late.total_seconds() / 60, 1),
        },
    }


def _reminder_message(row: EscalationRow, follow_up: FollowUpRow, now: dt.datetime) -> dict:
    account, facts = _escalation_facts(row)
    owner = row.owner or "unassigned"
    text_ = (
        f"{owner}: the follow-up on escalation #{row.id} ({account}) was due {utc(follow_up.due_at):%Y-%m-%d %H:%M} UTC "
        f"({_duration(now - utc(follow_up.due_at))} ago). {facts['reason']}. Mark it done with `churn follow-ups done {row.id}`."
    )
    return {
        "title": f"Follow-up due for {owner}: {account}"[:150],
        "text": text_,
        "facts": {**facts, "follow_up_id": follow_up.id, "due_at": utc(follow_up.due_at).isoformat()},
    }


def alert_view(escalation: EscalationRow | dict, decision: Decision | None = None) -> dict:
    """The escalation as the alert payloads see it: its row plus the decision's window, follow-up
    and the primary rule's sentence (kept out of the escalations table, which holds state only)."""
    view = row_dict(escalation) if isinstance(escalation, Base) else dict(escalation)
    view.pop("package", None)
    for key in ("opened_at", "updated_at", "respond_by"):
        if isinstance(view.get(key), dt.datetime):
            view[key] = view[key].isoformat()
    if decision is not None:
        detail = next((rule.detail for rule in decision.rules if rule.rule == decision.primary_reason), None)
        view.update(
            detail=detail,
            priority=decision.priority,
            response_window_minutes=decision.response_window_minutes,
            follow_up_due=decision.follow_up_due,
            policy_version=decision.policy_version,
            model_version=decision.model_version,
            frustrated=decision.frustrated,
            high_value=decision.high_value,
            renewal_near=decision.renewal_near,
        )
    return view
