"""Explanations: exact TreeSHAP sums to the raw score, reasons read as sentences, direction is right."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.registry import spec
from models.curve import LABELS, CurveParams, fit_curve
from models.explain import by_family, contributions, global_importance, interval_contributions, raw_hazard_scores, top_reasons

SPECS = {
    "days_since_last_login": spec("days_since_last_login", "usage", "days", "days since last login", "last login {n} days ago"),
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
    panel = pd.DataFrame({"account_id": [f"A{i}" for i in range(n)],
                          "cutoff": pd.to_datetime("2024-01-01", utc=True) + pd.to_timedelta(rng.integers(0, 20, n) * 30, unit="D"),
                          "days_since_last_login": silence, "nps_last": nps, "segment": rng.choice(["smb", "enterprise"], n)})
    for h, label in zip((30, 60, 90, 180), LABELS, strict=True):
        panel[label] = pd.array((days <= h).astype(int), dtype="Int8")
    model = fit_curve(panel, list(SPECS), CurveParams(n_estimators=150, valid_gap_days=0, min_child_samples=20))
    return model, panel


def test_contributions_sum_to_the_raw_score(fitted):
    model, panel = fitted
    sample = panel.head(200)
    for interval in range(4):
        contrib = interval_contributions(model, sample, interval)
        np.testing.assert_allclose(contrib.sum(axis=1), raw_hazard_scores(model, sample, interval), rtol=1e-6, atol=1e-6)


def test_reasons_point_the_right_way_and_read_as_sentences(fitted):
    model, _ = fitted
    probe = pd.DataFrame({"days_since_last_login": [30.0], "nps_last": [2.0], "segment": ["smb"]})
    contrib = contributions(model, probe, 90)
    reasons = top_reasons(contrib.iloc[0], probe.iloc[0], SPECS)
    raising = {r["feature"] for r in reasons["raising"]}
    assert {"days_since_last_login", "nps_last"} <= raising
    sentences = [r["sentence"] for r in reasons["raising"]]
    assert "last login 30 days ago" in sentences and "last NPS answer 2 of 10" in sentences
    families = by_family(contrib, SPECS)
    assert set(families.columns) <= {"usage", "surveys", "business"}
    assert global_importance(contributions(model, fitted[1].head(500), 90), SPECS)["feature"].iloc[0] in SPECS


def test_more_days_without_login_never_lowers_risk(fitted):
    """Behavioural: all else equal, a longer silence never makes churn less likely."""
    model, _ = fitted
    probe = pd.DataFrame({"days_since_last_login": np.linspace(0, 60, 61), "nps_last": 7.0, "segment": "smb"})
    curve = model.predict_curve(probe)
    assert curve[-1, 2] > curve[0, 2]
    assert (np.diff(curve, axis=0) >= 0).all()  # monotone constraints + isotonic calibration: never lower
    better_nps = pd.DataFrame({"days_since_last_login": 5.0, "nps_last": np.arange(0, 11, dtype=float), "segment": "enterprise"})
    assert (np.diff(model.predict_curve(better_nps), axis=0) <= 0).all()  # a better NPS never raises risk
