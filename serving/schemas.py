"""Request and response models of the scoring API (pydantic; they are the OpenAPI document).

Every input has a size limit, so a request can never make the service do unbounded work.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.vocabulary import Author, Band, Horizon, Outcome, Priority, TicketCategory

MAX_ACCOUNTS = 1000
MAX_MESSAGES = 200
MAX_MESSAGE_CHARS = 10_000
MAX_FEATURES = 500
ACCOUNT_ID_CHARS = 128

FeatureValue = float | int | str | bool | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountQuery(_Model):
    """One account: by id (its stored features) or with its features given (then no lookup)."""

    account_id: str = Field(min_length=1, max_length=ACCOUNT_ID_CHARS, examples=["A000042"])
    features: dict[str, FeatureValue] | None = Field(
        None,
        max_length=MAX_FEATURES,
        description="Feature values by name; missing features are unknown. Omit to use the stored snapshot.",
        examples=[{"days_since_last_login": 12, "nps_last": 4, "segment": "enterprise"}],
    )


class Reason(_Model):
    feature: str
    family: str
    role: Literal["driver", "context"] = Field(
        "driver",
        description="driver: behaviour that can change; context: who the account is (segment, plan, ARR, tenure...).",
    )
    sentence: str = Field(
        description=(
            "The reason in words: the account's own value, what it was in the prior 90 days where known, and "
            "the typical account of its segment."
        )
    )
    value: FeatureValue = None
    contribution: float = Field(description="Exact TreeSHAP contribution to the risk (log-odds).")
    points: float | None = Field(
        None,
        description=(
            "Effect on the risk of the horizon explained, in percentage points (base rate + every feature's "
            "points + rest = the risk)."
        ),
    )
    effect: str | None = Field(None, description="The points in words, e.g. 'adds 12 points to the 90-day risk'.")


class Curve(_Model):
    p_30d: float = Field(ge=0, le=1, description="P(churn within 30 days)")
    p_60d: float = Field(ge=0, le=1)
    p_90d: float = Field(ge=0, le=1)
    p_180d: float = Field(ge=0, le=1)


class AccountScore(_Model):
    account_id: str
    curve: Curve
    tier: Band = Field(description="The escalation policy's band for the risk alone (no ticket).")
    top_reasons: list[Reason] = Field(
        description="The drivers raising the risk most (never context), with their points on the reasons' horizon."
    )
    context: list[Reason] = Field(
        default_factory=list,
        description="Context features with the largest effect (segment, plan, ARR level...): shown as context, not as reasons.",
    )
    base_rate: float | None = Field(
        None,
        description=(
            "Risk of the scored base's average account (on the log-odds scale) at the reasons' horizon: the "
            "points are measured from it."
        ),
    )
    rest_points: float | None = Field(
        None, description="Points no single feature carries (interactions), so base rate + points + rest = the risk."
    )
    reasons_horizon_days: int = 90
    snapshot: str | None = Field(
        None, description="Cutoff of the stored features used (null when features were given)."
    )
    model_version: str


class Message(_Model):
    author: Author
    sent_at: dt.datetime = Field(
        description="ISO 8601; a time without an offset is read as UTC.", examples=["2025-03-11T09:02:00Z"]
    )
    body: str = Field(max_length=MAX_MESSAGE_CHARS)


class Ticket(_Model):
    ticket_id: str = Field(min_length=1, max_length=128, examples=["T-88213"])
    category: TicketCategory = "technical"
    priority: Priority = "normal"
    subject: str | None = Field(None, max_length=500)
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    bot_confidence: float | None = Field(
        None, ge=0, le=1, description="The support bot's own confidence, if a bot handles the case."
    )
    escalation_offer_accepted: bool | None = Field(
        None,
        description="The customer accepted the bot's offer of a human (asked when bot_confidence is in the "
        "policy's middle band): the ticket is then handed to a human queue like a low-confidence one.",
    )


class AssessTicketRequest(_Model):
    account_id: str = Field(min_length=1, max_length=ACCOUNT_ID_CHARS, examples=["A000042"])
    ticket: Ticket


class TicketSignalsOut(_Model):
    sentiment: float | None = Field(description="Latest customer message, -1 (negative) to 1.")
    sentiment_change: float | None = Field(
        description="Latest minus the first customer message: negative = frustration building up."
    )
    negative_messages: int
    customer_messages: int
    critical_moments: list[str]
    times_asked: int = Field(description="How many times the customer has asked the ticket's question.")
    incidents: list[str] = Field(description="security, privacy or fraud language found.")
    frustrated: bool


class RuleOut(_Model):
    rule: str
    detail: str
    inputs: dict


class DecisionOut(_Model):
    escalate: bool
    band: Band
    queue: str | None
    priority: str | None
    owner: str | None
    response_window_minutes: int | None
    follow_up_due: str | None
    bot_action: str | None = Field(
        description="escalate_to_human | offer_escalation | continue, when bot_confidence was given."
    )
    held_out: bool = Field(
        False, description="In the policy's holdout: not escalated; band, queue and rules say what it would have been."
    )
    rules: list[RuleOut]
    policy_version: str
    model_version: str | None


class HandoffOut(_Model):
    """What CS receives so the customer never repeats their story (docs/escalation.md, the handoff package)."""

    form: dict[str, Any] = Field(
        description="The handoff form: customer, issue, customer_state, business_impact, what_is_needed and decision "
        "(escalation/handoff/form.py HandoffForm, as JSON)."
    )
    summary: str = Field(description="The case in at most 200 words.")
    warm_handoff: str = Field(description="The message introducing the CSM to the customer.")
    markdown: str = Field(description="The whole package on one page, in Markdown.")


class AssessTicketResponse(_Model):
    account_id: str
    ticket_id: str
    signals: TicketSignalsOut
    risk: AccountScore
    decision: DecisionOut
    escalation_id: int | None = Field(description="The escalation in the store (new or merged), when it escalates.")
    handoff: HandoffOut | None = Field(description="The handoff package when it escalates.")
    model_version: str = Field(
        description="The model version the risk and the decision came from (the same as risk.model_version)."
    )


class ExplainRequest(_Model):
    account_id: str = Field(min_length=1, max_length=ACCOUNT_ID_CHARS)
    horizon_days: Horizon = 90


class ExplainResponse(_Model):
    account_id: str
    horizon_days: int
    probability: float
    raising: list[Reason] = Field(description="Drivers raising the risk, largest first.")
    lowering: list[Reason] = Field(description="Drivers lowering the risk, largest first.")
    context: list[Reason] = Field(default_factory=list, description="Context features, by the size of their effect.")
    base_rate: float | None = Field(
        None, description="Risk of the base's average account (on the log-odds scale) at this horizon."
    )
    rest_points: float | None = None
    by_family: dict[str, float] = Field(description="Contributions summed per feature family (log-odds).")
    points_by_family: dict[str, float] = Field(
        default_factory=dict, description="Points summed per feature family (percentage points of this horizon's risk)."
    )
    model_version: str


class FeedbackRequest(_Model):
    escalation_id: int = Field(ge=1)
    rating: int = Field(ge=1, le=5, description="Quality of the handoff, 1 (poor) to 5 (excellent).")
    comment: str | None = Field(None, max_length=5000)
    outcome: Outcome = "unknown"


class FeedbackResponse(_Model):
    feedback_id: int
    escalation_id: int


class ModelInfo(_Model):
    model_uri: str
    model_version: str
    formulation: str
    features: int
    trained_through: str | None
    snapshot: str | None = Field(description="Cutoff of the stored features the API looks accounts up in.")
    accounts: int
    backtest: dict[str, float] = Field(description="The model's logged backtest metrics.")
    policy_version: str
    loaded_at: str | None = Field(
        None,
        description="When this worker started serving this version (a new champion is swapped in without a restart).",
    )
    load_seconds: float | None = Field(
        None, description="How long loading the version and precomputing the stored accounts' answers took."
    )
