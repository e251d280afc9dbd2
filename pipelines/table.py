"""`churn train-table`: a user's own snapshot table, cross-validated, its model logged to MLflow."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd


def run_train_table(
    table: Path, *, label: str, id_column: str | None, tracking_uri: str, progress: Callable[[str], None] | None = None
) -> dict:
    """Stratified 5-fold CV of the choosing procedure on a user's own snapshot table (each fold picks
    its model by an inner CV), then the final model (the candidate `chosen` over the folds), logged to MLflow."""
    from core.io import read_user_table
    from models import registry
    from models.table import (
        TableParams,
        cross_validate_table,
        fit_table_model,
    )
    from models.table_prep import prepare_table

    say = progress or (lambda _line: None)
    started = time.perf_counter()
    frame = read_user_table(Path(table), "--table")
    params = TableParams()
    prepared = prepare_table(frame, label, id_column, folds=params.folds)
    for note in prepared.notes:
        say(f"note: {note}")
    result = cross_validate_table(prepared, params, progress=say)
    say(f"fitting the final model on every row: {result['chosen']}")
    model = fit_table_model(prepared, params, result["chosen"])
    raw_columns = [c for c in frame.columns if c in prepared.columns]
    example = frame[raw_columns].head(5).reset_index(drop=True)
    registry.connect(tracking_uri, experiment="churn-train-table")
    digest = hashlib.sha256(Path(table).read_bytes()).hexdigest()
    metrics = {k: v for k, v in result.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    candidates = pd.DataFrame(
        [
            {
                "candidate": c,
                "model": model_text,
                "roc_auc_mean": result[f"{c}_roc_auc_mean"],
                "roc_auc_std": result[f"{c}_roc_auc_std"],
                "wins": result["wins"][c],
            }
            for c, model_text in result["candidates"].items()
        ]
    )
    logged = registry.log_table_run(
        model,
        example=example,
        params={**params.model_dump(mode="json"), "label": label, "id_column": id_column or ""},
        metrics={**metrics, **{f"wins_{c}": n for c, n in result["wins"].items()}},
        tables={
            "per_fold": pd.DataFrame(result["per_fold"]),
            "importance": model.feature_importance(),
            "candidates": candidates,
        },
        documents={"notes": {"notes": result.get("notes", prepared.notes)}, "cv": result},
        tags={
            "table": str(Path(table).resolve()),
            "data.fingerprint": digest,
            "label": label,
            "chosen": result["chosen"],
        },
    )
    return {**result, **logged, "table": str(table), "seconds": round(time.perf_counter() - started, 1)}
