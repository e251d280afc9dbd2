"""Prefect flows: the platform's jobs as recorded, resumable flow runs.

Tasks only wire the pipeline functions (pipelines/*.py, which wire the pure code of features/,
models/, escalation/, reports/) and persist their results. A task's cache key is its inputs plus
a fingerprint of the data it reads (file names, sizes and modification times; the snapshot
files' sha256 for training), so a rerun after a failure picks up the finished tasks' persisted
results instead of redoing them, and a change in the data redoes them. I/O-bound tasks retry.

Prefect runs ephemeral by default (no server; PREFECT_API_URL set = that server).

    retrain: features -> train -> evaluate -> promote -> report
    daily:   score (scores, escalations, store) -> alerts -> report
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from core.settings import Settings, load_settings


def _files_fingerprint(folder: Path, pattern: str = "*") -> str:
    """Names, sizes and modification times of a folder's files: cheap, and changes with the data."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob(pattern)):
        if path.is_file() and "/." not in str(path.relative_to(folder)):
            stat = path.stat()
            digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _config_fingerprint(settings: Settings) -> str:
    folder = Path(settings.config_dir)
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.glob("*.yaml")))).hexdigest()


def _key(name: str, parameters: dict, *extra: str) -> str:
    text = json.dumps({k: str(v) for k, v in sorted(parameters.items())}, sort_keys=True)
    return f"{name}-" + hashlib.sha256("|".join([text, *extra]).encode()).hexdigest()[:32]


def _features_key(context, parameters) -> str:
    return _key("features", parameters, _files_fingerprint(Path(parameters["data"])))


def _snapshots_key(name: str):
    def key(context, parameters) -> str:
        from pipelines.models import fingerprint

        settings = load_settings()
        return _key(name, parameters, fingerprint(Path(parameters["features_dir"])), _config_fingerprint(settings), settings.mlflow_tracking_uri)

    return key


@task(name="build features", cache_key_fn=_features_key, persist_result=True, retries=1, retry_delay_seconds=2)
def features_task(data: str, out: str, every: str = "30d", text: bool = True) -> dict:
    from pipelines.features import load_feature_params, run_features
    from pipelines.text import load_sentiment_model, open_cache

    settings = load_settings()
    cache = open_cache(settings.model_copy(update={"data_dir": Path(data)})) if text else None
    try:
        return run_features(Path(data), Path(out), every=every, params=load_feature_params(settings.config_dir),
                            text=(load_sentiment_model(settings), cache) if text else None,
                            progress=lambda step, seconds: get_run_logger().info("features: %s %.1fs", step, seconds))
    finally:
        if cache is not None:
            cache.close()


@task(name="train", cache_key_fn=_snapshots_key("train"), persist_result=True)
def train_task(features_dir: str) -> dict:
    from pipelines.models import load_model_config, run_train

    settings = load_settings()
    return run_train(Path(features_dir), tracking_uri=settings.mlflow_tracking_uri, config=load_model_config(settings.config_dir),
                     progress=get_run_logger().info)


@task(name="evaluate", cache_key_fn=_snapshots_key("evaluate"), persist_result=True)
def evaluate_task(features_dir: str) -> dict:
    from pipelines.models import load_model_config, run_evaluate

    config = load_model_config(load_settings().config_dir)
    return run_evaluate(Path(features_dir), params=config.curve, folds=config.folds, budget=config.budget, progress=get_run_logger().info)


@task(name="promote", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def promote_task(force: bool = False) -> dict:
    from pipelines.models import load_model_config, run_promote

    settings = load_settings()
    return run_promote(tracking_uri=settings.mlflow_tracking_uri, config=load_model_config(settings.config_dir), force=force,
                       progress=get_run_logger().info)


@task(name="score accounts", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def score_task(data: str, out: str, model_uri: str | None = None, text: bool = True) -> dict:
    from pipelines.score import run_score

    return run_score(Path(data), Path(out), settings=load_settings(), model_uri=model_uri, text=text, progress=get_run_logger().info)


@task(name="send alerts", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=5)
def alerts_task() -> dict:
    from escalation.alerts import deliver
    from escalation.policy import load_policy
    from escalation.store import Store

    settings = load_settings()
    policy = load_policy(settings.config_dir)
    with Store(settings.store_url, policy) as store:
        return deliver(store, policy)


@task(name="report", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def report_task(out: str, scores_dir: str, model_uri: str | None = None) -> dict:
    from pipelines.report import run_report

    return run_report(Path(out), settings=load_settings(), scores_dir=Path(scores_dir), model_uri=model_uri, progress=get_run_logger().info)


@flow(name="retrain", log_prints=True)
def retrain(data: str, workdir: str, every: str = "30d", text: bool = True, force_promote: bool = False) -> dict:
    """features -> train -> evaluate -> promote -> score -> report, under `workdir`."""
    work = Path(workdir)
    # a cached result stands for files on disk: if they are gone, build them again
    rebuild = not (work / "features" / "panel_summary.json").is_file()
    features = features_task.with_options(refresh_cache=rebuild)(data, str(work / "features"), every, text)
    trained = train_task(str(work / "features"))
    evaluated = evaluate_task(str(work / "features"))
    promoted = promote_task(force_promote)
    served = None if promoted["promoted"] or promoted["champion"] else trained["model_uri"]
    scored = score_task(data, str(work / "scores"), served, text)
    report = report_task(str(work / "churn_report.html"), str(work / "scores"), served)
    auc = {r["model"]: r["roc_auc"] for r in evaluated["results"] if r["horizon_days"] == 90}
    return {"features": features["snapshots"], "model": trained["model_uri"], "version": trained["version"], "roc_auc_90d": auc.get("lightgbm"),
            "roc_auc_90d_by_model": auc, "promoted": promoted["promoted"], "champion": promoted["champion"], "promotion_reasons": promoted["reasons"],
            "accounts_scored": scored["accounts"], "escalations": scored["escalations"], "report": report["report"],
            "stage_seconds": {"features": features["seconds"], "train": trained["seconds"], "evaluate": evaluated["seconds"],
                              "score": scored["seconds"], "report": report["seconds"]}}


@flow(name="daily-scoring", log_prints=True)
def daily(data: str, workdir: str, text: bool = True) -> dict:
    """The daily run: scores and escalations, alerts sent, the report refreshed."""
    work = Path(workdir)
    scored = score_task(data, str(work / "scores"), None, text)
    sent = alerts_task()
    report = report_task(str(work / "churn_report.html"), str(work / "scores"), None)
    return {"accounts": scored["accounts"], "escalations": scored["escalations"], "alerts": sent, "report": report["report"]}
