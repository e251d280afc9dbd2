"""The risk curve: censored intervals are left out, and the curve never decreases with the horizon."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.curve import LABELS, CurveParams, expand_intervals, fit_curve


def test_expand_intervals_keeps_known_survived_intervals_only():
    panel = pd.DataFrame(
        {
            LABELS[0]: pd.array([0, 1, 0, pd.NA], dtype="Int8"),
            LABELS[1]: pd.array([0, 1, 1, pd.NA], dtype="Int8"),
            LABELS[2]: pd.array([0, 1, pd.NA, pd.NA], dtype="Int8"),
            LABELS[3]: pd.array([pd.NA, 1, pd.NA, pd.NA], dtype="Int8"),
        }
    )
    rows = expand_intervals(panel).sort_values(["row", "interval"])
    got = {(r.row, r.interval): r.event for r in rows.itertuples()}
    # row 0: survived 0-90, 90-180 censored; row 1: churned in the first interval (nothing after);
    # row 2: churned in 30-60 (nothing after, even though later labels are null); row 3: all censored
    assert got == {(0, 0): 0, (0, 1): 0, (0, 2): 0, (1, 0): 1, (2, 0): 0, (2, 1): 1}


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    n = 6000
    cutoffs = pd.to_datetime("2024-01-01", utc=True) + pd.to_timedelta(rng.integers(0, 20, n) * 30, unit="D")
    risk = rng.normal(size=n)
    days = rng.exponential(365 / np.exp(risk))  # higher risk, earlier churn
    panel = pd.DataFrame({"account_id": [f"A{i}" for i in range(n)], "cutoff": cutoffs, "risk": risk,
                          "noise": rng.normal(size=n), "segment": rng.choice(["smb", "enterprise"], n)})
    for h, label in zip((30, 60, 90, 180), LABELS, strict=True):
        panel[label] = pd.array((days <= h).astype(int), dtype="Int8")
    return fit_curve(panel, ["risk", "noise", "segment"], CurveParams(n_estimators=150, valid_gap_days=0, min_child_samples=20)), panel


def test_risk_raises_the_curve(fitted):
    model, panel = fitted
    probe = pd.DataFrame({"risk": [-2.0, 0.0, 2.0], "noise": 0.0, "segment": "smb"})
    curve = model.predict_curve(probe)
    assert (np.diff(curve[:, 2]) > 0).all()  # 90-day risk rises with the latent risk


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-50, 50), st.floats(-50, 50), st.sampled_from(["smb", "enterprise", "unseen"])), min_size=1, max_size=20))
def test_curve_is_monotone_for_any_input(fitted, rows):
    model, _ = fitted
    probe = pd.DataFrame(rows, columns=["risk", "noise", "segment"])
    curve = model.predict_curve(probe)
    assert curve.shape == (len(rows), 4)
    assert (np.diff(curve, axis=1) >= 0).all() and ((curve >= 0) & (curve <= 1)).all()


def test_single_account_path_matches_the_batch_path(fitted):
    """The API's path (one account's values as a dict, one thread) gives the batch numbers exactly."""
    model, panel = fitted
    sample = panel.head(50)
    batch = model.predict_curve(sample)
    batch_contrib = model.contributions_matrix(model.encode(sample), 90)
    for i, values in enumerate(sample[["risk", "noise", "segment"]].to_dict("records")):
        x = model.row(values)
        np.testing.assert_allclose(model.curve_matrix(x, num_threads=1)[0], batch[i], atol=1e-12)
        np.testing.assert_allclose(model.contributions_matrix(x, 90, num_threads=1)[0], batch_contrib[i], atol=1e-9)
    # unknown names, None and unseen categories are missing values, not errors
    x = model.row({"risk": None, "segment": "unseen", "not_a_feature": 3})
    assert np.isnan(x).all() and model.curve_matrix(x).shape == (1, 4)


def test_save_and_load_give_the_same_curve(fitted, tmp_path):
    from models.curve import RiskCurveModel

    model, panel = fitted
    model.save(tmp_path / "m")
    assert not list(tmp_path.glob("m/*.pkl"))  # LightGBM text + JSON, nothing pickled
    loaded = RiskCurveModel.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_curve(panel.head(300)), model.predict_curve(panel.head(300)), atol=1e-12)


def test_per_horizon_formulation_is_monotone_and_ranks_risk(fitted):
    _, panel = fitted
    model = fit_curve(panel, ["risk", "noise", "segment"],
                      CurveParams(formulation="per_horizon", n_estimators=100, valid_gap_days=0, min_child_samples=20))
    assert len(model.boosters) == 4
    probe = pd.DataFrame({"risk": np.linspace(-50, 50, 41), "noise": 0.0, "segment": "smb"})
    curve = model.predict_curve(probe)
    assert (np.diff(curve, axis=1) >= 0).all()
    assert curve[-1, 2] > curve[0, 2]
    contrib = model.contributions_matrix(model.encode(probe), 60)
    np.testing.assert_allclose(contrib.sum(axis=1), model.boosters[1].predict(model.encode(probe), raw_score=True), atol=1e-9)


def test_early_stopping_found_afterwards_matches_lightgbm():
    """The Dask trainer grows every round and finds the early-stopping round afterwards: it must be
    the round LightGBM's own early stopping keeps."""
    import lightgbm as lgb

    from models.curve import early_stopping_iteration
    from models.dask_training import validation_losses

    rng = np.random.default_rng(3)
    X = rng.normal(size=(6000, 6))
    y = (rng.random(6000) < 1 / (1 + np.exp(-(X[:, 0] - 0.5 * X[:, 1])))).astype(float)
    fit, valid = (X[:4000], y[:4000]), (X[4000:], y[4000:])
    params = {"objective": "binary", "learning_rate": 0.3, "num_leaves": 31, "min_child_samples": 5, "verbose": -1, "seed": 1, "num_threads": 1}
    train_set = lgb.Dataset(*fit)
    stopped = lgb.train(params, train_set, 300, valid_sets=[lgb.Dataset(*valid, reference=train_set)], callbacks=[lgb.early_stopping(10, verbose=False)])
    assert 1 < stopped.best_iteration < 300  # it did stop early: the comparison means something
    full = lgb.train(params, lgb.Dataset(*fit), 300)
    assert early_stopping_iteration(validation_losses(full, *valid, 300), 10) == stopped.best_iteration
