"""Reasons CS can act on: drivers apart from context, values against a reference, effects in
probability points that add up, with the base rate, to the account's risk."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.registry import feature_specs, spec
from models.curve import LABELS, CurveParams, fit_curve
from models.reasons import MIN_PEERS, Reference, account_reasons, effect, points, sentence, top_reasons

SPECS = {
    "days_since_last_login": spec(
        "days_since_last_login", "usage", "days", "days since last login", "last login {n} days ago"
    ),
    "distinct_features_30d": spec(
        "distinct_features_30d",
        "usage",
        "features",
        "breadth",
        "{value} key features used on an active day",
        baseline="distinct_features_change_30d",
    ),
    "distinct_features_change_30d": spec(
        "distinct_features_change_30d",
        "usage",
        "pct_change",
        "breadth change",
        "breadth of key features used {direction} {pct}% against the previous 90 days",
    ),
    "arr_current": spec("arr_current", "business", "usd", "ARR", "ARR of ${n}", role="context"),
    "segment": spec(
        "segment", "business", "category", "segment", "{value} segment", kind="categorical", role="context"
    ),
}
FEATURES = list(SPECS)


@pytest.fixture(scope="module")
def fitted():
    """Churn driven mostly by a context feature (ARR) and partly by silence: the ranking must
    still never show ARR as a reason."""
    rng = np.random.default_rng(3)
    n = 6000
    silence = rng.exponential(5, n)
    arr = rng.lognormal(10, 1, n)
    breadth = rng.uniform(1, 8, n)
    risk = 0.1 * silence - 1.2 * (np.log(arr) - 10) - 0.2 * breadth
    days = rng.exponential(365 / np.exp(risk - 1))
    panel = pd.DataFrame(
        {
            "account_id": [f"A{i}" for i in range(n)],
            "cutoff": pd.to_datetime("2024-01-01", utc=True) + pd.to_timedelta(rng.integers(0, 20, n) * 30, unit="D"),
            "days_since_last_login": silence,
            "distinct_features_30d": breadth,
            "distinct_features_change_30d": rng.uniform(-0.6, 0.3, n),
            "arr_current": arr,
            "segment": rng.choice(["smb", "enterprise"], n),
        }
    )
    for h, label in zip((30, 60, 90, 180), LABELS, strict=True):
        panel[label] = pd.array((days <= h).astype(int), dtype="Int8")
    model = fit_curve(panel, FEATURES, CurveParams(n_estimators=120, valid_gap_days=0, min_child_samples=20))
    base = panel[panel["cutoff"] == panel["cutoff"].max()].reset_index(drop=True)
    return model, base


def _base(model, base):
    curve = model.predict_curve(base)
    contrib = model.contributions_matrix(model.encode(base), 90)[:, :-1]
    return curve[:, 2], contrib, Reference.of(90, curve[:, 2], contrib, base, model.features, SPECS)


def test_points_and_base_rate_add_up_to_the_risk(fitted):
    model, base = fitted
    risk, contrib, reference = _base(model, base)
    pts, rest = points(contrib, risk, reference)
    np.testing.assert_allclose(reference.base_rate + pts.sum(axis=1) + rest, risk, atol=1e-12)
    logit = np.log(risk) - np.log1p(-risk)
    assert reference.base_rate == pytest.approx(1 / (1 + np.exp(-logit.mean())))
    # the scale is exact for nearly every account: the rest is the exception, not the rule
    assert (np.abs(rest) < 1e-12).mean() > 0.9


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_points_add_up_for_any_contributions(rows, features, seed):
    rng = np.random.default_rng(seed)
    contrib = rng.normal(0, 1, (rows, features))
    risk = rng.uniform(0.001, 0.999, rows)
    reference = Reference(90, float(rng.uniform(0.01, 0.5)), rng.normal(0, 0.5, features), pd.DataFrame())
    pts, rest = points(contrib, risk, reference)
    np.testing.assert_allclose(reference.base_rate + pts.sum(axis=1) + rest, risk, atol=1e-9)


def test_no_reason_shown_to_cs_is_context(fitted):
    model, base = fitted
    risk, contrib, reference = _base(model, base)
    records = base[FEATURES].to_dict("records")
    tops = top_reasons(contrib, risk, model.features, records, SPECS, reference, n=3)
    shown = [r for t in tops for r in t["raising"]]
    assert shown and all(SPECS[r["feature"]].role == "driver" for r in shown)
    context = [r for t in tops for r in t["context"]]
    assert context and all(r["role"] == "context" for r in context)
    # ARR drives this base's risk most: it is there, as context
    assert any(r["feature"] == "arr_current" for r in context)
    # and every shown reason raises the risk, in points, largest first
    for t in tops:
        pts = [r["points"] for r in t["raising"]]
        assert all(p > 0 for p in pts) and pts == sorted(pts, reverse=True)


def test_one_account_every_feature_adds_up(fitted):
    model, base = fitted
    risk, contrib, reference = _base(model, base)
    pts, rest = points(contrib, risk, reference)
    i = int(np.argmax(risk))
    found = account_reasons(
        contrib[i], pts[i], float(rest[i]), model.features, base.iloc[i].to_dict(), SPECS, reference, n=len(FEATURES)
    )
    total = sum(r["points"] for key in ("raising", "lowering", "context") for r in found[key]) + found["rest_points"]
    # each figure rounded to 0.01 points
    assert found["base_rate"] * 100 + total == pytest.approx(risk[i] * 100, abs=0.05)
    assert found["raising"], "the riskiest account has drivers raising its risk"


def test_a_reason_reads_against_its_own_past_and_the_typical_account():
    frame = pd.DataFrame(
        {
            "distinct_features_30d": np.r_[np.full(MIN_PEERS, 6.0), np.full(MIN_PEERS, 2.0)],
            "segment": ["enterprise"] * MIN_PEERS + ["smb"] * MIN_PEERS,
        }
    )
    reference = Reference.of(
        90, np.full(len(frame), 0.1), np.zeros((len(frame), 1)), frame, ["distinct_features_30d"], SPECS
    )
    values = {"distinct_features_30d": 3.1, "distinct_features_change_30d": 3.1 / 5.2 - 1, "segment": "enterprise"}
    text = sentence("distinct_features_30d", 3.1, values, SPECS, reference)
    assert (
        text
        == "3.1 key features used on an active day, down from 5.2 in the prior 90 days (typical enterprise account: 6)"
    )
    # a segment too small for its own median is compared with the whole base
    text = sentence("distinct_features_30d", 3.1, {**values, "segment": "startup"}, SPECS, reference)
    assert text.endswith("(typical account: 4)")
    # context carries no comparison: it is who the account is
    assert sentence("arr_current", 759000, values, SPECS, reference) == "ARR of $759,000"


def test_the_figures_of_a_reason_read_alike():
    """The account's value, its past and the typical account are written to the same precision, so
    a reason never reads "3.07, up from 3.1"; a past that reads the same is not a change."""
    specs = {
        **SPECS,
        "nps_last": spec("nps_last", "surveys", "score", "latest NPS", "last NPS answer {n} of 10"),
        "nps_change": spec("nps_change", "surveys", "score", "NPS change", "NPS {direction} {value} points"),
    }
    frame = pd.DataFrame(
        {
            "distinct_features_30d": np.full(MIN_PEERS, 12.0),
            "nps_last": np.full(MIN_PEERS, 9.0),
            "days_since_last_login": np.r_[np.full(MIN_PEERS // 2, 6.0), np.full(MIN_PEERS - MIN_PEERS // 2, 7.0)],
            "segment": "enterprise",
        }
    )
    names = ["distinct_features_30d", "nps_last", "days_since_last_login"]
    reference = Reference.of(90, np.full(len(frame), 0.1), np.zeros((len(frame), 3)), frame, names, specs)
    values = {"segment": "enterprise", "distinct_features_change_30d": 3.07 / 2.85 - 1}
    assert sentence("distinct_features_30d", 3.07, values, specs, reference) == (
        "3.07 key features used on an active day, up from 2.85 in the prior 90 days (typical enterprise account: 12)"
    )
    # a change of a few per cent is none in words
    values["distinct_features_change_30d"] = 3.07 / 3.05 - 1
    assert sentence("distinct_features_30d", 3.07, values, specs, reference) == (
        "3.07 key features used on an active day, as in the prior 90 days (typical enterprise account: 12)"
    )
    # a whole-number template gets a whole typical figure; a median between two keeps its half
    assert (
        sentence("nps_last", 4.0, values, specs, reference) == "last NPS answer 4 of 10 (typical enterprise account: 9)"
    )
    assert sentence("days_since_last_login", 12.0, values, specs, reference) == (
        "last login 12 days ago (typical enterprise account: 6.5 days)"
    )
    # beside a direction the value is a size
    assert sentence("nps_change", -3.0, values, specs, reference).startswith("NPS down 3 points")


def test_effects_read_in_points():
    assert effect(0.1234, 90) == "adds 12 points to the 90-day risk"
    assert effect(-0.004, 30) == "takes 0.4 points off the 30-day risk"
    assert effect(0.01, 180) == "adds 1 point to the 180-day risk"
    assert effect(0.0096, 180) == "adds 1 point to the 180-day risk"  # not "1.0 points"


def test_the_dictionary_splits_drivers_from_context():
    specs = feature_specs()
    context = {name for name, s in specs.items() if s.role == "context"}
    assert {"segment", "industry", "plan", "billing", "arr_current", "tenure_days", "days_since_downgrade"} <= context
    drivers = {name for name, s in specs.items() if s.role == "driver"}
    assert {
        "days_since_last_login",
        "distinct_features_30d",
        "critical_moments_90d",
        "nps_last",
        "ces_mean_180d",
        "billing_dispute_180d",
        "exec_sponsor_present",
    } <= drivers
    assert all(specs[s.baseline].unit in ("pct_change", "score") for s in specs.values() if s.baseline)


def test_the_dictionary_writes_one_of_a_thing_in_the_singular_and_thousands_with_commas():
    specs = feature_specs()
    assert specs["repeated_tickets_text_90d"].sentence(1.0) == "1 ticket repeating an earlier one in 90 days"
    assert specs["repeated_tickets_text_90d"].sentence(3.0) == "3 tickets repeating an earlier one in 90 days"
    assert specs["critical_moments_90d"].sentence(1.0) == "1 critical moment in 90 days"
    assert specs["days_since_last_login"].sentence(1.0) == "last login 1 day ago"
    assert specs["billing_dispute_180d"].sentence(1.0) == "1 billing dispute event in the last 180 days"
    assert specs["logins_30d"].sentence(1.0) == "1 login in the last 30 days"
    # a value written "1" before its unit too (the workspace read "users log in every 1 days")
    assert specs["login_interval_days_90d"].sentence(1.0) == "users log in every 1 day on average"
    assert specs["login_interval_days_90d"].sentence(1.04) == "users log in every 1.04 days on average"
    assert specs["arr_current"].sentence(759000.0) == "ARR of $759,000"
    # three significant figures at most
    assert specs["distinct_features_30d"].sentence(12.0833) == "12.1 key features used on an active day"
    # "of the last 30 days" has no plural noun to turn
    assert specs["login_days_30d"].sentence(1.0) == "logins on 1 of the last 30 days"


def test_points_never_read_minus_zero():
    """A rest of -0.00001 was written "rest_points": -0.0 in the API's answers."""
    from models.reasons import _points

    assert (str(_points(-1e-7)), _points(0.12345)) == ("0.0", 12.35)
