"""Rolling-origin backtest by cutoff.

Each fold tests one cutoff. Its training rows are the snapshots before it, with every label
re-censored at the test cutoff (a label whose horizon ends after the test cutoff is unknown at
that time), so no training outcome overlaps the test period: the gap between training labels and
the test cutoff is at least the horizon of each label used. Test predictions of all folds are
pooled and scored per horizon, for the model and the baselines alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.mapping import Mapper, serial_map
from models.curve import HORIZONS, LABELS, BoosterTrainer, CurveParams, fit_curve
from models.metrics import score_metrics


def censor_at(panel: pd.DataFrame, moment: pd.Timestamp) -> pd.DataFrame:
    """Labels as they were known at `moment`: null where cutoff + horizon > moment."""
    out = panel.copy()
    for h, label in zip(HORIZONS, LABELS, strict=True):
        late = (out["cutoff"] + pd.Timedelta(days=h)) > moment
        out[label] = out[label].mask(late.to_numpy())
    return out


def test_cutoffs(panel: pd.DataFrame, folds: int, min_train_cutoffs: int = 6) -> list[pd.Timestamp]:
    """The last `folds` cutoffs whose 90-day label is known, leaving enough history to train on."""
    labelled = panel.loc[panel["churned_within_90d"].notna(), "cutoff"].unique()
    cutoffs = np.sort(labelled)[min_train_cutoffs:]
    return [pd.Timestamp(c) for c in cutoffs[-folds:]]


@dataclass
class FoldJob:
    """One rolling-origin fold: everything it needs, so it can run as a task in another process."""

    index: int
    test_cutoff: pd.Timestamp
    panel: pd.DataFrame
    features: list[str]
    params: CurveParams | None
    baselines: dict[str, Callable[[], object]] | None
    oracle: Callable[[pd.DataFrame], np.ndarray] | None
    trainer: BoosterTrainer | None


def run_fold(job: FoldJob) -> dict:
    """Fit on the snapshots before the fold's cutoff (labels censored there), predict at it."""
    train = censor_at(job.panel[job.panel["cutoff"] < job.test_cutoff], job.test_cutoff)
    test = job.panel[job.panel["cutoff"] == job.test_cutoff].reset_index(drop=True)
    curves = {"lightgbm": fit_curve(train, job.features, job.params, job.trainer).predict_curve(test)}
    for name, make in (job.baselines or {}).items():
        curves[name] = make().fit(train).predict_curve(test)
    if job.oracle is not None:
        curves["oracle"] = job.oracle(test)
    preds = []
    for name, curve in curves.items():
        frame = test[["account_id", "cutoff", "arr_current", *LABELS]].copy()
        frame[[f"p_{h}d" for h in HORIZONS]] = curve
        preds.append(frame.assign(model=name))
    return {"preds": preds, "line": f"fold {job.test_cutoff.date()}: {len(train):,} training rows, {len(test):,} test rows"}


def run_backtest(
    panel: pd.DataFrame,
    features: list[str],
    *,
    folds: int = 4,
    params: CurveParams | None = None,
    baselines: dict[str, Callable[[], object]] | None = None,
    oracle: Callable[[pd.DataFrame], np.ndarray] | None = None,
    budget: float = 0.05,
    churned_at: pd.Series | None = None,
    progress: Callable[[str], None] | None = None,
    trainer: BoosterTrainer | None = None,
    map_folds: Mapper | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(metrics table: one row per model and horizon, pooled test predictions).

    `map_folds` runs the folds (default: here, in turn); the build-features mapper of the flows
    makes each fold a task of the flow's runner. With a `trainer` that distributes each fit
    itself (lightgbm.dask), the folds run here in turn."""
    jobs = [FoldJob(i, c, panel, features, params, baselines, oracle, trainer) for i, c in enumerate(test_cutoffs(panel, folds))]
    mapper = map_folds if map_folds is not None and trainer is None else serial_map
    preds = []
    for result in mapper(run_fold, jobs):
        preds.extend(result["preds"])
        if progress:
            progress(result["line"])
    pooled = pd.concat(preds, ignore_index=True)
    rows = []
    for name, group in pooled.groupby("model", sort=False):
        for h, label in zip(HORIZONS, LABELS, strict=True):
            known = group[label].notna()
            frame = pd.DataFrame({"account_id": group["account_id"], "cutoff": group["cutoff"], "y": group[label],
                                  "score": group[f"p_{h}d"], "arr": group["arr_current"]})[known.to_numpy()]
            metrics = score_metrics(frame.assign(y=frame["y"].astype(int)), budget=budget, churned_at=churned_at)
            rows.append({"model": name, "horizon_days": h, **metrics})
    return pd.DataFrame(rows), pooled
