"""Risk events: counts in the last 180 days and days since the latest, by kind. From `account_events`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.context import FeatureContext
from features.registry import Family, spec
from features.timeline import DAY

F = "risk_events"
KINDS = ("billing_dispute", "payment_failed", "security_incident", "legal_threat", "sponsor_left", "downgrade")
SPECS = []
for kind in KINDS:
    words = kind.replace("_", " ")
    SPECS.append(
        spec(
            f"{kind}_180d",
            F,
            "count",
            f"{words} events in the last 180 days",
            f"{{n}} {words} events in the last 180 days",
        )
    )
    SPECS.append(
        spec(
            f"days_since_{kind}",
            F,
            "days",
            f"days since the latest {words} event",
            f"{words} {{n}} days ago",
            f"no {words} event on record",
            role="context",
        )
    )  # how long ago is history; whether it happened lately is the count above


def build_risk_events(ctx: FeatureContext) -> pd.DataFrame:
    a, c = ctx.acc, ctx.cut_s
    out = {}
    for kind in KINDS:
        index = ctx.account_events(kind)
        out[f"{kind}_180d"] = index.count(a, c, c - 180 * DAY).astype(np.float64)
        out[f"days_since_{kind}"] = (c - index.last(a, c)) / DAY
    return pd.DataFrame(out)


FAMILY = Family(
    F,
    "risk events: disputes, failed payments, incidents, legal threats, sponsor changes, downgrades",
    build_risk_events,
    SPECS,
    ("account_events",),
)
