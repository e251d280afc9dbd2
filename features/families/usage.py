"""Usage: activity levels and their change against the account's own baseline, login cadence,
silence, breadth of key features, seat utilisation and trend. From `usage_daily`.

Changes, the trend and seat utilisation are adjusted for the base's calendar. Each day an account reports weighs
what the rest of the base did that day against the rest of the base's level over the year up to
it (`_day_weights`: low on a weekend, lower in a week when the whole base dips), and a window's
level is the account's activity over the sum of its days' weights. A weekend, a holiday or a
company-wide outage, which every account shares, then moves both windows' weights instead of the
account's change, while the account's own drop still shows (it is left out of "the rest of the
base"). With few other accounts a weight stays near 1, so a base of one account gets its plain
changes. The base's daily totals (`daily_totals`) come from every account's rows: `churn features`
sums them block by block and hands them to every block as the table `usage_days`. A weight uses
only days up to its own, and windows only days before the cutoff.

A measure absent from the table makes the features that need it null; every extra numeric column
becomes two features of its own (`usage_<column>_30d`, `usage_<column>_change_30d`)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from core.contracts import CONTRACTS
from core.vocabulary import USAGE_METRICS
from features.context import FeatureContext
from features.registry import Family, FeatureSpec, spec
from features.timeline import DAY, DailyGrid, to_seconds

F = "usage"
NO_ROWS = "no usage rows in the window (days absent from usage_daily are unknown, not zero)"
SPECS = [
    spec(
        "active_users_7d",
        F,
        "users",
        "daily active users, mean of the last 7 days",
        "{n} daily active users in the last 7 days",
        NO_ROWS,
    ),
    spec(
        "active_users_change_7d",
        F,
        "pct_change",
        "daily active users, last 7 days against the 90 days before, adjusted for the base's calendar",
        "weekly active users {direction} {pct}% against the prior 90 days, adjusted for the base's calendar",
        "no usage before the last 7 days, or none then",
    ),
    spec("logins_30d", F, "count", "logins in the last 30 days", "{n} logins in the last 30 days", NO_ROWS),
    spec(
        "logins_change_30d",
        F,
        "pct_change",
        "logins per day, last 30 days against the 90 days before, adjusted for the base's calendar",
        "logins {direction} {pct}% against the previous 90 days, adjusted for the base's calendar",
        "no logins in the 90 days before the last 30",
    ),
    spec(
        "session_minutes_per_user_30d",
        F,
        "minutes",
        "session minutes per active user-day, last 30 days",
        "{n} minutes per active user a day",
        "no active users in the last 30 days",
    ),
    spec(
        "key_feature_events_per_user_30d",
        F,
        "count",
        "key feature events per active user-day, last 30 days",
        "{value} key feature events per active user a day",
        "no active users in the last 30 days",
    ),
    spec(
        "key_feature_events_change_30d",
        F,
        "pct_change",
        "key feature events per day, last 30 days against the 90 days before, adjusted for the base's calendar",
        "key feature use {direction} {pct}% against the previous 90 days, adjusted for the base's calendar",
        "no key feature events in the 90 days before the last 30",
    ),
    spec(
        "api_calls_change_30d",
        F,
        "pct_change",
        "API calls per day, last 30 days against the 90 days before, adjusted for the base's calendar",
        "API calls {direction} {pct}% against the previous 90 days, adjusted for the base's calendar",
        "no API calls in the 90 days before the last 30 (no integration)",
    ),
    spec(
        "days_since_last_login",
        F,
        "days",
        "days since the last day with a login",
        "last login {n} days ago",
        "no login on record before the cutoff",
    ),
    spec(
        "login_days_30d",
        F,
        "count",
        "days with at least one login in the last 30 days",
        "logins on {n} of the last 30 days",
        NO_ROWS,
    ),
    spec(
        "login_interval_days_90d",
        F,
        "days",
        "average days between login days over the last 90 days",
        "users log in every {value} days on average",
        "no login in the last 90 days",
    ),
    spec(
        "login_interval_vs_healthy",
        F,
        "ratio",
        "login interval against a healthy rhythm (features.yaml healthy_login_interval_days; 1 = healthy)",
        "logins {value}x as far apart as a healthy account's",
        "no login in the last 90 days",
    ),
    spec(
        "zero_usage_streak_days",
        F,
        "days",
        "consecutive days without any activity up to the cutoff",
        "no activity at all for {n} days",
        "no usage rows before the cutoff",
    ),
    spec(
        "zero_usage_days_30d",
        F,
        "count",
        "days without any activity in the last 30 days",
        "{n} of the last 30 days without any activity",
        NO_ROWS,
    ),
    spec(
        "distinct_features_30d",
        F,
        "features",
        "distinct key features used per active day, last 30 days",
        "{value} key features used on an active day",
        "no active day in the last 30 days",
        baseline="distinct_features_change_30d",
    ),
    spec(
        "distinct_features_change_30d",
        F,
        "pct_change",
        "breadth of key features, last 30 days against the 90 days before, adjusted for the base's calendar",
        "breadth of key features used {direction} {pct}% against the previous 90 days, adjusted for the base's calendar",
        "no active day in one of the two windows",
    ),
    spec(
        "seat_utilisation_30d",
        F,
        "ratio",
        "share of seats active on a typical day of the last 30 days, adjusted for the base's calendar",
        "{pct}% of seats active on a typical day, adjusted for the base's calendar",
        NO_ROWS,
    ),
    spec(
        "active_users_trend_90d",
        F,
        "pct_per_week",
        "trend of daily active users over 90 days, per week, relative to their mean, adjusted for the base's calendar",
        "active users trending {direction} {pct}% a week, adjusted for the base's calendar",
        "fewer than 14 usage days in the last 90, or no active users",
    ),
]
COLUMNS = list(USAGE_METRICS)
#: The measures each feature needs (the rest need active_users or api_calls: any activity).
NEEDS = {
    "active_users_7d": ("active_users",),
    "active_users_change_7d": ("active_users",),
    "seat_utilisation_30d": ("active_users",),
    "active_users_trend_90d": ("active_users",),
    "logins_30d": ("logins",),
    "logins_change_30d": ("logins",),
    "days_since_last_login": ("logins",),
    "login_days_30d": ("logins",),
    "login_interval_days_90d": ("logins",),
    "login_interval_vs_healthy": ("logins",),
    "session_minutes_per_user_30d": ("session_minutes", "active_users"),
    "key_feature_events_per_user_30d": ("key_feature_events", "active_users"),
    "key_feature_events_change_30d": ("key_feature_events",),
    "api_calls_change_30d": ("api_calls",),
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
    return [
        c for c in usage.columns if c not in _CONTRACT_COLUMNS and not str(c).startswith("_") and extra_name(str(c))
    ]


def extra_spec(name: str) -> FeatureSpec | None:
    """The spec of an extra measure's feature (`usage_<column>_30d` or `usage_<column>_change_30d`)."""
    match = _EXTRA.fullmatch(name)
    if match is None:
        return None
    label = match["column"].replace("_", " ")
    if match["which"] == "30d":
        return spec(
            name,
            F,
            "count",
            f"{label} per day, mean of the last 30 days (a measure of the account's own)",
            f"{{value}} {label} a day over the last 30 days",
            NO_ROWS,
        )
    return spec(
        name,
        F,
        "pct_change",
        f"{label} per day, last 30 days against the 90 days before, adjusted for the base's calendar",
        f"{label} {{direction}} {{pct}}% against the previous 90 days, adjusted for the base's calendar",
        f"no {label} in the 90 days before the last 30",
    )


#: Days of the rest of the base's history a day is weighed against (52 whole weeks, ending that day).
LEVEL_DAYS = 364
#: Other accounts reporting a day that set its weight in full; fewer count in proportion (moving
#: the weight from 1, a typical day, that far towards theirs), so a handful of accounts is neutral.
FULL_BASE = 30
#: The least a day weighs, so that a base-wide blackout cannot blow a ratio up.
MIN_WEIGHT = 0.05
#: A week in which the whole base is below this share of its usual activity is a base-wide dip (a
#: holiday week, an outage): `churn features` adds a cutoff after the deepest one, the report names it.
BASE_DIP = 0.8
_PLAIN = ("active_users", "logins", "key_feature_events", "api_calls")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((den > 0) & ~np.isnan(den) & ~np.isnan(num), num / np.where(den > 0, den, 1), np.nan)


def _prepare(u: pd.DataFrame) -> pd.DataFrame:
    """The usage rows as the grid reads them: every measure present in the table as float, each
    extra column as its value (`x:`) and whether it has one (`n:`), `active_user_day`, and `_day`."""
    present = [c for c in COLUMNS if u[c].notna().any()]
    frame = pd.DataFrame({c: u[c].to_numpy(dtype="float64", na_value=np.nan) for c in present})
    for c in extra_measures(u):
        values = u[c].to_numpy(dtype="float64", na_value=np.nan)
        frame[f"x:{c}"] = np.nan_to_num(values)
        frame[f"n:{c}"] = (~np.isnan(values)).astype(np.float64)  # a blank value is unknown, not zero
    active = frame["active_users"].to_numpy() if "active_users" in frame else np.zeros(len(frame))
    frame["active_user_day"] = (active > 0).astype(np.float64)
    frame["_day"] = to_seconds(u["date"]) // DAY
    return frame


def daily_totals(usage: pd.DataFrame) -> pd.DataFrame:
    """The usage of the accounts in `usage` summed per day (index: day number since 1900-01-01;
    `observed`: accounts reporting). Totals of parts of a base add up to the base's (`add_totals`)."""
    return _prepare(usage).assign(observed=1.0).groupby("_day").sum()


def add_totals(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """The daily totals of several parts of a base (blocks of accounts) as one table."""
    return pd.concat(parts).groupby(level=0).sum().sort_index() if parts else pd.DataFrame()


def base_activity(totals: pd.DataFrame, cutoffs: pd.DatetimeIndex, days: int = 7) -> np.ndarray:
    """The base's activity per account-day over the `days` before each cutoff against its level over
    the LEVEL_DAYS before those (1: as usual, 0.5: half), from daily totals; NaN with less than
    four weeks of history before the window or no activity measure."""
    measure = next((c for c in (*_PLAIN, "distinct_features_used") if c in totals.columns), None)
    if measure is None or totals.empty:
        return np.full(len(cutoffs), np.nan)
    first = int(totals.index.min())
    span = int(totals.index.max()) - first + 1
    cum = {}
    for column in (measure, "observed"):
        daily = np.zeros(span)
        daily[totals.index.to_numpy(dtype=np.int64) - first] = totals[column].to_numpy(dtype=np.float64)
        cum[column] = np.concatenate([[0.0], np.cumsum(daily)])
    end = np.clip(to_seconds(pd.DatetimeIndex(cutoffs)) // DAY - first, 0, span)

    def rate(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        return _ratio(cum[measure][hi] - cum[measure][lo], cum["observed"][hi] - cum["observed"][lo])

    start = np.clip(end - days, 0, span)
    history = start - np.clip(start - LEVEL_DAYS, 0, span)
    return np.where(history >= 28, _ratio(rate(end, start), rate(start, np.clip(start - LEVEL_DAYS, 0, span))), np.nan)


def _adjusted(present: set[str], extras: list[str]) -> dict[str, str]:
    """The measures whose change is adjusted for the calendar, each with what it is counted per."""
    per = {c: "observed" for c in _PLAIN if c in present}
    if {"distinct_features_used", "active_users"} <= present:
        per["distinct_features_used"] = "active_user_day"
    return per | {f"x:{c}": f"n:{c}" for c in extras}


def _base_days(totals: pd.DataFrame, column: str, first_day: int, n_days: int) -> tuple[np.ndarray, np.ndarray]:
    """The base's total of `column` on each of the grid's days, and over the LEVEL_DAYS ending on each."""
    lo = min(int(totals.index.min()), first_day)
    span = max(int(totals.index.max()), first_day + n_days - 1) - lo + 1
    daily = np.zeros(span)
    daily[totals.index.to_numpy(dtype=np.int64) - lo] = totals[column].to_numpy(dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(daily)])
    hi = np.arange(first_day - lo + 1, first_day - lo + n_days + 1)
    return daily[hi - 1], cum[hi] - cum[np.maximum(hi - LEVEL_DAYS, 0)]


def _day_weights(g: DailyGrid, totals: pd.DataFrame, num: str, den: str) -> np.ndarray:
    """Per account and day, what the rest of the base did that day (its `num` per `den`) against
    its level over the LEVEL_DAYS ending that day, moved from 1 only part of the way when fewer
    than FULL_BASE other accounts reported; 1 where no other account has a level to compare with."""
    base_num, level_num = _base_days(totals, num, g.first_day, g.n_days)
    base_den, level_den = _base_days(totals, den, g.first_day, g.n_days)
    others = base_den[None, :] - g.values(den)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = (base_num[None, :] - g.values(num)) / others
        level = (level_num[None, :] - g.trailing_sum(num, LEVEL_DAYS)) / (
            level_den[None, :] - g.trailing_sum(den, LEVEL_DAYS)
        )
        weight = 1 + np.minimum(others / FULL_BASE, 1) * (rate / level - 1)
    return np.where((others > 0) & (level > 0), np.maximum(weight, MIN_WEIGHT), 1.0)


def build_usage(ctx: FeatureContext) -> pd.DataFrame:
    u = ctx.tables["usage_daily"]
    extras = extra_measures(u)
    out = {s.name: np.full(len(ctx), np.nan) for s in SPECS}
    out.update({name: np.full(len(ctx), np.nan) for c in extras for name in extra_features(c)})
    if u.empty or not len(ctx):
        return pd.DataFrame(out)
    usage = _prepare(u)
    present = {c for c in COLUMNS if c in usage.columns}
    totals = ctx.tables.get("usage_days")
    totals = daily_totals(u) if totals is None else totals  # without the base's totals, `usage_daily` is the whole base
    usage["_acc"] = ctx.code(u["account_id"])
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
        # as many rows as the block has accounts: a base smaller than a block made most of them empty
        size = min(chunk, len(ctx.accounts) - block * chunk)
        grid = DailyGrid(
            block_usage.assign(_acc=block_usage["_acc"] - block * chunk), size, first, last - first + 1, measures
        )
        for measure, per in _adjusted(present, extras).items():
            grid.add(
                f"expected:{measure}",
                grid.values(per) * _day_weights(grid, totals, measure, per),
                keep=measure == "active_users",
            )
        a, e = ctx.acc[rows] - block * chunk, ctx.cut_day[rows]
        _block_features(grid, a, e, seats[ctx.acc[rows]], ctx.params.healthy_login_interval_days, out, rows, present)
        for c in extras:
            _extra_features(grid, c, a, e, out, rows)
    return pd.DataFrame(out)


def _level(g: DailyGrid, measure: str, a: np.ndarray, e: np.ndarray, length: int, offset: int = 0) -> np.ndarray:
    """A measure's level over a window against the calendar: its sum over the sum of its days'
    weights, the measure on a typical day (null for a measure the table lacks)."""
    if f"expected:{measure}" not in g.cum:
        return np.full(len(a), np.nan)
    return _ratio(
        g.window_sum(measure, a, e, length, offset), g.window_sum(f"expected:{measure}", a, e, length, offset)
    )


def _change(g: DailyGrid, measure: str, a: np.ndarray, e: np.ndarray, length: int) -> np.ndarray:
    """The last `length` days' level against the 90 days before, both against the calendar."""
    return _ratio(_level(g, measure, a, e, length), _level(g, measure, a, e, 90, length)) - 1


def _extra_features(g: DailyGrid, column: str, a: np.ndarray, e: np.ndarray, out: dict, rows: np.ndarray) -> None:
    level, change = extra_features(column)
    out[level][rows] = _ratio(g.window_sum(f"x:{column}", a, e, 30), g.window_sum(f"n:{column}", a, e, 30))
    out[change][rows] = _change(g, f"x:{column}", a, e, 30)


def _trend(g: DailyGrid, a: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Weekly trend of active users over 90 days relative to their level: the slope b of
    active users = weight x (c + b t), fitted by least squares over the days with a row (with
    every weight 1, the plain regression on time over the mean)."""
    if "expected:active_users" not in g.raw:
        return np.full(len(a), np.nan)
    w, y = g.raw["expected:active_users"], g.raw["active_users"]
    t = np.arange(g.n_days, dtype=np.float64)[None, :]
    terms = {
        "ww": lambda: w * w,
        "wwt": lambda: w * w * t,
        "wwtt": lambda: w * w * t * t,
        "wy": lambda: w * y,
        "wty": lambda: w * t * y,
    }
    s = {}
    for name, term in terms.items():  # one grid at a time: only their cumulative sums are kept
        g.add(f"trend:{name}", term(), keep=False)
        s[name] = g.window_sum(f"trend:{name}", a, e, 90)
    n, total = g.window_sum("observed", a, e, 90), g.window_sum("active_users", a, e, 90)
    level = _level(g, "active_users", a, e, 90)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (s["ww"] * s["wty"] - s["wwt"] * s["wy"]) / (s["ww"] * s["wwtt"] - s["wwt"] ** 2)
        return np.where((n >= 14) & (total > 0), slope * 7 / level, np.nan)


def _block_features(
    g: DailyGrid,
    a: np.ndarray,
    e: np.ndarray,
    seats: np.ndarray,
    healthy: float,
    out: dict,
    rows: np.ndarray,
    present: set[str],
) -> None:
    zeros = np.zeros(g.present.shape, dtype=np.float64)
    for c in COLUMNS:  # absent measures read as zeros here; the features that need them are nulled at the end
        if c not in present:
            g.add(c, zeros)
    # an active day: any user or API activity; where neither is measured, any measure there is
    signs: list[str] = [c for c in ("active_users", "api_calls") if c in present]
    signs = signs or [c for c in COLUMNS if c in present]
    g.add("login_day", (g.raw["logins"] > 0).astype(np.float64))
    g.add("active_day", np.logical_or.reduce([g.raw[c] > 0 for c in signs]).astype(np.float64))

    obs = {w: g.window_sum("observed", a, e, w) for w in (7, 30, 90)}
    has30 = obs[30] > 0

    def put(name: str, values: np.ndarray) -> None:
        out[name][rows] = values

    put("active_users_7d", g.window_mean("active_users", a, e, 7))
    put("active_users_change_7d", _change(g, "active_users", a, e, 7))
    put("logins_30d", np.where(has30, g.window_sum("logins", a, e, 30), np.nan))
    put("logins_change_30d", _change(g, "logins", a, e, 30))
    users30 = g.window_sum("active_users", a, e, 30)
    put("session_minutes_per_user_30d", _ratio(g.window_sum("session_minutes", a, e, 30), users30))
    # depth of use: it moves with how engaged the users are, not with how many of the seats log in
    put("key_feature_events_per_user_30d", _ratio(g.window_sum("key_feature_events", a, e, 30), users30))
    put("key_feature_events_change_30d", _change(g, "key_feature_events", a, e, 30))
    put("api_calls_change_30d", _change(g, "api_calls", a, e, 30))
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
    put(
        "distinct_features_30d",
        _ratio(g.window_sum("distinct_features_used", a, e, 30), g.window_sum("active_user_day", a, e, 30)),
    )
    put("distinct_features_change_30d", _change(g, "distinct_features_used", a, e, 30))
    put("seat_utilisation_30d", _level(g, "active_users", a, e, 30) / seats)
    put("active_users_trend_90d", _trend(g, a, e))
    for name, needs in NEEDS.items():
        if not present.issuperset(needs):
            put(name, np.full(len(rows), np.nan))


FAMILY = Family(
    F, "product usage against the account's own baseline", build_usage, SPECS, ("usage_daily",), dynamic=extra_spec
)
