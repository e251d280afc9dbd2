"""Why an account's risk is what it is: exact TreeSHAP contributions from LightGBM's `pred_contrib`.

The curve is built from interval hazards, each a LightGBM log-odds. For a horizon, a feature's
contribution is the mean of its exact contributions to the log-odds of the interval hazards that
make up the horizon (0-30 days for 30 days, ..., all four for 180 days); per interval they sum
exactly to the hazard's raw score. Contributions are grouped by feature family and turned into
sentences with the account's own values from the feature dictionary.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.registry import FeatureSpec
from models.curve import HORIZONS, RiskCurveModel, prepare

_INTERNAL = ("_interval", "_length")


def interval_contributions(model: RiskCurveModel, panel: pd.DataFrame, interval: int) -> pd.DataFrame:
    """[n, features + bias] exact log-odds contributions to one interval's hazard."""
    X, _ = prepare(panel, model.features, model.categories)
    design = model._design(X, interval)
    contrib = model.booster.clf.predict(design, pred_contrib=True)
    return pd.DataFrame(contrib, columns=[*design.columns, "bias"], index=panel.index)


def contributions(model: RiskCurveModel, panel: pd.DataFrame, horizon_days: int = 90) -> pd.DataFrame:
    """Per-feature log-odds contributions for a horizon (the interval terms are folded into `bias`)."""
    k = HORIZONS.index(horizon_days)
    parts = [interval_contributions(model, panel, j) for j in range(k + 1)]
    mean = sum(parts) / len(parts)
    mean["bias"] = mean["bias"] + mean[list(_INTERNAL)].sum(axis=1)
    return mean.drop(columns=list(_INTERNAL))


def by_family(contrib: pd.DataFrame, specs: dict[str, FeatureSpec]) -> pd.DataFrame:
    """Contributions summed per feature family."""
    families = {name: specs[name].family if name in specs else "other" for name in contrib.columns if name != "bias"}
    return contrib.drop(columns="bias").T.groupby(pd.Series(families)).sum().T


def top_reasons(contrib_row: pd.Series, values: pd.Series, specs: dict[str, FeatureSpec], n: int = 3) -> dict[str, list[dict]]:
    """The features pushing risk up and down the most, as sentences with the account's values."""
    c = contrib_row.drop("bias")

    def describe(names) -> list[dict]:
        out = []
        for name in names:
            spec = specs.get(name)
            value = values.get(name)
            sentence = spec.sentence(value) if spec else f"{name} = {value}"
            out.append({"feature": name, "family": spec.family if spec else "other", "value": None if pd.isna(value) else value,
                        "contribution": round(float(c[name]), 4), "sentence": sentence})
        return out

    up = c[c > 0].sort_values(ascending=False).head(n).index
    down = c[c < 0].sort_values().head(n).index
    return {"raising": describe(up), "lowering": describe(down)}


def global_importance(contrib: pd.DataFrame, specs: dict[str, FeatureSpec]) -> pd.DataFrame:
    """Mean |contribution| per feature and family, for reports."""
    mean_abs = contrib.drop(columns="bias").abs().mean().sort_values(ascending=False)
    return pd.DataFrame({"feature": mean_abs.index, "family": [specs[f].family if f in specs else "other" for f in mean_abs.index],
                         "mean_abs_contribution": mean_abs.to_numpy()})


def raw_hazard_scores(model: RiskCurveModel, panel: pd.DataFrame, interval: int) -> np.ndarray:
    """The interval hazard's raw log-odds (what its contributions sum to)."""
    X, _ = prepare(panel, model.features, model.categories)
    return model.booster.clf.predict(model._design(X, interval), raw_score=True)
