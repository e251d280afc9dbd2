"""Point-in-time correctness of the snapshot panel: a slow reference agrees with the fast builder,
appending rows at or after the cutoff changes nothing, and cutting the tables at the cutoff gives
the same features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.contracts import ACCOUNT_EVENT_KINDS, CHANNELS, PRIORITIES, TICKET_CATEGORIES, TICKET_EVENT_KINDS, load_tables
from features.context import FeatureParams
from features.panel import LABELS, build_features, build_panel, snapshot_keys
from features.registry import feature_specs
from pipelines.features import add_message_signals
from simulation.config import SimulationConfig
from simulation.simulate import simulate
from tests.reference_features import Reference
from text.cache import TextCache
from text.encoder import TextEncoder
from text.sentiment import SHIPPED_HEAD, SentimentHead, SentimentModel

TIME_COLUMNS = {
    "accounts": "contract_start",
    "usage_daily": "date",
    "tickets": "created_at",
    "ticket_events": "at",
    "ticket_messages": "sent_at",
    "surveys": "answered_at",
    "account_events": "at",
    "churn": "churned_at",
}


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    """The real sentiment model with a cache shared by this module's tests."""
    encoder = TextEncoder()
    return SentimentModel(encoder, SentimentHead.load(SHIPPED_HEAD)), TextCache(
        tmp_path_factory.mktemp("cache") / "text.sqlite"
    )


def with_signals(tables: dict[str, pd.DataFrame], text_model) -> dict[str, pd.DataFrame]:
    """Recompute the per-message text signals from the messages as they are now."""
    return add_message_signals(
        {k: v for k, v in tables.items() if k not in ("message_signals", "ticket_outcomes")}, *text_model
    )


@pytest.fixture(scope="module")
def small(tmp_path_factory, text_model) -> dict[str, pd.DataFrame]:
    """A small simulated base with text signals; timestamps floored to whole seconds, as features compare them."""
    out = tmp_path_factory.mktemp("feat") / "base"
    simulate(SimulationConfig(accounts=80, days=400, seed=5, new_account_share=0.4), out)
    tables = load_tables(out).tables
    for name, column in TIME_COLUMNS.items():
        tables[name] = tables[name].assign(**{column: tables[name][column].dt.floor("s")})
    return with_signals(tables, text_model)


def feature_columns() -> list[str]:
    return list(feature_specs())


@pytest.mark.slow
def test_fast_features_agree_with_the_slow_reference(small):
    panel, _ = build_panel(small, every="45d")
    rng = np.random.default_rng(0)
    sample = panel.iloc[np.sort(rng.choice(len(panel), size=min(160, len(panel)), replace=False))].reset_index(
        drop=True
    )
    reference = Reference(small, FeatureParams())
    rows = [reference.features(r.account_id, r.cutoff) for r in sample.itertuples()]
    expected = pd.DataFrame(rows)[feature_columns()]
    got = sample[feature_columns()]
    for col in got.columns:  # NaN patterns first: missing must mean the same thing in both
        if got[col].dtype != object and not pd.api.types.is_string_dtype(got[col]):
            assert (got[col].isna() == expected[col].isna()).all(), col
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, rtol=1e-7, atol=1e-9)
    # the sample covers the interesting cases, so agreement is not vacuous
    assert (sample["open_tickets"] > 0).sum() >= 5 and (sample["unanswered_agent_messages"] > 0).sum() >= 1
    assert sample["nps_last"].notna().sum() >= 20 and sample["days_to_renewal"].nunique() > 50
    assert sample["customer_sentiment_90d"].notna().sum() >= 50 and (sample["rephrasings_30d"] > 0).sum() >= 5
    assert sample["predicted_csat_90d"].notna().sum() >= 20


def _cutoff(small) -> pd.Timestamp:
    return pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=250)


def _features_at(tables, cutoff) -> pd.DataFrame:
    keys = snapshot_keys(tables, [cutoff])
    return build_features(tables, keys).set_index("account_id")


@pytest.fixture(scope="module")
def baseline(small) -> pd.DataFrame:
    return _features_at(small, _cutoff(small))


def test_cutting_every_table_at_the_cutoff_gives_identical_features(small, baseline, text_model):
    cutoff = _cutoff(small)
    cut = {}
    for name, column in TIME_COLUMNS.items():
        frame = small[name]
        keep = frame[column] < cutoff
        cut[name] = frame[keep.to_numpy()].reset_index(drop=True)
    cut["accounts"] = small["accounts"][small["accounts"]["contract_start"] < cutoff].reset_index(drop=True)
    cut = with_signals(cut, text_model)
    pd.testing.assert_frame_equal(_features_at(cut, cutoff).sort_index(), baseline.sort_index())


def _append(tables: dict[str, pd.DataFrame], table: str, row: dict) -> None:
    frame = tables[table]
    new = pd.DataFrame({k: [v] for k, v in row.items()})
    for column in new.columns:  # a lone NaT reads as a naive time, which astype cannot make UTC
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            new[column] = pd.to_datetime(new[column], utc=True)
    new = new.astype(frame.dtypes.to_dict())
    tables[table] = pd.concat([frame, new], ignore_index=True)


LATE_MESSAGES = [
    "We want to cancel our subscription.",
    "Same problem, nothing changed. I want to speak to a manager.",
    "Thanks, all good now!",
    "Users can't log in through SSO, they get ERR-4012 after the redirect.",
]

appends = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "usage_daily",
                "tickets",
                "ticket_events",
                "ticket_messages",
                "surveys",
                "account_events",
                "churn",
                "accounts",
            ]
        ),
        st.integers(0, 10_000),  # picks an account or a ticket
        st.integers(0, 90 * 86_400),  # seconds at or after the cutoff
        st.integers(0, 1_000),  # a value
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=appends)
def test_rows_at_or_after_the_cutoff_change_no_feature(small, baseline, text_model, rows):
    cutoff = _cutoff(small)
    tables = dict(small)
    accounts = small["accounts"]["account_id"].tolist()
    tickets = small["tickets"]["ticket_id"].tolist()
    for i, (table, pick, seconds, value) in enumerate(rows):
        at = cutoff + pd.Timedelta(seconds=seconds)
        account = accounts[pick % len(accounts)]
        if table == "usage_daily":
            _append(
                tables,
                table,
                {
                    "account_id": account,
                    "date": at.floor("D") + pd.Timedelta(days=1) if at.floor("D") < cutoff else at.floor("D"),
                    "active_users": value,
                    "logins": value,
                    "session_minutes": float(value),
                    "key_feature_events": value,
                    "distinct_features_used": value % 25,
                    "api_calls": value,
                },
            )
        elif table == "tickets":
            _append(
                tables,
                table,
                {
                    "ticket_id": f"NEW{i}",
                    "account_id": account,
                    "created_at": at,
                    "priority": PRIORITIES[value % 4],
                    "category": TICKET_CATEGORIES[value % 8],
                    "channel": CHANNELS[value % 4],
                },
            )
        elif table == "ticket_events":
            kind = TICKET_EVENT_KINDS[value % len(TICKET_EVENT_KINDS)]
            _append(
                tables,
                table,
                {
                    "ticket_id": tickets[pick % len(tickets)],
                    "at": at,
                    "kind": kind,
                    "value": float(1 + value % 5) if kind in ("csat", "ces") else np.nan,
                },
            )
        elif table == "ticket_messages":
            _append(
                tables,
                table,
                {
                    "message_id": f"NEWM{i}",
                    "ticket_id": tickets[pick % len(tickets)],
                    "sent_at": at,
                    "author": "customer" if value % 2 else "agent",
                    "body": LATE_MESSAGES[value % len(LATE_MESSAGES)],
                },
            )
        elif table == "surveys":
            _append(
                tables,
                table,
                {"account_id": account, "answered_at": at, "kind": "nps", "score": value % 11, "comment": None},
            )
        elif table == "account_events":
            kind = ACCOUNT_EVENT_KINDS[value % len(ACCOUNT_EVENT_KINDS)]
            _append(
                tables,
                table,
                {
                    "account_id": account,
                    "at": at,
                    "kind": kind,
                    "value": float(value * 100) if kind in ("upgrade", "downgrade") else np.nan,
                },
            )
        elif table == "churn" and account not in set(tables["churn"]["account_id"]):
            _append(tables, table, {"account_id": account, "churned_at": at})
        elif table == "accounts":
            row = small["accounts"].iloc[pick % len(accounts)].to_dict() | {
                "account_id": f"NEWA{i}",
                "contract_start": at,
                "arr": float(value * 1000 + 1),
            }
            _append(tables, table, row)
    after = _features_at(with_signals(tables, text_model), cutoff)
    common = baseline.index.intersection(after.index)
    assert len(common) >= len(baseline) - len(rows)  # only a churn dated exactly at the cutoff removes a snapshot
    pd.testing.assert_frame_equal(after.loc[common], baseline.loc[common])


def _hand_tables(tiny_tables) -> dict[str, pd.DataFrame]:
    from core.contracts import validate_tables

    return validate_tables(tiny_tables)


def test_labels_are_censored_where_the_horizon_runs_past_the_data(tiny):
    tables = _hand_tables(tiny)
    # data ends at the midnight after the latest record of any table: the churn on 2024-03-01
    panel, summary = build_panel(tables, start="2024-01-03", end="2024-02-02", every="1d")
    assert summary["data_end"].startswith("2024-03-02")
    a1 = panel[panel["account_id"] == "A1"].set_index("cutoff")
    at = a1.loc[pd.Timestamp("2024-02-01", tz="UTC")]
    assert at["churned_within_30d"] == 1  # (02-01, 03-02] ends on the data's end: known
    # 60 days run past the data: null, although A1 churned inside them (strict censoring: keeping
    # only the positives of censored rows would bias every learned rate)
    assert pd.isna(at["churned_within_60d"]) and pd.isna(at["churned_within_180d"])
    assert a1["churned_within_180d"].isna().all()


def test_labels_exclusion_and_windows(tiny):
    tiny["usage_daily"] = pd.concat(
        [
            tiny["usage_daily"],
            pd.DataFrame(
                {
                    "account_id": ["A2"],
                    "date": ["2024-12-31"],
                    "active_users": ["1"],
                    "logins": ["1"],
                    "session_minutes": ["1"],
                    "key_feature_events": ["1"],
                    "distinct_features_used": ["1"],
                    "api_calls": ["1"],
                }
            ),
        ],
        ignore_index=True,
    )
    tables = _hand_tables(tiny)
    panel, _ = build_panel(tables, start="2024-01-03", end="2024-10-01", every="1d")
    by = panel.set_index(["account_id", "cutoff"])
    t = lambda d: pd.Timestamp(d, tz="UTC")  # noqa: E731
    # A1 churns 2024-03-01 00:00: inside (cutoff, cutoff + h] exactly when cutoff >= 2024-03-01 - h
    assert by.loc[("A1", t("2024-01-31")), "churned_within_30d"] == 1  # 2024-01-31 + 30d = 2024-03-01: included
    assert by.loc[("A1", t("2024-01-30")), "churned_within_30d"] == 0
    assert by.loc[("A1", t("2024-01-30")), "churned_within_60d"] == 1
    # no snapshot at or after the churn
    assert ("A1", t("2024-03-01")) not in by.index and ("A1", t("2024-02-29")) in by.index
    # the data ends 2025-01-01: a horizon past it is null, one within it is known
    assert by.loc[("A2", t("2024-06-01")), "churned_within_180d"] == 0
    assert pd.isna(by.loc[("A2", t("2024-10-01")), "churned_within_180d"])
    assert by.loc[("A2", t("2024-10-01")), "churned_within_90d"] == 0
    # an account that has not started has no snapshot: A1 starts 2024-01-01, so it exists from the 2nd on
    assert ("A1", t("2024-01-03")) in by.index


def test_cutoff_flags_are_checked(tiny):
    from core.errors import InputError

    tables = _hand_tables(tiny)
    with pytest.raises(InputError, match="--start 2023-01-01"):
        build_panel(tables, start="2023-01-01")
    with pytest.raises(InputError, match="--end 2030-01-01"):
        build_panel(tables, start="2024-01-05", end="2030-01-01")
    with pytest.raises(InputError, match="--every 'monthly'"):
        build_panel(tables, start="2024-01-05", every="monthly")
    with pytest.raises(InputError, match="time of day"):
        build_panel(tables, start="2024-01-05T10:00")


def test_missing_means_nan_and_none_means_zero(tiny):
    tables = _hand_tables(tiny)
    panel, _ = build_panel(tables, start="2024-01-04", end="2024-01-04", every="1d")
    a2 = panel.set_index("account_id").loc["A2"]
    assert a2["tickets_30d"] == 0 and a2["open_tickets"] == 0  # no tickets yet: truly zero
    assert np.isnan(a2["nps_last"]) and np.isnan(a2["open_ticket_age_days"])  # unknown: NaN
    assert np.isnan(a2["active_users_change_7d"])  # no baseline before the last 7 days


def test_every_feature_is_in_the_dictionary_with_a_template(small):
    panel, _ = build_panel(small, every="90d")
    specs = feature_specs()
    assert [c for c in panel.columns if c not in ("account_id", "cutoff", *LABELS)] == list(specs)
    for s in specs.values():
        assert s.description and s.template and s.unit
        value = panel[s.name].dropna().iloc[0] if panel[s.name].notna().any() else 1.0
        assert "{" not in s.sentence(value)
    assert (
        specs["active_users_change_7d"].sentence(-0.58)
        == "weekly active users down 58% against the prior 90 days, adjusted for the base's calendar"
    )
