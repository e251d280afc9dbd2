"""`churn report`: gather what the leadership report shows (the latest scores, the served model's
run, the store) and write one self-contained HTML file, also logged to the model's MLflow run."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Config, load_config
from core.errors import InputError
from core.io import atomic_path
from core.settings import Settings


def run_report(
    out: Path,
    *,
    settings: Settings,
    config: Config | None = None,
    scores_dir: Path | None = None,
    model_uri: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """The leadership report; `config`: the entry point's configuration (loaded from
    settings.config_dir when not given)."""
    from escalation.store import Store
    from features.registry import feature_specs
    from models import registry
    from models.drift import psi
    from models.reasons import base_points, family_importance, feature_importance
    from pipelines.features import read_snapshots
    from reports.leadership import ReportInputs, render_report
    from serving.launch import scores_folder

    say = progress or (lambda _line: None)
    started = time.perf_counter()
    if model_uri:
        settings = settings.model_copy(update={"model_uri": model_uri})
    folder, named = scores_folder(settings, scores_dir, say)
    if not (folder / "scores.parquet").is_file():
        raise InputError(
            f"{named} {folder}: no scores.parquet; run `churn score --out {folder}` first"
            + ("" if scores_dir else ", or pass --scores")
        )
    scores = pd.read_parquet(folder / "scores.parquet")
    snapshot = pd.read_parquet(folder / "features.parquet")
    facts = snapshot[["account_id", "segment", "arr_current", "days_to_renewal", "account_name", "csm_owner"]]
    table = scores.merge(facts, on="account_id", how="left")
    registry.connect(settings.mlflow_tracking_uri)
    model = registry.load_curve(settings.model_uri)
    info = registry.describe(settings.model_uri)
    run_id = info["run_id"] if info else None
    say(
        f"report on {len(table):,} accounts as of {pd.Timestamp(scores['cutoff'].max()).date()} with {settings.model_uri}"
    )

    specs = feature_specs()
    sample = snapshot.sample(min(len(snapshot), 3000), random_state=0)
    pts, _ = base_points(model, sample, specs, 90)
    importance, families = feature_importance(pts, model.features, specs), family_importance(pts, model.features, specs)
    shap_values, explained = _shap_explanation(model, snapshot, table["account_id"], specs)

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
                if (
                    feature in panel.columns
                    and feature in snapshot.columns
                    and pd.api.types.is_numeric_dtype(panel[feature])
                ):
                    train_values = panel[feature].to_numpy(dtype=float, na_value=np.nan)
                    latest = snapshot[feature].to_numpy(dtype=float, na_value=np.nan)
                    rows.append(
                        {
                            "signal": specs[feature].description if feature in specs else feature,
                            "psi": psi(train_values, latest),
                            "training mean": f"{np.nanmean(train_values):.2f}",
                            "latest mean": f"{np.nanmean(latest):.2f}",
                            "family": specs[feature].family if feature in specs else "",
                        }
                    )
            drift = pd.DataFrame(rows)
    config = config or load_config(settings.config_dir)
    base_dip = _base_dip(folder, pd.Timestamp(scores["cutoff"].max()), settings, config.features.account_block)
    policy = config.escalation
    with Store(settings.store_url, policy) as store:
        escalations, follow_ups, feedback = (
            pd.read_sql_table(name, store.engine) for name in ("escalations", "follow_ups", "feedback")
        )
    outcomes = _outcomes(folder, settings)
    html = render_report(
        ReportInputs(
            as_of=str(pd.Timestamp(scores["cutoff"].max()).date()),
            scores=table,
            family_importance=families,
            feature_importance=importance,
            model={
                "version": info["version"] if info else settings.model_uri,
                "uri": settings.model_uri,
                "formulation": model.formulation,
                "trained_through": model.info.get("trained_through"),
            },
            backtest=backtest,
            calibration_png=calibration,
            drift=drift,
            base_dip=base_dip,
            escalations=escalations,
            follow_ups=follow_ups,
            feedback=feedback,
            policy_version=policy.version,
            data_notes=data_notes,
            explanation=shap_values,
            explained=explained,
            outcomes=outcomes,
        )
    )
    out = Path(out)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
    if run_id:
        registry.log_report(run_id, out)
    return {
        "report": str(out),
        "bytes": out.stat().st_size,
        "accounts": len(table),
        "model_version": info["version"] if info else None,
        "logged_to_run": run_id,
        "escalations": len(escalations),
        "outcomes_matured": (outcomes.get("overall") or {}).get("matured"),
        "notes": data_notes,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _outcomes(scores_dir: Path, settings: Settings) -> dict:
    """The escalations joined to what happened next, with churn from the data the scores came from."""
    from pipelines.outcomes import escalation_block

    summary = scores_dir / "score_summary.json"
    data = json.loads(summary.read_text()).get("data") if summary.is_file() else None
    return escalation_block(settings.store_url, Path(data or settings.data_dir))


def _shap_explanation(model, snapshot: pd.DataFrame, accounts: pd.Series, specs) -> tuple[object, list[str]]:
    """The 90-day shap.Explanation of the scored accounts with readable names (the report's beeswarm
    and waterfalls), and the account id of each of its rows."""
    from models.explain import explanation
    from models.plots import readable

    rows = snapshot[snapshot["account_id"].isin(accounts)].drop_duplicates("account_id", keep="last")
    if not len(rows):
        return None, []
    return readable(explanation(model, rows, 90), specs), rows["account_id"].astype(str).tolist()


def _base_dip(scores_dir: Path, cutoff: pd.Timestamp, settings: Settings, block: int) -> float | None:
    """The whole base's activity in the 7 days before the scoring cutoff against its usual level,
    when it was below usage.BASE_DIP (a holiday week, an outage), from the scored data's usage."""
    from core.contracts import TableFiles
    from features.families.usage import BASE_DIP, base_activity
    from pipelines.features import base_usage_days

    summary = scores_dir / "score_summary.json"
    data = (
        Path(json.loads(summary.read_text()).get("data") or settings.data_dir)
        if summary.is_file()
        else Path(settings.data_dir)
    )
    if not data.is_dir():
        return None
    files = TableFiles(data)
    accounts = files.read("accounts", columns=["account_id"])
    if accounts is None or files.path("usage_daily") is None:
        return None
    ids = np.sort(accounts["account_id"].astype("str").to_numpy(dtype=object))
    level = base_activity(
        base_usage_days(files, [ids[lo : lo + block] for lo in range(0, len(ids), block)]), pd.DatetimeIndex([cutoff])
    )[0]
    return float(level) if level < BASE_DIP else None


def _data_notes(features_dir: Path) -> list[str]:
    """The notes of the training panel's families without data (its panel summary)."""
    from pipelines.features import panel_summary

    return list(panel_summary(features_dir).get("families_without_data", {}).values())
