"""Product analytics events -> usage_daily (pure functions; ingest/stream.py feeds them in blocks).

One row per event (timestamp, account, user, event name; Segment, Amplitude, Mixpanel or a
warehouse table) becomes one row per account and UTC day:

- active_users: distinct user ids that day (an event without a user id, e.g. a deleted user, counts
  in the other measures but adds no user);
- logins, api_calls and each extra `counts:` column: events whose name is listed for it;
- key_feature_events / distinct_features_used: events of a `key_features:` name, and how many of
  those names were used;
- session_minutes: the sum of the duration column, when one is mapped.
A measure whose events the mapping does not name is left out (null in the contract), never a false
zero. An event repeated with the same event id (same account and day: retries re-send the original
timestamp) is counted once.

`fit_to_contracts` then drops (or refuses) events of unknown accounts and days outside the
contract, and writes the quiet days: inside the stream's span an account's day without any event
is a row of zeros, because the stream is complete there (the contract: zeros are a day without
activity, an absent day is unknown). Going quiet is the strongest churn signal there is; leaving
those days absent would hide it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.errors import InputError
from ingest.mapping import EventsSpec
from ingest.values import bad_value, parse_numbers, parse_timestamps

US_PER_DAY = 86_400_000_000
_MINUTES_PER = {"seconds": 1 / 60, "minutes": 1.0, "milliseconds": 1 / 60_000}
#: the per-day count of events, kept until the contract window is applied (it counts what is dropped)
EVENTS = "events"


@dataclass(frozen=True)
class Measures:
    """What the mapping asks of the events: counted columns and the event names behind each."""

    counted: dict[str, tuple[str, ...]]
    key_features: tuple[str, ...] | None
    duration: bool
    event_id: bool

    @property
    def columns(self) -> list[str]:
        """The usage_daily measure columns these events give, in contract order."""
        out = ["active_users", *(["logins"] if "logins" in self.counted else [])]
        if self.duration:
            out.append("session_minutes")
        if self.key_features is not None:
            out += ["key_feature_events", "distinct_features_used"]
        return out + [c for c in self.counted if c != "logins"]


def plan_measures(spec: EventsSpec) -> Measures:
    """The measures an events section gives."""
    counted = {"logins": spec.logins, "api_calls": spec.api, **spec.counts}
    return Measures(
        counted={name: tuple(events) for name, events in counted.items() if events is not None},
        key_features=tuple(spec.key_features) if spec.key_features is not None else None,
        duration=spec.columns.duration is not None,
        event_id=spec.columns.event_id is not None,
    )


def event_columns(spec: EventsSpec) -> list[str]:
    """The source columns an events section reads."""
    c = spec.columns
    return list(dict.fromkeys(x for x in (c.timestamp, c.account_id, c.user_id, c.event, c.event_id, c.duration) if x))


def normalise_block(
    block: pa.Table, spec: EventsSpec, measures: Measures, label: str, first_row: int
) -> tuple[pa.Table, int]:
    """A block of source rows as compact events: account_id, day (days since 1970-01-01 UTC),
    user_id, [event_id], [duration in minutes], a flag per counted measure, [feature: index in
    key_features or -1]. Rows without an account id are dropped; their count is returned."""
    c = spec.columns
    stamps = block.column(c.timestamp).to_pandas()
    parsed, bad = parse_timestamps(stamps, date_format=spec.date_format, timezone=spec.timezone)
    bad |= parsed.isna().to_numpy()
    if bad.any():
        raise bad_value(label, bad, c.timestamp, stamps.reset_index(drop=True), "a timestamp", first_row=first_row)
    us = parsed.to_numpy(dtype="datetime64[us]").view("int64")
    columns: dict[str, pa.Array] = {
        "account_id": _text(block.column(c.account_id)),
        "day": pa.array(np.floor_divide(us, US_PER_DAY).astype("int32")),
        "user_id": _text(block.column(c.user_id)),
    }
    if c.event_id:
        columns["event_id"] = _text(block.column(c.event_id))
    if c.duration:
        raw = block.column(c.duration).to_pandas()
        minutes, bad = parse_numbers(raw)
        bad |= (minutes < 0).to_numpy()
        if bad.any():
            raise bad_value(
                label,
                bad,
                c.duration,
                raw.reset_index(drop=True),
                f"a duration in {spec.duration_unit} (>= 0)",
                first_row=first_row,
            )
        columns["duration"] = pa.array((minutes * _MINUTES_PER[spec.duration_unit]).to_numpy(), pa.float64())
    names = _text(block.column(c.event))
    for measure, events in measures.counted.items():
        columns[measure] = pc.fill_null(pc.is_in(names, value_set=pa.array(events, pa.string())), False)
    if measures.key_features is not None:
        index = pc.index_in(names, value_set=pa.array(measures.key_features, pa.string()))
        columns["feature"] = pc.fill_null(index, -1).cast(pa.int16())
    table = pa.table(columns)
    known = table.column("account_id").is_valid()
    return table.filter(known), table.num_rows - pc.sum(known.cast(pa.int64())).as_py()


def _text(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Identifiers and names as trimmed text; blank is null (an anonymous or deleted user)."""
    text = pc.utf8_trim_whitespace(values.cast(pa.string()))
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)


def aggregate_events(events: pd.DataFrame, measures: Measures) -> tuple[pd.DataFrame, int]:
    """Compact events (as `normalise_block` makes them) -> one row per (account_id, day) with the
    measures and the count of events; the number of duplicate events dropped.

    Every event of an (account, day) must be in `events` (the stream partitions by that pair).
    Identifiers are turned into integer codes once and every measure is a bincount over the
    group of each event: hashing text once instead of in every groupby is 3-4x faster."""
    account, names = pd.factorize(events["account_id"])
    day = events["day"].to_numpy(dtype="int64")
    first = int(day.min()) if len(day) else 0
    span = int(day.max()) - first + 1 if len(day) else 1
    pair = account.astype("int64") * span + (day - first)  # one integer per (account, day)
    duplicates = 0
    if measures.event_id:
        ids = pd.factorize(events["event_id"])[0]  # -1: no id, never a duplicate
        repeated = _repeated(pair, ids)
        duplicates = int(repeated.sum())
        events, pair = events[~repeated], pair[~repeated]
    group, pairs = pd.factorize(pair)
    n = len(pairs)
    out = {"account_id": names.take(pairs // span).astype("str"), "day": (pairs % span + first).astype("int32")}
    out["active_users"] = _distinct(group, pd.factorize(events["user_id"])[0], n)
    for measure in measures.counted:
        out[measure] = np.bincount(group, weights=events[measure].to_numpy(dtype="float64"), minlength=n).astype(
            "int64"
        )
    if measures.duration:
        out["session_minutes"] = np.bincount(
            group, weights=np.nan_to_num(events["duration"].to_numpy(dtype="float64")), minlength=n
        )
    if measures.key_features is not None:
        feature = events["feature"].to_numpy(dtype="int64")
        used = feature >= 0
        out["key_feature_events"] = np.bincount(group[used], minlength=n)
        out["distinct_features_used"] = _distinct(group, feature, n)
    out[EVENTS] = np.bincount(group, minlength=n)
    return pd.DataFrame(out)[["account_id", "day", *measures.columns, EVENTS]], duplicates


def _repeated(pair: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Events whose id was already seen for the same (account, day)."""
    seen = pd.DataFrame({"pair": pair, "id": ids}).duplicated().to_numpy()
    return seen & (ids >= 0)


def _distinct(group: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    """Per group, the number of distinct codes >= 0 (a negative code is a missing value)."""
    present = codes >= 0
    width = int(codes.max()) + 1 if present.any() else 1
    unique = pd.unique(group[present].astype("int64") * width + codes[present])
    return np.bincount(unique // width, minlength=n)


@dataclass
class Fitted:
    """usage_daily from the events, and what was dropped on the way (for the summary)."""

    usage: pd.DataFrame
    unknown_accounts: list[str]
    unknown_events: int
    outside_days: int
    outside_events: int
    quiet_days: int
    silent_accounts: int


def fit_to_contracts(
    usage: pd.DataFrame,
    accounts: pd.DataFrame,
    churn: pd.DataFrame,
    span: tuple[int, int] | None,
    spec: EventsSpec,
    label: str,
) -> Fitted:
    """Aggregated events (account_id, day, measures, events) -> usage_daily within each contract.

    `accounts` and `churn` are validated contract tables; `span` is the first and last day of the
    stream. Events of accounts not in `accounts`, or on days before the contract started or after
    churn, are dropped (`outside_contract: drop`) or refused (`error`). With `quiet_days: zeros`
    each account's days in the span and its contract without an event become rows of zeros.
    """
    known = usage["account_id"].isin(accounts["account_id"]).to_numpy()
    unknown = usage[~known]
    if len(usage) and not known.any():
        raise InputError(
            f"{label}: none of the events' account ids is in accounts.account_id (e.g. {unknown['account_id'].iloc[0]!r}); "
            f"is events.columns.account_id ({spec.columns.account_id!r}) the id the accounts table uses?"
        )
    if len(unknown) and spec.outside_contract == "error":
        raise InputError(
            f"{label}: {unknown[EVENTS].sum():,} events of {unknown['account_id'].nunique():,} account(s) not in accounts, "
            f"e.g. {unknown['account_id'].iloc[0]!r} (set events.outside_contract: drop to leave them out)"
        )
    usage = usage[known]
    first, last = _contract_days(usage["account_id"], accounts, churn)
    outside = (usage["day"].to_numpy() < first) | (usage["day"].to_numpy() > last)
    if outside.any() and spec.outside_contract == "error":
        row = usage[outside].iloc[0]
        when = "before its contract started" if row["day"] < first[outside][0] else "after it churned"
        raise InputError(
            f"{label}: account {row['account_id']!r} has {int(row[EVENTS]):,} events on "
            f"{_dates([row['day']])[0]:%Y-%m-%d}, {when} ({int(usage[EVENTS][outside].sum()):,} such events in all; "
            "set events.outside_contract: drop to leave them out)"
        )
    dropped = usage[outside]
    usage = usage[~outside]
    quiet = silent = 0
    if spec.quiet_days == "zeros" and span is not None:
        grid = _contract_grid(accounts, churn, span)
        silent = int((~accounts["account_id"].isin(usage["account_id"].unique())).sum())
        usage = grid.merge(usage, on=["account_id", "day"], how="left")
        quiet = int(usage[EVENTS].isna().sum())
        measures = [c for c in usage.columns if c not in ("account_id", "day")]
        usage[measures] = usage[measures].fillna(0)
    usage = usage.sort_values(["account_id", "day"], kind="stable")
    out = usage.assign(date=_dates(usage["day"].to_numpy())).drop(columns=["day", EVENTS])
    out = out[["account_id", "date", *(c for c in out.columns if c not in ("account_id", "date"))]].reset_index(
        drop=True
    )
    return Fitted(
        out,
        sorted(unknown["account_id"].unique().tolist()),
        int(unknown[EVENTS].sum()),
        len(dropped),
        int(dropped[EVENTS].sum()),
        quiet,
        silent,
    )


def _day(stamps: pd.Series) -> np.ndarray:
    return np.floor_divide(stamps.to_numpy(dtype="datetime64[us]").view("int64"), US_PER_DAY)


def _dates(days: np.ndarray) -> pd.DatetimeIndex:
    """Days since 1970-01-01 as midnights UTC."""
    return pd.to_datetime(np.asarray(days, dtype="int64") * US_PER_DAY, unit="us", utc=True)


def _contract_days(
    account_ids: pd.Series, accounts: pd.DataFrame, churn: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Per row of `account_ids`, the first and last day usage may have under the contract: the
    day of contract_start (same day allowed) and the day of churned_at (a usage day dated at or
    before the churn moment)."""
    start = pd.Series(_day(accounts["contract_start"]), index=accounts["account_id"].to_numpy())
    end = (
        pd.Series(_day(churn["churned_at"]), index=churn["account_id"].to_numpy())
        if len(churn)
        else pd.Series(dtype="int64")
    )
    first = account_ids.map(start).to_numpy(dtype="int64")
    last = account_ids.map(end).to_numpy(dtype="float64", na_value=np.inf)
    return first, last


def _contract_grid(accounts: pd.DataFrame, churn: pd.DataFrame, span: tuple[int, int]) -> pd.DataFrame:
    """Every (account_id, day) inside both the stream's span and the account's contract."""
    first, last = _contract_days(accounts["account_id"], accounts, churn)
    lo = np.maximum(first, span[0])
    hi = np.minimum(last, span[1]).astype("int64")
    length = np.clip(hi - lo + 1, 0, None)
    starts = np.repeat(lo, length)
    offset = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
    return pd.DataFrame(
        {"account_id": np.repeat(accounts["account_id"].to_numpy(), length), "day": (starts + offset).astype("int32")}
    )
