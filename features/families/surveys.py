"""Surveys: NPS (latest, detractor, change, recency) and CSAT answers so far. From `surveys` and
`ticket_events` (kind csat). Answers are biased (mostly the happiest and the angriest answer), so
missing answers are NaN, never a neutral score."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.context import FeatureContext
from features.registry import Family, spec
from features.timeline import DAY, EventIndex, to_seconds

F = "surveys"
NO_NPS = "no NPS answer before the cutoff"
SPECS = [
    spec("nps_last", F, "score", "latest NPS answer (0-10)", "last NPS answer {n} of 10", NO_NPS),
    spec(
        "nps_detractor",
        F,
        "flag",
        "latest NPS answer is 6 or below (detractor)",
        "a detractor in the last NPS survey (score 6 or below)",
        NO_NPS,
    ),
    spec(
        "nps_change",
        F,
        "score",
        "latest NPS answer minus the one before",
        "NPS {direction} {value} points since the previous answer",
        "fewer than two NPS answers",
    ),
    spec("days_since_nps", F, "days", "days since the latest NPS answer", "last answered NPS {n} days ago", NO_NPS),
    spec("nps_answers_365d", F, "count", "NPS answers in the last 365 days", "{n} NPS answers in a year"),
    spec(
        "csat_mean_180d",
        F,
        "score",
        "mean CSAT answered in the last 180 days (1-5)",
        "CSAT {value} of 5 over the last 180 days",
        "no CSAT answer in the last 180 days",
    ),
    spec("csat_answers_180d", F, "count", "CSAT answers in the last 180 days", "{n} CSAT answers in 180 days"),
    spec(
        "csat_last",
        F,
        "score",
        "latest CSAT answer (1-5)",
        "last CSAT answer {n} of 5",
        "no CSAT answer before the cutoff",
    ),
]


def build_surveys(ctx: FeatureContext) -> pd.DataFrame:
    a, c = ctx.acc, ctx.cut_s
    s = ctx.tables["surveys"]
    s = s[s["kind"] == "nps"]
    nps = EventIndex(
        ctx.code(s["account_id"]),
        to_seconds(s["answered_at"]),
        {"score": s["score"].to_numpy(dtype="float64", na_value=np.nan)},
    )
    last = nps.last(a, c, "score")
    ev = ctx.ticket_events()
    cs = ev[ev["kind"] == "csat"]
    csat = EventIndex(cs["acc"], cs["at_s"], {"value": cs["value"]})
    out = {
        "nps_last": last,
        "nps_detractor": np.where(np.isnan(last), np.nan, (last <= 6).astype(np.float64)),
        "nps_change": last - nps.last(a, c, "score", nth=2),
        "days_since_nps": (c - nps.last(a, c)) / DAY,
        "nps_answers_365d": nps.count(a, c, c - 365 * DAY),
        "csat_mean_180d": csat.mean("value", a, c, c - 180 * DAY),
        "csat_answers_180d": csat.count(a, c, c - 180 * DAY),
        "csat_last": csat.last(a, c, "value"),
    }
    return pd.DataFrame(out).astype("float64")


FAMILY = Family(F, "what customers say in surveys (NPS, CSAT)", build_surveys, SPECS, ("surveys", "ticket_events"))
