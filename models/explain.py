"""Why an account's risk is what it is: exact TreeSHAP contributions from LightGBM's `pred_contrib`.

The curve is built from interval hazards, each a LightGBM log-odds. For a horizon, a feature's
contribution is the mean of its exact contributions to the log-odds of the interval hazards that
make up the horizon (0-30 days for 30 days, ..., all four for 180 days); per interval they sum
exactly to the hazard's raw score. Contributions are grouped by feature family and turned into
sentences with the account's own values from the feature dictionary.

`explanation` and `baseline_explanation` return `shap.Explanation` objects (TreeExplainer on the
curve's boosters, LinearExplainer on the logistic baseline) for notebooks, plots and reports. The
curve's values equal `contributions_matrix`, the numpy path the API serves from; shap is imported
only inside these two functions (it is slow to import).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.errors import InputError
from core.vocabulary import HORIZONS
from features.registry import FeatureSpec
from models import lgb_threads
from models.curve import RiskCurveModel
from models.linear import LinearCurveModel


def interval_contributions(model: RiskCurveModel, panel: pd.DataFrame, interval: int) -> pd.DataFrame:
    """[n, features + interval terms + bias] exact log-odds contributions to one interval's hazard."""
    design = model.design(model.encode(panel), interval)
    contrib = lgb_threads.predict(model.boosters[0], design, model.threads(None), pred_contrib=True)
    return pd.DataFrame(contrib, columns=[*model.features, *model.internal, "bias"], index=panel.index)


def contributions(model: RiskCurveModel, panel: pd.DataFrame, horizon_days: int = 90) -> pd.DataFrame:
    """Per-feature log-odds contributions for a horizon (the hazard's interval terms are folded into `bias`)."""
    contrib = model.contributions_matrix(model.encode(panel), horizon_days)
    return pd.DataFrame(contrib, columns=[*model.features, "bias"], index=panel.index)


def by_family(contrib: pd.DataFrame, specs: dict[str, FeatureSpec]) -> pd.DataFrame:
    """Contributions summed per feature family."""
    families = {name: specs[name].family if name in specs else "other" for name in contrib.columns if name != "bias"}
    return contrib.drop(columns="bias").T.groupby(pd.Series(families)).sum().T


def global_importance(contrib: pd.DataFrame, specs: dict[str, FeatureSpec]) -> pd.DataFrame:
    """Mean |contribution| per feature and family, for reports."""
    mean_abs = contrib.drop(columns="bias").abs().mean().sort_values(ascending=False)
    return pd.DataFrame(
        {
            "feature": mean_abs.index,
            "family": [specs[f].family if f in specs else "other" for f in mean_abs.index],
            "mean_abs_contribution": mean_abs.to_numpy(),
        }
    )


def raw_hazard_scores(model: RiskCurveModel, panel: pd.DataFrame, interval: int) -> np.ndarray:
    """The interval hazard's raw log-odds (what its contributions sum to)."""
    design = model.design(model.encode(panel), interval)
    return lgb_threads.predict(model.boosters[0], design, model.threads(None), raw_score=True)


# -- shap.Explanation objects -------------------------------------------------------------------


def _horizon(horizon_days: int) -> int:
    if horizon_days not in HORIZONS:
        raise InputError(f"horizon_days {horizon_days}: must be one of {', '.join(map(str, HORIZONS))}")
    return HORIZONS.index(horizon_days)


def _display(X: np.ndarray, features: list[str], categories: dict[str, list[str]]) -> np.ndarray:
    """An encoded matrix as plots print it: each category code as its level's name."""
    shown = X.astype(object)
    for j, name in enumerate(features):
        if name in categories:
            shown[:, j] = pd.Series(X[:, j]).map(dict(enumerate(categories[name]))).to_numpy(dtype=object)
    return shown


def explanation(model: RiskCurveModel | LinearCurveModel, panel: pd.DataFrame, horizon_days: int = 90):
    """`shap.Explanation` of the curve at a horizon for every row of `panel`, in log-odds (of a served
    logistic baseline: `linear_explanation`).

    Exact TreeSHAP (shap.TreeExplainer on the boosters, tree-path-dependent). Per horizon: that
    horizon's classifier; values plus base value sum to its log-odds. Hazard: each interval's design
    matrix is explained and the values are averaged over the intervals making up the horizon, with
    the interval terms (index, length, renewal inside) folded into `base_values`, which therefore
    differ a little between accounts; values plus base value sum to the mean log-odds of those
    interval hazards. Either way the values equal `contributions_matrix`, the API's fast path.
    `data` is what the model saw (category codes), `display_data` the same with category names.
    """
    import shap

    if isinstance(model, LinearCurveModel):
        return linear_explanation(model, panel, horizon_days)
    k = _horizon(horizon_days)
    if not len(panel):
        raise InputError("panel: no rows to explain")
    X = model.encode(panel)
    if model.formulation == "per_horizon":
        with lgb_threads.threads(0):  # shap predicts with LightGBM's default threads
            explained = shap.TreeExplainer(model.boosters[k])(X)
        values, base = explained.values, explained.base_values
    else:
        explainer = shap.TreeExplainer(model.boosters[0])
        with lgb_threads.threads(0):
            parts = [explainer(model.design(X, j)) for j in range(k + 1)]
        full = np.mean([part.values for part in parts], axis=0)
        F = len(model.features)
        values = full[:, :F]
        base = np.mean([part.base_values for part in parts], axis=0) + full[:, F:].sum(axis=1)
    return shap.Explanation(
        values,
        base_values=base,
        data=X,
        display_data=_display(X, model.features, model.categories),
        feature_names=list(model.features),
    )


def linear_explanation(model: LinearCurveModel, panel: pd.DataFrame, horizon_days: int = 90):
    """`shap.Explanation` of a served logistic baseline (models/linear.py) at a horizon, in log-odds:
    shap.LinearExplainer on the horizon's regression inputs, against their mean over its training
    rows, each feature's value the sum over the columns it became. The values equal the model's
    `contributions_matrix` (the API's path, without shap); the same fields as `explanation`."""
    import shap

    k = _horizon(horizon_days)
    if not len(panel):
        raise InputError("panel: no rows to explain")
    X = model.encode(panel)
    horizon = model.horizons[k]
    owners = np.zeros((len(horizon.coef), len(model.features)))
    owners[np.arange(len(horizon.coef)), horizon.owner] = 1.0
    if len(horizon.coef):
        masker = shap.maskers.Independent(horizon.background[None, :])
        explainer = shap.LinearExplainer((horizon.coef, horizon.intercept), masker)
        values = explainer.shap_values(horizon.columns(X)) @ owners
        base = np.full(len(X), float(explainer.expected_value))
    else:  # the training outcomes were all one class: the rate alone, nothing to explain it
        values, base = np.zeros((len(X), len(model.features))), np.full(len(X), horizon.intercept)
    return shap.Explanation(
        values,
        base_values=base,
        data=X,
        display_data=_display(X, model.features, model.categories),
        feature_names=list(model.features),
    )


def _dense(matrix) -> np.ndarray:
    return matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix, dtype=float)


def _owners(prep, features: list[str]) -> np.ndarray:
    """[transformed columns, features] 0/1: the original feature each column of the baseline's
    ColumnTransformer output came from (a number and its missing indicator; a category's levels)."""
    owner: list[str] = []
    for name, transformer, columns in prep.transformers_:
        width = prep.output_indices_.get(name, slice(0, 0))
        if width.stop == width.start:
            continue
        if hasattr(transformer, "categories_"):
            owner += [c for c, levels in zip(columns, transformer.categories_, strict=True) for _ in levels]
        else:
            owner += [n.removeprefix("missingindicator_") for n in transformer.get_feature_names_out(columns)]
    position = {f: j for j, f in enumerate(features)}
    M = np.zeros((len(owner), len(features)))
    M[np.arange(len(owner)), [position[o] for o in owner]] = 1.0
    return M


def baseline_explanation(baseline, panel: pd.DataFrame, horizon_days: int = 90, reference: pd.DataFrame | None = None):
    """`shap.Explanation` of a fitted `LogisticBaseline` at a horizon, in log-odds, per original feature.

    shap.LinearExplainer on the pipeline's transformed inputs (imputed, scaled numbers with their
    missing indicators; one-hot levels) against the mean transformed input of `reference` (default:
    the rows explained); each feature's value is the sum over the columns it became, so values plus
    base value still sum to the regression's log-odds. Same `feature_names` and `data` as
    `explanation`, so the two can be set side by side.
    """
    import shap

    k = _horizon(horizon_days)
    pipeline = baseline.models_[k]
    if not hasattr(pipeline, "predict_proba"):
        raise InputError(
            f"logistic baseline: no regression at {horizon_days} days (the training outcomes there were all one class "
            "or unknown); nothing to explain"
        )
    if not len(panel):
        raise InputError("panel: no rows to explain")
    prep, regression = pipeline[0], pipeline[-1]
    Z = _dense(prep.transform(baseline._x(panel)))  # the baseline's own input preparation (log-compressed numbers)
    background = Z if reference is None else _dense(prep.transform(baseline._x(reference)))
    explainer = shap.LinearExplainer(regression, shap.maskers.Independent(background.mean(axis=0, keepdims=True)))
    values = explainer.shap_values(Z) @ _owners(prep, baseline.features)
    cat = next((t for _, t, _ in prep.transformers_ if hasattr(t, "categories_")), None)
    levels = (
        {c: [str(v) for v in lv] for c, lv in zip(cat.feature_names_in_, cat.categories_, strict=True)}
        if cat is not None
        else {}
    )
    # the curve's encoding, with the baseline's levels
    X = RiskCurveModel([], list(baseline.features), levels).encode(panel)
    return shap.Explanation(
        values,
        base_values=np.full(len(Z), float(explainer.expected_value)),
        data=X,
        display_data=_display(X, baseline.features, levels),
        feature_names=list(baseline.features),
    )
