"""Where the decision's inputs come from.

- `ticket_signals`: one live ticket (the support system's call on every update): sentiment of the
  customer's messages, how it moved, critical moments, how many times the question was asked,
  and incident language (security, privacy, fraud), with the platform's own text models.
- `batch_inputs`: the daily run over a scored snapshot panel: account facts and account-level
  signals read from the point-in-time features (recent critical moments, sentiment, repeated
  questions, risk events), so the batch and the live path feed the same decision function.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from core.vocabulary import HORIZONS
from escalation.decision import AccountFacts, RiskView, TicketSignals
from escalation.policy import EscalationPolicy

#: Incident language in customer messages (hard triggers of docs/escalation-practice.md that no table records live).
INCIDENTS: dict[str, re.Pattern] = {
    "security": re.compile(
        r"\b(?:security (?:incident|breach|issue|vulnerability)|hacked|compromised account|unauthori[sz]ed (?:access|login)"
        r"|ransomware|phishing|malware|account takeover)\b",
        re.IGNORECASE,
    ),
    "privacy": re.compile(
        r"\b(?:data (?:breach|leak)|leaked (?:our |customer |personal )?data|personal data|gdpr|privacy (?:issue|incident|violation|breach)"
        r"|pii\b|exposed (?:our |customer )?(?:data|records)|wrong customer'?s data)",
        re.IGNORECASE,
    ),
    "fraud": re.compile(
        r"\b(?:fraud\w*|unauthori[sz]ed (?:charge|transaction|payment)s?|stolen card|identity theft|charges? "
        r"(?:we|I) (?:never|did not|didn't) make)",
        re.IGNORECASE,
    ),
}


def incident_flags(texts: pd.Series) -> pd.DataFrame:
    """Per text: security / privacy / fraud language (vectorised over the column)."""
    texts = texts.fillna("").astype(str)
    if len(texts) < 32:  # one live ticket: plain `re` beats pandas' per-call overhead
        return pd.DataFrame(
            {name: [bool(pattern.search(t)) for t in texts] for name, pattern in INCIDENTS.items()},
            index=texts.index,
            dtype=bool,
        )
    return pd.DataFrame(
        {name: texts.str.contains(pattern, regex=True) for name, pattern in INCIDENTS.items()}, index=texts.index
    )


def ticket_signals(
    bodies: Sequence[str],
    customer: np.ndarray,
    *,
    ticket_id: str | None,
    category: str | None,
    priority: str | None,
    bot_confidence: float | None,
    scores: np.ndarray,
    labels: Sequence[str],
    embeddings: np.ndarray,
    rephrase_similarity: float,
) -> tuple[TicketSignals, np.ndarray]:
    """Signals of one ticket from its message bodies in time order, which of them the customer
    wrote, their sentiment (score and label) and embeddings (unit length), all aligned, and the
    embedding space's threshold for asking again (SignalParams). Returns
    the signals and, per message, whether it asks an earlier customer question again (for the
    handoff's timeline). One ticket holds a handful of messages: plain Python and numpy, no
    pandas, since the support system waits on this call."""
    from features.text.critical import critical_of

    customer = np.asarray(customer, dtype=bool)
    mine = [b if c else "" for b, c in zip(bodies, customer, strict=True)]
    critical = [found for (found, _), c in zip(critical_of(mine), customer, strict=True) if c and found is not None]
    # the same question again: a customer message close to any earlier customer message
    emb = np.asarray(embeddings, dtype=np.float32)[customer]
    rephrase = np.zeros(len(customer), dtype=bool)
    if len(emb):
        sims = emb @ emb.T
        earlier = np.tril(np.ones_like(sims, dtype=bool), k=-1)
        rephrase[customer] = np.where(earlier, sims, -1.0).max(axis=1) >= rephrase_similarity
    incidents = {name: any(pattern.search(t) for t in mine) for name, pattern in INCIDENTS.items()}
    theirs = np.asarray(scores, dtype=np.float64)[customer]
    signals = TicketSignals(
        ticket_id=ticket_id,
        category=category,
        priority=priority,
        sentiment=float(theirs[-1]) if len(theirs) else None,
        sentiment_first=float(theirs[0]) if len(theirs) else None,
        negative_messages=sum(1 for label, c in zip(labels, customer, strict=True) if c and label == "negative"),
        customer_messages=int(customer.sum()),
        critical=tuple(dict.fromkeys(critical)),
        asks=1 + int(rephrase.sum()),
        security=incidents["security"],
        privacy=incidents["privacy"],
        fraud=incidents["fraud"],
        bot_confidence=bot_confidence,
    )
    return signals, rephrase


EVENT_KINDS = ("security_incident", "legal_threat", "billing_dispute", "payment_failed", "sponsor_left", "downgrade")
CRITICAL_COUNTS = {
    "cancel": "cancel_mentions_90d",
    "supervisor": "supervisor_requests_90d",
    "legal": "legal_mentions_90d",
}


def _column(panel: pd.DataFrame, name: str) -> np.ndarray:
    return panel[name].to_numpy(dtype=float, na_value=np.nan) if name in panel.columns else np.full(len(panel), np.nan)


def candidates(panel: pd.DataFrame, curve: np.ndarray, policy: EscalationPolicy) -> np.ndarray:
    """Rows where some rule could fire: a superset of the rows the decision escalates or watches,
    found with whole-column arithmetic, so the per-account decision runs only on those."""
    lowest = policy.value.value_factor * policy.value.renewal_factor * policy.sentiment.multiplier
    thresholds = dict(policy.watch_thresholds)
    for h, p in policy.risk_thresholds.items():
        thresholds[h] = min(p, thresholds.get(h, p))
    risky = np.zeros(len(panel), dtype=bool)
    for h, p in thresholds.items():
        risky |= curve[:, HORIZONS.index(h)] >= p * lowest
    lookback = policy.hard_triggers.event_lookback_days
    recent = np.zeros(len(panel), dtype=bool)
    for kind in EVENT_KINDS:
        recent |= _column(panel, f"days_since_{kind}") <= lookback
    recent |= _column(panel, "days_since_critical_moment") <= lookback
    effort = _column(panel, "questions_asked_three_times_90d") >= 1
    return risky | recent | effort


def _number(values: dict, key: str) -> float | None:
    """A feature value as a float; None when missing, NaN or not a number (API callers send anything)."""
    raw = values.get(key)
    if raw is None:
        return None
    try:
        v = float(raw)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(v) else v


def _text(value) -> str | None:
    return value if isinstance(value, str) and value else None


def account_facts(
    account_id: str,
    values: dict,
    policy: EscalationPolicy,
    *,
    average_arr: float | None,
    csm_owner: str | None = None,
    name: str | None = None,
) -> AccountFacts:
    """The account's facts from its feature values (the daily batch and the API alike): risk events
    within the policy's lookback count as live triggers."""
    lookback = policy.hard_triggers.event_lookback_days
    events = tuple(
        kind for kind in EVENT_KINDS if (d := _number(values, f"days_since_{kind}")) is not None and d <= lookback
    )
    return AccountFacts(
        account_id=str(account_id),
        name=_text(name),
        segment=_text(values.get("segment")),
        arr=_number(values, "arr_current"),
        average_arr=average_arr,
        days_to_renewal=_number(values, "days_to_renewal"),
        csm_owner=_text(csm_owner),
        exec_sponsor=bool(_number(values, "exec_sponsor_present") or 0),
        recent_events=events,
    )


def batch_inputs(
    row: dict,
    curve: np.ndarray,
    reasons: tuple[dict, ...],
    policy: EscalationPolicy,
    *,
    average_arr: float | None,
    model_version: str | None,
    csm_owner: str | None = None,
    name: str | None = None,
) -> tuple[AccountFacts, RiskView, TicketSignals]:
    """The decision's inputs for one account of a scored panel (one row of features as a dict)."""

    def value(key: str) -> float | None:
        return _number(row, key)

    lookback = policy.hard_triggers.event_lookback_days
    facts = account_facts(row["account_id"], row, policy, average_arr=average_arr, csm_owner=csm_owner, name=name)
    recent_critical = (d := value("days_since_critical_moment")) is not None and d <= lookback
    critical = tuple(kind for kind, col in CRITICAL_COUNTS.items() if recent_critical and (value(col) or 0) > 0)
    if recent_critical and not critical:
        critical = ("disappointed",)  # a recent critical moment of the remaining category
    sentiment = value("customer_sentiment_30d")
    drift = value("frustration_drift_90d")
    # the effort rule needs the customer to be writing now (since the last run), not a ticket from weeks ago
    writing = (d := value("days_since_customer_message")) is not None and d <= lookback
    asks = (
        3
        if writing and (value("questions_asked_three_times_90d") or 0) >= 1 and (value("rephrasings_30d") or 0) > 0
        else 1
    )
    signals = TicketSignals(
        sentiment=sentiment,
        sentiment_first=(sentiment - drift) if sentiment is not None and drift is not None else None,
        # the snapshot counts messages over the account's last 30 days, not the ticket's
        negative_messages=int(value("negative_messages_30d") or 0),
        customer_messages=int(value("customer_messages_30d") or 0),
        messages_window_days=30,
        critical=critical,
        asks=asks,
    )
    risk = RiskView({h: float(curve[k]) for k, h in enumerate(HORIZONS)}, reasons, model_version)
    return facts, risk, signals
