"""The escalation decision: risk curve, reasons, account facts and live ticket signals in; whether
to escalate, how urgently, to whom, and why out. A pure function: no I/O, no clock (the caller
passes `now`), so every decision can be replayed from its inputs.

Rules, in the order docs/escalation-practice.md gives them:
1. hard triggers escalate regardless of the model (band critical);
2. the risk curve against per-horizon thresholds, lowered by the value and renewal factors and,
   only together with high value or a near renewal, by the sentiment multiplier (band high);
   sentiment alone never escalates;
3. effort: the same question asked `asks_threshold` times with a frustrated tone on a high-value
   (or near-renewal) account escalates (band high);
4. an automated agent's confidence below `bot_confidence.escalate_below`, or an offer to escalate
   (the middle band) that the customer accepted, hands the conversation to a human (band high,
   the queue a route names or else `bot_confidence.queue`), whether or not a risk rule fired;
5. watch thresholds put the account on the CS radar without interrupting anyone (band watch).
Last, an escalation that only crossed a risk threshold may fall in the holdout (escalation/holdout.py):
it is then recorded as held out, with the band, queue and reason it would have had, and not sent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

from core.vocabulary import BANDS, SEGMENTS
from escalation.holdout import eligible, in_holdout
from escalation.policy import EscalationPolicy

#: severity of each rule's reason, for dedupe ("unless severity rises") and the primary reason
SEVERITY = {
    "security": 5,
    "privacy": 5,
    "fraud": 5,
    "legal_threat": 5,
    "billing_dispute_high_value": 4,
    "critical_moment": 4,
    "risk": 3,
    "effort_frustration_value": 3,
    "bot_handoff": 3,
    "watch": 1,
}


@dataclass(frozen=True)
class AccountFacts:
    account_id: str
    name: str | None = None
    segment: str | None = None
    arr: float | None = None
    average_arr: float | None = None  # of the whole book: "twice the average" is a ratio to this
    days_to_renewal: float | None = None
    renewal_date: str | None = None
    csm_owner: str | None = None
    technical_lead: str | None = None
    exec_sponsor: bool | None = None
    recent_events: tuple[str, ...] = ()  # account_events kinds within the policy's lookback


@dataclass(frozen=True)
class RiskView:
    curve: dict[int, float]  # {30: p, 60: p, 90: p, 180: p}
    reasons: tuple[dict, ...] = ()  # top reasons raising risk: {feature, family, sentence, contribution, value}
    model_version: str | None = None


@dataclass(frozen=True)
class TicketSignals:
    ticket_id: str | None = None
    category: str | None = None
    priority: str | None = None
    sentiment: float | None = None  # latest customer message, [-1, 1]
    sentiment_first: float | None = None  # first customer message of the ticket
    negative_messages: int = 0
    customer_messages: int = 0
    #: the days the two message counts cover across the account's tickets; None: this ticket's messages
    messages_window_days: int | None = None
    critical: tuple[str, ...] = ()  # critical-moment categories found (cancel, supervisor, legal, ...)
    asks: int = 1  # times the ticket's question has been asked (1 = once)
    privacy: bool = False  # privacy incident language in the messages
    fraud: bool = False  # fraud language in the messages
    security: bool = False  # security incident language in the messages
    bot_confidence: float | None = None
    # the customer took the bot's offer to talk to a human (None: not asked or unknown)
    escalation_offer_accepted: bool | None = None

    @property
    def drift(self) -> float | None:
        if self.sentiment is None or self.sentiment_first is None:
            return None
        return self.sentiment - self.sentiment_first


@dataclass(frozen=True)
class FiredRule:
    rule: str
    detail: str
    inputs: dict


@dataclass
class Decision:
    account_id: str
    ticket_id: str | None
    escalate: bool
    band: str
    queue: str | None
    priority: str | None
    response_window_minutes: int | None
    follow_up_due: str | None
    owner: str | None
    rules: list[FiredRule] = field(default_factory=list)
    primary_reason: str | None = None
    severity: int = 0
    bot_action: str | None = None  # escalate_to_human | offer_escalation | continue | None (no bot)
    held_out: bool = False  # in the holdout: escalate is False; band, queue and reason say what it would have been
    frustrated: bool = False
    high_value: bool = False
    renewal_near: bool = False
    thresholds: dict[int, float] = field(default_factory=dict)
    reasons: list[dict] = field(default_factory=list)  # the model's top reasons raising risk
    policy_version: str = ""
    model_version: str | None = None
    decided_at: str = ""

    @property
    def dedupe_key(self) -> str:
        return f"{self.account_id}:{self.primary_reason}"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["thresholds"] = {str(k): v for k, v in self.thresholds.items()}
        out["dedupe_key"] = self.dedupe_key
        return out


def value_tier(facts: AccountFacts, policy: EscalationPolicy) -> str:
    """The account's tier as the policy names them (SEGMENTS): its segment where it is one of them,
    else derived from ARR against the average account, so a base with segments of its own
    ("Strategic", "consumer") still routes and weighs accounts by value."""
    segment = (facts.segment or "").lower()
    if segment in SEGMENTS:
        return segment
    ratio = facts.arr / facts.average_arr if facts.arr and facts.average_arr else 0.0
    return (
        "enterprise"
        if ratio >= policy.value.high_value_ratio
        else "mid_market"
        if ratio >= policy.value.mid_market_ratio
        else "smb"
    )


def is_high_value(facts: AccountFacts, policy: EscalationPolicy) -> bool:
    if policy.value.enterprise_is_high_value and value_tier(facts, policy) == "enterprise":
        return True
    return bool(facts.arr and facts.average_arr and facts.arr >= policy.value.high_value_ratio * facts.average_arr)


def is_frustrated(signals: TicketSignals, policy: EscalationPolicy) -> bool:
    s = policy.sentiment
    low = signals.sentiment is not None and signals.sentiment <= s.frustrated_below
    worse = signals.drift is not None and signals.drift <= s.worsening_below and (signals.sentiment or 0) < 0
    return low or worse


def _hard_triggers(
    facts: AccountFacts, signals: TicketSignals, policy: EscalationPolicy, high_value: bool
) -> list[FiredRule]:
    h = policy.hard_triggers
    events = set(facts.recent_events)
    category = (signals.category or "").lower()
    fired = []
    if h.security and (signals.security or category == "security" or "security_incident" in events):
        fired.append(
            FiredRule(
                "security",
                "security incident",
                {"category": signals.category, "text": signals.security, "event": "security_incident" in events},
            )
        )
    if h.privacy and signals.privacy:
        fired.append(FiredRule("privacy", "privacy incident in the messages", {"text": True}))
    if h.fraud and signals.fraud:
        fired.append(FiredRule("fraud", "fraud in the messages", {"text": True}))
    legal = "legal" in signals.critical or category == "legal" or "legal_threat" in events
    if h.legal_threat and legal:
        fired.append(
            FiredRule(
                "legal_threat",
                "legal language or a legal threat",
                {"category": signals.category, "critical": list(signals.critical), "event": "legal_threat" in events},
            )
        )
    dispute = (category == "billing" and "chargeback" in signals.critical) or "billing_dispute" in events
    if h.billing_dispute_high_value and dispute and high_value:
        fired.append(
            FiredRule(
                "billing_dispute_high_value",
                "billing dispute on a high-value account",
                {
                    "category": signals.category,
                    "event": "billing_dispute" in events,
                    "arr": facts.arr,
                    "average_arr": facts.average_arr,
                },
            )
        )
    moments = [c for c in signals.critical if c in h.critical_categories]
    if h.critical_moment and moments:
        fired.append(FiredRule("critical_moment", "critical moment: " + ", ".join(moments), {"critical": moments}))
    return fired


def _bot_action(confidence: float | None, policy: EscalationPolicy) -> str | None:
    if confidence is None:
        return None
    if confidence < policy.bot_confidence.escalate_below:
        return "escalate_to_human"
    if confidence < policy.bot_confidence.offer_below:
        return "offer_escalation"
    return "continue"


def _bot_handoff(action: str | None, signals: TicketSignals, policy: EscalationPolicy) -> FiredRule | None:
    accepted = action == "offer_escalation" and signals.escalation_offer_accepted is True
    if action != "escalate_to_human" and not accepted:
        return None
    b = policy.bot_confidence
    detail = (
        f"bot confidence {signals.bot_confidence:.0%} below {b.escalate_below:.0%}: handed to a human"
        if not accepted
        else f"bot confidence {signals.bot_confidence:.0%}: the customer accepted the offer of a human"
    )
    return FiredRule(
        "bot_handoff",
        detail,
        {
            "bot_confidence": signals.bot_confidence,
            "escalate_below": b.escalate_below,
            "offer_below": b.offer_below,
            "offer_accepted": accepted,
        },
    )


def _route(
    policy: EscalationPolicy,
    signals: TicketSignals,
    facts: AccountFacts,
    band: str,
    triggers: set[str],
    high_value: bool,
) -> str:
    category = (signals.category or "").lower()
    # a route may name the customer's own segment or a tier
    segments = {(facts.segment or "").lower(), value_tier(facts, policy)}
    for route in policy.routes:
        if route.categories and category not in route.categories:
            continue
        if route.segments and not segments & {s.lower() for s in route.segments}:
            continue
        if route.bands and band not in route.bands:
            continue
        if route.triggers and not triggers & set(route.triggers):
            continue
        if route.high_value is not None and route.high_value != high_value:
            continue
        return route.queue
    # a bot handing over a live conversation needs a human now, not the default CS queue
    return policy.bot_confidence.queue if "bot_handoff" in triggers else policy.default_queue


def decide(
    facts: AccountFacts,
    risk: RiskView | None,
    signals: TicketSignals | None,
    policy: EscalationPolicy,
    now: dt.datetime,
) -> Decision:
    """Apply the policy. `risk` may be None (no model) and `signals` None (a batch run without a ticket)."""
    signals = signals or TicketSignals()
    high_value = is_high_value(facts, policy)
    renewal_near = facts.days_to_renewal is not None and 0 <= facts.days_to_renewal <= policy.value.renewal_window_days
    frustrated = is_frustrated(signals, policy)
    rules = _hard_triggers(facts, signals, policy, high_value)

    factor = (policy.value.value_factor if high_value else 1.0) * (policy.value.renewal_factor if renewal_near else 1.0)
    if frustrated and (high_value or renewal_near):
        factor *= policy.sentiment.multiplier  # sentiment only ever scales a threshold; it never fires on its own
    thresholds = {h: round(p * factor, 6) for h, p in policy.risk_thresholds.items()}
    curve = risk.curve if risk else {}
    over = {h: curve[h] for h, t in thresholds.items() if curve.get(h) is not None and curve[h] >= t}
    if over:
        h = min(over)
        rules.append(
            FiredRule(
                "risk",
                f"{h}-day churn risk {over[h]:.0%} at or above the threshold {thresholds[h]:.0%}",
                {"horizon_days": h, "probability": over[h], "threshold": thresholds[h], "factor": round(factor, 4)},
            )
        )
    effort = policy.effort
    if (
        effort.escalate_with_frustration_and_value
        and signals.asks >= effort.asks_threshold
        and frustrated
        and (high_value or renewal_near)
    ):
        rules.append(
            FiredRule(
                "effort_frustration_value",
                f"question asked {signals.asks} times, frustrated tone, "
                + ("high-value account" if high_value else "renewal near"),
                {
                    "asks": signals.asks,
                    "sentiment": signals.sentiment,
                    "high_value": high_value,
                    "renewal_near": renewal_near,
                },
            )
        )
    action = _bot_action(signals.bot_confidence, policy)
    handoff = _bot_handoff(action, signals, policy)
    if handoff is not None:
        rules.append(handoff)
    if not rules:
        watch = {
            h: curve[h]
            for h, t in policy.watch_thresholds.items()
            if curve.get(h) is not None and curve[h] >= t * factor
        }
        if watch:
            h = min(watch)
            rules.append(
                FiredRule(
                    "watch",
                    f"{h}-day churn risk {watch[h]:.0%} on the watch list",
                    {
                        "horizon_days": h,
                        "probability": watch[h],
                        "threshold": round(policy.watch_thresholds[h] * factor, 6),
                    },
                )
            )

    primary = max(rules, key=lambda r: SEVERITY[r.rule]).rule if rules else None
    severity = SEVERITY[primary] if primary else 0
    band = "critical" if severity >= 4 else "high" if severity >= 3 else "watch" if severity >= 1 else "none"
    escalate = BANDS.index(band) >= BANDS.index("high")
    triggers = {r.rule for r in rules}
    # only a bare risk crossing is held out: a trigger, a handoff or an effort case always reaches a human
    held_out = (
        escalate
        and policy.holdout.share > 0
        and eligible(triggers)
        and in_holdout(facts.account_id, policy.holdout.share, policy.holdout.salt)
    )
    queue = _route(policy, signals, facts, band, triggers, high_value) if escalate else None
    escalate = escalate and not held_out
    window = None
    if escalate:
        window = getattr(policy.windows, band)
        if frustrated:
            window = min(window, policy.windows.frustrated)
    priority = {"critical": "urgent", "high": "high", "watch": "normal"}.get(band)
    owner = facts.csm_owner or (f"{queue} on-call" if queue else None)
    follow_up = (now + dt.timedelta(hours=policy.windows.follow_up_hours)).isoformat() if escalate else None
    return Decision(
        account_id=facts.account_id,
        ticket_id=signals.ticket_id,
        escalate=escalate,
        band=band,
        queue=queue,
        priority=priority,
        response_window_minutes=window,
        follow_up_due=follow_up,
        owner=owner if escalate else facts.csm_owner,
        rules=rules,
        primary_reason=primary,
        severity=severity,
        bot_action=action,
        held_out=held_out,
        frustrated=frustrated,
        high_value=high_value,
        renewal_near=renewal_near,
        thresholds=thresholds,
        reasons=list(risk.reasons) if risk else [],
        policy_version=policy.version,
        model_version=risk.model_version if risk else None,
        decided_at=now.isoformat(),
    )
