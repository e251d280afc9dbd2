"""Explanations: exact TreeSHAP sums to the raw score, reasons read as sentences, direction is right;
shap.Explanation objects equal LightGBM's pred_contrib (the API's fast path) and shap's plots say their unit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from features.registry import spec
from models.baselines import LogisticBaseline
from models.curve import HORIZONS, LABELS, CurveParams, fit_curve
from models.explain import (
    baseline_explanation,
    by_family,
    contributions,
    explanation,
    global_importance,
    interval_contributions,
    raw_hazard_scores,
)
from models.plots import (
    beeswarm_figure,
    explanation_figures,
    readable,
    waterfall_figure,
)

SPECS = {
    "days_since_last_login": spec(
        "days_since_last_login", "usage", "days", "days since last login", "last login {n} days ago"
    ),
    "nps_last": spec("nps_last", "surveys", "score", "latest NPS", "last NPS answer {n} of 10"),
    "segment": spec("segment", "business", "category", "segment", "{value} segment", kind="categorical"),
}


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(1)
    n = 6000
    silence = rng.exponential(5, n)
    nps = rng.integers(0, 11, n).astype(float)
    risk = 0.15 * silence - 0.3 * (nps - 7)
    days = rng.exponential(365 / np.exp(risk - 1))
    panel = pd.DataFrame(
        {
            "account_id": [f"A{i}" for i in range(n)],
            "cutoff": pd.to_datetime("2024-01-01", utc=True) + pd.to_timedelta(rng.integers(0, 20, n) * 30, unit="D"),
            "days_since_last_login": silence,
            "nps_last": nps,
            "segment": rng.choice(["smb", "enterprise"], n),
        }
    )
    for h, label in zip((30, 60, 90, 180), LABELS, strict=True):
        panel[label] = pd.array((days <= h).astype(int), dtype="Int8")
    model = fit_curve(panel, list(SPECS), CurveParams(n_estimators=150, valid_gap_days=0, min_child_samples=20))
    return model, panel


def test_contributions_sum_to_the_raw_score(fitted):
    model, panel = fitted
    sample = panel.head(200)
    for interval in range(4):
        contrib = interval_contributions(model, sample, interval)
        np.testing.assert_allclose(
            contrib.sum(axis=1), raw_hazard_scores(model, sample, interval), rtol=1e-6, atol=1e-6
        )


def test_reasons_point_the_right_way_and_read_as_sentences(fitted):
    from models.reasons import Reference, account_reasons, points

    model, panel = fitted
    probe = pd.DataFrame({"days_since_last_login": [30.0], "nps_last": [2.0], "segment": ["smb"]})
    base = pd.concat([panel.head(500), probe], ignore_index=True)
    X = model.encode(base)
    risk = model.curve_matrix(X)[:, 2]
    contrib = model.contributions_matrix(X, 90)[:, :-1]
    reference = Reference.of(90, risk, contrib, base, model.features, SPECS)
    pts, rest = points(contrib, risk, reference)
    reasons = account_reasons(
        contrib[-1], pts[-1], float(rest[-1]), model.features, probe.iloc[0].to_dict(), SPECS, reference
    )
    raising = {r["feature"] for r in reasons["raising"]}
    assert {"days_since_last_login", "nps_last"} <= raising
    sentences = [r["sentence"] for r in reasons["raising"]]
    assert any(s.startswith("last login 30 days ago") for s in sentences) and any(
        s.startswith("last NPS answer 2 of 10") for s in sentences
    )
    families = by_family(contributions(model, probe, 90), SPECS)
    assert set(families.columns) <= {"usage", "surveys", "business"}
    assert global_importance(contributions(model, fitted[1].head(500), 90), SPECS)["feature"].iloc[0] in SPECS


def test_more_days_without_login_never_lowers_risk(fitted):
    """Behavioural: all else equal, a longer silence never makes churn less likely."""
    model, _ = fitted
    probe = pd.DataFrame({"days_since_last_login": np.linspace(0, 60, 61), "nps_last": 7.0, "segment": "smb"})
    curve = model.predict_curve(probe)
    assert curve[-1, 2] > curve[0, 2]
    assert (np.diff(curve, axis=0) >= 0).all()  # monotone constraints + isotonic calibration: never lower
    better_nps = pd.DataFrame(
        {"days_since_last_login": 5.0, "nps_last": np.arange(0, 11, dtype=float), "segment": "enterprise"}
    )
    assert (np.diff(model.predict_curve(better_nps), axis=0) <= 0).all()  # a better NPS never raises risk


@pytest.fixture(scope="module")
def per_horizon(fitted):
    return fit_curve(
        fitted[1],
        list(SPECS),
        CurveParams(formulation="per_horizon", n_estimators=40, valid_gap_days=0, min_child_samples=20),
    )


@pytest.mark.parametrize("formulation", ["hazard", "per_horizon"])
def test_shap_explanation_equals_lightgbm_pred_contrib(formulation, fitted, per_horizon):
    """shap.TreeExplainer, averaged over the horizon's intervals (hazard), gives contributions_matrix's
    numbers, and values plus base value add up to the boosters' own log-odds."""
    model = fitted[0] if formulation == "hazard" else per_horizon
    sample = fitted[1].head(200)
    X = model.encode(sample)
    for k, h in enumerate(HORIZONS):
        explained = explanation(model, sample, h)
        contrib = model.contributions_matrix(X, h)
        assert explained.shape == (200, len(model.features)) and list(explained.feature_names) == model.features
        np.testing.assert_allclose(explained.values, contrib[:, :-1], rtol=0, atol=1e-6)
        np.testing.assert_allclose(explained.base_values, contrib[:, -1], rtol=0, atol=1e-6)
        raw = (
            np.mean([raw_hazard_scores(model, sample, j) for j in range(k + 1)], axis=0)
            if formulation == "hazard"
            else model.boosters[k].predict(X, raw_score=True)
        )
        np.testing.assert_allclose(explained.values.sum(axis=1) + explained.base_values, raw, rtol=0, atol=1e-6)
    segment = model.features.index("segment")
    assert list(explained.display_data[:5, segment]) == list(sample["segment"].head(5))  # names, not codes
    np.testing.assert_array_equal(explained.data, X)


def test_the_apis_single_account_path_gives_the_shap_numbers(fitted):
    """The API explains an account from its values (model.row) through contributions_matrix on one
    thread: the same numbers as the shap Explanation of the same accounts."""
    model, panel = fitted
    sample = panel.sample(5, random_state=3)
    explained = explanation(model, sample, 90)
    for i, values in enumerate(sample.to_dict("records")):
        fast = model.contributions_matrix(model.row(values), 90, num_threads=1)[0]
        np.testing.assert_allclose(fast[:-1], explained.values[i], rtol=0, atol=1e-6)
        assert fast[-1] == pytest.approx(explained.base_values[i], abs=1e-6)
    with pytest.raises(InputError, match="horizon_days 45"):
        explanation(model, sample, 45)


def test_logistic_baseline_explanation_is_per_original_feature(fitted):
    """LinearExplainer on the pipeline's columns, summed back per feature: a number with its missing
    indicator, a category's one-hot levels; the sum is the regression's log-odds."""
    _, panel = fitted
    # missing values: an indicator column
    panel = panel.assign(nps_last=panel["nps_last"].mask(np.arange(len(panel)) % 10 == 0))
    baseline = LogisticBaseline(list(SPECS)).fit(panel)
    sample = panel.head(300)
    explained = baseline_explanation(baseline, sample, 90, reference=panel)
    pipeline = baseline.models_[2]
    np.testing.assert_allclose(
        explained.values.sum(axis=1) + explained.base_values,
        pipeline.decision_function(baseline._x(sample)),
        rtol=0,
        atol=1e-6,
    )
    assert list(explained.feature_names) == list(SPECS) and explained.shape == (300, 3)
    # by hand: coefficient x (column - reference mean); columns: silence, NPS, NPS missing, enterprise, smb
    Z, reference = pipeline[0].transform(baseline._x(sample)), pipeline[0].transform(baseline._x(panel)).mean(axis=0)
    by_column = (Z - reference) * pipeline[-1].coef_[0]
    np.testing.assert_allclose(
        explained.values,
        np.column_stack([by_column[:, 0], by_column[:, 1:3].sum(1), by_column[:, 3:].sum(1)]),
        atol=1e-9,
    )
    assert np.corrcoef(explained.values[:, 0], sample["days_since_last_login"])[0, 1] > 0.5  # silence raises the risk
    assert set(explained.display_data[:, 2]) == {"smb", "enterprise"}


def test_shap_plots_say_their_unit_with_readable_names(fitted):
    model, panel = fitted
    explained = readable(explanation(model, panel.head(300), 90), SPECS)
    ax = beeswarm_figure(explained, 90).axes[0]
    assert "90-day" in ax.get_xlabel() and "log-odds" in ax.get_xlabel()
    assert {"latest NPS", "days since last login", "segment"} <= {t.get_text() for t in ax.get_yticklabels()}
    fig = waterfall_figure(explained[0], 90, title="A0")
    assert "log-odds" in fig.axes[0].get_xlabel()
    labels = {t.get_text() for t in fig.axes[0].get_yticklabels()}
    assert f"{panel['segment'].iloc[0]} = segment" in labels  # the level's name, not its code
    figures = explanation_figures(model, panel.head(200), SPECS, horizons=(30, 180))
    assert list(figures) == ["shap_beeswarm_30d", "shap_beeswarm_180d"]
    assert "180-day" in figures["shap_beeswarm_180d"].axes[0].get_xlabel()
