"""Product analytics events -> usage_daily (ingest/events.py through ingest/run.py).

The fixture (tests/ingest/fixtures/analytics/events.csv) is a Segment track export by hand: a
re-sent message, an evening event at -05:00 that is the next UTC day, an epoch-millisecond
timestamp, a deleted user (blank user_id), a session length, an event without a group, a group
that is not a customer, an event of a trial before the contract started, and an account with no
event at all. The expected table below is worked out by hand from it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from core.errors import InputError
from ingest.run import run_ingest

FIXTURES = Path(__file__).parent / "fixtures"
ACME, GLOBEX, INITECH, UMBRELLA = "0015g00000AbCdE", "0015g00000FgHiJ", "0015g00000KlMnO", "0015g00000PqRsT"
COLUMNS = [
    "account_id",
    "date",
    "active_users",
    "logins",
    "session_minutes",
    "key_feature_events",
    "distinct_features_used",
    "api_calls",
]
# account, day of February 2024, active users, logins, session minutes, key feature events, distinct features, api calls
EXPECTED = [
    (ACME, 1, 1, 1, 0.0, 0, 0, 0),  # m1 (its re-send counted once)
    (ACME, 2, 1, 0, 0.0, 3, 2, 0),  # m2 (23:30 at -05:00), m3 (epoch ms, deleted user: no user), m4
    (ACME, 3, 0, 0, 0.0, 0, 0, 0),  # quiet day inside the stream's span: zeros
    (ACME, 4, 1, 0, 30.0, 0, 0, 0),  # a 1,800-second session at 08:00+01:00
    (GLOBEX, 1, 2, 1, 0.0, 0, 0, 2),
    (GLOBEX, 2, 0, 0, 0.0, 0, 0, 0),
    (GLOBEX, 3, 0, 0, 0.0, 0, 0, 0),
    (GLOBEX, 4, 0, 0, 0.0, 0, 0, 0),
    (INITECH, 1, 0, 0, 0.0, 0, 0, 0),  # no event at all: a live customer who never logged in
    (INITECH, 2, 0, 0, 0.0, 0, 0, 0),
    (INITECH, 3, 0, 0, 0.0, 0, 0, 0),
    (INITECH, 4, 0, 0, 0.0, 0, 0, 0),
    (UMBRELLA, 3, 1, 1, 0.0, 0, 0, 0),  # its trial login on the 2nd is before the contract: left out
    (UMBRELLA, 4, 0, 0, 0.0, 0, 0, 0),
]


def expected(rows=EXPECTED) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.assign(
        date=pd.to_datetime(frame["date"].map(lambda d: f"2024-02-{d:02d}"), utc=True).astype("datetime64[us, UTC]")
    )


def analytics(tmp_path: Path, extra: str = "") -> Path:
    folder = tmp_path / "analytics"
    shutil.copytree(FIXTURES / "analytics", folder)
    shutil.copytree(FIXTURES / "crm", tmp_path / "crm")
    if extra:
        (folder / "mapping.yaml").write_text((folder / "mapping.yaml").read_text() + extra)
    return folder / "mapping.yaml"


def usage(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "usage_daily.parquet")[COLUMNS]


def test_a_segment_export_becomes_usage_daily(tmp_path):
    # several blocks and buckets
    summary = run_ingest(analytics(tmp_path), tmp_path / "out", block_rows=4, bucket_rows=5)
    pd.testing.assert_frame_equal(usage(tmp_path / "out"), expected(), check_dtype=False)
    source = next(s for s in summary["sources"] if s["section"] == "events")
    assert source | {"seconds": 0} == {
        "section": "events",
        "source": "events.csv",
        "rows_in": 13,
        "duplicates": 1,
        "without_account": 1,
        "unknown_account_events": 1,
        "outside_contract_events": 1,
        "quiet_days": 9,
        "seconds": 0,
    }
    notes = "\n".join(summary["notes"])
    assert "1 events of 1 account(s) not in accounts left out (e.g. 0015TEST)" in notes
    assert "1 events on 1 account-days before contract start or after churn left out" in notes
    assert "1 account(s) have no event at all" in notes


def test_the_same_events_from_parquet_with_typed_and_epoch_timestamps(tmp_path):
    mapping = analytics(tmp_path)
    raw = pd.read_csv(mapping.parent / "events.csv", dtype={"session_seconds": "float64"}, keep_default_na=True)
    epoch = raw["timestamp"].str.fullmatch(r"\d+")
    raw["timestamp"] = pd.to_datetime(raw["timestamp"].where(~epoch), utc=True, format="ISO8601").fillna(
        pd.to_datetime(raw["timestamp"].where(epoch).astype("float64"), unit="ms", utc=True)
    )
    raw.to_parquet(mapping.parent / "events.parquet", index=False)
    mapping.write_text(mapping.read_text().replace("source: events.csv", "source: events.parquet"))
    run_ingest(mapping, tmp_path / "out")
    pd.testing.assert_frame_equal(usage(tmp_path / "out"), expected(), check_dtype=False)
    # epoch milliseconds as a number column
    raw.assign(timestamp=raw["timestamp"].astype("int64") // 1000).to_parquet(
        mapping.parent / "events.parquet", index=False
    )
    run_ingest(mapping, tmp_path / "out2")
    pd.testing.assert_frame_equal(usage(tmp_path / "out2"), expected(), check_dtype=False)


def test_quiet_days_unknown_leaves_only_days_with_events(tmp_path):
    run_ingest(analytics(tmp_path, "  quiet_days: unknown\n"), tmp_path / "out")
    with_events = [r for r in EXPECTED if r[2] or r[3] or r[5] or r[7] or r[4]]
    pd.testing.assert_frame_equal(usage(tmp_path / "out"), expected(with_events), check_dtype=False)


def test_events_outside_a_contract_can_be_refused(tmp_path):
    mapping = analytics(tmp_path, "  outside_contract: error\n")
    with pytest.raises(InputError, match=r"^events.csv: 1 events of 1 account\(s\) not in accounts, e.g. '0015TEST'"):
        run_ingest(mapping, tmp_path / "out")
    events = mapping.parent / "events.csv"
    events.write_text("\n".join(line for line in events.read_text().splitlines() if "0015TEST" not in line) + "\n")
    with pytest.raises(InputError) as caught:
        run_ingest(mapping, tmp_path / "out")
    assert str(caught.value) == (
        f"events.csv: account '{UMBRELLA}' has 1 events on 2024-02-02, before its contract started "
        "(1 such events in all; set events.outside_contract: drop to leave them out)"
    )
    assert not (tmp_path / "out").exists()


def test_a_bad_timestamp_names_file_row_column_and_value(tmp_path):
    mapping = analytics(tmp_path)
    events = mapping.parent / "events.csv"
    lines = events.read_text().splitlines()
    lines[7] = lines[7].replace("2024-02-01T12:00:00Z", "yesterday")  # the 7th event
    events.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as caught:
        run_ingest(mapping, tmp_path / "out", block_rows=3)
    assert str(caught.value) == "events.csv row 7: column 'timestamp' value 'yesterday' is not a timestamp"


def test_a_missing_event_column_names_the_mapping_key(tmp_path):
    mapping = analytics(tmp_path)
    mapping.write_text(mapping.read_text().replace("user_id: user_id", "user_id: userId"))
    with pytest.raises(
        InputError, match=r"^events.csv: no column 'userId' \(named in events.columns.user_id\); found: message_id, "
    ):
        run_ingest(mapping, tmp_path / "out")


def test_ids_that_match_no_account_are_a_mapping_error(tmp_path):
    mapping = analytics(tmp_path)
    mapping.write_text(mapping.read_text().replace("account_id: context_group_id", "account_id: user_id"))
    with pytest.raises(
        InputError, match=r"none of the events' account ids is in accounts.account_id .* is events.columns.account_id"
    ):
        run_ingest(mapping, tmp_path / "out")


def test_measures_whose_events_are_not_named_are_left_out(tmp_path):
    mapping = analytics(tmp_path)
    text = (
        mapping.read_text()
        .replace("  api: [API Request]\n", "")
        .replace(",\n            duration: session_seconds", "")
    )
    mapping.write_text(text + "  counts: {reports: [Report Created]}\n")
    run_ingest(mapping, tmp_path / "out")
    out = pd.read_parquet(tmp_path / "out" / "usage_daily.parquet")
    assert out["api_calls"].isna().all() and out["session_minutes"].isna().all()  # unknown, not zero
    # an extra measure, kept as a feature
    assert out.loc[(out["account_id"] == ACME), "reports"].tolist() == [0, 2, 0, 0]


def test_the_same_events_from_a_warehouse_query(tmp_path):
    import sqlite3

    mapping = analytics(tmp_path)
    with sqlite3.connect(mapping.parent / "warehouse.db") as db:
        pd.read_csv(mapping.parent / "events.csv", dtype=str).to_sql("tracks", db, index=False)
    query = "source: {url: 'sqlite:///warehouse.db', query: 'SELECT * FROM tracks'}"
    mapping.write_text(mapping.read_text().replace("source: events.csv", query))
    summary = run_ingest(mapping, tmp_path / "out", block_rows=5)  # read in chunks of 5 rows
    pd.testing.assert_frame_equal(usage(tmp_path / "out"), expected(), check_dtype=False)
    assert (
        next(s for s in summary["sources"] if s["section"] == "events")["source"] == "query on sqlite:///warehouse.db"
    )
