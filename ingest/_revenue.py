"""An account's ARR timeline from its subscriptions and invoiced periods: when contracts start,
change and end, and what the ARR is at each of those moments.

The billing connector (ingest/stripe.py) reads the vendor's objects into two normalised frames and
hands them over; nothing here knows an export's shape:
- subscriptions: subscription_id, account_id, paid_start (the first paid moment: a trial is not a
  contract), end (null while live), arr (USD, of the subscription's current items);
- periods: subscription_id, at (period start), arr (USD billed for that period, annualised).

A subscription's ARR is what its invoices billed, from each invoiced period on (the first one
moved to the paid start), else its items' ARR from the paid start, and 0 from its end. Summed per
account, the changes while a contract stays live are upgrades and downgrades: between invoiced
periods of a subscription, between subscriptions that overlap, or when one subscription replaces
another within `switch_gap_days` (an end and a start that close are one plan switch, not churn).
An account whose last change ends its contract has churned then.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ingest._export import event_frame


def arr_points(subs: pd.DataFrame, periods: pd.DataFrame) -> pd.DataFrame:
    """Per subscription, its ARR from each point in time: the invoiced periods inside its paid life
    (the first one moved to the paid start), else its items' ARR from the paid start; 0 at its end."""
    p = periods.merge(subs[["subscription_id", "paid_start", "end"]], on="subscription_id")
    p = p[(p["at"] >= p["paid_start"]) & (p["end"].isna() | (p["at"] < p["end"]))]
    p = p.sort_values(["subscription_id", "at"], kind="stable")
    first = ~p["subscription_id"].duplicated()
    p = p.assign(at=p["at"].where(~first, p["paid_start"]))
    invoiced = subs["subscription_id"].isin(p["subscription_id"]).to_numpy()
    from_items = subs.loc[~invoiced, ["subscription_id", "paid_start", "arr"]].rename(columns={"paid_start": "at"})
    ends = (
        subs.loc[subs["end"].notna(), ["subscription_id", "end"]].rename(columns={"end": "at"}).assign(arr=0.0, live=-1)
    )
    points = pd.concat(
        [p[["subscription_id", "at", "arr"]].assign(live=0), from_items.assign(live=0), ends], ignore_index=True
    )
    points = points.sort_values(["subscription_id", "at", "live"], kind="stable")
    starts = ~points["subscription_id"].duplicated()
    points = points.assign(
        live=points["live"].where(~starts, 1),
        d_arr=points["arr"] - points.groupby("subscription_id")["arr"].shift(fill_value=0.0),
    )
    return points.merge(subs[["subscription_id", "account_id"]], on="subscription_id")[
        ["account_id", "at", "live", "d_arr"]
    ]


def arr_changes(points: pd.DataFrame, switch_gap_days: float) -> pd.DataFrame:
    """The account's timeline: per (account, at) the ARR change, whether it starts, ends or changes a
    live contract. An end followed by a start within the gap is one change (a plan switch)."""
    rows = _timeline(points)
    gap = pd.Timedelta(days=switch_gap_days)
    following = rows.groupby("account_id")["at"].shift(-1)
    starts_next = rows.groupby("account_id")["start"].shift(-1, fill_value=False).astype(bool)
    switch = rows["end"] & starts_next & ((following - rows["at"]) <= gap)
    merged = points.merge(
        rows.loc[switch, ["account_id", "at"]].assign(_to=following[switch]), on=["account_id", "at"], how="left"
    )
    return _timeline(merged.assign(at=merged["_to"].fillna(merged["at"])).drop(columns="_to"))


def _timeline(points: pd.DataFrame) -> pd.DataFrame:
    rows = points.groupby(["account_id", "at"], as_index=False)[["live", "d_arr"]].sum()
    live = rows.groupby("account_id")["live"].cumsum()
    arr = rows.groupby("account_id")["d_arr"].cumsum()
    before = live - rows["live"]
    return rows.assign(
        live_after=live,
        arr_after=arr,
        start=(before == 0) & (live > 0),
        end=(before > 0) & (live == 0),
        change=(before > 0) & (live > 0) & (rows["d_arr"].abs() >= 0.005),
    )


def contract_starts(changes: pd.DataFrame) -> pd.DataFrame:
    """Per account, the row of its first contract start (`at`, and the ARR then in `arr_after`)."""
    return changes[changes["start"]].drop_duplicates("account_id")


def churn(changes: pd.DataFrame) -> pd.DataFrame:
    """The churn table: an account whose last change ends its contract churned then (one that came
    back and is live at the export's end has not)."""
    last = changes.drop_duplicates("account_id", keep="last")
    churned = last[last["end"]]
    return pd.DataFrame({"account_id": churned["account_id"].astype("str"), "churned_at": churned["at"]}).reset_index(
        drop=True
    )


def arr_events(changes: pd.DataFrame) -> pd.DataFrame:
    """upgrade / downgrade for every ARR change of a live contract, valued in USD (signed)."""
    moved = changes[changes["change"]]
    kind = np.where(moved["d_arr"] > 0, "upgrade", "downgrade")
    return event_frame("account_id", moved["account_id"], moved["at"], kind, moved["d_arr"].round(2))
