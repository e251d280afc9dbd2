"""The usage changes are adjusted for the base's calendar: a week in which the whole base halves
leaves them where they were, one account's own drop still shows, a base of one account gets its
plain changes, nothing on or after the cutoff moves them, and the slow reference agrees. Also the
calendar cutoffs `churn features` adds for the backtest.

The base is hand-built: every account works to the same weekly rhythm (busy weekdays, quiet
weekends), so every change is exactly zero until something happens."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.contracts import validate_tables
from features.context import FeatureParams
from features.families.usage import daily_totals
from features.panel import build_features, calendar_cutoffs
from features.registry import families
from tests.conftest import tiny_tables
from tests.reference_features import Reference

START = pd.Timestamp("2024-01-01", tz="UTC")  # a Monday
CUTOFF = pd.Timestamp("2024-12-30", tz="UTC")  # a Monday: the 7 days before it are the holiday week
HOLIDAY = (CUTOFF - pd.Timedelta(days=7), CUTOFF)
CHANGES = [
    "active_users_change_7d",
    "logins_change_30d",
    "key_feature_events_change_30d",
    "api_calls_change_30d",
    "distinct_features_change_30d",
    "active_users_trend_90d",
    "usage_reports_exported_change_30d",
]
WEEKDAY = {
    "active_users": 20,
    "logins": 30,
    "session_minutes": 400.0,
    "key_feature_events": 60,
    "distinct_features_used": 8,
    "api_calls": 100,
    "reports_exported": 10,
}  # the last: a measure of the base's own
WEEKEND = {
    "active_users": 4,
    "logins": 6,
    "session_minutes": 80.0,
    "key_feature_events": 12,
    "distinct_features_used": 2,
    "api_calls": 40,
    "reports_exported": 2,
}


def base(
    accounts: int, *, dip: tuple[pd.Timestamp, pd.Timestamp] | None = None, own_drop: bool = False
) -> dict[str, pd.DataFrame]:
    """`accounts` identical accounts over 400 days; `dip`: every account at half its activity on
    those days; `own_drop`: the first account also at half its activity in the holiday week."""
    ids = [f"A{i:02d}" for i in range(accounts)]
    days = pd.date_range(START, periods=400, freq="D")
    date = np.tile(days, accounts)
    account = np.repeat(ids, len(days))
    weekend = np.tile(days.day_of_week >= 5, accounts)
    scale = np.ones(len(date))
    if dip is not None:
        scale[(date >= dip[0]) & (date < dip[1])] *= 0.5
    if own_drop:
        scale[(account == ids[0]) & (date >= HOLIDAY[0]) & (date < HOLIDAY[1])] *= 0.5
    usage = pd.DataFrame({"account_id": account, "date": pd.DatetimeIndex(date).astype("datetime64[us, UTC]")})
    for column, busy in WEEKDAY.items():
        values = np.where(weekend, WEEKEND[column], busy) * (scale if column != "distinct_features_used" else 1.0)
        usage[column] = values if column == "session_minutes" else np.round(values).astype(np.int64)
    template = tiny_tables()["accounts"].iloc[[0]]
    accounts_frame = template.loc[template.index.repeat(accounts)].assign(
        account_id=ids, seats="50", contract_start="2023-12-31"
    )
    return validate_tables({"accounts": accounts_frame, "usage_daily": usage})


def usage_features(tables: dict[str, pd.DataFrame], cutoff: pd.Timestamp = CUTOFF) -> pd.DataFrame:
    usage = next(f for f in families() if f.name == "usage")
    keys = pd.DataFrame(
        {"account_id": tables["accounts"]["account_id"], "cutoff": pd.Series(cutoff, index=tables["accounts"].index)}
    )
    return build_features(tables, keys.astype({"cutoff": "datetime64[us, UTC]"}), only=[usage]).set_index("account_id")


@pytest.fixture(scope="module")
def calm() -> pd.DataFrame:
    return usage_features(base(40))


def test_without_anything_happening_every_change_is_zero(calm):
    # weekends weigh less than working days, so windows holding different shares of them compare equal
    assert np.abs(calm[CHANGES].to_numpy(dtype=float)).max() < 1e-3


def test_a_base_wide_holiday_week_leaves_the_changes_where_they_were(calm):
    holiday = usage_features(base(40, dip=HOLIDAY))
    # every account's activity halved in the last 7 days, but so did the rest of the base's
    assert np.abs(holiday[CHANGES].to_numpy(dtype=float) - calm[CHANGES].to_numpy(dtype=float)).max() < 0.03
    # the levels are the account's own, as they were
    assert holiday["active_users_7d"].iloc[0] < 0.6 * calm["active_users_7d"].iloc[0]


def test_one_accounts_own_drop_still_shows_with_or_without_the_holiday(calm):
    for dip in (None, HOLIDAY):
        features = usage_features(base(40, dip=dip, own_drop=True))
        dropped, others = features.iloc[0], features.iloc[1:]
        # its own halving, the holiday left out
        assert dropped["active_users_change_7d"] == pytest.approx(-0.5, abs=0.03)
        # a quarter of its 30 days at half: less in a holiday week, whose days weigh less
        assert dropped["logins_change_30d"] < -0.06 and dropped["active_users_trend_90d"] < -0.005
        assert np.abs(others[CHANGES].to_numpy(dtype=float)).max() < 0.03  # one account's drop does not move the rest


def test_a_base_of_one_account_gets_its_plain_changes():
    alone = usage_features(base(1, dip=HOLIDAY)).iloc[0]
    # nobody else to compare with: the holiday reads as its own drop, exactly as before the adjustment
    assert alone["active_users_change_7d"] == pytest.approx(-0.5, abs=0.01)
    plain = 20 * 5 / 7 + 4 * 2 / 7
    assert alone["active_users_7d"] == pytest.approx(plain / 2, abs=0.1)


def test_nothing_on_or_after_the_cutoff_moves_the_base_calendar():
    tables = base(40, dip=HOLIDAY)
    later = tables["usage_daily"].copy()
    after = later["date"] >= CUTOFF
    later.loc[after, ["active_users", "logins", "key_feature_events", "api_calls"]] = (
        0  # the whole base silent from the cutoff on
    )
    pd.testing.assert_frame_equal(usage_features(tables | {"usage_daily": later}), usage_features(tables))


def test_the_slow_reference_agrees_on_the_holiday_base():
    tables = base(12, dip=HOLIDAY, own_drop=True)
    got = usage_features(tables)
    reference = Reference(tables, FeatureParams())
    # it knows the contract's measures only
    expected = pd.DataFrame([reference.usage(a, CUTOFF) for a in got.index], index=got.index)
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False, rtol=1e-7, atol=1e-9)


def test_the_calendar_adds_the_latest_month_end_and_the_deepest_dip():
    totals = daily_totals(base(20, dip=HOLIDAY)["usage_daily"])
    regular = pd.date_range("2024-05-01", periods=9, freq="30D", tz="UTC")  # to 2024-12-27
    end = START + pd.Timedelta(days=400)  # 2025-02-04
    calendar = calendar_cutoffs(regular, totals, end)
    quietest = CUTOFF - pd.Timedelta(days=3)
    assert list(calendar) == [pd.Timestamp("2024-12-01", tz="UTC"), quietest]
    assert calendar[pd.Timestamp("2024-12-01", tz="UTC")] == "a month end"
    # the deepest week up to the last regular cutoff, 2024-12-20..26, holds four of the holiday's working days:
    # 20 + 4 + 4 + 4 x 10 active users per account against 5 x 20 + 2 x 4 in a usual week
    assert calendar[quietest] == "the base's quietest week (63% of its usual activity)"
    # a 30-day outcome must be known: a panel ending at the data's end adds nothing after end - 30 days
    late = calendar_cutoffs(pd.date_range("2024-05-01", "2025-02-04", freq="30D", tz="UTC"), totals, end)
    assert max(late) <= end - pd.Timedelta(days=30) and CUTOFF in late
    assert calendar_cutoffs(regular, daily_totals(base(20)["usage_daily"]), end) == {
        pd.Timestamp("2024-12-01", tz="UTC"): "a month end"
    }


def test_the_reports_drift_check_names_a_base_wide_dip_at_the_scoring_cutoff(tmp_path):
    from core.settings import Settings
    from pipelines.report import _base_dip

    tables = base(40, dip=HOLIDAY)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("accounts", "usage_daily"):
        tables[name].to_parquet(data / f"{name}.parquet", index=False)
    scores = tmp_path / "scores"
    scores.mkdir()
    (scores / "score_summary.json").write_text(json.dumps({"data": str(data)}))
    settings = Settings(data_dir=tmp_path / "elsewhere")
    # the holiday week: every account at half of its usual week (rounded on weekends)
    block = FeatureParams().account_block
    assert _base_dip(scores, CUTOFF, settings, block) == pytest.approx(54 / 108)
    # an ordinary week: nothing to say
    assert _base_dip(scores, CUTOFF - pd.Timedelta(days=14), settings, block) is None


def test_the_drift_table_says_which_shifts_follow_the_base_wide_dip():
    from dataclasses import replace

    from reports.leadership import ReportInputs, _drift_section

    drift = pd.DataFrame(
        {
            "signal": [
                "daily active users, mean of the last 7 days",
                "days until renewal",
                "logins in the last 30 days",
            ],
            "psi": [0.9, 0.3, 0.01],
            "training mean": ["70", "180", "2900"],
            "latest mean": ["40", "150", "2890"],
            "family": ["usage", "business", "usage"],
        }
    )
    inputs = ReportInputs(
        as_of="2025-12-31",
        scores=pd.DataFrame(),
        family_importance=pd.Series(dtype=float),
        feature_importance=pd.DataFrame(),
        model={},
        backtest=pd.DataFrame(),
        drift=drift,
        base_dip=0.45,
    )
    html = _drift_section(inputs)
    assert (
        "In the 7 days before 2025-12-31 the whole base was 45% as active as usual" in html
        and "not about churn" in html
    )
    # the usage level that moved says why; a shift elsewhere and a stable usage signal do not
    assert html.count("(the whole base dipped)") == 1 and "<td>shifted (the whole base dipped)</td>" in html
    assert "2 of them have shifted" in html and "family" not in html
    plain = _drift_section(replace(inputs, base_dip=None))
    assert "whole base" not in plain and "<td>shifted</td>" in plain
