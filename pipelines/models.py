"""Entry points around models/: read the panel and parameters, run the backtest, report."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from core.config import Config, load_section
from core.config.model import SEARCHABLE, ModelConfig
from core.errors import ChurnError, InputError
from core.vocabulary import HORIZONS, KEYS, LABELS
from models.backtest import MIN_TRAIN_DAYS, BacktestPlan, NotEvaluated, infer_data_end, plan_backtest, run_backtest
from models.baselines import LogisticBaseline, RulesBaseline
from models.curve import BoosterTrainer, CurveParams, RiskCurveModel, fit_curve
from models.linear import LinearCurveModel
from models.promotion import metric_key
from pipelines.features import panel_summary, read_snapshots


def load_model_config(config_dir: Path | str | None) -> ModelConfig:
    """model.yaml of `config_dir` (the shipped one when it has none); errors name the file and the key.
    An entry point that loads the whole configuration (core.config.load_config) takes `.model` instead."""
    config: ModelConfig = load_section(config_dir, "model")
    return config


def feature_names(panel: pd.DataFrame) -> list[str]:
    """Every feature column that is not entirely missing (text features of a --no-text panel are)."""
    return [
        c for c in panel.columns if c not in KEYS and not c.startswith("churned_within_") and panel[c].notna().any()
    ]


def panel_data_dir(features_dir: Path) -> Path | None:
    """The data folder the panel was built from."""
    data = panel_summary(features_dir).get("data")
    return Path(data) if data else None


def churn_times(data_dir: Path | None) -> pd.Series | None:
    """Churn times by account (lead times, escalation outcomes, the calibration monitor), read through the churn
    table's contract: Parquet or CSV, timestamps as text or typed, all UTC. None when the data folder or its churn
    table is gone."""
    from core.contracts import find_table_file, load_tables

    if data_dir is None or not data_dir.is_dir() or find_table_file(data_dir, "churn") is None:
        return None
    try:
        churn = load_tables(data_dir, tables=("accounts", "churn"))["churn"]
    except InputError as exc:
        raise InputError(f"{data_dir} (its churn table says when each account churned): {exc}") from None
    return churn.set_index("account_id")["churned_at"]


def backtest_plan(
    panel: pd.DataFrame, features_dir: Path, folds: int, min_train_days: int = MIN_TRAIN_DAYS
) -> BacktestPlan:
    """Which cutoffs test which horizon (models.backtest.plan_backtest), with the data's range from
    the panel summary; InputError naming --features when the history allows no fold at all."""
    summary = panel_summary(features_dir)
    when = {k: pd.Timestamp(summary[k]) for k in ("data_start", "data_end") if summary.get(k)}
    plan = plan_backtest(panel, folds, min_train_days=min_train_days, calendar=summary.get("calendar_cutoffs"), **when)
    if plan.shortfall:
        raise InputError(f"--features {features_dir}: {plan.shortfall}")
    return plan


def oracle_for(data_dir: Path | None) -> Callable[[pd.DataFrame], np.ndarray] | None:
    """The simulator's oracle where the data has truth/ (simulated data only)."""
    if data_dir is None or not (data_dir / "truth" / "meta.json").is_file():
        return None
    from simulation.oracle import churn_probability

    def simulated_oracle(test: pd.DataFrame) -> np.ndarray:
        probs = churn_probability(data_dir / "truth", test[["account_id", "cutoff"]], n_paths=64)
        return probs[[f"oracle_{h}d" for h in HORIZONS]].to_numpy()

    return simulated_oracle


def _json_rows(table: pd.DataFrame) -> list[dict]:
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in table.to_dict("records")
    ]


def baselines(names: list[str]) -> dict[str, Callable[[], object]]:
    """The baselines every backtest reports next to the model."""
    return {"rules": RulesBaseline, "logistic": lambda: LogisticBaseline(names)}


def require_churn(panel: pd.DataFrame, features_dir: Path, why: str) -> None:
    """InputError when no snapshot of the panel records a churn at any horizon: `why` it is needed."""
    if not panel[list(LABELS)].eq(1).any().any():
        raise InputError(
            f"snapshot panel {features_dir}: no snapshot's label records a churn at any horizon "
            f"({', '.join(LABELS)} are all 0 or unknown); {why}, so the data needs a churn table with churns "
            "in its history (`churn validate` counts its rows)"
        )


def run_evaluate(
    features_dir: Path,
    *,
    params: CurveParams,
    folds: int,
    budget: float,
    progress: Callable[[str], None] | None = None,
    model_uri: str | None = None,
    tracking_uri: str | None = None,
    map_folds=None,
) -> dict:
    """Backtest the model and the baselines (and the oracle where the data has truth/); with
    `model_uri`, score that trained model on the snapshots after its training outcomes instead.
    Each horizon is tested where the history allows (models.backtest); the others are listed in
    `not_evaluated` with the days of data they lack."""
    say = progress or (lambda _line: None)
    started = time.perf_counter()
    panel = read_snapshots(features_dir)
    require_churn(panel, features_dir, "a backtest measures how churned accounts were ranked")
    data_dir = panel_data_dir(features_dir)
    if model_uri:
        return _evaluate_model(panel, model_uri, tracking_uri, budget, churn_times(data_dir), features_dir, started)
    plan = backtest_plan(panel, features_dir, folds)
    for line in plan.lines():
        say(line)
    oracle = oracle_for(data_dir)
    names = feature_names(panel)
    table, _ = run_backtest(
        panel,
        names,
        folds=folds,
        params=params,
        budget=budget,
        churned_at=churn_times(data_dir),
        progress=progress,
        oracle=oracle,
        baselines=baselines(names),
        map_folds=map_folds,
        plan=plan,
    )
    return {
        "features": str(features_dir),
        "folds": folds,
        "budget": budget,
        "feature_count": len(names),
        "results": _json_rows(table),
        **_plan_fields(plan),
        "oracle": oracle is not None,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _plan_fields(plan: BacktestPlan) -> dict:
    """What a backtest's JSON says about its plan: horizons left out (with why), notes, the folds."""
    doc = plan.to_dict()
    return {
        "not_evaluated": doc["not_evaluated"],
        "notes": doc["notes"],
        "test_cutoffs_by_horizon": doc["test_cutoffs"],
        "backtest_plan": {
            k: doc[k] for k in ("step_days", "min_train_days", "min_train_cutoffs", "data_end", "history")
        },
    }


def _evaluate_model(
    panel: pd.DataFrame,
    model_uri: str,
    tracking_uri: str | None,
    budget: float,
    churned_at,
    features_dir: Path,
    started: float,
) -> dict:
    """A registered model on out-of-time snapshots: cutoffs at or after the last outcome its training saw."""
    from models import registry
    from models.metrics import score_metrics

    if tracking_uri:
        registry.connect(tracking_uri)
    try:
        model = registry.load_curve(model_uri)
    except Exception as exc:  # MLflow raises several types for a bad URI; the user needs the URI named
        raise InputError(f"--model {model_uri}: could not load it: {exc}") from None
    through = pd.Timestamp(model.info.get("trained_through") or panel["cutoff"].min())
    test = panel[panel["cutoff"] >= through].reset_index(drop=True)
    if not test[list(LABELS)].notna().any().any():
        raise InputError(
            f"--model {model_uri}: its training saw outcomes up to {through.date()} and no snapshot of {features_dir} from then on "
            "has a known outcome yet; evaluate it on snapshots built from newer data"
        )
    curve = model.predict_curve(test)
    end = pd.Timestamp(panel_summary(features_dir).get("data_end") or infer_data_end(panel))
    rows, skipped = [], []
    for k, (h, label) in enumerate(zip(HORIZONS, LABELS, strict=True)):
        known = test[label].notna().to_numpy()
        if not known.any():
            skipped.append(_not_yet_known(h, test["cutoff"].min(), end))
            continue
        frame = pd.DataFrame(
            {
                "account_id": test["account_id"],
                "cutoff": test["cutoff"],
                "y": test[label].astype("float"),
                "score": curve[:, k],
                "arr": test.get("arr_current", pd.Series(np.nan, index=test.index)),
            }
        )[known]
        rows.append(
            {
                "model": "registered",
                "horizon_days": h,
                **score_metrics(frame.assign(y=frame["y"].astype(int)), budget=budget, churned_at=churned_at),
            }
        )
    return {
        "features": str(features_dir),
        "model": model_uri,
        "out_of_time_from": str(through.date()),
        "budget": budget,
        "results": _json_rows(pd.DataFrame(rows)) if rows else [],
        "not_evaluated": [asdict(n) for n in skipped],
        "seconds": round(time.perf_counter() - started, 1),
    }


def _not_yet_known(horizon: int, first: pd.Timestamp, data_end: pd.Timestamp) -> NotEvaluated:
    """A horizon a registered model cannot be scored at: no snapshot after its training outcomes
    has a known outcome at that horizon yet."""
    lacking = (first + pd.Timedelta(days=horizon) - data_end).days
    wait = f"not enough history: needs {lacking} more days (" if lacking > 0 else "("
    return NotEvaluated(
        horizon,
        f"{wait}the first snapshot after the outcomes its training saw, on {first.date()}, has no known {horizon}-day "
        f"outcome; the data end on {data_end.date()})",
        lacking if lacking > 0 else None,
    )


def fingerprint(features_dir: Path) -> str:
    """sha256 over the snapshot files' names and bytes: the same panel gives the same fingerprint."""
    digest = hashlib.sha256()
    for path in sorted((Path(features_dir) / "snapshots").glob("*.parquet")):
        digest.update(path.name.encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


BACKTEST_METRICS = (
    "roc_auc",
    "roc_auc_low",  # its 95% interval (models/metrics.py): how far apart two runs must be to differ
    "roc_auc_high",
    "pr_auc",
    "brier",
    "ece",
    "lift_top_decile",
    "recall_at_budget",
    "arr_recall_at_budget",
    "median_lead_days",
    "churned_accounts",  # how many accounts the figures rest on (models/promotion.py compares none below 10)
)


def backtest_metrics(table: pd.DataFrame) -> dict[str, float]:
    """The backtest table as flat MLflow metrics: backtest.<model>.<metric>_<h>d."""
    out = {}
    for row in table.to_dict("records"):
        for metric in BACKTEST_METRICS:
            value = row.get(metric)
            if value is not None and np.isfinite(value):
                out[metric_key(metric, row["horizon_days"], row["model"])] = float(value)
    return out


def _backtest(
    panel: pd.DataFrame,
    names: list[str],
    config: ModelConfig,
    plan: BacktestPlan,
    data_dir: Path | None,
    progress,
    trainer: BoosterTrainer | None = None,
    map_folds=None,
):
    return run_backtest(
        panel,
        names,
        folds=config.folds,
        params=config.curve,
        budget=config.budget,
        churned_at=churn_times(data_dir),
        progress=progress,
        baselines=baselines(names),
        oracle=oracle_for(data_dir),
        trainer=trainer,
        map_folds=map_folds,
        plan=plan,
    )


def search_params(model: RiskCurveModel) -> dict:
    """MLflow parameters of the capacity search: how many candidates, which won, and its settings."""
    chosen = {f"chosen.{k}": model.params[k] for k in SEARCHABLE if k in model.params}
    return {
        "search_candidates": len(model.info["search"]),
        "chosen_candidate": model.info["chosen"],
        "blended_candidates": ",".join(str(i) for i in model.info["kept"]),
        **chosen,
    }


def search_metrics(model: RiskCurveModel) -> dict[str, float]:
    """Each search candidate's held-out log loss and trees kept (search.<i>.<metric>, i from 0)."""
    out = {}
    for i, candidate in enumerate(model.info["search"]):
        out[f"search.{i}.held_out_loss"] = candidate["held_out_loss"]
        out[f"search.{i}.best_iteration"] = float(np.mean(candidate["best_iteration"]))
    return out


def baseline_better(table: pd.DataFrame, tolerance: float) -> dict[str, dict[str, float]]:
    """Horizons where a baseline's backtest ROC-AUC beats the LightGBM curve's by more than
    `tolerance` (the promotion policy's): {"30": {"lightgbm": 0.756, "logistic": 0.779}}."""
    auc = table.pivot_table(index="horizon_days", columns="model", values="roc_auc")
    better: dict[str, dict[str, float]] = {}
    for h, row in auc.iterrows():
        for name in ("rules", "logistic"):
            if (
                name in row
                and np.isfinite(row[name])
                and np.isfinite(row.get("lightgbm", np.nan))
                and row[name] > row["lightgbm"] + tolerance
            ):
                better.setdefault(str(h), {"lightgbm": round(float(row["lightgbm"]), 4)})[name] = round(
                    float(row[name]), 4
                )
    return better


def baseline_better_lines(better: dict[str, dict[str, float]]) -> list[str]:
    served = {
        "logistic": "the curve is registered as the challenger and the baseline is logged beside it: "
        "`churn promote --model baseline` registers and judges the baseline instead",
        "rules": "the curve is the model that is registered and served (the rules cannot be served)",
    }
    return [
        f"{h} days: the {name} baseline's backtest ROC-AUC {auc:.3f} beats the LightGBM curve's {rows['lightgbm']:.3f}; "
        + served[name]
        for h, rows in better.items()
        for name, auc in rows.items()
        if name != "lightgbm"
    ]


def _unseen_horizons(panel: pd.DataFrame) -> list[str]:
    """Notes for horizons whose outcome no snapshot of the panel knows: the final model's curve
    there extends the shorter intervals and is not calibrated."""
    unseen = [h for h, label in zip(HORIZONS, LABELS, strict=True) if not panel[label].notna().any()]
    return [
        f"{h} days: no snapshot of the panel has a known {h}-day outcome, so the final model's {h}-day probability extends "
        "the shorter horizons' hazards and is not calibrated"
        for h in unseen
    ]


@contextlib.contextmanager
def _trainer(
    dask_address: str | None, snapshots: int, config: ModelConfig, say: Callable[[str], None]
) -> Iterator[BoosterTrainer | None]:
    """lightgbm's Dask estimator on the cluster for a large panel when a Dask address is set, else local."""
    if not dask_address or snapshots < config.dask_min_snapshots:
        yield None
        return
    try:
        from distributed import Client

        from models.dask_training import DaskTrainer
    except ImportError:
        raise InputError(
            f"CHURN_DASK_ADDRESS is set ({dask_address}) but dask is not installed; install the extra: pip install 'churn-platform[dask]'"
        ) from None
    try:
        client = Client(dask_address, timeout=30)
    except OSError as exc:
        raise ChurnError(f"CHURN_DASK_ADDRESS {dask_address}: cannot reach the Dask scheduler ({exc})") from None
    with client:
        say(
            f"training on the Dask cluster at {dask_address} ({len(client.scheduler_info(n_workers=-1)['workers'])} workers): "
            f"{snapshots:,} snapshots >= dask.min_snapshots {config.dask_min_snapshots:,}"
        )
        yield DaskTrainer(client)


def configuration_params(config: Config | ModelConfig) -> dict:
    """The configuration as MLflow parameters, `config.<file>.<key>` (core.config.Config.flat): all
    of it for a `Config`, model.yaml's keys for a `ModelConfig` alone."""
    if isinstance(config, Config):
        flat = config.flat()
    else:
        flat = {k: v for k, v in Config(model=config).flat().items() if k.startswith("model.")}
    return {f"config.{k}": v for k, v in flat.items()}


def run_train(
    features_dir: Path,
    *,
    tracking_uri: str,
    config: Config | ModelConfig,
    progress: Callable[[str], None] | None = None,
    dask_address: str | None = None,
    map_folds=None,
) -> dict:
    """Backtest (the curve, the baselines and, on simulated data, the oracle: what `churn evaluate`
    reports), fit the final curve on every snapshot, log it all to MLflow, register a challenger.
    `config`: the whole configuration (logged with the model as parameters `config.<file>.<key>`
    and the document configuration.json), or model.yaml's alone.
    With `dask_address`, a panel of at least `config.dask_min_snapshots` trains on that cluster.
    `map_folds` runs the backtest folds (models.backtest.run_backtest)."""
    from features.registry import feature_specs
    from models import registry
    from models.explain import by_family, contributions, global_importance
    from models.plots import calibration_figure, explanation_figures, importance_figure

    say = progress or (lambda _line: None)
    started = time.perf_counter()
    configured = configuration_params(config)
    if isinstance(config, Config):
        config = config.model
    features_dir = Path(features_dir)
    panel = read_snapshots(features_dir)
    # a curve fitted on no churn predicts none: refuse rather than register a model that cannot rank
    require_churn(panel, features_dir, "a model learns from churned accounts")
    names = feature_names(panel)
    data_dir = panel_data_dir(features_dir)
    plan = backtest_plan(panel, features_dir, config.folds)
    say(f"panel: {len(panel):,} snapshots x {len(names)} features; backtest with {config.folds} folds per horizon")
    for line in plan.lines():
        say(line)
    with _trainer(dask_address, len(panel), config, say) as trainer:
        table, pooled = _backtest(panel, names, config, plan, data_dir, say, trainer=trainer, map_folds=map_folds)
        say("fitting the final model on every snapshot")
        model = fit_curve(panel, names, config.curve, trainer)
    unseen = _unseen_horizons(panel)
    for note in unseen:
        say(f"note: {note}")
    latest = panel[panel["cutoff"] == panel["cutoff"].max()]
    sample = latest.sample(min(len(latest), 2000), random_state=0)
    contrib = contributions(model, sample, 90)
    specs = feature_specs()
    importance = global_importance(contrib, specs)
    families = (
        by_family(contrib, specs)
        .abs()
        .mean()
        .sort_values(ascending=False)
        .rename("mean_abs_contribution")
        .rename_axis("family")
        .reset_index()
    )
    dictionary_path = features_dir / "feature_dictionary.json"
    test_cutoffs = sorted(str(pd.Timestamp(c).date()) for c in pooled["cutoff"].unique())
    tags = {
        "features_dir": str(features_dir.resolve()),
        "data.fingerprint": fingerprint(features_dir),
        "formulation": config.curve.formulation,
        "backtest.test_cutoffs": json.dumps(test_cutoffs),
        "backtest.folds": str(config.folds),
        "backtest.budget": str(config.budget),
        "backtest.min_train_days": str(plan.min_train_days),
        "backtest.not_evaluated": json.dumps([n["horizon_days"] for n in plan.to_dict()["not_evaluated"]]),
    }
    data_doc = {
        "snapshots": len(panel),
        "accounts": int(panel["account_id"].nunique()),
        "features": names,
        "cutoffs": [str(pd.Timestamp(c).date()) for c in np.sort(panel["cutoff"].unique())],
        "fingerprint": tags["data.fingerprint"],
        "label_rates": {label: float(panel[label].mean()) if panel[label].notna().any() else None for label in LABELS},
        "source": str(data_dir) if data_dir else None,
        "backtest_plan": plan.to_dict(),
    }
    better = baseline_better(table, config.promotion.tolerance)
    for line in baseline_better_lines(better):
        say(f"warning: {line}")
    linear = None
    if any("logistic" in rows for rows in better.values()):
        # the baseline the backtest measured, fitted on every snapshot as the curve is
        say("fitting the logistic baseline on every snapshot, to log it beside the curve")
        linear = LinearCurveModel.from_baseline(baselines(names)["logistic"]().fit(panel), panel)
    say("logging to MLflow")
    registry.connect(tracking_uri)
    logged = registry.log_training(
        model,
        panel=panel,
        params={
            "curve_params": config.curve.model_dump(),
            **{k: v for k, v in config.curve.model_dump().items() if k not in ("monotone", "search")},
            **search_params(model),
            "features": len(names),
            "backtest_folds": config.folds,
            "budget": config.budget,
            **configured,
        },
        metrics={
            **backtest_metrics(table),
            **{f"best_iteration_{i}": b for i, b in enumerate(model.info["best_iteration"])},
            **search_metrics(model),
        },
        tables={
            "backtest": table,
            "importance": importance,
            "family_importance": families,
            "search": pd.DataFrame(model.info["search"]),
        },
        documents={
            "feature_dictionary": json.loads(dictionary_path.read_text()) if dictionary_path.is_file() else {},
            "data_fingerprint": data_doc,
            "model_info": model.info,
            "configuration": configured,
        },
        figures={
            "calibration": calibration_figure(pooled),
            "shap_importance": importance_figure(importance),
            **explanation_figures(model, sample, specs),
        },  # shap's beeswarm at every horizon
        tags=tags,
        baseline=linear,
    )
    lightgbm = {r["horizon_days"]: r for r in _json_rows(table) if r["model"] == "lightgbm"}
    plan_fields = _plan_fields(plan)
    return {
        **logged,
        "features": str(features_dir),
        "snapshots": len(panel),
        "feature_count": len(names),
        "test_cutoffs": test_cutoffs,
        "backtest": _json_rows(table),
        "roc_auc": {str(h): r["roc_auc"] for h, r in lightgbm.items()},
        "ece": {str(h): r["ece"] for h, r in lightgbm.items()},
        "search": model.info["search"],
        "chosen_candidate": model.info["chosen"],
        "blended_candidates": model.info["kept"],
        "baseline_better": better,
        **plan_fields,
        "notes": plan_fields["notes"] + unseen,
        "seconds": round(time.perf_counter() - started, 1),
    }
