"""Business: ARR (current and against the average live account), seats, segment, plan, billing,
tenure, days to the next renewal, executive sponsor. From `accounts`, `account_events`, `churn`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.vocabulary import TERM_MONTHS
from features.context import FeatureContext
from features.registry import Family, spec
from features.timeline import DAY, EventIndex, to_seconds

F = "business"
SPECS = [
    spec(
        "arr_current",
        F,
        "usd",
        "ARR at the cutoff: contract ARR plus upgrades and downgrades so far",
        "ARR of ${n}",
        role="context",
    ),
    spec(
        "arr_vs_average",
        F,
        "ratio",
        "current ARR against the average live account at the cutoff",
        "worth {value}x the average account",
        role="context",
    ),
    spec(
        "arr_change_365d",
        F,
        "usd",
        "ARR added (upgrades) minus removed (downgrades) in the last 365 days",
        "ARR changed by ${n} in the last year",
        role="context",
    ),
    spec("seats", F, "count", "seats under contract", "{n} seats", role="context"),
    spec("tenure_days", F, "days", "days since contract start", "customer for {n} days", role="context"),
    spec(
        "days_to_renewal",
        F,
        "days",
        "days until the next renewal (every term from the contract's renewal date, or from its start)",
        "renewal in {n} days",
        role="context",
    ),
    spec(
        "exec_sponsor_present",
        F,
        "flag",
        "an executive sponsor at contract who has not left",
        "executive sponsor in place: {value}",
    ),
    spec("segment", F, "category", "segment", "{value} segment", kind="categorical", role="context"),
    spec("billing", F, "category", "contract term", "{value} billing", kind="categorical", role="context"),
    spec("plan", F, "category", "plan", "{value} plan", kind="categorical", role="context"),
    spec("industry", F, "category", "industry", "{value} industry", kind="categorical", role="context"),
    spec("region", F, "category", "region", "{value} region", kind="categorical", role="context"),
]


def add_months(start: np.ndarray, months: np.ndarray) -> np.ndarray:
    """datetime64[s] + whole months, keeping the day of month (clipped to the month's end)."""
    day = start.astype("datetime64[D]")
    month = day.astype("datetime64[M]")
    dom = (day - month.astype("datetime64[D]")).astype(np.int64)
    time = start - day.astype(start.dtype)
    target = month + months.astype("timedelta64[M]")
    length = ((target + np.timedelta64(1, "M")).astype("datetime64[D]") - target.astype("datetime64[D]")).astype(
        np.int64
    )
    return (target.astype("datetime64[D]") + np.minimum(dom, length - 1).astype("timedelta64[D]")).astype(
        start.dtype
    ) + time


def next_renewal(
    start: pd.Series, billing: pd.Series, cutoff: pd.Series, renewal: pd.Series | None = None
) -> np.ndarray:
    """First renewal on or after the cutoff, as datetime64[s]. Renewals fall every term from
    `renewal` (a renewal date agreed in the contract) where it is given, else from the contract's
    start; only dates after the start count."""
    s = start.dt.tz_convert(None).to_numpy().astype("datetime64[s]")
    anchor = s if renewal is None else renewal.fillna(start).dt.tz_convert(None).to_numpy().astype("datetime64[s]")
    c = cutoff.dt.tz_convert(None).to_numpy().astype("datetime64[s]")
    term = billing.map(TERM_MONTHS).to_numpy(dtype=np.int64)
    elapsed = (c.astype("datetime64[M]") - anchor.astype("datetime64[M]")).astype(np.int64)
    k = elapsed // term - 1  # one term early: the loop below steps forward (an anchor after the cutoff gives k < 0)
    k = np.where(anchor == s, np.maximum(k, 1), k)
    best = add_months(anchor, k * term)
    for _ in range(3):  # at most a couple of steps past the estimate
        behind = (best < c) | (best <= s)
        k = np.where(behind, k + 1, k)
        best = np.where(behind, add_months(anchor, k * term), best)
    return best


def _live_mask(ctx: FeatureContext, cut: np.ndarray) -> np.ndarray:
    start = to_seconds(ctx.accounts["contract_start"])
    churn = ctx.tables["churn"]
    churned = np.full(len(ctx.accounts), np.iinfo(np.int64).max)
    churned[ctx.code(churn["account_id"])] = to_seconds(churn["churned_at"])
    # strictly before the cutoff on both ends: a churn dated exactly at the cutoff is not yet known
    return (start[:, None] < cut[None, :]) & (churned[:, None] >= cut[None, :])


def build_business(ctx: FeatureContext) -> pd.DataFrame:
    a, c = ctx.acc, ctx.cut_s
    acc = ctx.accounts
    e = ctx.tables["account_events"]
    e = e[e["kind"].isin(["upgrade", "downgrade"]) & e["value"].notna()]
    changes = EventIndex(
        ctx.code(e["account_id"]), to_seconds(e["at"]), {"value": e["value"].to_numpy(dtype="float64")}
    )
    arr0 = acc["arr"].to_numpy(dtype="float64")
    arr_now = arr0[a] + changes.total("value", a, c)[0]

    # the average is over every account live just before the cutoff, whichever snapshots were asked for
    cuts = np.unique(c)
    live = _live_mask(ctx, cuts)
    n_acc = len(acc)
    all_acc = np.repeat(np.arange(n_acc), len(cuts))
    all_cut = np.tile(cuts, n_acc)
    arr_all = (arr0[all_acc] + changes.total("value", all_acc, all_cut)[0]).reshape(n_acc, len(cuts))
    with np.errstate(invalid="ignore", divide="ignore"):
        average = (arr_all * live).sum(axis=0) / live.sum(axis=0)
    avg_at = average[np.searchsorted(cuts, c)]

    sponsor_left = ctx.account_events("sponsor_left")
    cutoff = ctx.snapshots["cutoff"]
    start = acc["contract_start"].iloc[a].reset_index(drop=True)
    renewal = next_renewal(
        start, acc["billing"].iloc[a].reset_index(drop=True), cutoff, acc["renewal_date"].iloc[a].reset_index(drop=True)
    )
    cut64 = cutoff.dt.tz_convert(None).to_numpy().astype("datetime64[s]")
    out = pd.DataFrame(
        {
            "arr_current": arr_now,
            "arr_vs_average": arr_now / avg_at,
            "arr_change_365d": changes.total("value", a, c, c - 365 * DAY)[0],
            "seats": acc["seats"].to_numpy(dtype="float64")[a],
            "tenure_days": (c - to_seconds(start)) / DAY,
            "days_to_renewal": (renewal - cut64).astype("timedelta64[s]").astype(np.int64) / DAY,
            "exec_sponsor_present": (
                acc["exec_sponsor"].to_numpy(dtype=bool, na_value=False)[a] & (sponsor_left.count(a, c) == 0)
            ).astype(np.float64),
        }
    )
    for col in ("segment", "billing", "plan", "industry", "region"):
        out[col] = acc[col].iloc[a].reset_index(drop=True).astype("str")
    return out


FAMILY = Family(F, "the account's value, contract and relationship", build_business, SPECS, ("accounts",))
