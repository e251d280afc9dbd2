"""The risk curve: P(churn within 30, 60, 90, 180 days) from LightGBM.

Two formulations, chosen in model.yaml (`curve.formulation`) and compared by backtest:

- `hazard` (default): one discrete-time hazard model. Each snapshot becomes one row per horizon
  interval (0-30, 30-60, 60-90, 90-180 days) that it survived into and whose outcome is known:
  censored intervals are simply absent, so partly censored snapshots still teach the early
  intervals. The model predicts h_k = P(churn in interval k | alive at its start); the curve is
  1 - prod_{j<=k} (1 - h_j), non-decreasing in the horizon by construction.
- `per_horizon`: one classifier per horizon on the snapshots whose label at that horizon is known;
  the curve is made monotone by a running maximum.

The latest training cutoffs are held out (`held_out_split`): the trees grow on the earlier ones,
with their labels censored at the first held-out cutoff, and the held-out snapshots serve early
stopping, the capacity search (`CurveParams.search`: its candidates averaged with `blend`, else
one chosen) and the calibration: a log-odds shift per horizon, strictly increasing in the raw risk
and never decreasing with the horizon, so the calibrated curve keeps the ranking and rises
wherever the raw curve does.

All prediction goes through one numpy matrix (`RiskCurveModel.encode` for a frame, `.row` for one
account's values), so batch scoring, the single-account path of the API and the explanations see
the same numbers. A model is saved as LightGBM model text plus JSON (`save` / `load`): no pickle.
Training returns everything it knows (fklearn style); nothing here touches files or MLflow except
`save` / `load`, which write and read the folder they are given.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, SupportsFloat

import numpy as np
import pandas as pd

from core.config.model import CurveParams
from core.errors import InputError
from core.vocabulary import CATEGORICAL, HORIZONS, LABELS
from models import lgb_threads
from models.calibration import CalibrationPool, Calibrator, IsotonicSteps, calibrator_from_dict, fit_calibration

if TYPE_CHECKING:
    import lightgbm as lgb

#: Columns the hazard model adds to the features: the interval's index and length, and whether the
#: account's renewal date falls inside the interval (annual contracts churn mostly at renewal).
INTERNAL = ("_interval", "_length", "_renewal_in_interval")
RENEWAL = "days_to_renewal"
#: Fewest churn events among the held-out rows for the search to choose by them.
MIN_SEARCH_EVENTS = 20
#: How many standard errors a later search candidate must beat an earlier one by.
SEARCH_MARGIN = 2.0


def is_categorical(panel: pd.DataFrame, column: str) -> bool:
    return column in CATEGORICAL or panel[column].dtype == object or pd.api.types.is_string_dtype(panel[column])


def category_levels(panel: pd.DataFrame, features: list[str]) -> dict[str, list[str]]:
    """The sorted levels of each text feature, fixed at training (unseen levels score as missing)."""
    return {c: sorted(panel[c].dropna().astype(str).unique().tolist()) for c in features if is_categorical(panel, c)}


@dataclass
class RiskCurveModel:
    """A fitted curve. `boosters` holds one lightgbm.Booster (hazard) or one per horizon (per_horizon)."""

    boosters: list
    features: list[str]
    categories: dict[str, list[str]]
    formulation: str = "hazard"
    calibrators: Sequence[Calibrator | IsotonicSteps] | None = None
    params: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    internal: tuple[str, ...] = INTERNAL  # the hazard design's extra columns, as trained (saved with the model)
    #: its rows in the backtest table and its MLflow metrics (backtest.lightgbm.<metric>_<h>d)
    kind: ClassVar[str] = "lightgbm"

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

    def row(self, values: Mapping[str, SupportsFloat | str | None]) -> np.ndarray:
        """[1, features] for one account's values (missing names, None and blanks are NaN): the fast
        path. A number written as text is read ("12"); other text for a numeric feature is an
        InputError naming it (it was read as missing, and then failed in the reasons' sentences)."""
        x = np.full((1, len(self.features)), np.nan)
        for name, value in values.items():
            j = self._position.get(name)
            if j is None or value is None or (isinstance(value, str) and not value.strip()):
                continue
            if name in self._codes:
                x[0, j] = self._codes[name].get(str(value), np.nan)
            else:
                try:
                    x[0, j] = float(value)
                except (TypeError, ValueError):
                    raise InputError(f"features.{name} {value!r}: expected a number") from None
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
    def threads(self, num_threads: int | None) -> int:
        """LightGBM threads for a prediction: `num_threads`, or when None the count the model was
        trained with (backtest folds predict while others train: see models/lgb_threads.py)."""
        return int(self.params.get("num_threads", 0)) if num_threads is None else num_threads

    def raw_curve_matrix(self, X: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """Uncalibrated curve [n, 4] from an encoded matrix."""
        n_threads = self.threads(num_threads)
        if self.formulation == "per_horizon":
            return np.column_stack([lgb_threads.predict(b, X, n_threads) for b in self.boosters])
        n = len(X)
        stacked = np.vstack([self.design(X, k) for k in range(len(HORIZONS))])  # one call for every interval
        hazard = lgb_threads.predict(self.boosters[0], stacked, n_threads).reshape(len(HORIZONS), n).T
        return 1.0 - np.cumprod(1.0 - hazard, axis=1)

    def curve_matrix(self, X: np.ndarray, num_threads: int | None = None) -> np.ndarray:
        """Calibrated P(churn within 30/60/90/180 days) [n, 4], non-decreasing along each row.

        The hazard curve is calibrated so that it keeps rising wherever the raw curve rises; the
        running maximum only binds for the per-horizon formulation (whose raw curve may dip) and
        for models saved with isotonic steps."""
        curve = self.raw_curve_matrix(X, num_threads)
        if self.calibrators:
            curve = np.column_stack([cal.predict(curve[:, k]) for k, cal in enumerate(self.calibrators)])
        return np.maximum.accumulate(np.clip(curve, 0.0, 1.0), axis=1)

    def raw_curve(self, panel: pd.DataFrame) -> np.ndarray:
        return self.raw_curve_matrix(self.encode(panel))

    def predict_curve(self, panel: pd.DataFrame) -> np.ndarray:
        return self.curve_matrix(self.encode(panel))

    def contributions_matrix(self, X: np.ndarray, horizon_days: int, num_threads: int | None = None) -> np.ndarray:
        """[n, features + 1] exact TreeSHAP log-odds contributions for a horizon, last column the bias.

        Hazard: the mean over the intervals making up the horizon (the interval terms fold into
        the bias); per horizon: that horizon's own model.
        """
        n_threads = self.threads(num_threads)
        k = HORIZONS.index(horizon_days)
        F = len(self.features)
        if self.formulation == "per_horizon":
            return lgb_threads.predict(self.boosters[k], X, n_threads, pred_contrib=True)
        n = len(X)
        stacked = np.vstack([self.design(X, j) for j in range(k + 1)])
        contrib = (
            lgb_threads.predict(self.boosters[0], stacked, n_threads, pred_contrib=True)
            .reshape(k + 1, n, F + len(self.internal) + 1)
            .mean(axis=0)
        )
        return np.column_stack([contrib[:, :F], contrib[:, F:].sum(axis=1)])

    # -- persistence ----------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """model.json (features, levels, calibrators, params, info) and booster_<k>.txt."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for k, booster in enumerate(self.boosters):
            booster.save_model(str(folder / f"booster_{k}.txt"))
        meta = {
            "formulation": self.formulation,
            "features": self.features,
            "categories": self.categories,
            "calibrators": [c.to_dict() for c in self.calibrators] if self.calibrators else None,
            "params": self.params,
            "info": self.info,
            "boosters": len(self.boosters),
            "internal": list(self.internal),
        }
        (folder / "model.json").write_text(json.dumps(meta, indent=1, default=str))

    @classmethod
    def load(cls, folder: Path) -> RiskCurveModel:
        import lightgbm as lgb

        folder = Path(folder)
        meta = json.loads((folder / "model.json").read_text())
        boosters = [lgb.Booster(model_file=str(folder / f"booster_{k}.txt")) for k in range(meta["boosters"])]
        calibrators = [calibrator_from_dict(c) for c in meta["calibrators"]] if meta["calibrators"] else None
        return cls(
            boosters,
            meta["features"],
            meta["categories"],
            meta["formulation"],
            calibrators,
            meta["params"],
            meta["info"],
            tuple(meta.get("internal", INTERNAL)),
        )


def expand_intervals(panel: pd.DataFrame) -> pd.DataFrame:
    """One row per (snapshot, interval) survived into with a known outcome: row, interval, event."""
    parts = []
    previous = pd.Series(0, index=panel.index, dtype="Int8")
    for k, label in enumerate(LABELS):
        now = panel[label]
        known = now.notna() & previous.notna() & (previous == 0)
        rows = np.flatnonzero(known.to_numpy())
        parts.append(
            pd.DataFrame(
                {
                    "row": rows,
                    "interval": k,
                    "event": now.to_numpy(dtype="float64", na_value=np.nan)[rows].astype(np.int8),
                }
            )
        )
        previous = now
    return pd.concat(parts, ignore_index=True)


def _labels(panel: pd.DataFrame, label: str) -> np.ndarray:
    return panel[label].to_numpy(dtype="float64", na_value=np.nan)


def outcomes_through(panel: pd.DataFrame) -> str:
    """The latest moment whose outcome the training labels reveal (cutoff + horizon of a known label):
    snapshots at or after it are out of time for this model."""
    ends = [
        panel.loc[panel[label].notna(), "cutoff"].max() + pd.Timedelta(days=h)
        for h, label in zip(HORIZONS, LABELS, strict=True)
        if panel[label].notna().any()
    ]
    return str(max(ends).isoformat()) if ends else ""


class BoosterTrainer(Protocol):
    """Grows one booster: returns it and the iteration early stopping chose (or the last)."""

    name: str

    def __call__(
        self,
        lgb_params: dict,
        fit: tuple[np.ndarray, np.ndarray],
        valid: tuple[np.ndarray, np.ndarray],
        names: list[str],
        categorical: list[int],
        rounds: int,
        early_stopping_rounds: int,
    ) -> tuple[lgb.Booster, int]: ...


class LocalTrainer:
    """lightgbm.train in this process, with early stopping on the held-out slice."""

    name = "lightgbm"

    def __call__(self, lgb_params, fit, valid, names, categorical, rounds, early_stopping_rounds):
        import lightgbm as lgb

        train_set = lgb.Dataset(*fit, feature_name=names, categorical_feature=categorical, free_raw_data=True)
        valid_set = lgb.Dataset(*valid, reference=train_set)
        stop = [lgb.early_stopping(early_stopping_rounds, verbose=False)] if early_stopping_rounds else []
        with lgb_threads.threads(lgb_params.get("num_threads")):  # folds train side by side
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


@dataclass(frozen=True)
class HeldOut:
    """How fit_curve splits a panel in time: the trees grow on `fit`, whose labels are censored at
    `at` (an outcome after it is unknown to them, as the backtest censors at its test cutoff), and
    the snapshots after `at` (`valid`) judge early stopping, the search and the calibration."""

    fit: np.ndarray
    valid: np.ndarray
    at: pd.Timestamp
    #: False only for a panel too short to censor (its last known cutoff held out, labels as they are)
    censored: bool = True


def held_out_split(panel: pd.DataFrame, params: CurveParams, k: int) -> HeldOut:
    """Among the snapshots whose horizon-k label is known, the latest `valid_fraction` of their
    cutoffs are held out; the fitting rows end `valid_gap_days` before them and keep only the
    outcomes known by the first held-out cutoff. A panel too short for that holds out its last
    known cutoff and fits on the rest as they are."""
    known = ~np.isnan(_labels(panel, LABELS[k]))
    cutoffs = np.sort(panel.loc[known, "cutoff"].unique())
    if len(cutoffs) < 2:
        raise InputError(
            f"snapshot panel: the {HORIZONS[k]}-day label is known at {len(cutoffs)} cutoff(s); training needs at least two "
            "(more history, or more frequent cutoffs with `churn features --every`)"
        )
    at = pd.Timestamp(cutoffs[min(int(len(cutoffs) * (1 - params.valid_fraction)), len(cutoffs) - 1)])
    cutoff = panel["cutoff"]
    fit = (
        known
        & (cutoff <= at - pd.Timedelta(days=params.valid_gap_days)).to_numpy()
        & (cutoff + pd.Timedelta(days=HORIZONS[k]) <= at).to_numpy()
    )
    valid = known & (cutoff > at).to_numpy()
    if fit.any() and valid.any():
        return HeldOut(fit, valid, at)
    at = pd.Timestamp(cutoffs[-2])
    return HeldOut(known & (cutoff <= at).to_numpy(), known & (cutoff > at).to_numpy(), at, censored=False)


def row_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def choose_candidates(losses: list[np.ndarray], events: float, leaves: list[int], blend: bool = False) -> list[int]:
    """The candidates the curve keeps, from each one's held-out log loss, row by row, candidates in
    order of preference. With `blend`, all of them, to be averaged: on the simulated bases their
    mean ranked better than any one choice (docs/models.md, "The search and the blend"). Otherwise
    the first whose mean loss exceeds the lowest by no more than SEARCH_MARGIN standard errors of
    their row-by-row difference, so a later candidate has to beat an earlier one by more than the
    noise of the held-out rows. (The held-out rows are mostly 30-day outcomes, where capacity helps
    most and the longer horizons least: a margin of one standard error let capacity win folds it
    lost at 90 days: docs/models.md.) Either way, with fewer than MIN_SEARCH_EVENTS churn events
    held out, nothing can be told apart: the candidate with the fewest `leaves` alone."""
    if events < MIN_SEARCH_EVENTS:
        return [int(np.argmin(leaves))]
    if blend:
        return list(range(len(losses)))
    best = losses[int(np.argmin([loss.mean() for loss in losses]))]
    for i, loss in enumerate(losses):
        difference = loss - best
        if difference.mean() <= SEARCH_MARGIN * difference.std() / np.sqrt(len(difference)):
            return [i]
    return [0]  # unreachable: the best is within 0 of itself


def average_boosters(boosters: list[lgb.Booster]) -> lgb.Booster:
    """One booster whose raw score (log-odds) is the mean of theirs: all their trees, each leaf's
    value divided by their number. A single booster keeps every path that reads one (prediction,
    pred_contrib, shap.TreeExplainer, saving) exact: TreeSHAP is linear in the leaf values, so its
    contributions are the mean of theirs. The boosters share their features (grown on one matrix)."""
    import lightgbm as lgb

    if len(boosters) == 1:
        return boosters[0]
    texts = [b.model_to_string() for b in boosters]
    first = texts[0]
    # the header without tree_sizes (byte offsets for loading trees in parallel, no longer right):
    # without it LightGBM reads the trees in turn
    header = re.sub(r"\ntree_sizes=[^\n]*", "", first[: first.index("\nTree=")])
    trees = [
        tree.strip("\n")
        for text in texts
        for tree in text[text.index("\nTree=") : text.index("end of trees")].split("\n\n\n")
        if tree.strip()
    ]

    def scaled(line: str) -> str:
        values = line.removeprefix("leaf_value=").split()
        return "leaf_value=" + " ".join(repr(float(v) / len(boosters)) for v in values)

    renumbered = [
        "\n".join([f"Tree={i}", *(scaled(x) if x.startswith("leaf_value=") else x for x in tree.split("\n")[1:])])
        for i, tree in enumerate(trees)
    ]
    return lgb.Booster(model_str="\n\n".join([header, *renumbered, first[first.index("end of trees") :]]))


def lightgbm_params(params: CurveParams, names: list[str]) -> dict:
    """lightgbm.train's parameters for these curve parameters (`names`: the booster's columns)."""
    return {
        "objective": "binary",
        "learning_rate": params.learning_rate,
        "num_leaves": params.num_leaves,
        "min_child_samples": params.min_child_samples,
        "subsample": params.subsample,
        "subsample_freq": 1,
        "colsample_bytree": params.colsample_bytree,
        "reg_lambda": params.reg_lambda,
        "seed": params.seed,
        "num_threads": params.num_threads,
        "verbose": -1,
        "monotone_constraints": [int(params.monotone.get(c, 0)) for c in names],
        "monotone_constraints_method": "advanced",
        # LightGBM otherwise times both histogram layouts on every fit and keeps row-wise here, the
        # slower one for these panels (docs/benchmarks.md, "Settings chosen by measurement")
        "force_col_wise": True,
    }


def fit_curve(
    panel: pd.DataFrame, features: list[str], params: CurveParams | None = None, trainer: BoosterTrainer | None = None
) -> RiskCurveModel:
    """Fit on the panel's cutoffs, the latest `valid_fraction` of them held out (held_out_split)
    for early stopping, the search and the calibration. With `params.search`, every candidate grows
    on the same fitting rows and `choose_candidates` keeps one, or all of them averaged with
    `params.blend` (`info["search"]` has each one's held-out loss, trees and seconds; `info["kept"]`
    the indices kept, `info["chosen"]` the first of them, whose `params` the model reports).
    `trainer` grows the boosters (default: LightGBM in this process)."""
    import lightgbm as lgb

    from models.backtest import censor_at  # here: models.backtest imports this module

    params = params or CurveParams()
    trainer = trainer or LocalTrainer()
    model = RiskCurveModel(
        [], list(features), category_levels(panel, features), params.formulation, params=params.model_dump()
    )
    X = model.encode(panel)
    hazard = params.formulation == "hazard"
    names = [*features, *INTERNAL] if hazard else list(features)
    categorical = [i for i, c in enumerate(features) if c in model.categories]

    def dataset(rows: np.ndarray, k: int | None, known_by: pd.Timestamp | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(matrix, target) for the hazard model (k None) or for horizon k's classifier, with the
        labels as they were known at `known_by` (None: as they are)."""
        index = np.flatnonzero(rows)
        part = panel.iloc[index] if known_by is None else censor_at(panel.iloc[index], known_by)
        if k is not None:
            y = _labels(part, LABELS[k])
            keep = ~np.isnan(y)
            return X[index[keep]], y[keep]
        expanded = expand_intervals(part)
        return model.design(X[index[expanded["row"].to_numpy()]], expanded["interval"].to_numpy()), expanded[
            "event"
        ].to_numpy(dtype=float)

    # the hazard model splits where the first interval is known; each horizon's classifier on its own label
    splits = (
        [held_out_split(panel, params, 0)] * len(HORIZONS)
        if hazard
        else [held_out_split(panel, params, k) for k in range(len(HORIZONS))]
    )
    targets = [None] if hazard else list(range(len(HORIZONS)))
    data = [
        (dataset(s.fit, k, s.at if s.censored else None), dataset(s.valid, k))
        for s, k in ((splits[k or 0], k) for k in targets)
    ]

    def grow(candidate: CurveParams) -> dict:
        started = time.perf_counter()
        lgb_params = lightgbm_params(candidate, names)
        boosters, best = [], []
        for fit, valid in data:
            booster, iteration = trainer(
                lgb_params, fit, valid, names, categorical, candidate.n_estimators, candidate.early_stopping_rounds
            )
            boosters.append(lgb.Booster(model_str=booster.model_to_string(num_iteration=iteration)))
            best.append(iteration)
        losses = np.concatenate(
            [
                row_log_loss(valid[1], lgb_threads.predict(b, valid[0], candidate.num_threads))
                for b, (_, valid) in zip(boosters, data, strict=True)
            ]
        )
        return {
            "boosters": boosters,
            "best_iteration": best,
            "losses": losses,
            "held_out_loss": float(losses.mean()),
            "seconds": time.perf_counter() - started,
        }

    candidates = params.candidates()
    grown = [grow(candidate) for candidate in candidates]
    kept = choose_candidates(
        [g["losses"] for g in grown],
        sum(valid[1].sum() for _, valid in data),
        [c.num_leaves for c in candidates],
        params.blend,
    )
    chosen = kept[0]
    model.boosters = [average_boosters([grown[i]["boosters"][j] for i in kept]) for j in range(len(data))]
    model.params = candidates[chosen].model_dump()
    model.info = {
        "fit_rows": [int(s.fit.sum()) for s in splits],
        "valid_rows": [int(s.valid.sum()) for s in splits],
        "training_rows": [len(fit[1]) for fit, _ in data],
        "best_iteration": grown[chosen]["best_iteration"],
        "split_cutoff": [str(s.at.date()) for s in splits],
        "trained_through": outcomes_through(panel),
        "trainer": trainer.name,
        "search": [
            {
                **overrides,
                "held_out_loss": round(g["held_out_loss"], 6),
                "best_iteration": g["best_iteration"],
                "seconds": round(g["seconds"], 2),
            }
            for overrides, g in zip(params.search or ({},), grown, strict=True)
        ],
        "chosen": chosen,
        "kept": kept,
    }
    if params.calibrate:
        model.calibrators = fit_calibrators(model, panel, X, [s.valid for s in splits])
    return model


def fit_calibrators(
    model: RiskCurveModel, panel: pd.DataFrame, X: np.ndarray, held_out: list[np.ndarray]
) -> list[Calibrator]:
    """The calibration of every horizon (fit_calibration) on the held-out snapshots whose outcome at
    that horizon is known, from their raw curve (`held_out`: each horizon's held-out rows)."""
    union = np.logical_or.reduce(held_out)
    raw = np.full((len(panel), len(HORIZONS)), np.nan)
    raw[union] = model.raw_curve_matrix(X[union])  # one prediction for every horizon
    pools = []
    for k, rows in enumerate(held_out):
        y = _labels(panel, LABELS[k])
        known = rows & ~np.isnan(y)
        pools.append(CalibrationPool(raw[known, k], y[known], panel.loc[known, "cutoff"].nunique()))
    return fit_calibration(pools)
