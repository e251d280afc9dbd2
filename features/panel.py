"""The snapshot panel: one row per (account, cutoff) with point-in-time features and labels.

Steps, each a small function of DataFrames: the data's time range -> the cutoffs -> the snapshot
keys (accounts live at each cutoff) -> every registered feature family -> the labels (censored
where the horizon runs past the data).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd

from core.errors import InputError
from core.vocabulary import HORIZONS, KEYS, LABELS
from features.context import FeatureContext, FeatureParams
from features.registry import Family, families

#: Days of history a default first cutoff leaves for baselines (the 90-day windows before the last 30).
DEFAULT_WARMUP_DAYS = 120

TIME_COLUMNS = {
    "usage_daily": "date",
    "tickets": "created_at",
    "ticket_events": "at",
    "ticket_messages": "sent_at",
    "surveys": "answered_at",
    "account_events": "at",
    "churn": "churned_at",
}


def data_range(tables: dict[str, pd.DataFrame]) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(first day, end) of the data: end is the midnight after the latest record of any table."""
    return data_range_of({table: tables[table][column] for table, column in TIME_COLUMNS.items() if table in tables})


def data_range_of(times: dict[str, pd.Series]) -> tuple[pd.Timestamp, pd.Timestamp]:
    """`data_range` from the time columns alone (table -> values), for data read in slices."""
    usage = times.get("usage_daily", pd.Series(dtype="datetime64[us, UTC]")).dropna()
    if usage.empty:
        raise InputError("table 'usage_daily' is empty; expected daily usage rows to define the data's time range")
    start = usage.min().floor("D")
    latest = [usage.max() + pd.Timedelta(days=1)]
    for table, values in times.items():
        values = values.dropna()
        if table != "usage_daily" and len(values):
            latest.append((values.max() + pd.Timedelta(microseconds=1)).ceil("D"))
    return start, max(latest)


def parse_every(every: str) -> pd.Timedelta:
    """'30d', '2w' or '7' (days) -> a positive whole number of days."""
    match = re.fullmatch(r"\s*(\d+)\s*([dw]?)\s*", every or "")
    if not match or int(match.group(1)) == 0:
        raise InputError(f"--every {every!r}: expected a positive number of days or weeks, such as 30d, 7d or 2w")
    n = int(match.group(1)) * (7 if match.group(2) == "w" else 1)
    return pd.Timedelta(days=n)


def _as_cutoff(value: str | dt.date | pd.Timestamp, flag: str) -> pd.Timestamp:
    try:
        # ISO order only: pandas reads 01/02/2024 as 2 January, which a European means as 1 February
        if isinstance(value, str) and not re.fullmatch(r"\s*\d{4}-\d{2}-\d{2}([T ].*)?", value):
            raise ValueError(value)
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise InputError(f"{flag} {value!r}: expected a date as YYYY-MM-DD") from None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    if stamp != stamp.floor("D"):
        raise InputError(f"{flag} {value!r}: expected a date (cutoffs are midnights UTC), got a time of day")
    return stamp


def make_cutoffs(
    data_start: pd.Timestamp,
    data_end: pd.Timestamp,
    *,
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
    every: str = "30d",
) -> pd.DatetimeIndex:
    """Cutoffs from `start` to `end` (inclusive) every `every`, inside the data's range.

    Defaults: the first cutoff leaves `DEFAULT_WARMUP_DAYS` of history, the last is the data's end.
    """
    step = parse_every(every)
    first = _as_cutoff(start, "--start") if start is not None else data_start + pd.Timedelta(days=DEFAULT_WARMUP_DAYS)
    last = _as_cutoff(end, "--end") if end is not None else data_end
    span = f"the data runs from {data_start.date()} to {data_end.date()}"
    if first <= data_start:
        raise InputError(
            f"--start {first.date()}: is on or before the first day of data; expected a cutoff after {data_start.date()} ({span})"
        )
    if last > data_end:
        raise InputError(
            f"--end {last.date()}: is after the end of the data; expected a cutoff on or before {data_end.date()} ({span})"
        )
    if first > last:
        if start is None:  # the default needs more history than the data has: say so, and how to cut earlier
            raise InputError(
                f"--start not given: the default first cutoff, {DEFAULT_WARMUP_DAYS} days into the data "
                f"({first.date()}), is after its end ({span}); pass an earlier --start, or bring more history"
            )
        raise InputError(f"--start {first.date()} is after --end {last.date()}; expected start <= end ({span})")
    return pd.date_range(first, last, freq=step, name="cutoff").astype("datetime64[us, UTC]")


def calendar_cutoffs(
    cutoffs: pd.DatetimeIndex, usage_days: pd.DataFrame, data_end: pd.Timestamp
) -> dict[pd.Timestamp, str]:
    """Cutoffs added to a regular calendar (with the reason for each) so that the backtest also
    tests the calendar's hard cases (models/backtest.py): the latest month end, and the day after
    the deepest week in which the whole base was below BASE_DIP of its usual activity (a holiday
    week), each between the first and the last regular cutoff and early enough for its 30-day
    outcome to be known. `usage_days`: the base's daily usage totals (usage.daily_totals)."""
    from features.families.usage import BASE_DIP, base_activity

    if len(cutoffs) < 2:
        return {}
    last = min(cutoffs[-1], data_end - pd.Timedelta(days=HORIZONS[0]))
    days = pd.date_range(cutoffs[0] + pd.Timedelta(days=1), last, freq="D")
    out: dict[pd.Timestamp, list[str]] = {}
    month_ends = days[days.day == 1]
    if len(month_ends):
        out.setdefault(month_ends[-1], []).append("a month end")
    level = base_activity(usage_days, days)
    if np.isfinite(level).any() and np.nanmin(level) < BASE_DIP:
        deepest = len(level) - 1 - int(np.nanargmin(level[::-1]))  # the latest of equally deep weeks
        out.setdefault(days[deepest], []).append(
            f"the base's quietest week ({level[deepest]:.0%} of its usual activity)"
        )
    return {c: " and ".join(why) for c, why in out.items()}


def with_calendar(cutoffs: pd.DatetimeIndex, calendar: dict[pd.Timestamp, str]) -> pd.DatetimeIndex:
    """The regular cutoffs and the calendar's, in time order."""
    return cutoffs.union(pd.DatetimeIndex(list(calendar), name="cutoff")).astype(cutoffs.dtype)


def churned_at(ids: pd.Series, churn: pd.DataFrame) -> pd.Series:
    """Each id's churn time, NaT where it has not churned: a time column even when nobody churned."""
    when = churn.set_index("account_id")["churned_at"].astype("datetime64[us, UTC]").reindex(ids.to_numpy())
    return pd.Series(when.to_numpy(), index=ids.index, dtype="datetime64[us, UTC]")


def snapshot_keys(tables: dict[str, pd.DataFrame], cutoffs: Iterable[pd.Timestamp]) -> pd.DataFrame:
    """Accounts live at each cutoff: started before it and not churned at or before it."""
    accounts = tables["accounts"]
    cuts = pd.DatetimeIndex(cutoffs).astype("datetime64[us, UTC]")
    churned = churned_at(accounts["account_id"], tables["churn"])
    start = accounts["contract_start"].to_numpy()
    end = churned.to_numpy()
    cut = cuts.to_numpy()
    started = start[:, None] < cut[None, :]
    gone = pd.notna(end)[:, None] & (end[:, None] <= cut[None, :])
    acc, k = np.nonzero(started & ~gone)
    order = np.lexsort((acc, k))  # by cutoff, then account
    return pd.DataFrame(
        {
            "account_id": accounts["account_id"].to_numpy()[acc[order]],
            "cutoff": pd.Series(cuts[k[order]], dtype="datetime64[us, UTC]"),
        }
    ).astype({"account_id": "str"})


def make_labels(keys: pd.DataFrame, churn: pd.DataFrame, data_end: pd.Timestamp) -> pd.DataFrame:
    """`churned_within_{h}d` = churned_at in (cutoff, cutoff + h]; null where cutoff + h > data end.

    Censoring is strict: even a churn seen inside a horizon that runs past the data is null, because
    keeping only the positives of the censored rows would bias every rate learned from them.
    """
    churned = churned_at(keys["account_id"], churn)
    out = {}
    for h, name in zip(HORIZONS, LABELS, strict=True):
        horizon_end = keys["cutoff"] + pd.Timedelta(days=h)
        hit = (churned > keys["cutoff"]) & (churned <= horizon_end)
        label = pd.Series(hit.fillna(False).astype("int8"), dtype="Int8")
        out[name] = label.mask((horizon_end > data_end).to_numpy())
    return pd.DataFrame(out)


def families_without_data(counts: dict[str, int]) -> dict[str, str]:
    """Families whose every input table is absent or empty (rows per table in `counts`), with a
    note each: their features are null, not zero (no tickets in the data is not "no tickets")."""
    out = {}
    for family in families():
        if family.tables and all(counts.get(table, 0) == 0 for table in family.tables):
            tables = ("tables " if len(family.tables) > 1 else "table ") + " and ".join(f"'{t}'" for t in family.tables)
            out[family.name] = (
                f"no data for the {family.name} features ({tables} absent or empty): "
                f"its {len(family.specs)} features are null and left out of training"
            )
    return out


def build_features(
    tables: dict[str, pd.DataFrame],
    keys: pd.DataFrame,
    params: FeatureParams | None = None,
    *,
    only: Iterable[Family] | None = None,
    without_data: Iterable[str] = (),
    progress: Callable[[str, float], None] | None = None,
) -> pd.DataFrame:
    """Features for the given (account_id, cutoff) keys, one column per registered feature.

    `without_data`: families with no data in the whole base (`families_without_data`), left null;
    a block of accounts cannot tell that on its own."""
    ctx = FeatureContext(tables, keys, params or FeatureParams())
    parts = [keys.reset_index(drop=True)]
    without_data = set(without_data)
    for family in only or families():
        started = time.perf_counter()
        if family.name in without_data:
            parts.append(pd.DataFrame({s.name: np.full(len(keys), np.nan) for s in family.specs}))
            continue
        frame = family.build(ctx)
        expected = [s.name for s in family.specs]
        expected += [c for c in frame.columns[len(expected) :] if family.makes(c) is not None]
        if list(frame.columns) != expected or len(frame) != len(keys):
            raise RuntimeError(
                f"family {family.name!r} returned columns {list(frame.columns)} x {len(frame)} rows; expected {expected} x {len(keys)}"
            )
        parts.append(frame.reset_index(drop=True))
        if progress:
            progress(family.name, time.perf_counter() - started)
    return pd.concat(parts, axis=1)


def build_panel(
    tables: dict[str, pd.DataFrame],
    *,
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
    every: str = "30d",
    params: FeatureParams | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """The snapshot panel and a summary (data range, cutoffs, label rates) for the given tables."""
    from features.families.usage import daily_totals

    data_start, data_end = data_range(tables)
    usage_days = daily_totals(tables["usage_daily"])
    cutoffs = make_cutoffs(data_start, data_end, start=start, end=end, every=every)
    calendar = calendar_cutoffs(cutoffs, usage_days, data_end)
    cutoffs = with_calendar(cutoffs, calendar)
    keys = snapshot_keys(tables, cutoffs)
    without_data = families_without_data({name: len(frame) for name, frame in tables.items()})
    panel = build_features(
        tables | {"usage_days": usage_days}, keys, params, without_data=without_data, progress=progress
    )
    panel = pd.concat([panel, make_labels(keys, tables["churn"], data_end)], axis=1)
    summary = {
        "data_start": data_start.isoformat(),
        "data_end": data_end.isoformat(),
        "cutoffs": [c.date().isoformat() for c in cutoffs],
        "calendar_cutoffs": {c.date().isoformat(): why for c, why in sorted(calendar.items())},
        "snapshots": len(panel),
        "accounts": int(panel["account_id"].nunique()),
        "features": len(panel.columns) - len(KEYS) - len(LABELS),
        "label_rates": {
            name: (None if panel[name].isna().all() else round(float(panel[name].mean()), 4)) for name in LABELS
        },
        "labelled": {name: int(panel[name].notna().sum()) for name in LABELS},
        "notes": list(without_data.values()),
    }
    return panel, summary
