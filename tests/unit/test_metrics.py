"""Backtest metrics on hand-built frames, where every number can be worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.metrics import bootstrap_roc_auc, expected_calibration_error, score_metrics


def frame(scores, ys, cutoffs=None, arr=None) -> pd.DataFrame:
    n = len(scores)
    return pd.DataFrame(
        {
            "account_id": [f"A{i % 10}" for i in range(n)],
            "cutoff": pd.to_datetime(cutoffs or ["2024-01-01"] * n, utc=True),
            "y": ys,
            "score": scores,
            "arr": arr if arr is not None else [1.0] * n,
        }
    )


def test_perfect_ranking():
    m = score_metrics(
        frame([0.9, 0.8, 0.1, 0.2, 0.05, 0.3, 0.15, 0.12, 0.11, 0.02], [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]), budget=0.2
    )
    assert m["roc_auc"] == 1.0 and m["pr_auc"] == pytest.approx(1.0)
    assert m["recall_at_budget"] == 1.0  # top 2 of 10 are the two churners
    assert m["lift_top_decile"] == pytest.approx(1.0 / 0.2)  # the top decile (1 row) is a churner; base rate 0.2


def test_recall_at_budget_is_per_cutoff_and_arr_weighted():
    # two cutoffs, 5 accounts each, budget 20% -> one flag per cutoff
    scores = [0.9, 0.1, 0.2, 0.3, 0.4, 0.1, 0.9, 0.2, 0.3, 0.4]
    ys = [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    cut = ["2024-01-01"] * 5 + ["2024-02-01"] * 5
    arr = [100.0, 300.0, 1, 1, 1, 1, 1, 1, 1, 600.0]
    m = score_metrics(frame(scores, ys, cut, arr), budget=0.2)
    assert m["recall_at_budget"] == pytest.approx(1 / 3)  # caught only the first churner
    assert m["arr_recall_at_budget"] == pytest.approx(100 / 1000)


def test_lead_time_counts_from_the_first_flag():
    f = pd.DataFrame(
        {
            "account_id": ["A1", "A1", "A2"],
            "cutoff": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-02-01"], utc=True),
            "y": [1, 1, 0],
            "score": [0.9, 0.9, 0.1],
        }
    )
    churned = pd.Series(pd.to_datetime(["2024-03-01"], utc=True), index=["A1"])
    m = score_metrics(f, budget=0.5, churned_at=churned)
    assert m["median_lead_days"] == 60 and m["caught_accounts"] == 1


def test_ece_is_zero_when_calibrated_and_grows_when_not():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.2, 200_000)
    y = rng.random(200_000) < p
    assert expected_calibration_error(y, p) < 0.003
    assert expected_calibration_error(y, np.clip(p * 2, 0, 1)) > 0.05


def test_degenerate_labels_give_nan_not_an_error():
    m = score_metrics(frame([0.1, 0.2], [0, 0]))
    assert np.isnan(m["roc_auc"]) and np.isnan(m["recall_at_budget"]) and m["brier"] == pytest.approx(0.025)
    assert np.isnan(m["roc_auc_low"]) and np.isnan(m["roc_auc_high"])


def test_roc_auc_comes_with_an_interval_that_narrows_as_the_accounts_grow():
    rng = np.random.default_rng(5)

    def metrics(accounts: int) -> dict:
        ids = np.repeat(np.arange(accounts), 4)  # four snapshots per account: clustered rows
        risk = np.repeat(rng.normal(size=accounts), 4)
        y = (rng.random(len(ids)) < 1 / (1 + np.exp(-(risk * 1.5 - 3)))).astype(int)
        f = pd.DataFrame({"account_id": ids, "cutoff": pd.Timestamp("2024-01-01", tz="UTC"), "y": y, "score": risk})
        return score_metrics(f)

    small, large = metrics(300), metrics(5000)
    for m in (small, large):
        assert m["roc_auc_low"] < m["roc_auc"] < m["roc_auc_high"]
    assert large["roc_auc_high"] - large["roc_auc_low"] < 0.5 * (small["roc_auc_high"] - small["roc_auc_low"])


def test_too_few_churned_accounts_give_no_interval_and_say_so():
    # one churner: every resample that draws it ranks that account again, so the bootstrap would
    # claim a narrow interval around a figure one account decides
    one = score_metrics(frame([0.9, 0.2, 0.1], [1, 0, 0]))
    assert one["roc_auc"] == 1.0 and np.isnan(one["roc_auc_low"]) and np.isnan(one["roc_auc_high"])
    assert "1 churned account among the test rows: too few for a ROC-AUC interval (at least 10)" in one["note"]
    # nine churned accounts, each churning at two cutoffs (18 churn rows): still too few; ten are enough
    rng = np.random.default_rng(3)
    for churners, has_interval in ((9, False), (10, True)):
        ids = np.repeat(np.arange(200), 2)
        y = (ids < churners).astype(int)
        f = pd.DataFrame({"account_id": ids, "cutoff": pd.Timestamp("2024-01-01", tz="UTC"), "y": y})
        m = score_metrics(f.assign(score=y + rng.normal(0, 1, len(y))))
        assert bool(np.isfinite(m["roc_auc_low"])) is has_interval and np.isfinite(m["roc_auc"])
        assert ("too few for a ROC-AUC interval" in (m["note"] or "")) is not has_interval


def test_bootstrap_roc_auc_is_sklearns_weighted_auc_on_each_resample_of_the_accounts():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.random(2000) < 0.1
    scores = {"tied": np.round(rng.random(2000) + 0.6 * y, 1), "fine": rng.random(2000) + 0.3 * y}
    accounts = rng.integers(0, 500, 2000)
    samples = bootstrap_roc_auc(y, scores, accounts, resamples=250, seed=7)
    # the same draws, by hand: an account drawn k times weighs k on every one of its rows
    draws = np.random.default_rng(7)
    codes, _ = pd.factorize(pd.Series(accounts))
    n = codes.max() + 1
    for i in range(3):
        weight = np.bincount(draws.integers(0, n, n), minlength=n)[codes]
        for name, score in scores.items():
            assert samples[name][i] == pytest.approx(roc_auc_score(y, score, sample_weight=weight), abs=1e-12)
    assert all(len(v) == 250 for v in samples.values())
    # the samples spread around the full data's AUC, and pairing narrows the difference of two scores
    for name, score in scores.items():
        assert abs(np.median(samples[name]) - roc_auc_score(y, score)) < 0.02 and samples[name].std() > 0.005
    assert (samples["fine"] - samples["tied"]).std() < np.hypot(samples["fine"].std(), samples["tied"].std())
