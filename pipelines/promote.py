"""`churn promote`: move the champion alias to the challenger when it wins on the same backtest."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from core.config.model import ModelConfig
from core.errors import ChurnError, InputError
from models.backtest import MIN_TRAIN_DAYS, run_backtest
from models.curve import CurveParams
from models.promotion import decide
from pipelines.features import read_snapshots
from pipelines.models import (
    backtest_metrics,
    backtest_plan,
    baselines,
    churn_times,
    feature_names,
    fingerprint,
    panel_data_dir,
)

PROMOTABLE = ("curve", "baseline")


def run_promote(
    *,
    tracking_uri: str,
    config: ModelConfig,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    model: str = "curve",
) -> dict:
    """Move `champion` to the challenger if it wins on the same backtest (or with force); say why not.
    `model="baseline"`: the candidate is the logistic baseline the challenger's run logged (where
    it beat the curve), registered now as a version of its own and judged on its own backtest rows."""
    from models import registry

    if model not in PROMOTABLE:
        raise InputError(f"--model {model}: expected one of {', '.join(PROMOTABLE)}")
    say = progress or (lambda _line: None)
    registry.connect(tracking_uri)
    challenger = registry.version_info(registry.CHALLENGER)
    if challenger is None:
        raise ChurnError(
            f"no model version has the alias '{registry.CHALLENGER}' in {tracking_uri}: run `churn train` first"
        )
    source = None
    if model == "baseline":
        source = challenger["version"]
        version = registry.register_baseline(challenger)
        say(f"the logistic baseline logged with version {source}'s run is version {version}")
        challenger = registry.describe(registry.version_uri(version))
        if challenger is None:
            raise ChurnError(f"version {version} of {registry.MODEL_NAME} vanished while being promoted")
    champion = registry.version_info(registry.CHAMPION)
    kinds = {"challenger_model": registry.model_kind(challenger), "champion_model": registry.model_kind(champion)}
    result = {
        "challenger": challenger["version"],
        "model_kind": kinds["challenger_model"],
        "source_version": source,
        "champion_before": champion["version"] if champion else None,
        "forced": force,
    }
    if champion and champion["version"] == challenger["version"]:
        return {
            **result,
            "promoted": False,
            "champion": champion["version"],
            "reasons": ["the challenger already is the champion"],
            "notes": [],
            "comparison": [],
        }
    champion_metrics = champion["metrics"] if champion else None
    basis = "no champion yet"
    if champion:
        same = all(
            champion["tags"].get(k) == challenger["tags"].get(k)
            for k in ("data.fingerprint", "backtest.test_cutoffs", "backtest.budget")
        )
        basis = "both runs' logged backtests (same snapshots and test cutoffs)"
        if not same:
            champion_metrics, basis = _rebacktest_champion(champion, challenger, config, say)
    decision = decide(challenger["metrics"], champion_metrics, config.promotion, **kinds)
    if champion is None and decision["against"]:
        basis += f": the challenger against {decision['against']}"
    promoted = decision["promote"] or force
    record = {
        "decided_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "forced": force and not decision["promote"],
        "basis": basis,
        "previous_champion": result["champion_before"],
        "reasons": decision["reasons"],
        "policy": config.promotion.model_dump(),
    }
    if promoted:
        registry.move_champion(challenger["version"], decision=record)
    else:
        registry.record_refusal(challenger["version"], record)
    return {
        **result,
        "promoted": promoted,
        "champion": challenger["version"] if promoted else result["champion_before"],
        "basis": basis,
        "reasons": decision["reasons"],
        "notes": decision["notes"],
        "comparison": decision["comparison"],
        "policy": config.promotion.model_dump(),
    }


def _rebacktest_champion(
    champion: dict, challenger: dict, config: ModelConfig, say: Callable[[str], None]
) -> tuple[dict, str]:
    """The champion's training configuration backtested on the challenger's snapshots and folds."""
    features_dir = Path(challenger["tags"].get("features_dir", ""))
    if not (features_dir / "snapshots").is_dir():
        raise ChurnError(
            f"the champion (version {champion['version']}) was backtested on other snapshots and the challenger's features "
            f"folder {features_dir} is gone, so the two cannot be compared on the same backtest; rebuild it or use --force"
        )
    if fingerprint(features_dir) != challenger["tags"].get("data.fingerprint"):
        raise ChurnError(
            f"the challenger's features folder {features_dir} changed since it was trained; retrain, or use --force"
        )
    params = CurveParams(**json.loads(champion["params"]["curve_params"]))
    say(
        f"champion version {champion['version']} was backtested on other snapshots: backtesting its configuration on the challenger's"
    )
    panel = read_snapshots(features_dir)
    names = feature_names(panel)
    folds = int(challenger["tags"].get("backtest.folds", config.folds))
    budget = float(challenger["tags"].get("backtest.budget", config.budget))
    # the challenger's plan: the same folds and history rule give the same test cutoffs
    plan = backtest_plan(
        panel, features_dir, folds, int(challenger["tags"].get("backtest.min_train_days", MIN_TRAIN_DAYS))
    )
    from models import registry

    logistic = {"logistic": baselines(names)["logistic"]} if registry.model_kind(champion) == "logistic" else None
    table, _ = run_backtest(
        panel,
        names,
        folds=folds,
        params=params,
        budget=budget,
        churned_at=churn_times(panel_data_dir(features_dir)),
        progress=say,
        plan=plan,
        baselines=logistic,  # a served logistic baseline is judged on its own rows
    )
    return backtest_metrics(
        table
    ), "the champion's configuration re-backtested on the challenger's snapshots and test cutoffs"
