"""The logistic baseline as a served curve (models/linear.py): it predicts what the backtested
baseline predicts, its contributions are shap's LinearExplainer's and add up to its log-odds, one
account's row gives the batch numbers, and it survives saving."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.vocabulary import HORIZONS, LABELS
from models.baselines import LogisticBaseline
from models.explain import baseline_explanation, explanation
from models.linear import LinearCurveModel

FEATURES = ["days_since_last_login", "logins_30d", "arr_current", "nps_last", "segment", "plan"]


def panel(rows: int = 600, seed: int = 3) -> pd.DataFrame:
    """Snapshots whose churn follows logins and silence, with missing numbers, a category with
    missing values and a 180-day label that is all one class."""
    rng = np.random.default_rng(seed)
    silence = rng.exponential(10, rows)
    logins = rng.poisson(20, rows).astype(float)
    logins[rng.random(rows) < 0.1] = np.nan
    score = -3 + 0.08 * silence - 0.05 * np.nan_to_num(logins, nan=20)
    churn = rng.random(rows) < 1 / (1 + np.exp(-score))
    segment = rng.choice(np.array(["smb", "mid_market", "enterprise"], dtype=object), rows)
    segment[rng.random(rows) < 0.05] = None
    frame = pd.DataFrame(
        {
            "account_id": [f"A{i:04d}" for i in range(rows)],
            "cutoff": pd.Timestamp("2024-06-30", tz="UTC") - pd.to_timedelta(rng.integers(0, 200, rows), unit="D"),
            "days_since_last_login": silence,
            "logins_30d": logins,
            "arr_current": rng.lognormal(9, 1, rows),
            "nps_last": np.where(rng.random(rows) < 0.5, np.nan, rng.integers(0, 11, rows)),
            "segment": segment,
            "plan": rng.choice(np.array(["starter", "growth"], dtype=object), rows),
        }
    )
    later = churn | (rng.random(rows) < 0.05)
    for label, y in zip(LABELS, [churn, churn, later, np.ones(rows, dtype=bool)], strict=True):
        frame[label] = pd.array(y.astype(int), dtype="Int8")
    frame.loc[frame.index[:50], LABELS[1]] = pd.NA  # outcomes not known yet
    return frame


@pytest.fixture(scope="module")
def fitted():
    frame = panel()
    baseline = LogisticBaseline(FEATURES).fit(frame)
    return frame, baseline, LinearCurveModel.from_baseline(baseline, frame)


def test_it_predicts_what_the_baseline_predicts(fitted):
    frame, baseline, model = fitted
    fresh = panel(200, seed=9)  # other accounts, a level or two the training rows may lack
    # (a horizon of one class: its rate, through a log-odds clipped 1e-12 from 0 and 1)
    np.testing.assert_allclose(model.predict_curve(fresh), baseline.predict_curve(fresh), rtol=0, atol=1e-9)
    curve = model.predict_curve(frame)
    assert (np.diff(curve, axis=1) >= 0).all()
    # 180 days: every training outcome churned, so the rate is 1, and the curve says so
    assert np.allclose(curve[:, -1], 1.0) and model.info["notes"] and "180 days" in model.info["notes"][0]
    assert model.formulation == model.kind == "logistic" and model.info["trained_through"]


def test_contributions_add_up_and_are_linear_explainers(fitted):
    frame, baseline, model = fitted
    X = model.encode(frame)
    for k, h in enumerate(HORIZONS[:3]):
        contrib = model.contributions_matrix(X, h)
        assert contrib.shape == (len(frame), len(FEATURES) + 1)
        log_odds = baseline.models_[k].decision_function(baseline._x(frame))
        np.testing.assert_allclose(contrib.sum(axis=1), log_odds, rtol=0, atol=1e-9)
        known = frame[LABELS[k]].notna()
        reference = baseline_explanation(baseline, frame.head(40), h, reference=frame[known])
        np.testing.assert_allclose(contrib[:40, :-1], reference.values, rtol=0, atol=1e-9)
        np.testing.assert_allclose(contrib[:40, -1], reference.base_values, rtol=0, atol=1e-9)
        shown = explanation(model, frame.head(40), h)  # what the report and notebooks get
        np.testing.assert_allclose(shown.values, contrib[:40, :-1], rtol=0, atol=1e-9)
        assert list(shown.feature_names) == FEATURES
    # the missing segment sits on its own level, as in the baseline: it carries a contribution
    missing = frame["segment"].isna().to_numpy()
    assert np.abs(model.contributions_matrix(X, 30)[missing, FEATURES.index("segment")]).min() > 0


def test_one_accounts_row_is_the_batch_matrix_and_missing_is_missing_however_spelled(fitted):
    frame, _, model = fitted
    records = frame[FEATURES].head(30).to_dict("records")
    rows = np.vstack([model.row(r) for r in records])
    batch = model.encode(frame.head(30))
    np.testing.assert_array_equal(np.isnan(rows), np.isnan(batch))
    np.testing.assert_array_equal(np.nan_to_num(rows, nan=-1), np.nan_to_num(batch, nan=-1))
    j = FEATURES.index("segment")
    spelled = [model.row({"segment": v})[0, j] for v in (None, np.nan, pd.NA)]
    as_frame = model.encode(pd.DataFrame({"segment": pd.Series([None, np.nan, pd.NA], dtype=object)}))[:, j]
    assert len({*spelled, *as_frame}) == 1 and not np.isnan(spelled[0])
    assert np.isnan(model.row({"segment": "a level never seen"})[0, j])


def test_saved_and_loaded_it_scores_the_same(fitted, tmp_path):
    frame, _, model = fitted
    model.save(tmp_path / "linear")
    again = LinearCurveModel.load(tmp_path / "linear")
    np.testing.assert_array_equal(again.predict_curve(frame), model.predict_curve(frame))
    X = model.encode(frame)
    np.testing.assert_array_equal(again.contributions_matrix(X, 90), model.contributions_matrix(X, 90))


def test_a_horizon_without_outcomes_repeats_the_one_before():
    frame = panel(300)
    frame[LABELS[3]] = pd.array([pd.NA] * len(frame), dtype="Int8")
    model = LinearCurveModel.from_baseline(LogisticBaseline(FEATURES).fit(frame), frame)
    curve = model.predict_curve(frame)
    assert not np.isnan(curve).any() and np.array_equal(curve[:, 3], curve[:, 2])
    assert any("180 days: no snapshot" in note for note in model.info["notes"])
