"""Experience: predicted CSAT and CES for every resolved ticket, answered or not (see
`models.outcomes`), aggregated at each cutoff over tickets resolved before it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.context import FeatureContext
from features.registry import Family, spec
from features.timeline import DAY, EventIndex, to_seconds

F = "experience"
MISSING = "no resolved ticket with a prediction in the last 90 days (or text signals not computed)"
SPECS = [
    spec(
        "predicted_csat_90d",
        F,
        "score",
        "mean predicted CSAT (1-5) of tickets resolved in the last 90 days, answered or not",
        "predicted satisfaction {value} of 5 on recent tickets",
        MISSING,
    ),
    spec(
        "predicted_ces_90d",
        F,
        "score",
        "mean predicted customer effort (1-7, 7 = most effort) of tickets resolved in the last 90 days",
        "predicted effort {value} of 7 on recent tickets",
        MISSING,
    ),
    spec(
        "predicted_unhappy_tickets_90d",
        F,
        "count",
        "tickets resolved in the last 90 days with predicted CSAT below 3",
        "{n} recent tickets likely left the customer unhappy",
    ),
    spec(
        "predicted_high_effort_tickets_90d",
        F,
        "count",
        "tickets resolved in the last 90 days with predicted CES of 5 or more",
        "{n} recent tickets likely took high effort",
    ),
]


def build_experience(ctx: FeatureContext) -> pd.DataFrame:
    out = {s.name: np.full(len(ctx), np.nan) for s in SPECS}
    outcomes = ctx.tables.get("ticket_outcomes")
    if outcomes is None:
        return pd.DataFrame(out)
    o = outcomes[outcomes["predicted_csat"].notna() | outcomes["predicted_ces"].notna()]
    acc = ctx.code(o["account_id"])
    o, acc = o[acc >= 0], acc[acc >= 0]
    index = EventIndex(
        acc,
        to_seconds(o["at"]),
        {
            "csat": o["predicted_csat"],
            "ces": o["predicted_ces"],
            "unhappy": o["predicted_csat"] < 3,
            "effort": o["predicted_ces"] >= 5,
        },
    )
    a, c = ctx.acc, ctx.cut_s
    start = c - 90 * DAY
    out["predicted_csat_90d"] = index.mean("csat", a, c, start)
    out["predicted_ces_90d"] = index.mean("ces", a, c, start)
    out["predicted_unhappy_tickets_90d"] = index.total("unhappy", a, c, start)[0]
    out["predicted_high_effort_tickets_90d"] = index.total("effort", a, c, start)[0]
    return pd.DataFrame(out).astype("float64")


FAMILY = Family(
    F,
    "predicted satisfaction and effort of every ticket, not only the answered ones",
    build_experience,
    SPECS,
    ("ticket_events",),
)
