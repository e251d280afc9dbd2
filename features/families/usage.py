"""Usage: activity levels and their change against the account's own baseline, login cadence,
silence, breadth of key features, seat utilisation and trend. From `usage_daily`.

A measure absent from the table makes the features that need it null; every extra numeric column
becomes two features of its own (`usage_<column>_30d`, `usage_<column>_change_30d`)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from core.contracts import CONTRACTS, USAGE_METRICS
from features.context import FeatureContext
from features.registry import Family, FeatureSpec, register, spec
from features.timeline import DAY, DailyGrid, to_seconds

F = "usage"
NO_ROWS = "no usage rows in the window (days absent from usage_daily are unknown, not zero)"
SPECS = [
    spec("active_users_7d", F, "users", "daily active users, mean of the last 7 days", "{n} daily active users in the last 7 days", NO_ROWS),
    spec("active_users_change_7d", F, "pct_change", "daily active users, last 7 days against the 90 days before", "weekly active users {direction} {pct}% against the prior 90 days", "no usage before the last 7 days, or none then"),
    spec("logins_30d", F, "count", "logins in the last 30 days", "{n} logins in the last 30 days", NO_ROWS),
    spec("logins_change_30d", F, "pct_change", "logins per day, last 30 days against the 90 days before", "logins {direction} {pct}% against the previous 90 days", "no logins in the 90 days before the last 30"),
    spec("session_minutes_per_user_30d", F, "minutes", "session minutes per active user-day, last 30 days", "{n} minutes per active user a day", "no active users in the last 30 days"),
    spec("key_feature_events_change_30d", F, "pct_change", "key feature events per day, last 30 days against the 90 days before", "key feature use {direction} {pct}% against the previous 90 days", "no key feature events in the 90 days before the last 30"),
    spec("api_calls_change_30d", F, "pct_change", "API calls per day, last 30 days against the 90 days before", "API calls {direction} {pct}% against the previous 90 days", "no API calls in the 90 days before the last 30 (no integration)"),
    spec("days_since_last_login", F, "days", "days since the last day with a login", "last login {n} days ago", "no login on record before the cutoff"),
    spec("login_days_30d", F, "count", "days with at least one login in the last 30 days", "logins on {n} of the last 30 days", NO_ROWS),
    spec("login_interval_days_90d", F, "days", "average days between login days over the last 90 days", "users log in every {value} days on average (healthy: every 3-4 days)", "no login in the last 90 days"),
    spec("login_interval_vs_healthy", F, "ratio", "login interval against the healthy 3-4-day rhythm (1 = healthy)", "logins {value}x as far apart as a healthy account's", "no login in the last 90 days"),
    spec("zero_usage_streak_days", F, "days", "consecutive days without any activity up to the cutoff", "no activity at all for {n} days", "no usage rows before the cutoff"),
    spec("zero_usage_days_30d", F, "count", "days without any activity in the last 30 days", "{n} of the last 30 days without any activity", NO_ROWS),
    spec("distinct_features_30d", F, "features", "distinct key features used per active day, last 30 days", "{value} key features used on an active day", "no active day in the last 30 days"),
    spec("distinct_features_change_30d", F, "pct_change", "breadth of key features, last 30 days against the 90 days before", "breadth of key features used {direction} {pct}% against the previous 90 days", "no active day in one of the two windows"),
    spec("seat_utilisation_30d", F, "ratio", "share of seats active on an average day, last 30 days", "{pct}% of seats active on an average day", NO_ROWS),
    spec("active_users_trend_90d", F, "pct_per_week", "trend of daily active users over 90 days, per week, relative to their mean", "active users trending {direction} {pct}% a week", "fewer than 14 usage days in the last 90, or no active users"),
]
COLUMNS = list(USAGE_METRICS)
#: The measures each feature needs (the rest need active_users or api_calls: any activity).
NEEDS = {
    "active_users_7d": ("active_users",), "active_users_change_7d": ("active_users",), "seat_utilisation_30d": ("active_users",),
    "active_users_trend_90d": ("active_users",), "logins_30d": ("logins",), "logins_change_30d": ("logins",),
    "days_since_last_login": ("logins",), "login_days_30d": ("logins",), "login_interval_days_90d": ("logins",),
    "login_interval_vs_healthy": ("logins",), "session_minutes_per_user_30d": ("session_minutes", "active_users"),
    "key_feature_events_change_30d": ("key_feature_events",), "api_calls_change_30d": ("api_calls",),
    "distinct_features_30d": ("distinct_features_used", "active_users"),
    "distinct_features_change_30d": ("distinct_features_used", "active_users"),
}
_CONTRACT_COLUMNS = set(CONTRACTS["usage_daily"].column_names)
_EXTRA = re.compile(r"usage_(?P<column>.+?)_(?P<which>30d|change_30d)")


def extra_name(column: str) -> str:
    """An extra usage column's name as a feature name part: lowercase letters, digits and underscores."""
    return re.sub(r"[^0-9a-z]+", "_", column.lower()).strip("_")


def extra_features(column: str) -> tuple[str, str]:
    """The two features of an extra measure: its 30-day mean and that mean's change."""
    stem = f"usage_{extra_name(column)}"
    return f"{stem}_30d", f"{stem}_change_30d"


def extra_measures(usage: pd.DataFrame) -> list[str]:
    """The extra numeric columns of a (validated) usage table, in file order."""
    return [c for c in usage.columns if c not in _CONTRACT_COLUMNS and not str(c).startswith("_") and extra_name(str(c))]


def extra_spec(name: str) -> FeatureSpec | None:
    """The spec of an extra measure's feature (`usage_<column>_30d` or `usage_<column>_change_30d`)."""
    match = _EXTRA.fullmatch(name)
    if match is None:
        return None
    label = match["column"].replace("_", " ")
    if match["which"] == "30d":
        return spec(name, F, "count", f"{label} per day, mean of the last 30 days (a measure of the account's own)",
                    f"{{value}} {label} a day over the last 30 days", NO_ROWS)
    return spec(name, F, "pct_change", f"{label} per day, last 30 days against the 90 days before",
                f"{label} {{direction}} {{pct}}% against the previous 90 days", f"no {label} in the 90 days before the last 30")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((den > 0) & ~np.isnan(den) & ~np.isnan(num), num / np.where(den > 0, den, 1), np.nan)


def build_usage(ctx: FeatureContext) -> pd.DataFrame:
    u = ctx.tables["usage_daily"]
    extras = extra_measures(u)
    out = {s.name: np.full(len(ctx), np.nan) for s in SPECS}
    out.update({name: np.full(len(ctx), np.nan) for c in extras for name in extra_features(c)})
    if u.empty or not len(ctx):
        return pd.DataFrame(out)
    # a measure absent from the file is null in every row (present ones are never null)
    present = [c for c in COLUMNS if u[c].notna().any()]
    usage = pd.DataFrame({c: u[c].to_numpy(dtype="float64", na_value=np.nan) for c in present})
    for c in extras:
        values = u[c].to_numpy(dtype="float64", na_value=np.nan)
        usage[f"x:{c}"] = np.nan_to_num(values)
        usage[f"n:{c}"] = (~np.isnan(values)).astype(np.float64)  # a blank value is unknown, not zero
    usage["_acc"] = ctx.code(u["account_id"])
    usage["_day"] = to_seconds(u["date"]) // DAY
    seats = ctx.accounts["seats"].to_numpy(dtype="float64")
    chunk = ctx.params.account_block
    usage_block = usage["_acc"].to_numpy() // chunk
    snap_block = ctx.acc // chunk
    measures = [c for c in usage.columns if not c.startswith("_")]
    for block in np.unique(snap_block):
        rows = np.flatnonzero(snap_block == block)
        block_usage = usage[usage_block == block]
        if block_usage.empty:
            continue
        first, last = int(block_usage["_day"].min()), int(block_usage["_day"].max())
        grid = DailyGrid(block_usage.assign(_acc=block_usage["_acc"] - block * chunk), chunk, first, last - first + 1, measures)
        a, e = ctx.acc[rows] - block * chunk, ctx.cut_day[rows]
        _block_features(grid, a, e, seats[ctx.acc[rows]], ctx.params.healthy_login_interval_days, out, rows, set(present))
        for c in extras:
            _extra_features(grid, c, a, e, out, rows)
    return pd.DataFrame(out)


def _extra_features(g: DailyGrid, column: str, a: np.ndarray, e: np.ndarray, out: dict, rows: np.ndarray) -> None:
    def mean(length: int, offset: int = 0) -> np.ndarray:
        return _ratio(g.window_sum(f"x:{column}", a, e, length, offset), g.window_sum(f"n:{column}", a, e, length, offset))

    level, change = extra_features(column)
    recent = mean(30)
    out[level][rows] = recent
    out[change][rows] = _ratio(recent, mean(90, 30)) - 1


def _block_features(g: DailyGrid, a: np.ndarray, e: np.ndarray, seats: np.ndarray, healthy: float, out: dict, rows: np.ndarray,
                    present: set[str]) -> None:
    zeros = np.zeros(g.present.shape, dtype=np.float64)
    for c in COLUMNS:  # absent measures read as zeros here; the features that need them are nulled at the end
        if c not in present:
            g.add(c, zeros)
    # an active day: any user or API activity; where neither is measured, any measure there is
    signs = [c for c in ("active_users", "api_calls") if c in present] or [c for c in COLUMNS if c in present]
    g.add("login_day", (g.raw["logins"] > 0).astype(np.float64))
    g.add("active_day", np.logical_or.reduce([g.raw[c] > 0 for c in signs]).astype(np.float64))
    g.add("active_user_day", (g.raw["active_users"] > 0).astype(np.float64))
    t = np.arange(g.n_days, dtype=np.float64)[None, :] * g.present
    g.add("t", t)
    g.add("tt", t * t)
    g.add("ty", t * g.raw["active_users"])

    obs = {w: g.window_sum("observed", a, e, w) for w in (7, 30, 90)}
    has30 = obs[30] > 0

    def put(name: str, values: np.ndarray) -> None:
        out[name][rows] = values

    put("active_users_7d", g.window_mean("active_users", a, e, 7))
    put("active_users_change_7d", _ratio(g.window_mean("active_users", a, e, 7), g.window_mean("active_users", a, e, 90, offset=7)) - 1)
    put("logins_30d", np.where(has30, g.window_sum("logins", a, e, 30), np.nan))
    put("logins_change_30d", _ratio(g.window_mean("logins", a, e, 30), g.window_mean("logins", a, e, 90, offset=30)) - 1)
    put("session_minutes_per_user_30d", _ratio(g.window_sum("session_minutes", a, e, 30), g.window_sum("active_users", a, e, 30)))
    put("key_feature_events_change_30d", _ratio(g.window_mean("key_feature_events", a, e, 30), g.window_mean("key_feature_events", a, e, 90, offset=30)) - 1)
    put("api_calls_change_30d", _ratio(g.window_mean("api_calls", a, e, 30), g.window_mean("api_calls", a, e, 90, offset=30)) - 1)
    put("days_since_last_login", e - g.last_day_where("logins", a, e))
    put("login_days_30d", np.where(has30, g.window_sum("login_day", a, e, 30), np.nan))
    interval = _ratio(obs[90], g.window_sum("login_day", a, e, 90))
    put("login_interval_days_90d", interval)
    put("login_interval_vs_healthy", interval / healthy)
    last_active = g.last_day_where("active_day", a, e)
    first_seen = g.first_observed(a)
    seen_before = first_seen < e
    streak = np.where(np.isnan(last_active), e - first_seen, e - 1 - last_active)
    put("zero_usage_streak_days", np.where(seen_before, streak, np.nan))
    put("zero_usage_days_30d", np.where(has30, obs[30] - g.window_sum("active_day", a, e, 30), np.nan))
    breadth30 = _ratio(g.window_sum("distinct_features_used", a, e, 30), g.window_sum("active_user_day", a, e, 30))
    breadth_before = _ratio(g.window_sum("distinct_features_used", a, e, 90, 30), g.window_sum("active_user_day", a, e, 90, 30))
    put("distinct_features_30d", breadth30)
    put("distinct_features_change_30d", _ratio(breadth30, breadth_before) - 1)
    put("seat_utilisation_30d", g.window_mean("active_users", a, e, 30) / seats)
    n = obs[90]
    st, stt = g.window_sum("t", a, e, 90), g.window_sum("tt", a, e, 90)
    sy, sty = g.window_sum("active_users", a, e, 90), g.window_sum("ty", a, e, 90)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (n * sty - st * sy) / (n * stt - st * st)
        mean = sy / n
        trend = np.where((n >= 14) & (mean > 0), slope * 7 / mean, np.nan)
    put("active_users_trend_90d", trend)
    for name, needs in NEEDS.items():
        if not present.issuperset(needs):
            put(name, np.full(len(rows), np.nan))


register(Family(F, "product usage against the account's own baseline", build_usage, SPECS, ("usage_daily",), dynamic=extra_spec))
