"""`churn report`: gather what the leadership report shows (the latest scores, the served model's
run, the store) and write one self-contained HTML file, also logged to the model's MLflow run."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import ChurnError
from core.io import atomic_path
from core.settings import Settings


def run_report(out: Path, *, settings: Settings, scores_dir: Path | None = None, model_uri: str | None = None,
               progress: Callable[[str], None] | None = None) -> dict:
    from escalation.policy import load_policy
    from escalation.store import Store
    from features.registry import feature_specs
    from models import registry
    from models.explain import by_family, contributions, global_importance
    from pipelines.features import read_snapshots
    from reports.leadership import ReportInputs, psi, render_report

    say = progress or (lambda _line: None)
    started = time.perf_counter()
    if model_uri:
        settings = settings.model_copy(update={"model_uri": model_uri})
    folder = Path(scores_dir or settings.scores_dir or Path(settings.data_dir) / "scores")
    if not (folder / "scores.parquet").is_file():
        raise ChurnError(f"CHURN_SCORES_DIR {folder}: no scores.parquet; run `churn score --out {folder}` first")
    scores = pd.read_parquet(folder / "scores.parquet")
    snapshot = pd.read_parquet(folder / "features.parquet")
    facts = snapshot[["account_id", "segment", "arr_current", "days_to_renewal", "account_name", "csm_owner"]]
    table = scores.merge(facts, on="account_id", how="left")
    registry.connect(settings.mlflow_tracking_uri)
    model = registry.load_curve(settings.model_uri)
    info = registry.describe(settings.model_uri)
    run_id = info["run_id"] if info else None
    say(f"report on {len(table):,} accounts as of {pd.Timestamp(scores['cutoff'].max()).date()} with {settings.model_uri}")

    specs = feature_specs()
    sample = snapshot.sample(min(len(snapshot), 3000), random_state=0)
    contrib = contributions(model, sample, 90)
    importance = global_importance(contrib, specs)
    importance["description"] = importance["feature"].map(lambda f: specs[f].description if f in specs else f)
    families = by_family(contrib, specs).abs().mean()

    backtest = pd.DataFrame()
    calibration = None
    drift = pd.DataFrame()
    data_notes: list[str] = []
    if run_id:
        path = registry.run_artifact(run_id, "backtest.csv")
        backtest = pd.read_csv(path) if path else backtest
        path = registry.run_artifact(run_id, "calibration.png")
        calibration = path.read_bytes() if path else None
        training = Path(info["tags"].get("features_dir", ""))
        data_notes = _data_notes(training)
        if (training / "snapshots").is_dir():
            panel = read_snapshots(training)
            panel = panel[panel["cutoff"] >= panel["cutoff"].max() - pd.Timedelta(days=365)]
            rows = []
            for feature in importance["feature"].head(15):
                if feature in panel.columns and feature in snapshot.columns and pd.api.types.is_numeric_dtype(panel[feature]):
                    train_values = panel[feature].to_numpy(dtype=float, na_value=np.nan)
                    latest = snapshot[feature].to_numpy(dtype=float, na_value=np.nan)
                    rows.append({"signal": specs[feature].description if feature in specs else feature, "psi": psi(train_values, latest),
                                 "training mean": f"{np.nanmean(train_values):.2f}", "latest mean": f"{np.nanmean(latest):.2f}"})
            drift = pd.DataFrame(rows)
    policy = load_policy(settings.config_dir)
    with Store(settings.store_url, policy) as store:
        read = lambda name: pd.read_sql_table(name, store.engine)  # noqa: E731
        escalations, follow_ups, feedback = read("escalations"), read("follow_ups"), read("feedback")
    html = render_report(ReportInputs(
        as_of=str(pd.Timestamp(scores["cutoff"].max()).date()), scores=table, family_importance=families, feature_importance=importance,
        model={"version": info["version"] if info else settings.model_uri, "uri": settings.model_uri, "formulation": model.formulation,
               "trained_through": model.info.get("trained_through")},
        backtest=backtest, calibration_png=calibration, drift=drift, escalations=escalations, follow_ups=follow_ups, feedback=feedback,
        policy_version=policy.version, data_notes=data_notes))
    out = Path(out)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
    if run_id:
        registry.log_report(run_id, out)
    return {"report": str(out), "bytes": out.stat().st_size, "accounts": len(table), "model_version": info["version"] if info else None,
            "logged_to_run": run_id, "escalations": len(escalations), "notes": data_notes, "seconds": round(time.perf_counter() - started, 1)}


def _data_notes(features_dir: Path) -> list[str]:
    """The notes of the training panel's families without data (panel_summary.json)."""
    path = features_dir / "panel_summary.json"
    if not path.is_file():
        return []
    return list(json.loads(path.read_text()).get("families_without_data", {}).values())
