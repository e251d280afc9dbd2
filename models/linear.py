"""The logistic baseline as a servable risk curve: what `churn promote --model baseline` registers
where the baseline's backtest beats the LightGBM curve's (`baseline_better` of `churn train`).

The baseline (models/baselines.py `LogisticBaseline`: per horizon, numbers log-compressed, imputed
by their median with missing indicators and scaled, categories one-hot, an L2 logistic regression)
is fitted by scikit-learn; `LinearCurveModel.from_baseline` reads the fitted numbers out into plain
arrays, so the served model is numpy and JSON (nothing pickled), predicts what the baseline
predicts (to float rounding) and has the curve's interface wherever a model is used (the API,
`churn score`, the reasons, the report, the monitor): `encode` / `row` give the curve's kind of
matrix, `curve_matrix` the curve (made monotone by a running maximum, as the baseline's),
`contributions_matrix` exact log-odds contributions per feature with the bias last.

The contributions are shap's LinearExplainer's with an independent masker at the mean input of the
regression's own training rows: coef x (input - that mean), summed over the columns a feature
became (a number and its missing indicator; a category's levels). models/explain.py's
`baseline_explanation` with those rows as `reference` gives the same numbers, and the reasons
(models/reasons.py) read them as they read the curve's TreeSHAP values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, SupportsFloat

import numpy as np
import pandas as pd

from core.errors import InputError
from core.vocabulary import CATEGORICAL, HORIZONS, LABELS
from models.baselines import LogisticBaseline
from models.calibration import logit
from models.curve import RiskCurveModel, outcomes_through

#: what pandas' astype("str"), which the baseline applies to categories, makes of a missing value
MISSING_LEVELS = ("None", "nan", "<NA>")


@dataclass(frozen=True)
class LinearHorizon:
    """One horizon's regression on the encoded matrix. Its input columns, in the regression's
    order: the imputed numbers (`numeric`, scaled with the first entries of `mean` / `scale`),
    the missing indicators (`indicator`, the rest of them), one column per category level
    (`onehot_feature` is the level's feature, `onehot_code` its code in the model's categories).
    A horizon whose training outcomes were all one class has no columns: its rate is the intercept."""

    numeric: np.ndarray
    median: np.ndarray
    indicator: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    onehot_feature: np.ndarray
    onehot_code: np.ndarray
    coef: np.ndarray
    intercept: float
    #: the mean input column over the regression's training rows (the explanations' reference)
    background: np.ndarray

    @classmethod
    def constant(cls, rate: float) -> LinearHorizon:
        empty = np.zeros(0)
        index = np.zeros(0, dtype=np.int64)
        return cls(index, empty, index, empty, empty, index, empty, empty, float(logit(np.array(rate))), empty)

    @property
    def owner(self) -> np.ndarray:
        """The feature position each input column came from."""
        return np.concatenate([self.numeric, self.indicator, self.onehot_feature]).astype(np.int64)

    def columns(self, X: np.ndarray) -> np.ndarray:
        """The regression's input [n, columns] from an encoded matrix [n, features]."""
        values = X[:, self.numeric]
        compressed = np.sign(values) * np.log1p(np.abs(values))  # heavy tails, as the baseline compresses them
        imputed = np.where(np.isnan(compressed), self.median, compressed)
        scaled = (np.column_stack([imputed, np.isnan(X[:, self.indicator])]) - self.mean) / self.scale
        onehot = X[:, self.onehot_feature] == self.onehot_code  # a missing or unseen level: no column set
        return np.column_stack([scaled, onehot.astype(float)])

    def log_odds(self, X: np.ndarray) -> np.ndarray:
        return self.columns(X) @ self.coef + self.intercept

    def contributions(self, X: np.ndarray, features: int) -> np.ndarray:
        """[n, features + 1]: each feature's coef x (input - background), summed over its columns; the
        bias (intercept + coef . background) last. A row adds up to its log-odds."""
        parts = (self.columns(X) - self.background) * self.coef
        owners = np.zeros((len(self.coef), features))
        owners[np.arange(len(self.coef)), self.owner] = 1.0
        return np.column_stack([parts @ owners, np.full(len(X), self.intercept + self.background @ self.coef)])

    def to_dict(self) -> dict:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, saved: dict) -> LinearHorizon:
        def ints(key: str) -> np.ndarray:
            return np.array(saved[key], dtype=np.int64)

        def floats(key: str) -> np.ndarray:
            return np.array(saved[key], dtype=float)

        return cls(
            numeric=ints("numeric"),
            median=floats("median"),
            indicator=ints("indicator"),
            mean=floats("mean"),
            scale=floats("scale"),
            onehot_feature=ints("onehot_feature"),
            onehot_code=floats("onehot_code"),
            coef=floats("coef"),
            intercept=float(saved["intercept"]),
            background=floats("background"),
        )


@dataclass
class LinearCurveModel:
    """The fitted logistic baseline, one LinearHorizon per horizon, served as a risk curve."""

    features: list[str]
    #: every category feature's levels (its one-hot columns at any horizon); a level's code is its position
    categories: dict[str, list[str]]
    horizons: list[LinearHorizon]
    params: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    #: what the API's /model and the report call the model
    formulation: ClassVar[str] = "logistic"
    #: its rows in the backtest table and its MLflow metrics (backtest.logistic.<metric>_<h>d)
    kind: ClassVar[str] = "logistic"

    def __post_init__(self) -> None:
        self._encoder = RiskCurveModel([], self.features, self.categories)
        position = {c: j for j, c in enumerate(self.features)}
        # a missing category was the baseline's string of it ("None", "nan"): its level, where training saw one
        self._missing = {
            position[c]: float(levels.index(next(m for m in MISSING_LEVELS if m in levels)))
            for c, levels in self.categories.items()
            if any(m in levels for m in MISSING_LEVELS)
        }

    # -- the matrix: the curve's, missing categories as the baseline saw them ------------------------
    def encode(self, panel: pd.DataFrame) -> np.ndarray:
        X = self._encoder.encode(panel)
        for j, code in self._missing.items():
            name = self.features[j]
            X[panel[name].isna().to_numpy() if name in panel.columns else slice(None), j] = code
        return X

    def row(self, values: Mapping[str, SupportsFloat | str | None]) -> np.ndarray:
        x = self._encoder.row(values)
        for j, code in self._missing.items():
            value = values.get(self.features[j])
            if value is None or (not isinstance(value, str) and pd.isna(value)):
                x[0, j] = code
        return x

    # -- prediction ---------------------------------------------------------------------------------
    def curve_matrix(self, X: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """P(churn within 30/60/90/180 days) [n, 4], non-decreasing along each row (a running maximum,
        as the baseline's). `num_threads` is the curve's argument, unused: this is one matrix product."""
        from scipy.special import expit

        risk = np.column_stack([expit(h.log_odds(X)) for h in self.horizons])
        return np.maximum.accumulate(risk, axis=1)

    def predict_curve(self, panel: pd.DataFrame) -> np.ndarray:
        return self.curve_matrix(self.encode(panel))

    def contributions_matrix(self, X: np.ndarray, horizon_days: int, num_threads: int | None = None) -> np.ndarray:
        """[n, features + 1] exact log-odds contributions of the horizon's regression, the bias last."""
        return self.horizons[HORIZONS.index(horizon_days)].contributions(X, len(self.features))

    # -- from the baseline, and persistence ----------------------------------------------------------
    @classmethod
    def from_baseline(cls, baseline: LogisticBaseline, panel: pd.DataFrame) -> LinearCurveModel:
        """The fitted `baseline` (fitted on `panel`) as arrays. A horizon without any known outcome in
        the panel (a short history) repeats the one before it, as the running maximum would."""
        features = list(baseline.features)
        position = {c: j for j, c in enumerate(features)}
        found: dict[str, set[str]] = {}
        for pipeline in baseline.models_:
            for name, seen in _onehot_levels(pipeline).items():
                found.setdefault(name, set()).update(seen)
        levels = {c: sorted(found[c]) for c in features if c in found}
        model = cls(features, levels, [], params={"c": baseline.c})
        X = model.encode(panel)
        horizons: list[LinearHorizon] = []
        notes = []
        for k, (h, label, fitted) in enumerate(zip(HORIZONS, LABELS, baseline.models_, strict=True)):
            if hasattr(fitted, "predict_proba"):
                known = panel[label].notna().to_numpy()
                horizons.append(_horizon(fitted, baseline.features, position, levels, X[known]))
            elif np.isfinite(fitted):
                horizons.append(LinearHorizon.constant(fitted))
                notes.append(f"{h} days: the training outcomes were all one class; the curve there is their rate")
            elif k:
                horizons.append(horizons[-1])
                notes.append(
                    f"{h} days: no snapshot has a known {h}-day outcome; the curve repeats {HORIZONS[k - 1]} days"
                )
            else:
                raise InputError(f"snapshot panel: no snapshot has a known {h}-day outcome; nothing to train on")
        model.horizons = horizons
        model.info = {
            "trained_through": outcomes_through(panel),
            "training_rows": [int(panel[label].notna().sum()) for label in LABELS],
            "notes": notes,
        }
        return model

    def save(self, folder: Path) -> None:
        """model.json: features, category levels, each horizon's arrays, params and info."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "formulation": self.formulation,
            "features": self.features,
            "categories": self.categories,
            "horizons": [h.to_dict() for h in self.horizons],
            "params": self.params,
            "info": self.info,
        }
        (folder / "model.json").write_text(json.dumps(meta, indent=1, default=str))

    @classmethod
    def load(cls, folder: Path) -> LinearCurveModel:
        meta = json.loads((Path(folder) / "model.json").read_text())
        return cls(
            meta["features"],
            meta["categories"],
            [LinearHorizon.from_dict(h) for h in meta["horizons"]],
            meta["params"],
            meta["info"],
        )


def fit_linear_curve(panel: pd.DataFrame, features: list[str], c: float = 0.1) -> LinearCurveModel:
    """The logistic baseline of the backtest, fitted on every snapshot of `panel`, as a served curve."""
    return LinearCurveModel.from_baseline(LogisticBaseline(features, c).fit(panel), panel)


def _onehot_levels(pipeline) -> dict[str, list[str]]:
    """The one-hot levels of each category feature of one fitted regression (none: a constant horizon)."""
    if not hasattr(pipeline, "predict_proba"):
        return {}
    prep = pipeline[0]
    block = prep.output_indices_.get("cat", slice(0, 0))
    if block.stop == block.start:
        return {}
    encoder = prep.named_transformers_["cat"]
    return {str(c): [str(v) for v in lv] for c, lv in zip(encoder.feature_names_in_, encoder.categories_, strict=True)}


def _horizon(
    pipeline, features: list[str], position: dict[str, int], levels: dict[str, list[str]], X: np.ndarray
) -> LinearHorizon:
    """One fitted pipeline (ColumnTransformer, LogisticRegression) as a LinearHorizon; `X`: its training
    rows, encoded, for the one-hot columns' means (the scaled numbers' means are 0 by construction)."""
    prep, regression = pipeline[0], pipeline[-1]
    coef = regression.coef_[0].astype(float)
    numbers = [f for f in features if f not in CATEGORICAL]
    numeric, median, indicator = np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=np.int64)
    mean, scale = np.zeros(0), np.zeros(0)
    width = prep.output_indices_.get("num", slice(0, 0))
    if width.stop > width.start:
        imputer, scaler = prep.named_transformers_["num"][0], prep.named_transformers_["num"][-1]
        inputs = np.array([position[f] for f in numbers], dtype=np.int64)
        kept = ~np.isnan(imputer.statistics_)  # a number missing in every training row is dropped
        numeric, median = inputs[kept], imputer.statistics_[kept].astype(float)
        if imputer.indicator_ is not None:
            indicator = inputs[imputer.indicator_.features_]
        mean, scale = scaler.mean_.astype(float), scaler.scale_.astype(float)
    onehot_feature, onehot_code = np.zeros(0, dtype=np.int64), np.zeros(0)
    found = _onehot_levels(pipeline)
    if found:
        onehot_feature = np.array([position[c] for c, lv in found.items() for _ in lv], dtype=np.int64)
        onehot_code = np.array([float(levels[c].index(v)) for c, lv in found.items() for v in lv])
    n_scaled = len(numeric) + len(indicator)
    onehot_mean = (X[:, onehot_feature] == onehot_code).mean(axis=0) if len(X) else np.zeros(len(onehot_code))
    background = np.concatenate([np.zeros(n_scaled), onehot_mean])
    if len(coef) != n_scaled + len(onehot_code):
        raise RuntimeError(  # the baseline's pipeline changed shape: this reading of it must follow
            f"logistic baseline: {len(coef)} coefficients for {n_scaled} number and {len(onehot_code)} level columns"
        )
    return LinearHorizon(
        numeric,
        median,
        indicator,
        mean,
        scale,
        onehot_feature,
        onehot_code,
        coef,
        float(regression.intercept_[0]),
        background,
    )
