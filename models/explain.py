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
from models.curve import RiskCurveModel


def interval_contributions(model: RiskCurveModel, panel: pd.DataFrame, interval: int) -> pd.DataFrame:
    """[n, features + interval terms + bias] exact log-odds contributions to one interval's hazard."""
    design = model.design(model.encode(panel), interval)
    contrib = model.boosters[0].predict(design, pred_contrib=True)
    return pd.DataFrame(contrib, columns=[*model.features, *model.internal, "bias"], index=panel.index)


def contributions(model: RiskCurveModel, panel: pd.DataFrame, horizon_days: int = 90) -> pd.DataFrame:
    """Per-feature log-odds contributions for a horizon (the hazard's interval terms are folded into `bias`)."""
    contrib = model.contributions_matrix(model.encode(panel), horizon_days)
    return pd.DataFrame(contrib, columns=[*model.features, "bias"], index=panel.index)


def by_family(contrib: pd.DataFrame, specs: dict[str, FeatureSpec]) -> pd.DataFrame:
    """Contributions summed per feature family."""
    families = {name: specs[name].family if name in specs else "other" for name in contrib.columns if name != "bias"}
    return contrib.drop(columns="bias").T.groupby(pd.Series(families)).sum().T


def top_reasons(contrib_row: pd.Series, values, specs: dict[str, FeatureSpec], n: int = 3) -> dict[str, list[dict]]:
    """The features pushing risk up and down the most, as sentences with the account's values."""
    c = contrib_row.drop("bias")
    return reasons(c.to_numpy(dtype=float), list(c.index), values, specs, n)


def reasons(contrib: np.ndarray, features: list[str], values, specs: dict[str, FeatureSpec], n: int = 3) -> dict[str, list[dict]]:
    """`top_reasons` on arrays (the single-account path): contrib[i] belongs to features[i];
    `values` is anything with .get(name) (a dict or a Series)."""
    order = np.argsort(contrib)

    def describe(indices) -> list[dict]:
        out = []
        for i in indices:
            name = features[i]
            spec = specs.get(name)
            value = values.get(name)
            missing = value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA
            sentence = spec.sentence(None if missing else value) if spec else f"{name} = {value}"
            out.append({"feature": name, "family": spec.family if spec else "other", "value": None if missing else value,
                        "contribution": round(float(contrib[i]), 4), "sentence": sentence})
        return out

    up = [i for i in order[::-1][:n] if contrib[i] > 0]
    down = [i for i in order[:n] if contrib[i] < 0]
    return {"raising": describe(up), "lowering": describe(down)}


def raising_reasons(contrib: np.ndarray, features: list[str], records: list, specs: dict[str, FeatureSpec], n: int = 3) -> list[tuple[dict, ...]]:
    """The top `n` reasons raising risk for every row of a contribution matrix [rows, features]:
    the ranking is one argsort over the matrix; only the chosen features become sentences."""
    top = np.argsort(-contrib, axis=1)[:, :n]
    out = []
    for i, record in enumerate(records):
        picked = [j for j in top[i] if contrib[i, j] > 0]
        out.append(tuple(reasons(contrib[i, picked], [features[j] for j in picked], record, specs, n)["raising"]))
    return out


def global_importance(contrib: pd.DataFrame, specs: dict[str, FeatureSpec]) -> pd.DataFrame:
    """Mean |contribution| per feature and family, for reports."""
    mean_abs = contrib.drop(columns="bias").abs().mean().sort_values(ascending=False)
    return pd.DataFrame({"feature": mean_abs.index, "family": [specs[f].family if f in specs else "other" for f in mean_abs.index],
                         "mean_abs_contribution": mean_abs.to_numpy()})


def raw_hazard_scores(model: RiskCurveModel, panel: pd.DataFrame, interval: int) -> np.ndarray:
    """The interval hazard's raw log-odds (what its contributions sum to)."""
    return model.boosters[0].predict(model.design(model.encode(panel), interval), raw_score=True)
