"""Text: what customers say and how it moves. Aggregates, at each cutoff, of the per-message
signals of `features.text.signals` (customer messages sent before the cutoff only).

The signals are computed by the entry point (they need the sentiment model) and handed over as
the extra table `message_signals`; without it every text feature is NaN ("not computed").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.context import FeatureContext
from features.registry import Family, spec
from features.timeline import DAY, EventIndex, to_seconds

F = "text"
NOT_COMPUTED = "no customer message in the window, or text signals not computed"
SPECS = [
    spec(
        "customer_sentiment_30d",
        F,
        "score",
        "mean sentiment of customer messages, last 30 days (-1 to 1)",
        "customer tone {value} on a -1 to 1 scale over the last 30 days",
        NOT_COMPUTED,
        baseline="sentiment_change_30d",
    ),
    spec(
        "customer_sentiment_90d",
        F,
        "score",
        "mean sentiment of customer messages, last 90 days (-1 to 1)",
        "customer tone {value} over the last 90 days",
        NOT_COMPUTED,
    ),
    spec(
        "sentiment_change_30d",
        F,
        "score",
        "customer sentiment, last 30 days minus the 90 days before",
        "customer tone {direction} {value} against the previous 90 days",
        NOT_COMPUTED,
    ),
    spec(
        "negative_messages_30d",
        F,
        "count",
        "negative customer messages in the last 30 days",
        "{n} negative messages from the customer in 30 days",
    ),
    spec(
        "critical_moments_90d",
        F,
        "count",
        "customer messages with a critical moment (cancel, manager, legal, chargeback, very disappointed), last 90 days",
        "{n} critical moments in 90 days",
    ),
    spec(
        "days_since_critical_moment",
        F,
        "days",
        "days since the latest critical moment",
        "a critical moment {n} days ago",
        "no critical moment on record",
    ),
    spec(
        "cancel_mentions_90d",
        F,
        "count",
        "customer messages about cancelling or not renewing, last 90 days",
        "mentioned cancelling {n} times in 90 days",
    ),
    spec(
        "supervisor_requests_90d",
        F,
        "count",
        "customer requests for a manager or supervisor, last 90 days",
        "asked for a manager {n} times in 90 days",
    ),
    spec(
        "legal_mentions_90d",
        F,
        "count",
        "customer messages with legal language or chargebacks, last 90 days",
        "legal language or chargebacks {n} times in 90 days",
    ),
    spec(
        "rephrasings_30d",
        F,
        "count",
        "customer messages asking an earlier question of the same ticket again, last 30 days",
        "the customer rephrased the same question {n} times in 30 days",
    ),
    spec(
        "questions_asked_three_times_90d",
        F,
        "count",
        "tickets whose question was asked a third time in the last 90 days (first-contact-resolution failure)",
        "{n} questions asked three times in 90 days",
    ),
    spec(
        "repeated_tickets_text_90d",
        F,
        "count",
        "new tickets reading like one the account opened in the 30 days before, last 90 days",
        "{n} tickets repeating an earlier one in 90 days",
    ),
    spec(
        "frustration_drift_90d",
        F,
        "score",
        "mean sentiment of follow-up customer messages against the ticket's first, last 90 days (negative: frustration building)",
        "tone within tickets moves {direction} {value} from the first message",
        NOT_COMPUTED,
    ),
]


def build_text(ctx: FeatureContext) -> pd.DataFrame:
    out = {s.name: np.full(len(ctx), np.nan) for s in SPECS}
    signals = ctx.tables.get("message_signals")
    if signals is None:
        return pd.DataFrame(out)
    a, c = ctx.acc, ctx.cut_s
    s = signals[signals["author"] == "customer"]
    acc = ctx.code(s["account_id"])
    keep = acc >= 0
    s, acc = s[keep], acc[keep]
    t = to_seconds(s["sent_at"])
    crit = s["critical"]
    index = EventIndex(
        acc,
        t,
        {
            "sentiment": s["sentiment"],
            "negative": s["negative"],
            "critical": crit.notna(),
            "cancel": crit.eq("cancel"),
            "supervisor": crit.eq("supervisor"),
            "legal": crit.isin(["legal", "chargeback"]),
            "rephrase": s["rephrase"],
            "third": s["asks"].eq(3),
            "repeat": s["repeat_across"],
            "drift": s["drift"],
        },
    )
    critical = s[crit.notna().to_numpy()]
    w = lambda days: c - days * DAY  # noqa: E731
    total = lambda name, days: index.total(name, a, c, w(days))[0]  # noqa: E731
    recent = index.mean("sentiment", a, c, w(30))
    out.update(
        {
            "customer_sentiment_30d": recent,
            "customer_sentiment_90d": index.mean("sentiment", a, c, w(90)),
            "sentiment_change_30d": recent - index.mean("sentiment", a, w(30), w(120)),
            "negative_messages_30d": total("negative", 30),
            "critical_moments_90d": total("critical", 90),
            "days_since_critical_moment": (
                c - EventIndex(ctx.code(critical["account_id"]), to_seconds(critical["sent_at"])).last(a, c)
            )
            / DAY,
            "cancel_mentions_90d": total("cancel", 90),
            "supervisor_requests_90d": total("supervisor", 90),
            "legal_mentions_90d": total("legal", 90),
            "rephrasings_30d": total("rephrase", 30),
            "questions_asked_three_times_90d": total("third", 90),
            "repeated_tickets_text_90d": total("repeat", 90),
            "frustration_drift_90d": index.mean("drift", a, c, w(90)),
        }
    )
    return pd.DataFrame(out).astype("float64")


FAMILY = Family(
    F,
    "what customers write: tone, critical moments, repeated questions, frustration",
    build_text,
    SPECS,
    ("ticket_messages",),
)
