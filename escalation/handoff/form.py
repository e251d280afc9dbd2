"""The handoff form: everything CS needs about one decision, typed section by section.

`HandoffForm.to_dict()` is the JSON the API returns, the store keeps and the alerts read; its keys
are the field names, in field order (a field's `metadata["key"]` renames it where the JSON key is
not an identifier, as in "30_days").
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field

import pandas as pd

from escalation.decision import AccountFacts, Decision, RiskView, TicketSignals
from escalation.handoff._format import fmt_time, number, utc
from escalation.handoff.pii import mask_pii
from escalation.handoff.themes import THEMES


def plain(value):
    """JSON-ready: dataclasses become dicts (keys in field order), tuples become lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.metadata.get("key", f.name): plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


# ------------------------------------------------------------------ what the messages tell


@dataclass(frozen=True)
class TimelineEvent:
    at: str | None
    who: str
    event: str  # what happened, "; "-joined ("asked again (2nd time); last message")
    text: str  # a masked excerpt of the message


@dataclass(frozen=True)
class Specifics:
    error_codes: tuple[str, ...] = ()
    versions: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Tried:
    at: str | None
    who: str
    text: str


@dataclass(frozen=True)
class Promise:
    at: str | None
    who: str
    text: str
    deadline: str  # as written: "by Friday"
    due_date: str | None  # ISO date it falls on, None when it cannot be read
    status: str  # "overdue", "due today", "due in 2 days", "no date"


@dataclass(frozen=True)
class CriticalMoment:
    at: str | None
    category: str
    text: str


@dataclass(frozen=True)
class TicketStory:
    """What a ticket's messages tell, read once (`timeline.read_story`); the form's issue and
    effort come from it."""

    subject: str | None = None
    timeline: tuple[TimelineEvent, ...] = ()
    specifics: Specifics = Specifics()
    tried: tuple[Tried, ...] = ()
    promised: tuple[Promise, ...] = ()
    customer_messages: int = 0
    first_response_wait_hours: float | None = None
    customer_waiting_hours: float | None = None  # since the customer's last message, when it is the last one
    critical_moments: tuple[CriticalMoment, ...] = ()


# ------------------------------------------------------------------ the form's sections


@dataclass(frozen=True)
class Customer:
    account_id: str
    name: str | None
    segment: str | None
    arr: float | None
    arr_vs_average: float | None
    renewal_date: str | None
    days_to_renewal: int | None
    owner: str | None
    technical_lead: str | None
    executive_sponsor: bool | None


@dataclass(frozen=True)
class Issue:
    ticket_id: str | None
    subject: str | None
    category: str | None
    priority: str | None
    timeline: tuple[TimelineEvent, ...]
    technical_specifics: Specifics
    tried: tuple[Tried, ...]
    promised: tuple[Promise, ...]


@dataclass(frozen=True)
class Effort:
    asks: int
    customer_messages: int
    negative_messages: int
    first_response_wait_hours: float | None
    customer_waiting_hours: float | None
    critical_moments: tuple[CriticalMoment, ...]
    critical_categories: tuple[str, ...]
    #: what the message counts cover: the account's last N days, or None for this ticket's messages
    messages_window_days: int | None = None


@dataclass(frozen=True)
class CustomerState:
    sentiment: float | None
    sentiment_label: str | None
    sentiment_first: float | None
    drift: float | None
    drift_label: str | None
    frustrated: bool
    effort: Effort


@dataclass(frozen=True)
class BusinessImpact:
    arr: float | None
    high_value: bool
    renewal_date: str | None
    days_to_renewal: int | None
    renewal_near: bool
    risk_curve_pct: dict[str, float]  # {"30": 18.0, ...}, horizons in days, ascending
    expected_arr_loss_90d: int | None
    top_reasons: tuple[str, ...]
    model_version: str | None


@dataclass(frozen=True)
class Success:
    days_30: str = field(metadata={"key": "30_days"})
    days_60: str = field(metadata={"key": "60_days"})
    days_90: str = field(metadata={"key": "90_days"})


@dataclass(frozen=True)
class WhatIsNeeded:
    recommended_action: str
    other_actions: tuple[str, ...]
    owner: str | None
    queue: str | None
    response_window_minutes: int | None
    respond_by: str | None
    follow_up_due: str | None
    success: Success


@dataclass(frozen=True)
class RuleHit:
    rule: str
    detail: str


@dataclass(frozen=True)
class DecisionTaken:
    escalate: bool
    band: str
    queue: str | None
    priority: str | None
    primary_reason: str | None
    rules: tuple[RuleHit, ...]
    bot_action: str | None
    policy_version: str
    model_version: str | None
    decided_at: str | None


@dataclass(frozen=True)
class HandoffForm:
    customer: Customer
    issue: Issue
    customer_state: CustomerState
    business_impact: BusinessImpact
    what_is_needed: WhatIsNeeded
    decision: DecisionTaken
    generated_at: str | None

    def to_dict(self) -> dict:
        return plain(self)


# ------------------------------------------------------------------ building it


def sentiment_label(score: float | None) -> str | None:
    if score is None:
        return None
    return (
        "very negative"
        if score <= -0.6
        else "negative"
        if score <= -0.2
        else "neutral"
        if score < 0.2
        else "positive"
        if score < 0.6
        else "very positive"
    )


def drift_label(drift: float | None) -> str | None:
    if drift is None:
        return None
    return (
        "getting worse"
        if drift <= -0.3
        else "slightly worse"
        if drift < -0.1
        else "stable"
        if drift <= 0.1
        else "improving"
    )


def build_form(
    decision: Decision,
    facts: AccountFacts,
    risk: RiskView | None,
    signals: TicketSignals,
    story: TicketStory,
    themes: list[str],
    now: dt.datetime,
) -> HandoffForm:
    """The form of one decision, from its inputs and what the ticket's messages tell; `themes`
    (most important first) choose the next actions and what success looks like."""
    now_utc = utc(now)
    days_to_renewal = number(facts.days_to_renewal)
    if days_to_renewal is None and facts.renewal_date:
        try:
            days_to_renewal = float((dt.date.fromisoformat(str(facts.renewal_date)[:10]) - now_utc.date()).days)
        except ValueError:
            days_to_renewal = None
    days = int(round(days_to_renewal)) if days_to_renewal is not None else None
    # the daily run knows the days to the renewal, not its date: the date is what CS puts in a calendar
    renewal_date = facts.renewal_date or (
        (now_utc.date() + dt.timedelta(days=days)).isoformat() if days is not None else None
    )
    arr, average = number(facts.arr), number(facts.average_arr)
    curve = {int(h): number(p) for h, p in sorted((risk.curve if risk else {}).items())}
    # the decision's reasons (the daily run computes them for escalated accounts only, after deciding),
    # strongest first: by effect in points where the reasons carry it (models/reasons.py), else by log-odds
    reasons = sorted(decision.reasons, key=lambda r: -(number(r.get("points", r.get("contribution"))) or 0.0))
    respond_by = (
        (now_utc + pd.Timedelta(minutes=decision.response_window_minutes)) if decision.response_window_minutes else None
    )
    primary = THEMES[themes[0]]
    horizon_90 = curve.get(90)
    renew_soon = days_to_renewal is not None and 0 <= days_to_renewal <= 90
    other_actions = [THEMES[t].action_for(facts.exec_sponsor) for t in themes[1:3]]
    for p in [p for p in story.promised if p.status != "no date"][-2:]:
        verb = "Overdue promise, deliver it today" if p.status == "overdue" else "Keep the promise made"
        other_actions.append(f'{verb}: "{p.text}"' + (f" (due {p.due_date})" if p.due_date else ""))
    sentiment, drift = number(signals.sentiment), number(signals.drift)
    return HandoffForm(
        customer=Customer(
            account_id=facts.account_id,
            name=facts.name,
            segment=facts.segment,
            arr=arr,
            arr_vs_average=round(arr / average, 2) if arr is not None and average else None,
            renewal_date=renewal_date,
            days_to_renewal=days,
            owner=facts.csm_owner,
            technical_lead=facts.technical_lead,
            executive_sponsor=facts.exec_sponsor,
        ),
        issue=Issue(
            ticket_id=decision.ticket_id or signals.ticket_id,
            subject=story.subject,
            category=signals.category,
            priority=signals.priority,
            timeline=story.timeline,
            technical_specifics=story.specifics,
            tried=story.tried,
            promised=story.promised,
        ),
        customer_state=CustomerState(
            sentiment=sentiment,
            sentiment_label=sentiment_label(sentiment),
            sentiment_first=number(signals.sentiment_first),
            drift=round(drift, 3) if drift is not None else None,
            drift_label=drift_label(drift),
            frustrated=decision.frustrated,
            effort=Effort(
                asks=int(signals.asks),
                customer_messages=int(
                    signals.customer_messages
                    if signals.messages_window_days
                    else signals.customer_messages or story.customer_messages
                ),
                negative_messages=int(signals.negative_messages),
                first_response_wait_hours=story.first_response_wait_hours,
                customer_waiting_hours=story.customer_waiting_hours,
                critical_moments=story.critical_moments,
                critical_categories=tuple(signals.critical),
                messages_window_days=signals.messages_window_days,
            ),
        ),
        business_impact=BusinessImpact(
            arr=arr,
            high_value=decision.high_value,
            renewal_date=renewal_date,
            days_to_renewal=days,
            renewal_near=decision.renewal_near,
            risk_curve_pct={str(h): round(p * 100, 1) for h, p in curve.items() if p is not None},
            expected_arr_loss_90d=round(arr * horizon_90) if arr is not None and horizon_90 is not None else None,
            top_reasons=tuple(
                mask_pii(str(r["sentence"]) + (f" ({r['effect']})" if r.get("effect") else ""))
                for r in reasons[:3]
                if r.get("sentence")
            ),
            model_version=risk.model_version if risk else None,
        ),
        what_is_needed=WhatIsNeeded(
            recommended_action=primary.action_for(facts.exec_sponsor),
            other_actions=tuple(other_actions),
            owner=decision.owner,
            queue=decision.queue,
            response_window_minutes=decision.response_window_minutes,
            respond_by=fmt_time(respond_by),
            follow_up_due=fmt_time(decision.follow_up_due) if decision.follow_up_due else None,
            success=Success(
                primary.success_30,
                primary.success_60,
                "renewal signed" if renew_soon else "renewal conversation held and NPS answered above 6",
            ),
        ),
        decision=DecisionTaken(
            escalate=decision.escalate,
            band=decision.band,
            queue=decision.queue,
            priority=decision.priority,
            primary_reason=decision.primary_reason,
            rules=tuple(RuleHit(r.rule, mask_pii(r.detail)) for r in decision.rules),
            bot_action=decision.bot_action,
            policy_version=decision.policy_version,
            model_version=decision.model_version,
            decided_at=fmt_time(decision.decided_at) if decision.decided_at else None,
        ),
        generated_at=fmt_time(now_utc),
    )
