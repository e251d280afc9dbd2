"""Entry points around models/: read the panel and parameters, run the backtest, report."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from core.errors import InputError
from models.backtest import run_backtest
from models.baselines import LogisticBaseline, RulesBaseline
from models.curve import HORIZONS, CurveParams
from pipelines.features import read_snapshots

KEYS = ("account_id", "cutoff")


def load_model_config(config_dir: Path) -> tuple[CurveParams, dict]:
    path = Path(config_dir) / "model.yaml"
    raw = yaml.safe_load(path.read_text()) if path.is_file() else {}
    try:
        return CurveParams(**(raw.get("curve") or {})), {"folds": 4, "budget": 0.05, **(raw.get("backtest") or {})}
    except ValidationError as exc:
        problems = "; ".join(f"key 'curve.{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())
        raise InputError(f"{path}: {problems}") from None


def feature_names(panel: pd.DataFrame) -> list[str]:
    """Every feature column that is not entirely missing (text features of a --no-text panel are)."""
    return [c for c in panel.columns if c not in KEYS and not c.startswith("churned_within_") and panel[c].notna().any()]


def run_evaluate(features_dir: Path, *, params: CurveParams, folds: int, budget: float, progress: Callable[[str], None] | None = None) -> dict:
    """Backtest the model and the baselines (and the oracle where the data has truth/)."""
    started = time.perf_counter()
    panel = read_snapshots(features_dir)
    summary_path = Path(features_dir) / "panel_summary.json"
    data_dir = Path(json.loads(summary_path.read_text())["data"]) if summary_path.is_file() else None
    churned_at = None
    oracle = None
    if data_dir is not None and (data_dir / "churn.parquet").is_file():
        churned_at = pd.read_parquet(data_dir / "churn.parquet").set_index("account_id")["churned_at"]
    if data_dir is not None and (data_dir / "truth" / "meta.json").is_file():
        from simulation.oracle import churn_probability

        def simulated_oracle(test: pd.DataFrame) -> np.ndarray:
            probs = churn_probability(data_dir / "truth", test[["account_id", "cutoff"]], n_paths=64)
            return probs[[f"oracle_{h}d" for h in HORIZONS]].to_numpy()

        oracle = simulated_oracle

    names = feature_names(panel)
    table, _ = run_backtest(
        panel, names, folds=folds, params=params, budget=budget, churned_at=churned_at, progress=progress, oracle=oracle,
        baselines={"rules": RulesBaseline, "logistic": lambda: LogisticBaseline(names)},
    )
    results = [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()} for row in table.to_dict("records")]
    return {"features": str(features_dir), "folds": folds, "budget": budget, "feature_count": len(names), "results": results,
            "oracle": oracle is not None, "seconds": round(time.perf_counter() - started, 1)}
