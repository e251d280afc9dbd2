"""The risk curve: P(churn within 30, 60, 90, 180 days) from one LightGBM discrete-time hazard model.

Each snapshot becomes one row per horizon interval (0-30, 30-60, 60-90, 90-180 days) that it
survived into and whose outcome is known: censored intervals are simply absent, so partly censored
snapshots still teach the early intervals. The model predicts the hazard h_k = P(churn in interval
k | alive at its start); the curve is 1 - prod_{j<=k} (1 - h_j), non-decreasing in the horizon by
construction. Probabilities are then calibrated per horizon with isotonic regression on a held-out
slice of later cutoffs, and the running maximum across horizons keeps the curve monotone.

Training returns everything it knows (fklearn style): the fitted model, the features, parameters,
validation metrics and importances; nothing here touches files or MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

HORIZONS = (30, 60, 90, 180)
LABELS = tuple(f"churned_within_{h}d" for h in HORIZONS)
CATEGORICAL = ("segment", "billing", "plan", "industry", "region")


class CurveParams(BaseModel):
    """LightGBM and training parameters (config/model.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_estimators: int = Field(800, gt=0)
    learning_rate: float = Field(0.03, gt=0)
    num_leaves: int = Field(31, gt=1)
    min_child_samples: int = Field(100, gt=0)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    early_stopping_rounds: int = Field(50, gt=0)
    valid_fraction: float = Field(0.2, gt=0, lt=1, description="share of the latest training cutoffs held out for early stopping and calibration")
    valid_gap_days: int = Field(90, ge=0, description="days between the last fitting cutoff and the first held-out cutoff")
    calibrate: bool = True
    #: Directions the risk must follow, all else equal (+1 never lowers risk as the feature grows,
    #: -1 never raises it); enforced by LightGBM's monotone constraints, so behaviour cannot flip
    #: by accident of the data. Features absent from the panel are ignored.
    monotone: dict[str, int] = Field(
        default_factory=lambda: {
            "days_since_last_login": 1, "zero_usage_streak_days": 1, "zero_usage_days_30d": 1, "critical_moments_90d": 1,
            "cancel_mentions_90d": 1, "legal_threat_180d": 1, "billing_dispute_180d": 1, "nps_last": -1, "csat_mean_180d": -1,
        }
    )
    seed: int = 42
    num_threads: int = 0


def prepare(panel: pd.DataFrame, features: list[str], categories: dict[str, list[str]] | None = None) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """The feature matrix: text categories as pandas categoricals with fixed levels (LightGBM refuses str)."""
    X = panel[features].copy()
    levels = dict(categories or {})
    for col in features:
        if col in CATEGORICAL or X[col].dtype == object or pd.api.types.is_string_dtype(X[col]):
            if col not in levels:
                levels[col] = sorted(X[col].dropna().astype(str).unique().tolist())
            values = X[col].astype("str")
            X[col] = pd.Categorical(values.where(values.isin(levels[col])), categories=levels[col])  # unseen levels: missing
        else:
            X[col] = X[col].astype("float64")
    return X, levels


def expand_intervals(panel: pd.DataFrame) -> pd.DataFrame:
    """One row per (snapshot, interval) survived into with a known outcome: row, interval, event."""
    parts = []
    previous = pd.Series(0, index=panel.index, dtype="Int8")
    for k, label in enumerate(LABELS):
        now = panel[label]
        known = now.notna() & previous.notna() & (previous == 0)
        rows = np.flatnonzero(known.to_numpy())
        parts.append(pd.DataFrame({"row": rows, "interval": k, "event": now.to_numpy(dtype="float64", na_value=np.nan)[rows].astype(np.int8)}))
        previous = now
    return pd.concat(parts, ignore_index=True)


@dataclass
class RiskCurveModel:
    booster: object
    features: list[str]
    categories: dict[str, list[str]]
    calibrators: list | None = None
    params: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def _design(self, X: pd.DataFrame, interval: int) -> pd.DataFrame:
        return X.assign(_interval=float(interval), _length=float(HORIZONS[interval] - (HORIZONS[interval - 1] if interval else 0)))

    def raw_curve(self, panel: pd.DataFrame) -> np.ndarray:
        """Uncalibrated curve [n, 4] from the hazards."""
        X, _ = prepare(panel, self.features, self.categories)
        survival = np.ones(len(X))
        out = np.empty((len(X), len(HORIZONS)))
        for k in range(len(HORIZONS)):
            hazard = self.booster.predict(self._design(X, k))
            survival = survival * (1 - hazard)
            out[:, k] = 1 - survival
        return out

    def predict_curve(self, panel: pd.DataFrame) -> np.ndarray:
        """Calibrated P(churn within 30/60/90/180 days) [n, 4], non-decreasing along each row."""
        curve = self.raw_curve(panel)
        if self.calibrators:
            curve = np.column_stack([cal.predict(curve[:, k]) for k, cal in enumerate(self.calibrators)])
        return np.maximum.accumulate(np.clip(curve, 0.0, 1.0), axis=1)


def fit_curve(panel: pd.DataFrame, features: list[str], params: CurveParams | None = None) -> RiskCurveModel:
    """Fit on the panel's cutoffs; the latest `valid_fraction` of them (after a gap) serve early
    stopping and calibration."""
    import lightgbm as lgb
    from sklearn.isotonic import IsotonicRegression

    params = params or CurveParams()
    cutoffs = np.sort(panel["cutoff"].unique())
    split = cutoffs[int(len(cutoffs) * (1 - params.valid_fraction))]
    fit_rows = panel["cutoff"] <= split - pd.Timedelta(days=params.valid_gap_days)
    valid_rows = panel["cutoff"] > split
    X, levels = prepare(panel, features)
    model = RiskCurveModel(None, features, levels, params=params.model_dump())

    def design(rows: pd.Series) -> tuple[pd.DataFrame, np.ndarray]:
        sub = panel[rows.to_numpy()]
        expanded = expand_intervals(sub)
        Xs = X[rows.to_numpy()].iloc[expanded["row"].to_numpy()].reset_index(drop=True)
        lengths = np.array([HORIZONS[0]] + [HORIZONS[i] - HORIZONS[i - 1] for i in range(1, len(HORIZONS))], dtype=float)
        Xs = Xs.assign(_interval=expanded["interval"].to_numpy(dtype=float), _length=lengths[expanded["interval"].to_numpy()])
        return Xs, expanded["event"].to_numpy()

    X_fit, y_fit = design(fit_rows)
    X_valid, y_valid = design(valid_rows)
    booster = lgb.LGBMClassifier(
        n_estimators=params.n_estimators, learning_rate=params.learning_rate, num_leaves=params.num_leaves,
        min_child_samples=params.min_child_samples, subsample=params.subsample, subsample_freq=1,
        colsample_bytree=params.colsample_bytree, reg_lambda=params.reg_lambda, random_state=params.seed,
        n_jobs=params.num_threads or None, verbose=-1,
        monotone_constraints=[int(params.monotone.get(c, 0)) for c in X_fit.columns], monotone_constraints_method="advanced",
    )
    booster.fit(X_fit, y_fit, eval_X=(X_valid,), eval_y=(y_valid,), callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)])
    model.booster = _HazardBooster(booster)
    model.info = {"fit_rows": int(fit_rows.sum()), "valid_rows": int(valid_rows.sum()), "interval_rows": len(y_fit),
                  "best_iteration": int(booster.best_iteration_ or params.n_estimators), "split_cutoff": str(pd.Timestamp(split).date())}
    if params.calibrate:
        raw = model.raw_curve(panel[valid_rows.to_numpy()])
        calibrators = []
        for k, label in enumerate(LABELS):
            y = panel.loc[valid_rows, label].to_numpy(dtype="float64", na_value=np.nan)
            known = ~np.isnan(y)
            cal = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
            cal.fit(raw[known, k], y[known]) if known.sum() >= 50 and 0 < y[known].sum() < known.sum() else cal.fit([0.0, 1.0], [0.0, 1.0])
            calibrators.append(cal)
        model.calibrators = calibrators
    return model


class _HazardBooster:
    """The fitted classifier's probability of the event, as the hazard."""

    def __init__(self, clf):
        self.clf = clf

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.clf.predict_proba(X)[:, 1]
