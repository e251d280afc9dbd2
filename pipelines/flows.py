"""Prefect flows: the platform's jobs as recorded, resumable flow runs.

Every command that does pipeline work (`churn features`, `train`, `evaluate`, `score`, `report`,
`retrain`, `demo`) runs one of these flows, so every run is recorded. Tasks only wire the pipeline
functions (pipelines/*.py, which wire the pure code of features/, models/, escalation/, reports/)
and persist their results. I/O-bound tasks retry, except on bad input (it would fail again).

Resuming: in `retrain` each stage is keyed on its inputs. The snapshot panel records the key of
the data, parameters and text model it was built from, and a rerun with the same key reuses it
(deleting the folder builds it again); training and evaluation results are persisted under a key
made of their parameters, the snapshot files' sha256, the configuration and the tracking URI. A
rerun after a failure therefore picks up where the failed run stopped. A standalone command
(`churn train`, ...) always does the work it is asked for.

Fan-out: the feature blocks (accounts, every cutoff of each) and the backtest folds (one test
cutoff each) run as one task each on the flow's task runner: threads here, or the workers of a
Dask cluster when CHURN_DASK_ADDRESS is set (then large training also runs on the cluster,
through lightgbm's Dask estimator).

The CLI points the flows at a Prefect API first (pipelines/prefect_server.py): the user's
PREFECT_API_URL, else a local server shared by every command.

Stopping: a flow interrupted by a signal does not wait for the tasks still running on its threads
(a text block can take a minute); their outputs go to temporary paths that the interrupted run
removes, and the CLI ends the process (pipelines/cli.py).

    build-features -> train (its backtest is the evaluation) -> promote -> score-accounts -> report   (retrain)
    score-accounts (scores, escalations, store, monitors, alerts) -> report       (daily-scoring)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from core.config import Config, load_config
from core.errors import ChurnError, InputError
from core.settings import Settings, load_settings
from core.urls import absolute_url

#: Called with (step, done, total) as fanned-out work completes; the CLI draws a progress bar.
_progress_hook: Callable[[str, int, int], None] | None = None


@contextmanager
def progress_to(hook: Callable[[str, int, int], None]) -> Iterator[None]:
    """Report block progress of the flows run inside this block to `hook`."""
    global _progress_hook
    previous, _progress_hook = _progress_hook, hook
    try:
        yield
    finally:
        _progress_hook = previous


def task_runner(settings: Settings):
    """The task runner of the fanned-out flows: Dask workers when CHURN_DASK_ADDRESS is set, else
    threads (`CHURN_WORKERS` at a time)."""
    if settings.dask_address:
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise InputError(
                f"CHURN_DASK_ADDRESS is set ({settings.dask_address}) but prefect-dask is not installed; "
                "install the extra: pip install 'churn-platform[dask]'"
            ) from None
        return DaskTaskRunner(address=settings.dask_address)
    return _ThreadsLetGo(max_workers=settings.workers)


class _ThreadsLetGo(ThreadPoolTaskRunner):
    """Threads whose runner, when the flow is cancelled or crashes (a signal), drops the queued tasks
    and returns at once instead of waiting for the running ones (Prefect's waits)."""

    def cancel_all(self) -> None:
        for event in self._cancel_events.values():
            event.set()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _retry_unless_bad_input(task, task_run, state) -> bool:
    """Retry transient failures; bad input fails again, so it fails now."""
    try:
        state.result()
    except ChurnError:
        return False
    except Exception:  # noqa: BLE001 - anything else may be transient
        return True
    return True


def _files_fingerprint(folder: Path, pattern: str = "*") -> str:
    """Names, sizes and modification times of a folder's files: cheap, and changes with the data."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob(pattern)):
        if path.is_file() and "/." not in str(path.relative_to(folder)):
            stat = path.stat()
            digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


#: Task parameters that are the entry point's settings and configuration, passed down: a key takes
#: the configuration's fingerprint and the tracking URI from them, never their text (tokens).
_PASSED_DOWN = ("settings", "config")


def _key(name: str, parameters: dict, *extra: str) -> str:
    shown = {k: str(v) for k, v in sorted(parameters.items()) if k not in _PASSED_DOWN}
    text = json.dumps(shown, sort_keys=True)
    return f"{name}-" + hashlib.sha256("|".join([text, *extra]).encode()).hexdigest()[:32]


def _snapshots_key(name: str):
    def key(context, parameters) -> str:
        from pipelines.models import fingerprint

        settings, config = parameters["settings"], parameters["config"]
        folder = Path(parameters["features_dir"])
        # the folder's absolute path: another work folder (or a fresh clone) with the same relative path is another key
        return _key(
            name,
            parameters | {"features_dir": folder.resolve()},
            fingerprint(folder),
            config.fingerprint,
            absolute_url(settings.mlflow_tracking_uri),
        )

    return key


def _resumable(task_, resume: bool):
    """`task_` reusing a persisted result with the same key (resume), or doing the work and persisting it."""
    return task_ if resume else task_.with_options(refresh_cache=True)


def _still_registered(trained: dict, settings: Settings) -> bool:
    """A reused training result stands for a model version: is it still in the registry?"""
    from models import registry

    registry.connect(settings.mlflow_tracking_uri)
    described = registry.describe(trained["model_uri"])
    return described is not None and described.get("run_id") == trained["run_id"]


def _say(line: str) -> None:
    get_run_logger().info(line)


@task(
    name="job",
    task_run_name="{fn.__name__} {job.index}",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=_retry_unless_bad_input,
)
def job_task(fn: Callable[[Any], dict], job: Any) -> dict:
    return fn(job)


def _map_jobs(fn: Callable[[Any], dict], jobs: list) -> list:
    """core.mapping.Mapper over the flow's task runner, one task per job: feature blocks
    (pipelines.features.run_features) and backtest folds (models.backtest.run_backtest). Called
    from a task, the jobs still go to the flow's runner (threads, or the Dask workers)."""
    futures = job_task.map(unmapped(fn), jobs)
    results = []
    for done, future in enumerate(futures, 1):
        results.append(future.result())
        if _progress_hook is not None:
            _progress_hook(fn.__name__.replace("_", " "), done, len(jobs))
    return results


def _features_key(
    data: Path, every: str, text: bool, start: str | None, end: str | None, settings: Settings, config: Config
) -> str:
    from text.loading import head_path

    head = head_path(settings.model_copy(update={"data_dir": data}))
    model = (
        f"{settings.sentiment_model}:{head}:{head.stat().st_mtime_ns if head.is_file() else 'shipped'}"
        if text
        else "none"
    )
    return _key(
        "features",
        {"every": every, "text": text, "start": start, "end": end},
        _files_fingerprint(data),
        config.fingerprint,
        model,
    )


@flow(name="build-features", log_prints=True)
def build_features(
    data: str,
    out: str,
    every: str = "30d",
    text: bool = True,
    start: str | None = None,
    end: str | None = None,
    resume: bool = False,
) -> dict:
    """The snapshot panel; blocks of accounts fan out over the task runner. With `resume`, a panel
    already built from the same data, parameters and text model is reused."""
    from core.io import write_json
    from pipelines import features as feat
    from text.loading import text_source

    settings = load_settings()
    config = load_config(settings.config_dir)
    key = _features_key(Path(data), every, text, start, end, settings, config)
    if resume and (Path(out) / "snapshots").is_dir():
        summary = feat.panel_summary(out)
        if summary.get("inputs_key") == key:
            _say(f"features: reusing the panel in {out} (built from the same data, parameters and text model)")
            return summary
    with text_source(settings, Path(data), text) as source:
        summary = feat.run_features(
            Path(data),
            Path(out),
            start=start,
            end=end,
            every=every,
            params=config.features,
            text=source,
            progress=lambda step, seconds: _say(f"features: {step} {seconds:.1f}s"),
            map_blocks=_map_jobs,
        )
    summary["inputs_key"] = key
    write_json(summary, Path(out) / feat.PANEL_SUMMARY)
    return summary


@task(name="train", cache_key_fn=_snapshots_key("train"), persist_result=True)
def train_task(features_dir: str, settings: Settings, config: Config) -> dict:
    from pipelines.models import run_train

    return run_train(
        Path(features_dir),
        tracking_uri=settings.mlflow_tracking_uri,
        config=config,
        progress=get_run_logger().info,
        dask_address=settings.dask_address,
        map_folds=_map_jobs,
    )


@flow(name="train", log_prints=True)
def train(features_dir: str, resume: bool = False) -> dict:
    """Backtest, final fit, MLflow logging; registers the challenger. With `resume`, a result with
    the same key is reused while its model version is still registered."""
    settings = load_settings()
    config = load_config(settings.config_dir)
    trained = _resumable(train_task, resume)(features_dir, settings, config)
    if resume and not _still_registered(trained, settings):
        _say(
            f"the reused training result names {trained['model_uri']} (run {trained['run_id']}), no longer in the registry: training again"
        )
        trained = _resumable(train_task, False)(features_dir, settings, config)
    return trained


@task(name="evaluate", cache_key_fn=_snapshots_key("evaluate"), persist_result=True)
def evaluate_task(
    features_dir: str,
    folds: int | None,
    budget: float | None,
    model_uri: str | None,
    settings: Settings,
    config: Config,
) -> dict:
    from pipelines.models import run_evaluate

    model = config.model
    return run_evaluate(
        Path(features_dir),
        params=model.curve,
        folds=model.folds if folds is None else folds,
        budget=model.budget if budget is None else budget,
        progress=get_run_logger().info,
        model_uri=model_uri,
        tracking_uri=settings.mlflow_tracking_uri,
        map_folds=_map_jobs,
    )


@flow(name="evaluate", log_prints=True)
def evaluate(
    features_dir: str,
    folds: int | None = None,
    budget: float | None = None,
    model_uri: str | None = None,
    resume: bool = False,
) -> dict:
    """The backtest against the baselines, or a registered model scored out of time."""
    settings = load_settings()
    config = load_config(settings.config_dir)
    return _resumable(evaluate_task, resume)(features_dir, folds, budget, model_uri, settings, config)


@task(
    name="promote", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2, retry_condition_fn=_retry_unless_bad_input
)
def promote_task(force: bool, settings: Settings, config: Config) -> dict:
    from pipelines.promote import run_promote

    return run_promote(
        tracking_uri=settings.mlflow_tracking_uri,
        config=config.model,
        force=force,
        progress=get_run_logger().info,
    )


@flow(name="promote", log_prints=True)
def promote(force: bool = False) -> dict:
    """Move the champion alias to the challenger if it wins (the decision is recorded either way)."""
    settings = load_settings()
    return promote_task(force, settings, load_config(settings.config_dir))


@task(
    name="score accounts",
    cache_policy=NO_CACHE,
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=_retry_unless_bad_input,
)
def score_task(
    data: str, out: str, model_uri: str | None, text: bool, as_of: str | None, settings: Settings, config: Config
) -> dict:
    from pipelines.score import run_score

    return run_score(
        Path(data),
        Path(out),
        settings=settings,
        config=config,
        as_of=as_of,
        model_uri=model_uri,
        text=text,
        progress=get_run_logger().info,
    )


@task(
    name="send alerts",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=5,
    retry_condition_fn=_retry_unless_bad_input,
)
def alerts_task(settings: Settings, config: Config) -> dict:
    from escalation.alerts import deliver
    from escalation.store import Store

    policy = config.escalation
    with Store(settings.store_url, policy) as store:
        return deliver(store, policy)


@task(name="monitor", cache_policy=NO_CACHE)
def monitor_task(out: str, settings: Settings, config: Config) -> dict:
    from pipelines.monitor import run_monitors

    return run_monitors(Path(out), settings=settings, config=config, progress=get_run_logger().info)


def _monitored(out: str, settings: Settings, config: Config) -> dict:
    """The monitors on the run's output; a monitor that fails is reported in the result and does
    not hold back the run's escalation alerts."""
    state = monitor_task(out, settings, config, return_state=True)
    if state.is_completed():
        return state.result()
    error = state.result(raise_on_failure=False)
    get_run_logger().warning(f"monitoring failed: {error}")
    return {"error": str(error)}


@flow(name="score-accounts", log_prints=True)
def score_accounts(
    data: str,
    out: str,
    model_uri: str | None = None,
    text: bool = True,
    as_of: str | None = None,
    send_alerts: bool = True,
    monitor: bool = True,
) -> dict:
    """The daily batch: risk curves, reasons, escalations into the store; the monitors (drift,
    scores, calibration; their breaches queued as alerts); then the alert outbox flushed."""
    settings = load_settings()
    config = load_config(settings.config_dir)  # a bad configuration fails before any work
    scored = score_task(data, out, model_uri, text, as_of, settings, config)
    if monitor:
        scored = scored | {"monitoring": _monitored(out, settings, config)}
    if send_alerts:
        scored = scored | {"alerts": alerts_task(settings, config)}
    return scored


@task(
    name="report", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2, retry_condition_fn=_retry_unless_bad_input
)
def report_task(out: str, scores_dir: str | None, model_uri: str | None, settings: Settings, config: Config) -> dict:
    from pipelines.report import run_report

    return run_report(
        Path(out),
        settings=settings,
        config=config,
        scores_dir=Path(scores_dir) if scores_dir else None,
        model_uri=model_uri,
        progress=get_run_logger().info,
    )


@flow(name="report", log_prints=True)
def report(out: str, scores_dir: str | None = None, model_uri: str | None = None) -> dict:
    """The leadership report (HTML), also logged to the model's MLflow run."""
    settings = load_settings()
    return report_task(out, scores_dir, model_uri, settings, load_config(settings.config_dir))


@flow(name="simulate", log_prints=True)
def simulate(
    out: str, accounts: int = 2000, days: int = 730, seed: int = 42, start: str = "2024-01-01", churn_rate: float = 0.12
) -> dict:
    """A simulated customer base with known ground truth."""
    import datetime as dt

    from simulation.config import SimulationConfig
    from simulation.simulate import simulate as run

    config = SimulationConfig(
        accounts=accounts, days=days, seed=seed, start=dt.date.fromisoformat(start), annual_churn_rate=churn_rate
    )

    def progress(done: int, total: int) -> None:
        if _progress_hook is not None:
            _progress_hook("simulate", done, total)

    return run(config, Path(out), progress=progress).to_dict()


@flow(name="retrain", log_prints=True)
def retrain(data: str, workdir: str, every: str = "30d", text: bool = True, force_promote: bool = False) -> dict:
    """features -> train -> promote -> score -> report, under `workdir`; a rerun resumes. The
    training backtest is the evaluation (the curve, the baselines and the oracle on the same folds):
    a separate evaluate stage would train every fold again."""
    work = Path(workdir)
    settings = load_settings()
    runner = task_runner(settings)
    features = build_features.with_options(task_runner=runner)(data, str(work / "features"), every, text, resume=True)
    trained = train.with_options(task_runner=runner)(str(work / "features"), resume=True)
    promoted = promote(force_promote)
    served = None if promoted["promoted"] or promoted["champion"] else trained["model_uri"]
    scored = score_accounts(data, str(work / "scores"), served, text, send_alerts=False)
    written = report(str(work / "churn_report.html"), str(work / "scores"), served)
    auc = {r["model"]: r["roc_auc"] for r in trained["backtest"] if r["horizon_days"] == 90}
    return {
        "features": features["snapshots"],
        "model": trained["model_uri"],
        "version": trained["version"],
        "roc_auc_90d": auc.get("lightgbm"),
        "roc_auc_90d_by_model": auc,
        "promoted": promoted["promoted"],
        "champion": promoted["champion"],
        "promotion_reasons": promoted["reasons"],
        "accounts_scored": scored["accounts"],
        "escalations": scored["escalations"],
        "report": written["report"],
        "stage_seconds": {
            "features": features["seconds"],
            "train": trained["seconds"],
            "score": scored["seconds"],
            "report": written["seconds"],
        },
    }


@flow(name="daily-scoring", log_prints=True)
def daily(data: str, workdir: str, text: bool = True) -> dict:
    """The daily run: scores and escalations, alerts sent, the report refreshed."""
    work = Path(workdir)
    scored = score_accounts(data, str(work / "scores"), None, text, send_alerts=True)
    written = report(str(work / "churn_report.html"), str(work / "scores"), None)
    return {
        "accounts": scored["accounts"],
        "escalations": scored["escalations"],
        "alerts": scored["alerts"],
        "report": written["report"],
    }
