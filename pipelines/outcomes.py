"""Entry points around escalation/evaluation.py and escalation/suggest.py: read the store, the churn
table and the data's end; the `escalations` block of `churn evaluate` and its MLflow logging; the
report's section; `churn policy suggest`.

Nothing here creates a store: a SQLite store file that does not exist is "no store configured",
and a store that cannot be read is said so in the block, never a traceback.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from core.errors import ChurnError, InputError
from core.urls import sqlite_path
from escalation.evaluation import DEFAULT_HORIZON_DAYS
from pipelines.console import number


def safe_url(url: str) -> str:
    """A store URL without its password, fit for output."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return str(url)


def missing_sqlite(url: str) -> Path | None:
    """The file of a sqlite:/// URL (or a bare path) that does not exist, else None."""
    path = sqlite_path(url)
    return None if path is None or path.is_file() else path


def data_end_of(data_dir: Path) -> pd.Timestamp:
    """The end of the data (the midnight after the latest record of any table), as `churn features`
    computes it, reading only the time columns."""
    from core.contracts import TableFiles
    from features.panel import TIME_COLUMNS, data_range_of
    from pipelines.features import time_column

    files = TableFiles(data_dir)
    return data_range_of({table: time_column(files, table) for table in TIME_COLUMNS if files.path(table) is not None})[
        1
    ]


def _arr_by_account(data_dir: Path) -> pd.Series | None:
    from core.contracts import TableFiles, coerce_columns

    accounts = TableFiles(data_dir).read("accounts", ["account_id", "arr"])
    return None if accounts is None else coerce_columns("accounts", accounts).set_index("account_id")["arr"]


def escalation_block(
    store_url: str,
    data_dir: Path | None,
    *,
    data_end: pd.Timestamp | None = None,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    min_per_group: int = 30,
) -> dict:
    """escalation/evaluation.py `evaluate_escalations` on the store at `store_url`, with churn from
    `data_dir`'s churn table. When there is nothing to evaluate, `available` is False and `note` says why."""
    from sqlalchemy.exc import SQLAlchemyError

    from escalation.evaluation import evaluate_escalations, read_store
    from escalation.store import Store
    from pipelines.models import churn_times

    base = {"store": safe_url(store_url), "horizon_days": horizon_days, "available": False, "escalations": 0}
    missing = missing_sqlite(store_url)
    if missing is not None:
        return {**base, "note": f"no operational store at {missing} (CHURN_STORE_URL): no escalations to evaluate"}
    if data_dir is None or not Path(data_dir).is_dir():
        return {
            **base,
            "note": f"the data folder {data_dir} is not there: its churn table says what happened after each escalation",
        }
    try:
        with Store(store_url) as store:
            tables = read_store(store)
    except (
        SQLAlchemyError,
        OSError,
    ) as exc:  # an unreachable or foreign database: the user needs the URL and the cause
        return {
            **base,
            "note": f"could not read the operational store {safe_url(store_url)}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
        }
    try:
        churned = churn_times(Path(data_dir))
        end = data_end if data_end is not None else data_end_of(Path(data_dir))
    except InputError as exc:  # the report and evaluate still stand without this block
        return {**base, "note": f"the data in {data_dir} cannot say what happened after each escalation: {exc}"}
    churned = churned if churned is not None else pd.Series(dtype="datetime64[us, UTC]")
    block = evaluate_escalations(
        tables,
        churned,
        end,
        horizon_days=horizon_days,
        arr_by_account=_arr_by_account(Path(data_dir)),
        min_per_group=min_per_group,
    )
    return {**base, **block}


def evaluate_block(features_dir: Path, store_url: str, horizon_days: int = DEFAULT_HORIZON_DAYS) -> dict:
    """The block for `churn evaluate --features DIR`: churn from the data the panel was built from,
    the data's end from its panel summary."""
    from pipelines.features import panel_summary
    from pipelines.models import panel_data_dir

    end = panel_summary(features_dir).get("data_end")
    return escalation_block(
        store_url, panel_data_dir(features_dir), data_end=pd.Timestamp(end) if end else None, horizon_days=horizon_days
    )


def log_block(block: dict, *, tracking_uri: str, model_uri: str) -> str | None:
    """The block's metrics (escalations.precision_90d, ...) and tables (escalations.json,
    escalations_by_group.csv under escalations/) on the evaluated model's MLflow run; None (nothing
    logged) when the block is empty or the model has no run. The metrics' step is the data's end as
    a day number, so evaluations over time form a series."""
    from escalation.evaluation import group_table, metrics
    from models import registry

    if not block.get("available"):
        return None
    import mlflow

    registry.connect(tracking_uri)
    info = registry.describe(model_uri)
    if not info or not info.get("run_id"):
        return None
    run_id = info["run_id"]
    client = mlflow.MlflowClient()
    step = int(pd.Timestamp(block["data_end"]).value // 86_400_000_000_000)
    for key, value in metrics(block).items():
        client.log_metric(run_id, key, value, step=step)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "escalations.json").write_text(json.dumps(block, default=str, sort_keys=True, indent=1))
        group_table(block).to_csv(Path(tmp) / "escalations_by_group.csv", index=False)
        client.log_artifacts(run_id, tmp, artifact_path="escalations")
    return run_id


def human_lines(block: dict) -> list[str]:
    """The block in a few lines for the terminal."""
    if not block.get("available"):
        return [f"escalations: {block.get('note')}"]
    o, h = block["overall"], block["horizon_days"]
    lines = [
        (
            f"escalations ({block['store']}): {block['escalations']} in the store, {o['matured']} matured at {h} days; "
            f"really at risk {number(o['precision'], '.0%')}, churned {number(o['churn_rate'], '.0%')}; ARR saved ${o['arr_saved']:,.0f}"
        )
    ]
    lines += [
        f"  band {r['band']}: {r['matured']} matured, precision {number(r['precision'], '.0%')}"
        for r in block["by_band"]
    ]
    lines.append(f"  holdout: {block['holdout']['verdict']}")
    lines += [f"  note: {n}" for n in block.get("notes", [])]
    return lines


# ---------------------------------------------------------------------------------- policy suggest


def run_policy_suggest(
    *,
    settings,
    capacity: int,
    horizons: tuple[int, ...] = (),
    features_dir: Path | None = None,
    model_uri: str | None = None,
    out: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Score the snapshot panel (default: the one the model was trained on) with the model (default:
    the champion), suggest thresholds for `capacity` escalations per cutoff, and add what the store's
    matured escalations say. Writes nothing unless `out` is given (then the whole policy with the
    suggested thresholds, atomically; never the live config/escalation.yaml)."""
    from core.config import config_file
    from escalation.policy import load_policy
    from escalation.suggest import diff_lines, suggest_thresholds
    from models import registry
    from pipelines.features import read_snapshots
    from pipelines.models import panel_data_dir

    say = progress or (lambda _line: None)
    policy = load_policy(settings.config_dir)
    live = config_file(settings.config_dir, "escalation.yaml").resolve()  # the config folder's, else the shipped one
    if out is not None and Path(out).resolve() == live:
        raise InputError(
            f"--out {out}: that is the live policy; a suggestion is never applied: write it elsewhere, review it, then copy it"
        )
    if capacity < 1:
        raise InputError(f"--capacity {capacity}: expected at least 1 escalation per period")
    uri = model_uri or settings.model_uri
    registry.connect(settings.mlflow_tracking_uri)
    info = registry.describe(uri)
    if features_dir is None:
        if not info and uri.startswith(f"models:/{registry.MODEL_NAME}"):
            raise InputError(
                f"--model {uri}: no such model version or alias in {settings.mlflow_tracking_uri}; run `churn train` "
                "and `churn promote` first, or pass --model"
            )
        if not info or not info["tags"].get("features_dir"):
            raise InputError(
                f"--features: not given and the model {uri} names no training features folder; pass --features "
                "DIR (the output of `churn features`)"
            )
        features_dir = Path(info["tags"]["features_dir"])
    try:
        model = registry.load_curve(uri)
    except Exception as exc:  # noqa: BLE001 - MLflow raises several types for a missing model; the user needs the URI named
        raise ChurnError(
            f"--model {uri}: could not load it ({type(exc).__name__}); run `churn train` and `churn promote` first, or pass --model"
        ) from None
    panel = read_snapshots(Path(features_dir))
    say(f"scoring {len(panel):,} snapshots of {features_dir} with {uri}")
    curve = model.predict_curve(panel)
    suggestion = suggest_thresholds(panel, curve, policy, capacity=capacity, horizons=tuple(horizons) or None)
    notes = list(suggestion.notes)
    through = model.info.get("trained_through")
    if through and pd.Timestamp(panel["cutoff"].min()) < pd.Timestamp(through):
        notes.append(
            f"the model learned from these snapshots' outcomes up to {str(through)[:10]}: precisions there are in-sample, "
            "so read them as an upper bound and compare the thresholds, not the figures"
        )
    result = {
        **suggestion.to_dict(),
        "features": str(features_dir),
        "model": uri,
        "policy_version": policy.version,
        "config": str(live),
        "notes": notes,
        "written": None,
    }
    past = escalation_block(settings.store_url, panel_data_dir(Path(features_dir)) or Path(settings.data_dir))
    result["past_escalations"] = {k: past.get(k) for k in ("available", "note", "escalations", "horizon_days")} | (
        {"matured": past["overall"]["matured"], "precision": past["overall"]["precision"], "by_band": past["by_band"]}
        if past.get("available")
        else {}
    )
    if out is not None:
        result["written"] = str(_write_policy(live, suggestion.suggested.thresholds, Path(out)))
    result["diff"] = diff_lines(suggestion)
    return result


def _write_policy(live: Path, thresholds: dict[int, float], out: Path) -> Path:
    """The live policy's keys with the suggested risk_thresholds, validated, written atomically."""
    import yaml

    from core.config.base import read_yaml
    from core.io import atomic_path
    from escalation.policy import EscalationPolicy

    raw = read_yaml(live)
    raw["risk_thresholds"] = {int(h): float(t) for h, t in sorted(thresholds.items())}
    EscalationPolicy.model_validate(raw)  # what is written loads
    header = (
        f"# Suggested by `churn policy suggest` from {live}: only risk_thresholds changed. Not applied:\n"
        "# review it, then copy it over config/escalation.yaml (comments of the original are not kept).\n"
    )
    with atomic_path(out) as tmp:
        Path(tmp).write_text(header + yaml.safe_dump(raw, sort_keys=False))
    return out


def suggest_human(result: dict) -> str:
    s, c = result["suggested"], result["current"]
    period = f"a cutoff every {result['period_days']} days" if result.get("period_days") else "a cutoff"
    lines = [
        f"capacity {result['capacity']} risk escalations per period ({period}; {result['periods']} periods, "
        f"{result['snapshots']:,} snapshots):",
        (
            f"  now: {c['per_period']:.1f} per period, precision {number(c['precision'], '.2f')}; suggested: "
            f"{s['per_period']:.1f} per period, "
            f"precision {number(s['precision'], '.2f')}"
        ),
    ]
    lines += [f"  {line}" for line in result["diff"]] or ["  no change: the current thresholds already fit"]
    past = result.get("past_escalations") or {}
    if past.get("available"):
        lines.append(
            f"  past escalations in the store: {past['matured']} matured at {past['horizon_days']} days, "
            f"precision {number(past['precision'], '.2f')}"
        )
    lines += [f"  note: {n}" for n in result["notes"]]
    lines.append(
        f"  written to {result['written']} (not applied)"
        if result["written"]
        else "  nothing written (--out FILE writes the policy)"
    )
    return "\n".join(lines)
