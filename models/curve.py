"""The risk curve: P(churn within 30, 60, 90, 180 days) from LightGBM.

Two formulations, chosen in config/model.yaml (`formulation`) and compared by backtest:

- `hazard` (default): one discrete-time hazard model. Each snapshot becomes one row per horizon
  interval (0-30, 30-60, 60-90, 90-180 days) that it survived into and whose outcome is known:
  censored intervals are simply absent, so partly censored snapshots still teach the early
  intervals. The model predicts h_k = P(churn in interval k | alive at its start); the curve is
  1 - prod_{j<=k} (1 - h_j), non-decreasing in the horizon by construction.
- `per_horizon`: one classifier per horizon on the snapshots whose label at that horizon is known;
  the curve is made monotone by a running maximum.

Probabilities are calibrated per horizon with isotonic regression on a held-out slice of later
cutoffs, and the running maximum across horizons keeps the calibrated curve monotone.

All prediction goes through one numpy matrix (`RiskCurveModel.encode` for a frame, `.row` for one
account's values), so batch scoring, the single-account path of the API and the explanations see
the same numbers. A model is saved as LightGBM model text plus JSON (`save` / `load`): no pickle.
Training returns everything it knows (fklearn style); nothing here touches files or MLflow except
`save` / `load`, which write and read the folder they are given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from core.errors import InputError

HORIZONS = (30, 60, 90, 180)
LABELS = tuple(f"churned_within_{h}d" for h in HORIZONS)
CURVE_COLUMNS = tuple(f"p_{h}d" for h in HORIZONS)
CATEGORICAL = ("segment", "billing", "plan", "industry", "region")
#: Columns the hazard model adds to the features: the interval's index and length, and whether the
#: account's renewal date falls inside the interval (annual contracts churn mostly at renewal).
INTERNAL = ("_interval", "_length", "_renewal_in_interval")
RENEWAL = "days_to_renewal"


class CurveParams(BaseModel):
    """LightGBM and training parameters (config/model.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    formulation: Literal["hazard", "per_horizon"] = "hazard"
    n_estimators: int = Field(800, gt=0)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(15, gt=1)
    min_child_samples: int = Field(100, gt=0)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(1.0, ge=0)
    early_stopping_rounds: int = Field(50, ge=0, description="0: no early stopping (grow n_estimators trees)")
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


def is_categorical(panel: pd.DataFrame, column: str) -> bool:
    return column in CATEGORICAL or panel[column].dtype == object or pd.api.types.is_string_dtype(panel[column])


def category_levels(panel: pd.DataFrame, features: list[str]) -> dict[str, list[str]]:
    """The sorted levels of each text feature, fixed at training (unseen levels score as missing)."""
    return {c: sorted(panel[c].dropna().astype(str).unique().tolist()) for c in features if is_categorical(panel, c)}


@dataclass
class Calibrator:
    """Isotonic calibration as its step function: np.interp over the fitted thresholds, clipped at the ends."""

    x: np.ndarray
    y: np.ndarray

    @classmethod
    def fit(cls, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        from sklearn.isotonic import IsotonicRegression

        if len(y) < 50 or not 0 < y.sum() < len(y):  # too little to learn from: identity
            return cls(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
        # a floor at a twentieth of the base rate: an empty low bin must not read as "no risk at all"
        iso = IsotonicRegression(out_of_bounds="clip", y_min=max(1e-4, 0.05 * float(np.mean(y))), y_max=1.0).fit(raw, y)
        return cls(np.asarray(iso.X_thresholds_, dtype=float), np.asarray(iso.y_thresholds_, dtype=float))

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return np.interp(raw, self.x, self.y)


@dataclass
class RiskCurveModel:
    """A fitted curve. `boosters` holds one lightgbm.Booster (hazard) or one per horizon (per_horizon)."""

    boosters: list
    features: list[str]
    categories: dict[str, list[str]]
    formulation: str = "hazard"
    calibrators: list[Calibrator] | None = None
    params: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    internal: tuple[str, ...] = INTERNAL  # the hazard design's extra columns, as trained (saved with the model)

    def __post_init__(self) -> None:
        self._codes = {c: {v: float(i) for i, v in enumerate(levels)} for c, levels in self.categories.items()}
        self._position = {c: i for i, c in enumerate(self.features)}
        self._renewal = self._position.get(RENEWAL)

    # -- the matrix ---------------------------------------------------------------------------
    def encode(self, panel: pd.DataFrame) -> np.ndarray:
        """[n, features] float64: numbers as they are, categories as their level's code, else NaN."""
        X = np.empty((len(panel), len(self.features)))
        for j, col in enumerate(self.features):
            if col not in panel.columns:
                X[:, j] = np.nan
            elif col in self._codes:
                X[:, j] = panel[col].astype("str").map(self._codes[col]).to_numpy(dtype=float, na_value=np.nan)
            else:
                X[:, j] = pd.to_numeric(panel[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        return X

    def row(self, values: Mapping[str, object]) -> np.ndarray:
        """[1, features] for one account's values (missing names and None are NaN): the fast path."""
        x = np.full((1, len(self.features)), np.nan)
        for name, value in values.items():
            j = self._position.get(name)
            if j is None or value is None:
                continue
            if name in self._codes:
                x[0, j] = self._codes[name].get(str(value), np.nan)
            else:
                try:
                    x[0, j] = float(value)
                except (TypeError, ValueError):
                    pass
        return x

    def design(self, X: np.ndarray, interval: int | np.ndarray) -> np.ndarray:
        """The hazard model's input for an interval (one for all rows, or one per row): the features
        plus the interval's index and length and whether the renewal falls inside it."""
        k = np.broadcast_to(np.asarray(interval), (len(X),))
        start, end = np.array((0, *HORIZONS), dtype=float)[k], np.array(HORIZONS, dtype=float)[k]
        renewal = X[:, self._renewal] if self._renewal is not None else np.full(len(X), np.nan)
        inside = np.where(np.isnan(renewal), np.nan, ((renewal >= start) & (renewal < end)).astype(float))
        columns = {"_interval": k.astype(float), "_length": end - start, "_renewal_in_interval": inside}
        return np.column_stack([X, *(columns[c] for c in self.internal)])

    # -- prediction -----------------------------------------------------------------------------
    def raw_curve_matrix(self, X: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """Uncalibrated curve [n, 4] from an encoded matrix."""
        kw = {"num_threads": num_threads} if num_threads else {}
        if self.formulation == "per_horizon":
            return np.column_stack([b.predict(X, **kw) for b in self.boosters])
        n = len(X)
        stacked = np.vstack([self.design(X, k) for k in range(len(HORIZONS))])  # one call for every interval
        hazard = self.boosters[0].predict(stacked, **kw).reshape(len(HORIZONS), n).T
        return 1.0 - np.cumprod(1.0 - hazard, axis=1)

    def curve_matrix(self, X: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """Calibrated P(churn within 30/60/90/180 days) [n, 4], non-decreasing along each row."""
        curve = self.raw_curve_matrix(X, num_threads)
        if self.calibrators:
            curve = np.column_stack([cal.predict(curve[:, k]) for k, cal in enumerate(self.calibrators)])
        return np.maximum.accumulate(np.clip(curve, 0.0, 1.0), axis=1)

    def raw_curve(self, panel: pd.DataFrame) -> np.ndarray:
        return self.raw_curve_matrix(self.encode(panel))

    def predict_curve(self, panel: pd.DataFrame) -> np.ndarray:
        return self.curve_matrix(self.encode(panel))

    def contributions_matrix(self, X: np.ndarray, horizon_days: int, num_threads: int = 0) -> np.ndarray:
        """[n, features + 1] exact TreeSHAP log-odds contributions for a horizon, last column the bias.

        Hazard: the mean over the intervals making up the horizon (the interval terms fold into
        the bias); per horizon: that horizon's own model.
        """
        kw = {"num_threads": num_threads} if num_threads else {}
        k = HORIZONS.index(horizon_days)
        F = len(self.features)
        if self.formulation == "per_horizon":
            return self.boosters[k].predict(X, pred_contrib=True, **kw)
        n = len(X)
        stacked = np.vstack([self.design(X, j) for j in range(k + 1)])
        contrib = self.boosters[0].predict(stacked, pred_contrib=True, **kw).reshape(k + 1, n, F + len(self.internal) + 1).mean(axis=0)
        return np.column_stack([contrib[:, :F], contrib[:, F:].sum(axis=1)])

    # -- persistence ----------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """model.json (features, levels, calibrators, params, info) and booster_<k>.txt."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for k, booster in enumerate(self.boosters):
            booster.save_model(str(folder / f"booster_{k}.txt"))
        meta = {"formulation": self.formulation, "features": self.features, "categories": self.categories,
                "calibrators": [{"x": c.x.tolist(), "y": c.y.tolist()} for c in self.calibrators] if self.calibrators else None,
                "params": self.params, "info": self.info, "boosters": len(self.boosters), "internal": list(self.internal)}
        (folder / "model.json").write_text(json.dumps(meta, indent=1, default=str))

    @classmethod
    def load(cls, folder: Path) -> RiskCurveModel:
        import lightgbm as lgb

        folder = Path(folder)
        meta = json.loads((folder / "model.json").read_text())
        boosters = [lgb.Booster(model_file=str(folder / f"booster_{k}.txt")) for k in range(meta["boosters"])]
        calibrators = [Calibrator(np.array(c["x"]), np.array(c["y"])) for c in meta["calibrators"]] if meta["calibrators"] else None
        return cls(boosters, meta["features"], meta["categories"], meta["formulation"], calibrators, meta["params"], meta["info"],
                   tuple(meta.get("internal", INTERNAL)))


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


def _labels(panel: pd.DataFrame, label: str) -> np.ndarray:
    return panel[label].to_numpy(dtype="float64", na_value=np.nan)


def _outcomes_through(panel: pd.DataFrame) -> str:
    """The latest moment whose outcome the training labels reveal (cutoff + horizon of a known label):
    snapshots at or after it are out of time for this model."""
    ends = [panel.loc[panel[label].notna(), "cutoff"].max() + pd.Timedelta(days=h) for h, label in zip(HORIZONS, LABELS, strict=True)
            if panel[label].notna().any()]
    return str(max(ends).isoformat()) if ends else ""


class BoosterTrainer(Protocol):
    """Grows one booster: returns it and the iteration early stopping chose (or the last)."""

    name: str

    def __call__(self, lgb_params: dict, fit: tuple[np.ndarray, np.ndarray], valid: tuple[np.ndarray, np.ndarray], names: list[str],
                 categorical: list[int], rounds: int, early_stopping_rounds: int) -> tuple[object, int]: ...


class LocalTrainer:
    """lightgbm.train in this process, with early stopping on the held-out slice."""

    name = "lightgbm"

    def __call__(self, lgb_params, fit, valid, names, categorical, rounds, early_stopping_rounds):
        import lightgbm as lgb

        train_set = lgb.Dataset(*fit, feature_name=names, categorical_feature=categorical, free_raw_data=True)
        valid_set = lgb.Dataset(*valid, reference=train_set)
        stop = [lgb.early_stopping(early_stopping_rounds, verbose=False)] if early_stopping_rounds else []
        booster = lgb.train(lgb_params, train_set, num_boost_round=rounds, valid_sets=[valid_set], callbacks=stop)
        return booster, int(booster.best_iteration or rounds) if stop else rounds


def early_stopping_iteration(losses: np.ndarray, patience: int) -> int:
    """The iteration (1-based) LightGBM's early stopping would keep, given the validation loss after
    every iteration: the best so far, once `patience` iterations have brought no improvement."""
    best, best_at = np.inf, 0
    for i, loss in enumerate(losses):
        if loss < best:
            best, best_at = loss, i
        elif i - best_at >= patience:
            break
    return best_at + 1


def fit_curve(panel: pd.DataFrame, features: list[str], params: CurveParams | None = None, trainer: BoosterTrainer | None = None) -> RiskCurveModel:
    """Fit on the panel's cutoffs; the latest `valid_fraction` of them (after a gap) serve early
    stopping and calibration. `trainer` grows the boosters (default: LightGBM in this process)."""
    import lightgbm as lgb

    params = params or CurveParams()
    trainer = trainer or LocalTrainer()
    model = RiskCurveModel([], list(features), category_levels(panel, features), params.formulation, params=params.model_dump())
    X = model.encode(panel)
    hazard = params.formulation == "hazard"
    names = [*features, *INTERNAL] if hazard else list(features)
    categorical = [i for i, c in enumerate(features) if c in model.categories]
    lgb_params = dict(
        objective="binary", learning_rate=params.learning_rate, num_leaves=params.num_leaves, min_child_samples=params.min_child_samples,
        subsample=params.subsample, subsample_freq=1, colsample_bytree=params.colsample_bytree, reg_lambda=params.reg_lambda,
        seed=params.seed, num_threads=params.num_threads, verbose=-1, monotone_constraints=[int(params.monotone.get(c, 0)) for c in names],
        monotone_constraints_method="advanced",
    )

    def dataset(rows: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(matrix, target) for the hazard model (k None) or for horizon k's classifier."""
        if k is not None:
            y = _labels(panel, LABELS[k])
            keep = rows & ~np.isnan(y)
            return X[keep], y[keep]
        index = np.flatnonzero(rows)
        expanded = expand_intervals(panel.iloc[index])
        return model.design(X[index[expanded["row"].to_numpy()]], expanded["interval"].to_numpy()), expanded["event"].to_numpy(dtype=float)

    def split(k: int) -> tuple[np.ndarray, np.ndarray, pd.Timestamp]:
        """(fitting rows, held-out rows, split cutoff) among the snapshots whose horizon-k label is known."""
        known = ~np.isnan(_labels(panel, LABELS[k]))
        cutoffs = np.sort(panel.loc[known, "cutoff"].unique())
        if len(cutoffs) < 2:
            raise InputError(f"snapshot panel: the {HORIZONS[k]}-day label is known at {len(cutoffs)} cutoff(s); training needs at least two "
                             "(more history, or more frequent cutoffs with `churn features --every`)")
        at = pd.Timestamp(cutoffs[min(int(len(cutoffs) * (1 - params.valid_fraction)), len(cutoffs) - 1)])
        fit = known & (panel["cutoff"] <= at - pd.Timedelta(days=params.valid_gap_days)).to_numpy()
        valid = known & (panel["cutoff"] > at).to_numpy()
        if not fit.any() or not valid.any():
            at = pd.Timestamp(cutoffs[-2])  # a short panel: hold out the last known cutoff, without the gap
            fit, valid = known & (panel["cutoff"] <= at).to_numpy(), known & (panel["cutoff"] > at).to_numpy()
        return fit, valid, at

    def train(k: int | None) -> tuple[object, int, int, tuple]:
        rows = split(k or 0)  # the hazard model splits where the first interval is known
        fit = dataset(rows[0], k)
        booster, best = trainer(lgb_params, fit, dataset(rows[1], k), names, categorical, params.n_estimators, params.early_stopping_rounds)
        return booster, best, len(fit[1]), rows

    trained = [train(None)] if hazard else [train(k) for k in range(len(HORIZONS))]
    model.boosters = [lgb.Booster(model_str=b.model_to_string(num_iteration=best)) for b, best, *_ in trained]
    splits = [trained[0][3]] * len(HORIZONS) if hazard else [t[3] for t in trained]
    model.info = {"fit_rows": [int(f.sum()) for f, _, _ in splits], "valid_rows": [int(v.sum()) for _, v, _ in splits],
                  "training_rows": [t[2] for t in trained], "best_iteration": [t[1] for t in trained],
                  "split_cutoff": [str(at.date()) for _, _, at in splits], "trained_through": _outcomes_through(panel), "trainer": trainer.name}
    if params.calibrate:
        calibrators = []
        shared = model.raw_curve_matrix(X[splits[0][1]]) if hazard else None  # one held-out slice for every horizon
        for k, (_, valid, _) in enumerate(splits):
            y = _labels(panel, LABELS[k])[valid]
            raw = shared[:, k] if hazard else model.boosters[k].predict(X[valid])
            calibrators.append(Calibrator.fit(raw[~np.isnan(y)], y[~np.isnan(y)]))
        model.calibrators = calibrators
    return model
