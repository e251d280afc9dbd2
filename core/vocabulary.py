"""The platform's vocabulary: every name and enumeration that more than one layer speaks.

Horizons and their label and curve columns, the panel's keys, the values the input contracts
allow, the escalation bands and tiers, the lifecycle's statuses and outcomes, the sentiment labels.
The contracts (`core.contracts`), the API schemas (`serving.schemas`), the feature dictionary and
the models import these; nothing else spells them out.

Where the API publishes a set of values, the `Literal` type is the definition and the tuple is
read from it (`typing.get_args` keeps the order), so the OpenAPI enums and the checks in code can
never disagree. Orders matter: they are the order of JSON outputs, OpenAPI enums and policy hashes.
"""

from __future__ import annotations

from typing import Literal, get_args

# --- risk horizons and the panel -------------------------------------------------------------

#: The horizons of the risk curve, in days, shortest first.
Horizon = Literal[30, 60, 90, 180]
HORIZONS: tuple[int, ...] = get_args(Horizon)
#: The panel's label column per horizon (1 churned within it, 0 not, null not yet known).
LABELS: tuple[str, ...] = tuple(f"churned_within_{h}d" for h in HORIZONS)
#: The risk curve's column per horizon: P(churn within h days).
CURVE_COLUMNS: tuple[str, ...] = tuple(f"p_{h}d" for h in HORIZONS)
#: A snapshot's key in the panel and in every scored frame.
KEYS = ("account_id", "cutoff")
#: The accounts' attributes that are features as they are, as categories (the business family's
#: categorical features, in the dictionary's order).
CATEGORICAL = ("segment", "billing", "plan", "industry", "region")

# --- input tables (core.contracts) ----------------------------------------------------------

#: The segments the default escalation policy names as tiers; `accounts.segment` itself is free text.
SEGMENTS = ("smb", "mid_market", "enterprise")
#: Contract terms by name, in months. `accounts.billing` also accepts the number of months.
TERM_MONTHS = {"monthly": 1, "quarterly": 3, "semiannual": 6, "annual": 12, "biennial": 24, "triennial": 36}
BILLING = tuple(TERM_MONTHS)
#: The activity columns of usage_daily; a table needs at least one, an absent one is null.
USAGE_METRICS = (
    "active_users",
    "logins",
    "session_minutes",
    "key_feature_events",
    "distinct_features_used",
    "api_calls",
)
Priority = Literal["low", "normal", "high", "urgent"]
PRIORITIES: tuple[str, ...] = get_args(Priority)
TicketCategory = Literal["technical", "bug", "how_to", "billing", "security", "legal", "feature_request", "account"]
TICKET_CATEGORIES: tuple[str, ...] = get_args(TicketCategory)
CHANNELS = ("email", "chat", "phone", "web")
TICKET_EVENT_KINDS = ("first_response", "reopened", "transferred", "resolved", "csat", "ces")
Author = Literal["customer", "agent"]
AUTHORS: tuple[str, ...] = get_args(Author)
SURVEY_KINDS = ("nps",)
ACCOUNT_EVENT_KINDS = (
    "payment_failed",
    "billing_dispute",
    "security_incident",
    "legal_threat",
    "sponsor_left",
    "downgrade",
    "upgrade",
)
#: The range of the score an event of this kind carries in ticket_events.value (CSAT, CES).
SCORED_EVENT_RANGES = {"csat": (1, 5), "ces": (1, 7)}

# --- escalation -----------------------------------------------------------------------------

#: The escalation policy's bands, as the API lists them: most severe first.
Band = Literal["critical", "high", "watch", "none"]
#: The same bands, lowest first: a band's index orders it.
BANDS: tuple[str, ...] = get_args(Band)[::-1]
#: The lifecycle: open -> acknowledged -> resolved, or expired when nobody worked it to an outcome.
STATUSES = ("open", "acknowledged", "resolved", "expired")
#: What CS found when resolving an escalation.
RESOLUTION_OUTCOMES = ("saved", "churned", "not_at_risk")
#: The customer's fate as rated later with feedback on a handoff.
Outcome = Literal["saved", "churned", "unknown"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)

# --- text -----------------------------------------------------------------------------------

#: The sentiment model's classes, in the order of its probability columns.
SENTIMENT_LABELS = ("negative", "neutral", "positive")
