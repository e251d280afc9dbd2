"""The risk curve: censored intervals are left out, and the curve never decreases with the horizon."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InputError
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
    panel = pd.DataFrame(
        {
            "account_id": [f"A{i}" for i in range(n)],
            "cutoff": cutoffs,
            "risk": risk,
            "noise": rng.normal(size=n),
            "segment": rng.choice(["smb", "enterprise"], n),
        }
    )
    for h, label in zip((30, 60, 90, 180), LABELS, strict=True):
        panel[label] = pd.array((days <= h).astype(int), dtype="Int8")
    return fit_curve(
        panel, ["risk", "noise", "segment"], CurveParams(n_estimators=150, valid_gap_days=0, min_child_samples=20)
    ), panel


def test_risk_raises_the_curve(fitted):
    model, _ = fitted
    probe = pd.DataFrame({"risk": [-2.0, 0.0, 2.0], "noise": 0.0, "segment": "smb"})
    curve = model.predict_curve(probe)
    assert (np.diff(curve[:, 2]) > 0).all()  # 90-day risk rises with the latent risk


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-50, 50), st.floats(-50, 50), st.sampled_from(["smb", "enterprise", "unseen"])),
        min_size=1,
        max_size=20,
    )
)
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
    assert np.isnan(model.row({"risk": " "})).all() and model.row({"risk": "0.5"})[0, 0] == 0.5  # text as a CSV has it
    with pytest.raises(InputError, match=r"^features.risk 'forty': expected a number$"):
        model.row({"risk": "forty"})  # read as missing, it then failed in the reasons' sentences: an HTTP 500


def test_save_and_load_give_the_same_curve(fitted, tmp_path):
    from models.curve import RiskCurveModel

    model, panel = fitted
    model.save(tmp_path / "m")
    assert not list(tmp_path.glob("m/*.pkl"))  # LightGBM text + JSON, nothing pickled
    loaded = RiskCurveModel.load(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict_curve(panel.head(300)), model.predict_curve(panel.head(300)), atol=1e-12)


def test_per_horizon_formulation_is_monotone_and_ranks_risk(fitted):
    _, panel = fitted
    model = fit_curve(
        panel,
        ["risk", "noise", "segment"],
        CurveParams(formulation="per_horizon", n_estimators=100, valid_gap_days=0, min_child_samples=20),
    )
    assert len(model.boosters) == 4
    probe = pd.DataFrame({"risk": np.linspace(-50, 50, 41), "noise": 0.0, "segment": "smb"})
    curve = model.predict_curve(probe)
    assert (np.diff(curve, axis=1) >= 0).all()
    assert curve[-1, 2] > curve[0, 2]
    contrib = model.contributions_matrix(model.encode(probe), 60)
    np.testing.assert_allclose(
        contrib.sum(axis=1), model.boosters[1].predict(model.encode(probe), raw_score=True), atol=1e-9
    )


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
    params = {
        "objective": "binary",
        "learning_rate": 0.3,
        "num_leaves": 31,
        "min_child_samples": 5,
        "verbose": -1,
        "seed": 1,
        "num_threads": 1,
    }
    train_set = lgb.Dataset(*fit)
    stopped = lgb.train(
        params,
        train_set,
        300,
        valid_sets=[lgb.Dataset(*valid, reference=train_set)],
        callbacks=[lgb.early_stopping(10, verbose=False)],
    )
    assert 1 < stopped.best_iteration < 300  # it did stop early: the comparison means something
    full = lgb.train(params, lgb.Dataset(*fit), 300)
    assert early_stopping_iteration(validation_losses(full, *valid, 300), 10) == stopped.best_iteration


# -- calibration that keeps the ranking -------------------------------------------------------------


def test_calibration_is_strictly_increasing_and_ties_only_where_raw_ties():
    from models.calibration import Calibrator

    raw = np.array([1e-6, 0.001, 0.01, 0.01, 0.2, 0.5, 0.9, 0.999])
    for shift in (-2.0, 0.0, 1.5):
        p = Calibrator(shift).predict(raw)
        assert ((p > 0) & (p < 1)).all()
        steps = np.diff(p)
        assert (steps[np.diff(raw) > 0] > 0).all() and (steps[np.diff(raw) == 0] == 0).all()


def test_fit_calibration_matches_the_observed_rate_and_never_decreases_with_the_horizon():
    from models.calibration import CalibrationPool, fit_calibration

    rng = np.random.default_rng(1)
    raw = rng.uniform(0.01, 0.3, 4000)
    y = (rng.random(4000) < raw / 2).astype(float)  # the raw risk is twice the truth
    # 30 days: enough rows; 60 days: its rate alone would ask for a lower shift; 90 days: too few rows; 180: none
    pools = [
        CalibrationPool(raw, y, 3),
        CalibrationPool(raw, (rng.random(4000) < raw / 4).astype(float), 3),
        CalibrationPool(raw[:20], y[:20], 3),
        CalibrationPool(raw[:0], y[:0], 0),
    ]
    calibrators = fit_calibration(pools)
    assert np.mean(calibrators[0].predict(raw)) == pytest.approx(y.mean(), rel=1e-6)  # maximum likelihood: mean = rate
    shifts = [c.shift for c in calibrators]
    assert shifts[0] < 0 and shifts == sorted(shifts) and shifts[1] == shifts[2] == shifts[3] == shifts[0]
    too_few_events = CalibrationPool(raw[:10], y[:10], 3)
    assert [c.shift for c in fit_calibration([too_few_events] * 4)] == [0.0] * 4  # unchanged


def test_one_cutoffs_outcomes_are_too_few_to_calibrate_on_however_many():
    """A single cutoff's churn rate is mostly that month's noise: thousands of rows from it still
    leave the raw curve as it is, where the same rows over two cutoffs shift it."""
    from models.calibration import CalibrationPool, fit_calibration

    rng = np.random.default_rng(2)
    raw = rng.uniform(0.01, 0.3, 4000)
    y = (rng.random(4000) < raw / 2).astype(float)
    assert [c.shift for c in fit_calibration([CalibrationPool(raw, y, 1)] * 4)] == [0.0] * 4
    assert all(c.shift < 0 for c in fit_calibration([CalibrationPool(raw, y, 2)] * 4))


def test_the_curve_rises_wherever_the_raw_curve_does(fitted):
    from models.calibration import Calibrator

    model, panel = fitted
    assert model.calibrators and all(isinstance(c, Calibrator) for c in model.calibrators)
    raw, curve = model.raw_curve(panel), model.predict_curve(panel)
    rises = np.diff(raw, axis=1) > 0
    assert rises[:, 2].mean() > 0.99  # the model sees risk between 90 and 180 days for nearly everyone
    assert (np.diff(curve, axis=1)[rises] > 0).all()  # so p_180d > p_90d there (no running maximum flattening it)
    p90 = curve[:, 2]
    assert len(np.unique(p90)) == len(np.unique(raw[:, 2]))  # as many distinct 90-day risks as the raw curve has


def test_a_model_saved_with_isotonic_steps_still_loads(fitted, tmp_path):
    """model.json written before the log-odds shift holds isotonic steps as x/y arrays: they are applied as trained."""
    import json

    from models.curve import IsotonicSteps, RiskCurveModel

    model, panel = fitted
    model.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "model.json").read_text())
    steps = {"x": [0.0, 0.05, 0.2, 1.0], "y": [0.01, 0.03, 0.3, 0.6]}
    meta["calibrators"] = [steps] * 4
    (tmp_path / "old" / "model.json").write_text(json.dumps(meta))
    loaded = RiskCurveModel.load(tmp_path / "old")
    assert all(isinstance(c, IsotonicSteps) for c in loaded.calibrators)
    raw = model.raw_curve(panel.head(200))
    expected = np.maximum.accumulate(np.interp(raw, steps["x"], steps["y"]), axis=1)
    np.testing.assert_allclose(loaded.predict_curve(panel.head(200)), expected, atol=1e-12)


# -- the capacity search -------------------------------------------------------------------------


def test_search_keeps_the_candidate_with_the_lowest_held_out_loss(fitted):
    _, panel = fitted
    features = ["risk", "noise", "segment"]
    # a candidate that can barely move from the base rate, and one that can learn the risk
    search = ({"learning_rate": 0.001, "num_leaves": 2}, {"learning_rate": 0.1, "num_leaves": 4})
    base = {"n_estimators": 40, "valid_gap_days": 0, "min_child_samples": 20, "early_stopping_rounds": 0}
    for order in (search, search[::-1]):
        model = fit_curve(panel, features, CurveParams(**base, search=order))
        losses = [c["held_out_loss"] for c in model.info["search"]]
        assert len(losses) == 2 and model.info["chosen"] == int(np.argmin(losses))
        # the winner's parameters are the model's
        assert model.params["learning_rate"] == 0.1 and model.params["num_leaves"] == 4
        assert [c["learning_rate"] for c in model.info["search"]] == [c["learning_rate"] for c in order]


def test_a_blended_search_keeps_the_mean_of_every_candidate(fitted):
    _, panel = fitted
    features = ["risk", "noise", "segment"]
    search = ({"num_leaves": 2}, {"num_leaves": 4, "learning_rate": 0.2})
    base = {"n_estimators": 40, "valid_gap_days": 0, "min_child_samples": 20, "early_stopping_rounds": 0}
    blended = fit_curve(panel, features, CurveParams(**base, search=search, blend=True))
    # each candidate draws with its own seed (the configured one plus its index), alone as in the blend
    alone = [fit_curve(panel, features, CurveParams(**base, seed=42 + i, search=(c,))) for i, c in enumerate(search)]
    assert blended.info["kept"] == [0, 1] and blended.info["chosen"] == 0
    X = blended.design(blended.encode(panel), 2)
    mean = np.mean([m.boosters[0].predict(X, raw_score=True) for m in alone], axis=0)
    np.testing.assert_allclose(blended.boosters[0].predict(X, raw_score=True), mean, atol=1e-12)


def test_search_prefers_the_earlier_candidate_within_the_noise_of_the_held_out_rows():
    from models.curve import MIN_SEARCH_EVENTS, choose_candidates

    rng = np.random.default_rng(2)
    simple = rng.exponential(0.1, 5000)
    noise = rng.normal(0, 0.05, 5000)
    noise -= noise.mean()
    slightly_better = simple - 0.0005 + noise  # 0.0005 lower on average, under one standard error (0.0007)
    clearly_better = simple - 0.01 + noise
    assert choose_candidates([simple, slightly_better], events=500, leaves=[4, 15]) == [0]
    # 0.01: 14 standard errors
    assert choose_candidates([simple, slightly_better, clearly_better], events=500, leaves=[4, 2, 15]) == [2]
    assert choose_candidates([clearly_better, simple], events=500, leaves=[4, 2]) == [0]
    # too few churners held out to tell: the smallest trees
    assert choose_candidates([simple, clearly_better, simple], events=MIN_SEARCH_EVENTS - 1, leaves=[4, 2, 15]) == [1]
    # a blend keeps them all, unless too few churners are held out to trust the larger trees
    assert choose_candidates([simple, slightly_better, clearly_better], 500, [4, 2, 15], blend=True) == [0, 1, 2]
    assert choose_candidates([simple, clearly_better], MIN_SEARCH_EVENTS - 1, [4, 2], blend=True) == [1]


def test_averaged_boosters_predict_and_explain_as_the_mean_of_theirs(tmp_path):
    import lightgbm as lgb
    import shap

    from models.curve import average_boosters

    rng = np.random.default_rng(3)
    X = rng.normal(size=(2000, 4))
    X[rng.random(X.shape) < 0.1] = np.nan  # missing values take their own branch in both
    y = (rng.random(2000) < 1 / (1 + np.exp(-X[:, 0] + np.nan_to_num(X[:, 1] * X[:, 2])))).astype(float)
    data = lgb.Dataset(X, y, free_raw_data=False)
    grown = [
        lgb.train({"objective": "binary", "num_leaves": leaves, "learning_rate": rate, "verbose": -1}, data, rounds)
        for leaves, rate, rounds in ((4, 0.1, 30), (2, 0.05, 70), (8, 0.2, 10))
    ]
    mean = average_boosters(grown)
    assert mean.num_trees() == 110 and average_boosters(grown[:1]) is grown[0]
    raw = np.mean([b.predict(X, raw_score=True) for b in grown], axis=0)
    np.testing.assert_allclose(mean.predict(X, raw_score=True), raw, atol=1e-12)
    contributions = np.mean([b.predict(X, pred_contrib=True) for b in grown], axis=0)
    np.testing.assert_allclose(mean.predict(X, pred_contrib=True), contributions, atol=1e-12)
    explained = shap.TreeExplainer(mean)(X[:100])
    np.testing.assert_allclose(explained.values, contributions[:100, :-1], atol=1e-9)
    mean.save_model(str(tmp_path / "mean.txt"))
    loaded = lgb.Booster(model_file=str(tmp_path / "mean.txt"))
    np.testing.assert_array_equal(loaded.predict(X, raw_score=True), mean.predict(X, raw_score=True))


def test_search_candidates_are_checked():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="candidate 1 sets n_estimators; a candidate may set only"):
        CurveParams(search=[{"n_estimators": 10}])
    with pytest.raises(ValidationError, match="candidate 2: num_leaves"):
        CurveParams(search=[{"num_leaves": 4}, {"num_leaves": 1}])
    assert [c.num_leaves for c in CurveParams(num_leaves=15, search=[{"num_leaves": 2}, {}]).candidates()] == [2, 15]


def test_each_search_candidate_draws_with_its_own_seed():
    """Candidates sharing one seed share their bagged rows and sampled columns, so their blend
    averages one draw three times; the i-th draws with seed + i, without a search the seed stands."""
    assert [c.seed for c in CurveParams(seed=7, search=[{}, {"num_leaves": 2}, {}]).candidates()] == [7, 8, 9]
    assert [c.seed for c in CurveParams(seed=7).candidates()] == [7]


def test_search_is_logged_as_parameters_and_metrics(fitted):
    from pipelines.models import search_metrics, search_params

    _, panel = fitted
    model = fit_curve(
        panel,
        ["risk", "noise", "segment"],
        CurveParams(
            n_estimators=30, valid_gap_days=0, min_child_samples=20, search=[{"num_leaves": 2}, {"num_leaves": 4}]
        ),
    )
    params, metrics = search_params(model), search_metrics(model)
    assert params["search_candidates"] == 2 and params["chosen_candidate"] == model.info["chosen"]
    assert params["blended_candidates"] == ",".join(str(i) for i in model.info["kept"])
    assert params["chosen.num_leaves"] == model.params["num_leaves"]
    assert set(metrics) == {f"search.{i}.{m}" for i in (0, 1) for m in ("held_out_loss", "best_iteration")}
    assert metrics["search.1.held_out_loss"] == model.info["search"][1]["held_out_loss"]


def test_folds_training_side_by_side_finish_and_a_failed_set_up_lets_the_others_go():
    """Backtest folds train on parallel threads, each inside lgb_threads.threads; a training that
    fails before its first round gives its place back (a prediction with another count still runs)."""
    from lightgbm.basic import LightGBMError

    from models import lgb_threads
    from models.curve import LocalTrainer
    from tests.conftest import run_in_threads

    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = (X[:, 0] + rng.normal(scale=0.5, size=400) > 0).astype(float)
    params = {"objective": "binary", "num_leaves": 4, "num_threads": 1, "verbose": -1}
    boosters = [None] * 6

    def fit(i: int) -> None:
        boosters[i] = LocalTrainer()(params, (X[:300], y[:300]), (X[300:], y[300:]), list("abcde"), [], 20, 5)

    assert run_in_threads(fit, 6) == []
    assert all(b is not None and b[0].num_trees() > 0 for b in boosters)
    with pytest.raises(LightGBMError, match="no-such"):  # a set-up that fails: no such objective
        LocalTrainer()({**params, "objective": "no-such"}, (X, y), (X, y), list("abcde"), [], 5, 0)
    assert run_in_threads(lambda _: lgb_threads.predict(boosters[0][0], X, 0), 1, timeout=30) == []
