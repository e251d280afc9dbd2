"""The backtest fits the history it is given: which cutoffs each horizon is tested at, what it
says about the horizons it cannot test, and metrics and promotion that cope with missing figures.

Panels here are hand-built (cutoffs, labels censored at a known end of data, two features), so
every number can be worked out by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from models.backtest import FoldJob, censor_at, min_train_cutoffs, plan_backtest, run_backtest, run_fold
from models.baselines import LogisticBaseline, RulesBaseline
from models.curve import HORIZONS, LABELS, CurveParams
from models.metrics import score_metrics
from models.promotion import PromotionPolicy, decide, metric_key
from pipelines.models import churn_times
from tests.conftest import write_tables

DAY = pd.Timedelta(days=1)
QUICK = CurveParams(n_estimators=30, learning_rate=0.1, min_child_samples=5, early_stopping_rounds=0, num_threads=1)


def grid(first: str, step_days: int, count: int) -> pd.DatetimeIndex:
    return pd.date_range(pd.Timestamp(first, tz="UTC"), periods=count, freq=f"{step_days}D")


def panel_on(cutoffs: pd.DatetimeIndex, data_end: pd.Timestamp, accounts: int = 40, seed: int = 0) -> pd.DataFrame:
    """`accounts` snapshots per cutoff, labels censored at `data_end` the way `churn features` does,
    and a feature that carries the churn signal (so every fold has both classes)."""
    rng = np.random.default_rng(seed)
    rows = len(cutoffs) * accounts
    risk = rng.uniform(0, 1, rows)
    frame = pd.DataFrame(
        {
            "account_id": np.tile([f"A{i:03d}" for i in range(accounts)], len(cutoffs)),
            "cutoff": np.repeat(cutoffs, accounts),
            "risk": risk,
            "noise": rng.normal(size=rows),
            "arr_current": 1000.0,
        }
    )
    churn_day = np.where(rng.uniform(size=rows) < 0.6 * risk, rng.integers(1, 200, rows), 10_000)
    for h, label in zip(HORIZONS, LABELS, strict=True):
        known = (frame["cutoff"] + pd.Timedelta(days=h)) <= data_end
        frame[label] = pd.array(np.where(known, (churn_day <= h).astype(int), pd.NA), dtype="Int8")
    return frame


def slow_eligible(panel: pd.DataFrame, horizon: int, label: str, m: int) -> list[pd.Timestamp]:
    """A cutoff can test `horizon` when its own outcome is known and the training rows, re-censored
    there, hold `m` cutoffs whose outcome at that horizon is known: plain loops over censor_at."""
    out = []
    for t in sorted(panel["cutoff"].unique()):
        t = pd.Timestamp(t)
        if not panel.loc[panel["cutoff"] == t, label].notna().any():
            continue
        train = censor_at(panel[panel["cutoff"] < t], t)
        if train.loc[train[label].notna(), "cutoff"].nunique() >= m:
            out.append(t)
    return out


# -- the plan ------------------------------------------------------------------------------------


def test_min_train_cutoffs_scale_with_the_cadence():
    assert min_train_cutoffs(7) == 4 and min_train_cutoffs(30) == 2 and min_train_cutoffs(1) == 28
    assert min_train_cutoffs(14, min_train_days=56) == 4


def test_weekly_150_days_tests_the_short_horizons_and_says_what_the_long_ones_lack():
    # data 2024-01-01 .. 2024-05-29 (end: the midnight after), weekly cutoffs from 2024-01-02
    cutoffs, end = grid("2024-01-02", 7, 22), pd.Timestamp("2024-05-30", tz="UTC")
    panel = panel_on(cutoffs, end)
    plan = plan_backtest(panel, 4, data_end=end)
    assert plan.step_days == 7 and plan.min_train_cutoffs == 4
    # 30 days: test cutoffs from 2024-02-27 (4 training cutoffs + 30 days) to 2024-04-30 (30 days before the end)
    assert plan.test_cutoffs[30] == tuple(cutoffs[14:18])
    # the only one: fewer folds than asked, and said
    assert plan.test_cutoffs[60] == (pd.Timestamp("2024-03-26", tz="UTC"),)
    assert any("60 days" in note and "1 fold" in note for note in plan.notes)
    lacking = {n.horizon_days: n for n in plan.not_evaluated}
    assert set(lacking) == {90, 180}
    # 90 days: first test cutoff 2024-01-02 + 16 weeks (4 training cutoffs + 90 days, on the weekly grid),
    # then 90 days to see its outcome: 112 + 90 = 202 days after the first cutoff; the data hold 149
    assert lacking[90].needs_days == 202 - 149 and lacking[90].reason.startswith(
        "not enough history: needs 53 more days"
    )
    assert lacking[180].needs_days == (math.ceil((21 + 180) / 7) * 7 + 180) - 149
    for h, label in zip(HORIZONS, LABELS, strict=True):
        assert list(plan.test_cutoffs.get(h, ())) == slow_eligible(panel, h, label, plan.min_train_cutoffs)[-4:]
    assert plan.fold_cutoffs == sorted(set(plan.test_cutoffs[30]) | set(plan.test_cutoffs[60]))


def test_monthly_240_days_cannot_test_180_days_and_says_how_much_is_missing():
    cutoffs, end = grid("2024-01-02", 30, 8), pd.Timestamp("2024-08-28", tz="UTC")  # 240 days of data from 2024-01-01
    plan = plan_backtest(panel_on(cutoffs, end), 4, data_end=end)
    assert set(plan.test_cutoffs) == {30, 60, 90}
    (lacking,) = plan.not_evaluated
    # first test cutoff 2024-01-02 + 210 days (2 training cutoffs + 180 days), then 180 days: 390 of the 239 there are
    assert lacking.horizon_days == 180 and lacking.needs_days == 151
    assert plan.to_dict()["not_evaluated"][0] == {"horizon_days": 180, "reason": lacking.reason, "needs_days": 151}


def test_the_end_of_data_is_inferred_from_the_labels_without_a_summary():
    cutoffs, end = grid("2024-01-02", 30, 8), pd.Timestamp("2024-08-28", tz="UTC")
    plan = plan_backtest(panel_on(cutoffs, end), 4)
    assert plan.data_end <= end and {n.horizon_days for n in plan.not_evaluated} == {180}


def test_a_panel_too_short_for_any_fold_names_the_history_it_has_and_needs():
    cutoffs, end = grid("2024-01-02", 7, 9), pd.Timestamp("2024-03-01", tz="UTC")
    panel = panel_on(cutoffs, end)
    plan = plan_backtest(panel, 4, data_end=end, data_start=pd.Timestamp("2024-01-01", tz="UTC"))
    assert plan.test_cutoffs == {} and len(plan.not_evaluated) == len(HORIZONS)
    # 30 days: a first test cutoff 8 weeks in, then 30 days: 86 days from the first cutoff; the data hold 59
    assert "2024-01-02 to 2024-02-27" in plan.shortfall and "9 cutoffs every 7 days" in plan.shortfall
    assert "at least 86 days" in plan.shortfall and "27 more" in plan.shortfall
    with pytest.raises(InputError, match="at least 86 days"):
        run_backtest(panel, ["risk"], folds=2, params=QUICK, plan=plan)


def test_a_short_panel_with_a_late_start_suggests_an_earlier_one():
    cutoffs, end = grid("2024-03-01", 7, 9), pd.Timestamp("2024-05-01", tz="UTC")
    plan = plan_backtest(panel_on(cutoffs, end), 4, data_end=end, data_start=pd.Timestamp("2024-01-01", tz="UTC"))
    assert plan.shortfall and "earlier --start" in plan.shortfall and "2024-01-01" in plan.shortfall


def test_calendar_cutoffs_are_tested_at_every_horizon_they_can_test_besides_the_latest():
    # monthly cutoffs from 2024-01-02 to 2024-11-27, data to 2024-12-28, and the calendar's three:
    # a month end, a holiday week, and a month end too early for any fold (one training cutoff before it)
    calendar = {
        "2024-06-01": "a month end",
        "2024-07-08": "the base's quietest week (50% of its usual activity)",
        "2024-02-01": "a month end",
    }
    cutoffs = grid("2024-01-02", 30, 12).union(pd.DatetimeIndex(list(calendar), tz="UTC"))
    end = pd.Timestamp("2024-12-28", tz="UTC")
    panel = panel_on(cutoffs, end)
    plan = plan_backtest(panel, 2, data_end=end, calendar=calendar)
    extra = {pd.Timestamp(d, tz="UTC") for d in ("2024-06-01", "2024-07-08")}
    for h, label in zip(HORIZONS, LABELS, strict=True):
        eligible = slow_eligible(panel, h, label, plan.min_train_cutoffs)
        if not eligible:
            assert h not in plan.test_cutoffs
            continue
        # the latest two, and the calendar's wherever they are eligible
        assert set(plan.test_cutoffs[h]) == set(eligible[-2:]) | (extra & set(eligible))
    assert set(plan.test_cutoffs[90]) > extra and 180 not in plan.test_cutoffs
    assert set(plan.calendar) == extra  # the early month end can test nothing: not tested, not listed
    assert (
        "also tested at 2024-07-08 (30, 60, 90 days): the base's quietest week (50% of its usual activity)"
        in plan.lines()
    )
    assert plan.to_dict()["calendar_cutoffs"] == {"2024-06-01": "a month end", "2024-07-08": calendar["2024-07-08"]}
    assert plan_backtest(panel, 2, data_end=end).fold_cutoffs == sorted(set(plan.fold_cutoffs) - extra)


# -- the backtest on a short panel ------------------------------------------------------------------


def test_backtest_on_a_short_weekly_panel_scores_each_horizon_on_its_own_folds():
    cutoffs, end = grid("2024-01-02", 7, 22), pd.Timestamp("2024-05-30", tz="UTC")
    panel = panel_on(cutoffs, end, accounts=60)
    plan = plan_backtest(panel, 2, data_end=end)
    table, pooled = run_backtest(
        panel,
        ["risk", "noise"],
        folds=2,
        params=QUICK,
        plan=plan,
        baselines={"rules": RulesBaseline, "logistic": lambda: LogisticBaseline(["risk", "noise"])},
    )
    assert set(zip(table["model"], table["horizon_days"], strict=True)) == {
        (m, h) for m in ("lightgbm", "rules", "logistic") for h in (30, 60)
    }
    assert (table.loc[table["horizon_days"] == 30, "folds"] == 2).all() and (
        table.loc[table["horizon_days"] == 60, "folds"] == 1
    ).all()
    lightgbm = table.set_index(["model", "horizon_days"]).loc["lightgbm"]
    assert lightgbm.loc[30, "roc_auc"] > 0.6  # the risk feature carries the signal
    # pooled predictions hold a horizon's outcome only at the folds planned for it
    for h, label in zip(HORIZONS, LABELS, strict=True):
        labelled = set(pooled.loc[pooled[label].notna(), "cutoff"])
        assert labelled == set(plan.test_cutoffs.get(h, ()))


def test_a_fold_fits_its_baselines_only_up_to_the_longest_horizon_it_scores():
    cutoffs, end = grid("2024-01-02", 30, 16), pd.Timestamp("2025-06-30", tz="UTC")
    panel = panel_on(cutoffs, end, accounts=80)
    test_cutoff = cutoffs[-6]

    def fold(horizons: tuple[int, ...]) -> dict[str, pd.DataFrame]:
        job = FoldJob(
            0,
            test_cutoff,
            panel,
            ["risk", "noise"],
            QUICK,
            {"rules": RulesBaseline, "logistic": lambda: LogisticBaseline(["risk", "noise"])},
            None,
            None,
            horizons,
        )
        return {frame["model"].iloc[0]: frame for frame in run_fold(job)["preds"]}

    every, short = fold(HORIZONS), fold((30, 60))
    for name in ("rules", "logistic"):
        # the horizons scored are predicted exactly as by a baseline fitted on every horizon
        for h in (30, 60):
            np.testing.assert_allclose(short[name][f"p_{h}d"], every[name][f"p_{h}d"], rtol=0, atol=0)
        # the longer ones were not fitted: no prediction, and no outcome to score one against
        assert every[name]["p_180d"].notna().all()
        for h, label in zip(HORIZONS[2:], LABELS[2:], strict=True):
            assert short[name][f"p_{h}d"].isna().all() and short[name][label].isna().all()


def test_a_fold_asked_for_the_raw_curve_scores_it_beside_the_calibrated_one():
    cutoffs, end = grid("2024-01-02", 30, 16), pd.Timestamp("2025-06-30", tz="UTC")
    panel = panel_on(cutoffs, end, accounts=1000)  # enough churn events held out for a calibration shift
    # 13 training cutoffs with a known 30-day outcome: the latest two are held out, enough to calibrate on
    job = FoldJob(0, cutoffs[-3], panel, ["risk", "noise"], QUICK, None, None, None, (30, 60), raw=True)
    fold = run_fold(job)
    curves = {frame["model"].iloc[0]: frame for frame in fold["preds"]}
    assert set(curves) == {"lightgbm", "lightgbm_raw"}
    raw, calibrated = curves["lightgbm_raw"]["p_30d"].to_numpy(), curves["lightgbm"]["p_30d"].to_numpy()
    assert not np.allclose(raw, calibrated)  # the shift moved the risks...
    np.testing.assert_array_equal(
        np.argsort(raw, kind="stable"), np.argsort(calibrated, kind="stable")
    )  # ...not their order
    assert fold["kept"] and all(isinstance(i, int) for i in fold["kept"])
    plain = run_fold(FoldJob(0, cutoffs[-3], panel, ["risk", "noise"], QUICK, None, None, None, (30, 60)))
    assert [frame["model"].iloc[0] for frame in plain["preds"]] == ["lightgbm"]


def test_a_fold_with_one_held_out_cutoff_keeps_its_raw_curve():
    """One cutoff's churn rate is mostly that month's noise (models.curve MIN_CALIBRATION_CUTOFFS)."""
    cutoffs, end = grid("2024-01-02", 30, 16), pd.Timestamp("2025-06-30", tz="UTC")
    panel = panel_on(cutoffs, end, accounts=1000)
    # 10 training cutoffs with a known 30-day outcome: only the latest is held out
    fold = run_fold(FoldJob(0, cutoffs[-6], panel, ["risk", "noise"], QUICK, None, None, None, (30, 60), raw=True))
    curves = {frame["model"].iloc[0]: frame for frame in fold["preds"]}
    np.testing.assert_allclose(  # a zero shift: sigmoid(logit(raw)), raw up to rounding
        curves["lightgbm"][["p_30d", "p_60d"]], curves["lightgbm_raw"][["p_30d", "p_60d"]], rtol=1e-12
    )


# -- metrics and promotion with missing figures -------------------------------------------------------


def test_one_class_test_set_gives_null_metrics_with_a_note():
    frame = pd.DataFrame(
        {
            "account_id": ["A", "B", "C"],
            "cutoff": pd.Timestamp("2024-01-01", tz="UTC"),
            "y": [0, 0, 0],
            "score": [0.1, 0.2, 0.3],
        }
    )
    m = score_metrics(frame)
    assert np.isnan(m["roc_auc"]) and np.isnan(m["pr_auc"]) and "one class" in m["note"]
    both = score_metrics(frame.assign(y=[0, 1, 0]))  # both classes: defined, but one churner gives no interval
    assert np.isfinite(both["roc_auc"]) and "one class" not in both["note"] and "too few" in both["note"]


def test_rows_without_a_score_are_left_out_and_counted():
    frame = pd.DataFrame(
        {
            "account_id": list("ABCD"),
            "cutoff": pd.Timestamp("2024-01-01", tz="UTC"),
            "y": [0, 1, 0, 1],
            "score": [0.1, 0.9, np.nan, 0.8],
        }
    )
    m = score_metrics(frame)
    assert m["rows"] == 3 and m["roc_auc"] == 1.0 and "1 row without a score" in m["note"]


def test_lead_times_accept_churn_times_as_the_contract_types_them():
    frame = pd.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "cutoff": pd.to_datetime(["2024-01-01", "2024-01-01"], utc=True),
            "y": [1, 0],
            "score": [0.9, 0.1],
        }
    )
    churned = pd.Series(pd.to_datetime(["2024-01-31"], utc=True).astype("datetime64[us, UTC]"), index=["A1"])
    assert score_metrics(frame, budget=0.5, churned_at=churned)["median_lead_days"] == 30


def test_promotion_compares_on_the_horizons_both_have_and_says_so():
    policy = PromotionPolicy(tolerance=0.01, max_ece=0.05)
    challenger = {metric_key(m, h): v for h in (30, 60) for m, v in (("roc_auc", 0.8), ("ece", 0.01))}
    champion = {metric_key(m, h): v for h in (30, 60, 90) for m, v in (("roc_auc", 0.79), ("ece", 0.01))}
    decision = decide(challenger, champion, policy)
    assert decision["promote"] and [c["horizon_days"] for c in decision["comparison"]] == [30, 60]
    assert any("90 days" in n and "challenger" in n for n in decision["notes"])
    assert any("180 days" in n for n in decision["notes"])
    # the champion lacks a horizon the challenger has: compared on the others, not refused
    narrow = {k: v for k, v in champion.items() if "_60d" not in k}
    decision = decide(challenger, narrow, policy)
    assert decision["promote"] and any("60 days" in n and "champion" in n for n in decision["notes"])
    # nothing in common: nothing to compare on is a refusal, with the reason
    decision = decide(challenger, {metric_key("roc_auc", 180): 0.9}, policy)
    assert not decision["promote"] and "no horizon" in decision["reasons"][0]


def test_a_first_model_is_held_to_the_rules_baseline_of_its_own_backtest():
    policy = PromotionPolicy(tolerance=0.005, max_ece=0.02, horizons=(30, 90))

    def run(curve: float, rules: float, model: str = "lightgbm") -> dict[str, float]:
        figures = {metric_key(m, h, model): v for h in (30, 90) for m, v in (("roc_auc", curve), ("ece", 0.01))}
        return {**figures, **{metric_key("roc_auc", h, "rules"): rules for h in (30, 90)}}

    better = decide(run(0.80, 0.70), None, policy)
    assert better["promote"] and [(c["rules"], c["champion"]) for c in better["comparison"]] == [(0.70, None)] * 2
    # a curve that ranks churners worse than counting warning signs (as on a base with a handful of
    # churns: 0.115 against 0.55) is refused, saying against what
    worse = decide(run(0.115, 0.55), None, policy)
    assert not worse["promote"] and len(worse["reasons"]) == 2
    assert "30-day roc_auc 0.1150 is below the rules baseline of the same backtest's 0.5500" in worse["reasons"][0]
    assert decide(run(0.546, 0.55), None, policy)["promote"]  # within the tolerance
    # a served logistic baseline is read as its own rows
    assert not decide(run(0.60, 0.70, "logistic"), None, policy, challenger_model="logistic")["promote"]
    # a horizon resting on fewer than 10 churned accounts is not compared, and says so; none left is a refusal
    few = {**run(0.115, 0.55), metric_key("churned_accounts", 30): 1.0, metric_key("churned_accounts", 90): 40.0}
    judged = decide(few, None, policy)
    assert not judged["promote"] and len(judged["reasons"]) == 1 and "90-day" in judged["reasons"][0]
    assert [c["compared"] for c in judged["comparison"]] == [False, True]
    assert any("30 days: not compared" in n and "1 churned account(s)" in n for n in judged["notes"])
    none = decide({**few, metric_key("churned_accounts", 90): 9.0}, None, policy)
    assert not none["promote"] and none["reasons"] == [
        "no horizon could be compared with the rules baseline of the same backtest (the notes say why for each): "
        "nothing to judge it on"
    ]
    # a run that logged no rules rows: calibration alone, said
    alone = decide({k: v for k, v in run(0.115, 0.55).items() if ".rules." not in k}, None, policy)
    assert alone["promote"] and "judged on calibration alone" in alone["notes"][0]


def test_promotion_without_any_challenger_figures_refuses_with_a_reason():
    decision = decide({}, None, PromotionPolicy())
    assert not decision["promote"] and decision["reasons"]


@pytest.mark.parametrize("stored", ["csv", "parquet_text"])
def test_churn_times_are_read_through_the_contract(tiny, tmp_path, stored):
    """churn.csv, or a Parquet file with churned_at as text, gives UTC times that lead times can use."""
    data = write_tables(tiny, tmp_path / "data")  # every table as CSV text
    if stored == "parquet_text":
        pd.read_csv(data / "churn.csv", dtype=str).to_parquet(data / "churn.parquet", index=False)
        (data / "churn.csv").unlink()
    churned = churn_times(data)
    assert isinstance(churned.dtype, pd.DatetimeTZDtype) and churned["A1"] == pd.Timestamp("2024-03-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "cutoff": pd.to_datetime(["2024-02-01", "2024-02-01"], utc=True),
            "y": [1, 0],
            "score": [0.9, 0.1],
        }
    )
    assert score_metrics(frame, budget=0.5, churned_at=churned)["median_lead_days"] == 29
