"""The streamed events -> usage path equals a plain in-memory groupby (ingest/stream.py).

The stream reads blocks of a few rows and spreads them over several spill files; a slow,
obviously correct pandas groupby over the whole file must give the same table. Random events
(seeded) with re-sent messages, users without an id, events without an account and timestamps
in several zones and as epoch milliseconds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ingest.mapping import EventsSpec
from ingest.stream import stream_usage

NAMES = ["Signed In", "Page Viewed", "Report Created", "Dashboard Shared", "API Request", "Session End"]
LOGINS, FEATURES, API = ["Signed In"], ["Report Created", "Dashboard Shared"], ["API Request"]


def random_events(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2024-03-01", tz="UTC")
    at = start + pd.to_timedelta(rng.integers(0, 20 * 86_400, n), unit="s")
    account = rng.choice([f"acc{i}" for i in range(12)], n)
    user = np.where(rng.random(n) < 0.1, None, np.char.add(account.astype(str), rng.integers(0, 6, n).astype(str)))
    events = pd.DataFrame(
        {
            "message_id": [f"m{i}" for i in range(n)],
            "account": np.where(rng.random(n) < 0.03, None, account),
            "user": user,
            "event": rng.choice(NAMES, n),
            "seconds": np.round(rng.exponential(600, n), 1),
        }
    )
    events["seconds"] = events["seconds"].where(events["event"] == "Session End")
    # the same instants written three ways: UTC, at +05:30, as epoch milliseconds
    way = rng.integers(0, 3, n)
    events["timestamp"] = np.select(
        [way == 0, way == 1],
        [at.strftime("%Y-%m-%dT%H:%M:%SZ"), at.tz_convert("Asia/Kolkata").strftime("%Y-%m-%dT%H:%M:%S%z")],
        (at.as_unit("ms").asi8).astype(str),
    )
    resent = events.sample(frac=0.05, random_state=seed)
    events = pd.concat([events, resent]).sample(frac=1, random_state=seed + 1).reset_index(drop=True)
    return events


def reference_usage(events: pd.DataFrame) -> pd.DataFrame:
    """The slow, obvious way: everything in memory, one groupby."""
    e = events.copy()
    e["at"] = pd.to_datetime(
        e["timestamp"].where(~e["timestamp"].str.fullmatch(r"\d+")), utc=True, format="ISO8601"
    ).fillna(
        pd.to_datetime(
            e["timestamp"].where(e["timestamp"].str.fullmatch(r"\d+")).astype("float64"), unit="ms", utc=True
        )
    )
    e = e.drop_duplicates("message_id").dropna(subset=["account"])
    e["day"] = (e["at"].dt.floor("D") - pd.Timestamp("1970-01-01", tz="UTC")).dt.days
    g = e.groupby(["account", "day"])
    out = pd.DataFrame(
        {
            "active_users": g["user"].nunique(),
            "logins": g["event"].apply(lambda s: s.isin(LOGINS).sum()),
            "session_minutes": g["seconds"].sum() / 60,
            "key_feature_events": g["event"].apply(lambda s: s.isin(FEATURES).sum()),
            "distinct_features_used": g["event"].apply(lambda s: s[s.isin(FEATURES)].nunique()),
            "api_calls": g["event"].apply(lambda s: s.isin(API).sum()),
            "events": g.size(),
        }
    )
    return out.reset_index().rename(columns={"account": "account_id"})


def comparable(usage: pd.DataFrame) -> pd.DataFrame:
    measures = [c for c in usage.columns if c not in ("account_id", "day")]
    return usage.astype({"account_id": "str", "day": "int64", **dict.fromkeys(measures, "float64")}).sort_values(
        ["account_id", "day"], ignore_index=True
    )


def spec(source: str) -> EventsSpec:
    return EventsSpec.model_validate(
        {
            "source": source,
            "logins": LOGINS,
            "key_features": FEATURES,
            "api": API,
            "columns": {
                "timestamp": "timestamp",
                "account_id": "account",
                "user_id": "user",
                "event": "event",
                "event_id": "message_id",
                "duration": "seconds",
            },
        }
    )


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_stream_equals_an_in_memory_groupby(tmp_path, fmt):
    events = random_events(3_000, seed=11)
    path = tmp_path / f"events.{fmt}"
    events.to_csv(path, index=False) if fmt == "csv" else events.to_parquet(path, index=False, row_group_size=250)
    expected = reference_usage(events)
    for block_rows, bucket_rows in ((97, 400), (100_000, 10_000_000)):  # many blocks and spill files; one of each
        streamed = stream_usage(
            spec(path.name), tmp_path, block_rows=block_rows, bucket_rows=bucket_rows, spill_dir=tmp_path
        )
        pd.testing.assert_frame_equal(
            comparable(streamed.usage[expected.columns]), comparable(expected), check_exact=False, rtol=1e-9
        )
        resent = events.duplicated("message_id")
        assert streamed.events_in == 3_150 and resent.sum() == 150
        # events without an account are left out first
        assert streamed.duplicates == (resent & events["account"].notna()).sum()
        assert streamed.without_account == events["account"].isna().sum()
    assert not list(tmp_path.glob("churn-ingest-*"))  # the spill files are gone


def test_distinct_users_are_exact_when_a_day_is_split_across_blocks(tmp_path):
    # one account-day whose 5 users arrive one per block, each more than once
    rows = [("2024-01-01T10:00:00Z", "a", f"u{i % 5}", "Page Viewed", f"m{i}") for i in range(20)]
    pd.DataFrame(rows, columns=["timestamp", "account", "user", "event", "message_id"]).to_csv(
        tmp_path / "e.csv", index=False
    )
    s = EventsSpec.model_validate(
        {"source": "e.csv", "columns": {"account_id": "account", "user_id": "user", "event_id": "message_id"}}
    )
    streamed = stream_usage(s, tmp_path, block_rows=1, bucket_rows=1)
    assert streamed.usage[["account_id", "active_users", "events"]].to_dict("records") == [
        {"account_id": "a", "active_users": 5, "events": 20}
    ]
