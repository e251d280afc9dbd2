"""The `churn` command line.

Contract (DESIGN.md): `--json` prints one JSON document on stdout and nothing else there; progress
and logs go to stderr. Exit status 0 on success, 2 on bad input, 1 on other failures. Every failure
a user can meet is one clear message, never a traceback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from rich.console import Console

from core.errors import ChurnError, InputError
from pipelines.escalations_cli import escalations, follow_ups
from pipelines.output import emit as _emit
from pipelines.output import err, json_option

log = logging.getLogger("churn")


@contextlib.contextmanager
def _progress_bar() -> Iterator[None]:
    """A progress bar per fanned-out step of the flows run inside (blocks of accounts, ...)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from pipelines.flows import progress_to

    with Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err,
                  transient=True) as bar:
        steps: dict[str, Any] = {}

        def hook(step: str, done: int, total: int) -> None:
            if step not in steps:
                steps[step] = bar.add_task(step, total=total)
            bar.update(steps[step], completed=done)

        with progress_to(hook):
            yield


@contextlib.contextmanager
def _prefect(settings=None) -> Iterator[str]:
    """Flows inside this block record their runs in the user's Prefect server (PREFECT_API_URL) or
    the local one all commands share, started by the first (pipelines/prefect_server.py)."""
    from core.settings import load_settings
    from pipelines.prefect_server import prefect_api

    with prefect_api(settings or load_settings(), say=err.print) as url:
        yield url


def _require_features(features_dir: Path) -> None:
    if not any((Path(features_dir) / "snapshots").glob("*.parquet")):
        raise InputError(f"--features {features_dir}: no snapshots/*.parquet; expected the output of `churn features`")


def _config_error(exc: ValidationError, flags: dict[str, str]) -> InputError:
    problems = []
    for e in exc.errors():
        field = str(e["loc"][0]) if e["loc"] else "config"
        got = f" (got {e['input']!r})" if "input" in e and not isinstance(e["input"], dict) else ""
        problems.append(f"{flags.get(field, field)}: {e['msg']}{got}")
    return InputError("; ".join(problems))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="churn-platform", prog_name="churn")
def app() -> None:
    """Churn risk, explanations and support-to-CS escalation for B2B SaaS."""


@app.command()
@click.option("--accounts", type=int, default=2000, show_default=True, help="Number of accounts to simulate.")
@click.option("--days", type=int, default=730, show_default=True, help="Length of the observed window in days.")
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed; the same seed gives identical files.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("data/simulated"), show_default=True,
              help="Folder to write the input tables and truth/ into (other files there are left alone).")
@click.option("--start", default="2024-01-01", show_default=True, help="First day of the window (YYYY-MM-DD, UTC).")
@click.option("--churn-rate", type=float, default=0.12, show_default=True, help="Target yearly churn rate of the base.")
@json_option
def simulate(accounts: int, days: int, seed: int, out: Path, start: str, churn_rate: float, as_json: bool) -> None:
    """Simulate a customer base with known ground truth (input tables + truth/)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from simulation.config import SimulationConfig
    from simulation.simulate import simulate as run

    try:
        start_date = dt.date.fromisoformat(start)
    except ValueError:
        raise InputError(f"--start {start!r}: expected a date as YYYY-MM-DD") from None
    try:
        config = SimulationConfig(accounts=accounts, days=days, seed=seed, start=start_date, annual_churn_rate=churn_rate)
    except ValidationError as exc:
        flags = {"accounts": "--accounts", "days": "--days", "seed": "--seed", "annual_churn_rate": "--churn-rate"}
        raise _config_error(exc, flags) from None
    with Progress("simulating", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task("simulate", total=accounts)
        summary = run(config, out, progress=lambda done, total: bar.update(task, completed=done))
    rows = ", ".join(f"{k}={v:,}" for k, v in summary.rows.items())
    _emit(
        summary.to_dict(),
        as_json,
        f"simulated {summary.accounts:,} accounts x {summary.days} days into {out} in {summary.seconds:.1f}s: "
        f"{summary.churned:,} churned (yearly rate {summary.annual_churn_rate:.1%}); {rows}",
    )


@app.command()
@click.option("--mapping", type=click.Path(path_type=Path), required=True,
              help="YAML mapping file: where each table comes from (paths in it are relative to it).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder to write <table>.parquet into (written only if every table meets its contract; other files left alone).")
@json_option
def ingest(mapping: Path, out: Path, as_json: bool) -> None:
    """Turn exports (CRM, billing, help desk, product events) into validated contract tables."""
    from ingest.run import run_ingest

    summary = run_ingest(mapping, out, progress=lambda line: err.print(f"  {line}"))
    for note in summary["notes"]:
        err.print(f"note: {note}")
    rows = ", ".join(f"{table}={count:,}" for table, count in summary["tables"].items())
    _emit(summary, as_json, f"ingested {len(summary['sources'])} source(s) into {out} in {summary['seconds']:.1f}s: {rows}")


@app.command()
@click.option("--data", type=click.Path(path_type=Path), default=Path("data/simulated"), show_default=True,
              help="Folder with the input tables (<table>.parquet or <table>.csv).")
@json_option
def validate(data: Path, as_json: bool) -> None:
    """Check a data folder against the input table contracts (exit 2 listing every broken rule)."""
    from core.contracts import load_tables

    started = time.perf_counter()
    loaded = load_tables(data)
    for note in loaded.notes:
        err.print(f"note: {note}")
    rows = {name: len(frame) for name, frame in loaded.tables.items()}
    _emit(
        {"data": str(data), "valid": True, "rows": rows, "notes": loaded.notes, "seconds": round(time.perf_counter() - started, 2)},
        as_json,
        f"{data}: all {len(rows)} tables meet their contracts (" + ", ".join(f"{k}={v:,}" for k, v in rows.items()) + ")",
    )


@app.command()
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Folder with the input tables [default: CHURN_DATA_DIR].")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder to write snapshots/ and feature_dictionary.json into.")
@click.option("--start", default=None, help="First cutoff (YYYY-MM-DD) [default: 120 days after the first day of data].")
@click.option("--end", default=None, help="Last cutoff (YYYY-MM-DD) [default: the end of the data].")
@click.option("--every", default="30d", show_default=True, help="Spacing of cutoffs: days or weeks, e.g. 30d, 7d, 2w.")
@click.option("--text/--no-text", default=True, show_default=True, help="Compute text signals (sentiment, critical moments, rephrasings) with the sentiment model.")
@json_option
def features(data: Path | None, out: Path, start: str | None, end: str | None, every: str, text: bool, as_json: bool) -> None:
    """Build the point-in-time snapshot panel (features + censored labels)."""
    from core.settings import load_settings
    from features.panel import parse_every
    from pipelines.flows import build_features, task_runner

    settings = load_settings()
    data = data or settings.data_dir
    parse_every(every)  # bad flags fail before the flow starts
    with _prefect(settings), _progress_bar():
        summary = build_features.with_options(task_runner=task_runner(settings))(str(data), str(out), every, text, start, end)
    rates = ", ".join(f"{k.removeprefix('churned_within_')}={v:.2%}" for k, v in summary["label_rates"].items() if v is not None)
    _emit(
        summary,
        as_json,
        f"{summary['snapshots']:,} snapshots of {summary['accounts']:,} accounts at {len(summary['cutoffs'])} cutoffs "
        f"({summary['cutoffs'][0]} .. {summary['cutoffs'][-1]}), {summary['features']} features, churn rates {rates}; "
        f"written to {out}/snapshots/ in {summary['seconds']:.1f}s",
    )


@app.command()
@click.option("--features", "features_dir", type=click.Path(path_type=Path), required=True, help="Output folder of `churn features`.")
@click.option("--folds", type=int, default=None, help="Rolling-origin folds [default: config/model.yaml].")
@click.option("--budget", type=float, default=None, help="Share of accounts CS can work each cutoff [default: config/model.yaml].")
@click.option("--model", "model_uri", default=None, help="Score this trained model (e.g. models:/churn-risk@champion) on the snapshots after its training outcomes.")
@click.option("--escalations-horizon", "escalations_horizon", type=click.Choice(["30", "60", "90", "180"]), default="90", show_default=True,
              help="Days after an escalation opened in which churn counts (the `escalations` block, from CHURN_STORE_URL).")
@json_option
def evaluate(features_dir: Path, folds: int | None, budget: float | None, model_uri: str | None, escalations_horizon: str, as_json: bool) -> None:
    """Backtest the risk curve against the rules and logistic baselines (and the oracle on simulated data)."""
    from core.settings import load_settings
    from pipelines.flows import evaluate as evaluate_flow
    from pipelines.models import load_model_config

    settings = load_settings()
    config = load_model_config(settings.config_dir)
    folds = folds if folds is not None else config.folds
    budget = budget if budget is not None else config.budget
    if folds < 1:
        raise InputError(f"--folds {folds}: expected at least 1")
    if not 0 < budget < 1:
        raise InputError(f"--budget {budget}: expected a share between 0 and 1, e.g. 0.05")
    _require_features(features_dir)
    from pipelines.flows import task_runner

    with _prefect(settings):
        result = evaluate_flow.with_options(task_runner=task_runner(settings))(str(features_dir), folds, budget, model_uri)
    result["escalations"] = _escalations_outcomes(features_dir, settings, model_uri, int(escalations_horizon))
    if as_json:
        _emit(result, True, "")
        return
    from rich.table import Table

    title = (f"{model_uri} on snapshots from {result['out_of_time_from']}" if model_uri else f"backtest: up to {folds} folds per horizon") + \
        f", CS budget {budget:.0%} of accounts per cutoff"
    table = Table(title=title)
    for col in ("model", "horizon", "folds", "ROC-AUC", "PR-AUC", "Brier", "ECE", "lift@10%", "recall@budget", "ARR recall", "lead days"):
        table.add_column(col)
    fmt = lambda v, d=3: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
    for r in result["results"]:
        table.add_row(r["model"], f"{r['horizon_days']}d", str(r.get("folds", "-")), fmt(r["roc_auc"]), fmt(r["pr_auc"]), fmt(r["brier"], 4),
                      fmt(r["ece"], 4), fmt(r["lift_top_decile"], 2), fmt(r["recall_at_budget"]), fmt(r.get("arr_recall_at_budget")),
                      fmt(r.get("median_lead_days"), 0))
    Console(stderr=True, width=max(err.width, 150)).print(table)
    _print_backtest_notes(result)
    from pipelines.outcomes import human_lines

    for line in human_lines(result["escalations"]):
        err.print(line)


def _escalations_outcomes(features_dir: Path, settings, model_uri: str | None, horizon: int) -> dict:
    """The store's escalations joined to what happened next (pipelines/outcomes.py), logged to the
    evaluated model's MLflow run (--model, else the served one) when it has one."""
    from pipelines.outcomes import _missing_sqlite, evaluate_block, log_block

    block = evaluate_block(features_dir, settings.store_url, horizon)
    uri = model_uri or settings.model_uri
    logged = None if _missing_sqlite(settings.mlflow_tracking_uri) else log_block(block, tracking_uri=settings.mlflow_tracking_uri, model_uri=uri)
    return {**block, "mlflow_run": logged}


def _print_backtest_notes(result: dict) -> None:
    """What the backtest could not evaluate, and why (the same lines as the JSON's)."""
    for n in result.get("not_evaluated", []):
        err.print(f"{n['horizon_days']} days not evaluated: {n['reason']}")
    for note in result.get("notes", []):
        err.print(f"note: {note}")
    for r in result["results"]:
        if r.get("note"):
            err.print(f"note: {r['model']} {r['horizon_days']}d: {r['note']}")


@app.command()
@click.option("--features", "features_dir", type=click.Path(path_type=Path), required=True, help="Output folder of `churn features`.")
@json_option
def train(features_dir: Path, as_json: bool) -> None:
    """Backtest, fit the risk curve on every snapshot, log to MLflow and register it as the challenger."""
    from core.settings import load_settings
    from pipelines.flows import task_runner
    from pipelines.flows import train as train_flow
    from pipelines.models import load_model_config

    settings = load_settings()
    load_model_config(settings.config_dir)  # a bad configuration fails before the flow starts
    _require_features(features_dir)
    with _prefect(settings):
        result = train_flow.with_options(task_runner=task_runner(settings))(str(features_dir))
    auc = ", ".join(f"{h}d {v:.3f}" for h, v in result["roc_auc"].items() if v is not None)
    skipped = ", ".join(f"{n['horizon_days']}d" for n in result.get("not_evaluated", []))
    _emit(result, as_json, f"registered {result['model_uri']} (alias {result['alias']}, run {result['run_id']}) in {result['seconds']:.0f}s; "
                           f"backtest ROC-AUC {auc}" + (f"; not evaluated: {skipped} (not enough history)" if skipped else "")
                           + "; `churn promote` makes it the champion if it wins")


@app.command()
@click.option("--force", is_flag=True, help="Promote even if the challenger does not win (recorded on the model version).")
@json_option
def promote(force: bool, as_json: bool) -> None:
    """Move the `champion` alias to the challenger if it wins on the same backtest and is calibrated (exit 1 if refused)."""
    from core.settings import load_settings
    from pipelines.models import load_model_config, run_promote

    settings = load_settings()
    result = run_promote(tracking_uri=settings.mlflow_tracking_uri, config=load_model_config(settings.config_dir), force=force,
                         progress=lambda line: err.print(f"  {line}"))
    if result["promoted"]:
        human = f"version {result['challenger']} is now the champion" + (" (forced: " + "; ".join(result["reasons"]) + ")" if result["reasons"] else "")
    else:
        human = f"refused to promote version {result['challenger']}: " + "; ".join(result["reasons"])
    _emit(result, as_json, human)
    if not result["promoted"]:
        raise click.exceptions.Exit(1)


@app.command()
@click.option("--reason", required=True, help="Why the champion is rolled back (recorded on both model versions).")
@click.option("--by", "by", default=None, help="Who rolls it back (recorded) [default: the login name].")
@json_option
def rollback(reason: str, by: str | None, as_json: bool) -> None:
    """Move the `champion` alias back to the version it replaced (else the highest version below it); a running API swaps to it on its next poll."""
    import getpass

    from core.settings import load_settings
    from models import registry

    if not reason.strip():
        raise InputError("--reason: expected a sentence saying why the champion is rolled back")
    if by is not None and not by.strip():
        raise InputError("--by: expected the name of the person rolling back")
    settings = load_settings()
    registry.connect(settings.mlflow_tracking_uri)
    result = registry.rollback_champion(reason.strip(), (by or getpass.getuser()).strip())
    _emit(result, as_json, f"version {result['champion']} is the champion again (was {result['champion_before']}; {result['basis']}); "
                           f"reason recorded: {result['reason']}")


@app.command("train-table")
@click.option("--table", type=click.Path(path_type=Path), required=True, help="CSV or Parquet: one row per customer, one yes/no label column.")
@click.option("--label", required=True, help="The label column (yes/no, true/false, 1/0, churned/stayed, ...).")
@click.option("--id", "id_column", default=None, help="An identifier column to leave out of the features.")
@json_option
def train_table(table: Path, label: str, id_column: str | None, as_json: bool) -> None:
    """Bring your own snapshot table: the model chosen by inner CV, stratified 5-fold CV of the choice, the final model logged to MLflow."""
    from core.settings import load_settings
    from pipelines.models import run_train_table

    result = run_train_table(table, label=label, id_column=id_column, tracking_uri=load_settings().mlflow_tracking_uri,
                             progress=lambda line: err.print(f"  {line}"))
    _emit(result, as_json, _train_table_summary(result))


def _train_table_summary(result: dict[str, Any]) -> str:
    """The headline, each candidate alone on the same folds and how often the inner CV chose it, the final model."""
    folds, chosen = result["folds"], result["chosen"]
    headline = (f"{folds}-fold ROC-AUC {result['roc_auc_mean']:.4f} +- {result['roc_auc_std']:.4f} "
                f"(logistic baseline {result['baseline_logistic_roc_auc_mean']:.4f}) on {result['rows']:,} rows")
    lines = [headline, f"each fold chose its model by a {result['inner_folds']}-fold inner CV of its training rows:",
             f"  {'candidate':<18} {folds}-fold ROC-AUC    chosen in"]
    for c in result["candidates"]:
        lines.append(f"  {c:<18} {result[f'{c}_roc_auc_mean']:.4f} +- {result[f'{c}_roc_auc_std']:.4f}  "
                     f"{result['wins'][c]} of {folds} folds" + ("  <- final model" if c == chosen else ""))
    return "\n".join([*lines, f"final model: {chosen}: {result['model']}", f"run {result['run_id']}, model {result['model_uri']}"])


@app.command()
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Folder with the input tables [default: CHURN_DATA_DIR].")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Folder for scores.parquet, queue.parquet/.csv and score_summary.json.")
@click.option("--as-of", "as_of", default=None, help="Score as of this date (YYYY-MM-DD, a cutoff at midnight UTC) [default: the end of the data].")
@click.option("--model", "model_uri", default=None, help="Model URI [default: models:/churn-risk@champion].")
@click.option("--text/--no-text", default=True, show_default=True, help="Compute text signals when the model uses them.")
@click.option("--send-alerts", is_flag=True, help="Also send the queued alerts (as `churn alerts flush` does); the daily flow always sends them.")
@json_option
def score(data: Path | None, out: Path, as_of: str | None, model_uri: str | None, text: bool, send_alerts: bool, as_json: bool) -> None:
    """The daily run: risk curve, reasons and escalations for every live account; escalations go to the store."""
    from core.settings import load_settings
    from pipelines.flows import score_accounts

    settings = load_settings()
    if as_of is not None:
        try:
            dt.date.fromisoformat(as_of)
        except ValueError:
            raise InputError(f"--as-of {as_of!r}: expected a date as YYYY-MM-DD") from None
    with _prefect(settings):
        result = score_accounts(str(data or settings.data_dir), str(out), model_uri, text, as_of, send_alerts)
    bands = ", ".join(f"{k} {v:,}" for k, v in result["bands"].items())
    sent = f"; alerts {result['alerts']['sent']} sent, {result['alerts']['pending']} pending" if "alerts" in result else ""
    _emit(result, as_json, f"scored {result['accounts']:,} accounts as of {result['as_of']} with {result['model']} ({bands}); "
                           f"{result['escalations']} escalations; written to {out}{sent}")


@app.command()
@click.option("--scores", "scores_dir", type=click.Path(path_type=Path), default=None, help="Output of `churn score` [default: CHURN_SCORES_DIR or DATA_DIR/scores].")
@click.option("--alerts/--no-alerts", "alert", default=True, show_default=True,
              help="Queue an alert per breach in the outbox (at most one per monitor and day; sent by the relay or `churn alerts flush`).")
@json_option
def monitor(scores_dir: Path | None, alert: bool, as_json: bool) -> None:
    """Run the monitors on a scoring run: feature drift, the score distribution, calibration against matured outcomes."""
    from core.settings import load_settings
    from pipelines.monitor import LABELS, run_monitors

    settings = load_settings()
    folder = Path(scores_dir or settings.scores_dir or Path(settings.data_dir) / "scores")
    result = run_monitors(folder, settings=settings, alert=alert)
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    lines = [f"monitors on {folder} (scores as of {result['as_of']}, model {result['model']}):"]
    lines += [f"  {LABELS[m['monitor']]:<19} {m['state']:<16} value {fmt(m['value']):>7}  threshold {m['threshold']:g}  {m['summary']}"
              for m in result["monitors"]]
    if result["breaches"]:
        lines.append(f"  {result['alerts_queued']} alert(s) queued" + ("" if alert else " (--no-alerts)"))
    _emit(result, as_json, "\n".join(lines))


@app.group()
def alerts() -> None:
    """The alert outbox of the operational store."""


@alerts.command("flush")
@json_option
def alerts_flush(as_json: bool) -> None:
    """Send the pending alerts (retries with backoff; each alert carries an Idempotency-Key)."""
    from core.settings import load_settings
    from escalation.alerts import deliver
    from escalation.policy import load_policy
    from escalation.store import Store

    settings = load_settings()
    policy = load_policy(settings.config_dir)
    with Store(settings.store_url, policy) as store:
        result = deliver(store, policy)
    _emit(result, as_json, f"alerts: {result['sent']} sent, {result['retried']} to retry, {result['failed']} failed, {result['pending']} pending")


@alerts.command("relay")
@click.option("--once", is_flag=True, help="One pass (re-alerts, reminders, expiry, delivery) and exit.")
@click.option("--interval", type=click.FloatRange(min=0.05), default=None,
              help="Seconds between passes [default: CHURN_RELAY_INTERVAL_SECONDS, or 1.0 when that is 0].")
@json_option
def alerts_relay(once: bool, interval: float | None, as_json: bool) -> None:
    """Send the outbox continuously and drive the lifecycle's clock (re-alert missed response windows, remind due
    follow-ups, expire stale escalations), for deployments without the API. Runs until SIGINT/SIGTERM."""
    from core.settings import load_settings
    from escalation.policy import load_policy
    from escalation.relay import Relay
    from escalation.store import Store

    settings = load_settings()
    policy = load_policy(settings.config_dir)
    interval = interval or settings.relay_interval_seconds or 1.0
    with Store(settings.store_url, policy) as store:
        relay = Relay(store, policy)
        if once:
            result = relay.tick()
        else:
            err.print(f"relay on {store.url}: a pass every {interval:g} s while it holds the lease (Ctrl-C stops)")
            # the relay on a thread: this (main) thread keeps the signals, and stops it between two
            # sends, handing back what it had claimed, so nothing waits for a lease to run out
            relay.start(interval)
            try:
                while not relay.wait(0.5):
                    pass
            except KeyboardInterrupt:
                relay.stop(timeout=policy.alerts.timeout_seconds + 1)
            result = dict(relay.totals)
    _emit(result, as_json, f"relay: {result['sent']} sent, {result['retried']} to retry, {result['failed']} failed, {result['pending']} pending; "
                           f"{result['re_alerted']} re-alerted, {result['reminded']} reminded, {result['expired']} expired")


@app.group("policy")
def policy_group() -> None:
    """The escalation policy (config/escalation.yaml) judged on past outcomes."""


@policy_group.command("suggest")
@click.option("--capacity", type=int, required=True, help="Risk-threshold escalations CS can work per period (one cutoff of the panel, 30 days by default).")
@click.option("--horizon", "horizons", type=click.Choice(["30", "60", "90", "180"]), multiple=True,
              help="Only these horizons' thresholds may move (repeatable) [default: every horizon in risk_thresholds].")
@click.option("--features", "features_dir", type=click.Path(path_type=Path), default=None,
              help="Snapshot panel with later churn (output of `churn features`) [default: the one the model was trained on].")
@click.option("--model", "model_uri", default=None, help="Model that scores the panel [default: CHURN_MODEL_URI, the champion].")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write the policy with the suggested thresholds to this YAML file (atomically; never the live config). Default: write nothing.")
@json_option
def policy_suggest(capacity: int, horizons: tuple[str, ...], features_dir: Path | None, model_uri: str | None, out: Path | None, as_json: bool) -> None:
    """Risk thresholds that would have filled a CS capacity with the most precise escalations, as a diff against config/escalation.yaml (never applied)."""
    from core.settings import load_settings
    from pipelines.outcomes import run_policy_suggest, suggest_human

    result = run_policy_suggest(settings=load_settings(), capacity=capacity, horizons=tuple(int(h) for h in horizons), features_dir=features_dir,
                                model_uri=model_uri, out=out, progress=lambda line: err.print(f"  {line}"))
    _emit(result, as_json, suggest_human(result))


app.add_command(escalations)
app.add_command(follow_ups)


@app.group("prefect")
def prefect_group() -> None:
    """The local Prefect server the pipeline commands share (unless PREFECT_API_URL names one)."""


@prefect_group.command("status")
@json_option
def prefect_status(as_json: bool) -> None:
    """Whether the local server runs: its address, process, database and log."""
    from core.settings import load_settings
    from pipelines.prefect_server import server_dir, status

    state = status(server_dir(load_settings()))
    user = os.environ.get("PREFECT_API_URL")
    if user:
        state["prefect_api_url"] = user
    human = (f"local Prefect server running at {state['url'].removesuffix('/api')} (pid {state['pid']}, since {state['started_at']}, "
             f"stops after {state['idle_minutes']} idle minutes); database {state['database']}; log {state['log']}") if state["running"] \
        else f"no local Prefect server running (state in {state['folder']}); the next pipeline command starts one"
    _emit(state, as_json, human + (f"\nnote: PREFECT_API_URL is set ({user}): pipeline commands use that server" if user else ""))


@prefect_group.command("start")
def prefect_start() -> None:
    """Start the local server now (the first pipeline command would), or say where it runs."""
    from core.settings import load_settings
    from pipelines.prefect_server import ensure, server_dir

    settings = load_settings()
    url = ensure(server_dir(settings), settings.prefect_idle_minutes, say=err.print)
    err.print(f"local Prefect server at {url.removesuffix('/api')} (UI and API)")


@prefect_group.command("stop")
def prefect_stop() -> None:
    """Stop the local server (the next pipeline command starts it again; its runs are kept)."""
    from core.settings import load_settings
    from pipelines.prefect_server import server_dir, stop

    stopped = stop(server_dir(load_settings()))
    err.print(f"stopped the local Prefect server at {stopped['url'].removesuffix('/api')} (pid {stopped['pid']})" if stopped
              else "no local Prefect server was running")


@app.command()
@click.option("--port", type=int, default=3000, show_default=True, help="Port to listen on.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (0.0.0.0 for every interface).")
def serve(port: int, host: str) -> None:
    """Run the scoring API (BentoML) with the champion model and the latest `churn score` snapshot (or the last demo's).

    The model, the scores and the store are checked before BentoML starts (exit 2 naming the setting)."""
    from core.settings import load_settings

    if not 0 < port < 65536:
        raise InputError(f"--port {port}: expected a port number from 1 to 65535")
    from core import processes
    from serving import launch

    settings = launch.resolve(load_settings(), say=err.print)
    if not settings.api_tokens:
        err.print("warning: CHURN_API_TOKENS is empty: every API request will be refused (401) until tokens are set")
    serving = launch.check(settings)
    bentoml = Path(sys.executable).with_name("bentoml")
    root = Path(__file__).resolve().parent.parent
    command = [str(bentoml), "serve", "serving.service:ChurnService", "--port", str(port), "--host", host]
    err.print(f"serving {serving} on http://{host}:{port} (docs at /docs, health at /livez and /readyz; Ctrl-C stops)")
    # the server runs from the project folder: relative paths and sqlite URLs are pinned to where the user is
    env = {**os.environ, **launch.absolute_locations(settings)}
    raise click.exceptions.Exit(processes.run_child(command, cwd=root, env=env))


@app.command()
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The HTML file to write (self-contained: images inline).")
@click.option("--scores", "scores_dir", type=click.Path(path_type=Path), default=None, help="Output of `churn score` [default: CHURN_SCORES_DIR or DATA_DIR/scores].")
@click.option("--model", "model_uri", default=None, help="Model URI [default: CHURN_MODEL_URI, models:/churn-risk@champion].")
@json_option
def report(out: Path, scores_dir: Path | None, model_uri: str | None, as_json: bool) -> None:
    """The explainability report for CS leadership (HTML), also logged to the model's MLflow run."""
    from pipelines.flows import report as report_flow

    with _prefect():
        result = report_flow(str(out), str(scores_dir) if scores_dir else None, model_uri)
    _emit(result, as_json, f"report written to {result['report']} ({result['bytes'] / 1e3:,.0f} kB, {result['accounts']:,} accounts)"
                           + (f"; logged to MLflow run {result['logged_to_run']}" if result["logged_to_run"] else ""))


@app.command()
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Folder with the input tables [default: CHURN_DATA_DIR].")
@click.option("--work", type=click.Path(path_type=Path), default=Path("data/work"), show_default=True, help="Folder for features, scores and the report.")
@click.option("--text/--no-text", default=True, show_default=True, help="Compute text signals.")
@click.option("--force-promote", is_flag=True, help="Promote the new model even if it does not win (recorded).")
@json_option
def retrain(data: Path | None, work: Path, text: bool, force_promote: bool, as_json: bool) -> None:
    """The retraining flow (Prefect): features -> train (its backtest is the evaluation) -> promote -> score -> report; a rerun resumes."""
    from core.settings import load_settings
    from pipelines.flows import retrain as retrain_flow

    data = data or load_settings().data_dir
    if not Path(data).is_dir():
        raise InputError(f"--data {data}: no such folder; expected a folder holding <table>.parquet or <table>.csv")
    with _prefect(), _progress_bar():
        result = retrain_flow(data=str(data), workdir=str(work), text=text, force_promote=force_promote)
    _emit(result, as_json, f"retrained: {result['model']} (90-day ROC-AUC {result['roc_auc_90d']:.3f}), "
                           f"{'promoted' if result['promoted'] else 'not promoted'}; champion {result['champion']}; report {result['report']}")


@app.command()
@click.option("--data", type=click.Path(path_type=Path), default=None, help="Folder with the input tables [default: CHURN_DATA_DIR].")
@click.option("--work", type=click.Path(path_type=Path), default=Path("data/work"), show_default=True, help="Folder for scores and the report.")
def schedule(data: Path | None, work: Path) -> None:
    """Serve the deployments: daily scoring (CHURN_SCORE_CRON) and retraining (CHURN_RETRAIN_CRON). Runs until stopped."""
    import asyncio

    from core.settings import load_settings

    settings = load_settings()
    parameters = {"data": str(data or settings.data_dir), "workdir": str(work)}
    with _prefect(settings) as url:
        from prefect.runner import Runner

        from core import processes
        from pipelines.flows import daily
        from pipelines.flows import retrain as retrain_flow

        runner = Runner(pause_on_shutdown=True)
        runner.add_deployment(daily.to_deployment(name="daily-scoring", cron=settings.score_cron, parameters=parameters))
        runner.add_deployment(retrain_flow.to_deployment(name="weekly-retraining", cron=settings.retrain_cron, parameters=parameters))
        err.print(f"serving deployments on {url}: daily scoring '{settings.score_cron}', retraining '{settings.retrain_cron}' (Ctrl-C stops)")
        # the runner's loop on a thread: this (main) thread keeps the signals, and stops the runner
        # (its flow runs' processes included) when one comes
        thread = threading.Thread(target=asyncio.run, args=(runner.start(),), name="prefect-runner", daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.5)
        except KeyboardInterrupt:
            if runner.started and not runner.stopping:
                runner.stopping = True
                runner.execute_in_background(runner.astop)
            thread.join(processes.CHILD_GRACE_SECONDS)
            raise


@app.command("sentiment-train")
@click.option("--labels", type=click.Path(path_type=Path), required=True, help="CSV or Parquet of labelled messages.")
@click.option("--text-column", default="text", show_default=True, help="Column holding the message text.")
@click.option("--label-column", default="label", show_default=True, help="Column holding negative/neutral/positive (or neg/neu/pos, -1/0/1).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Where to write the head [default: CHURN_SENTIMENT_HEAD or DATA_DIR/models/sentiment_head.json].")
@json_option
def sentiment_train(labels: Path, text_column: str, label_column: str, out: Path | None, as_json: bool) -> None:
    """Retrain the sentiment head on your own labelled messages (5-fold CV metrics reported)."""
    from core.settings import load_settings
    from pipelines.text import head_path, train_sentiment

    settings = load_settings()
    target = out or head_path(settings)
    result = train_sentiment(labels, target, text_column=text_column, label_column=label_column, settings=settings)
    _emit(result, as_json, f"trained on {result['messages']:,} messages: 5-fold accuracy {result['cv_accuracy']:.3f}, "
                           f"macro-F1 {result['cv_macro_f1']:.3f}; head written to {target}")


@app.command("sentiment-score")
@click.option("--input", "source", type=click.Path(path_type=Path), required=True, help="CSV or Parquet file with messages.")
@click.option("--text-column", required=True, help="Column holding the message text.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output file (.csv or .parquet): the input plus label and score.")
@json_option
def sentiment_score(source: Path, text_column: str, out: Path, as_json: bool) -> None:
    """Score messages: label (negative/neutral/positive) and score in [-1, 1]; known texts come from the cache."""
    from core.settings import load_settings
    from pipelines.text import load_sentiment_model, open_cache, score_file

    settings = load_settings()
    cache = open_cache(settings)
    try:
        result = score_file(source, out, text_column=text_column, model=load_sentiment_model(settings), cache=cache)
    finally:
        cache.close()
    _emit(result, as_json, f"scored {result['rows']:,} rows ({result['newly_scored']:,} distinct texts through the model, the rest known from the cache) "
                           f"in {result['seconds']:.1f}s -> {out}: {result['labels']}")


@app.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("data/demo"), show_default=True, help="Folder for the demo's data and outputs.")
@click.option("--accounts", type=int, default=2000, show_default=True, help="Accounts in the demo customer base.")
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed.")
@click.pass_context
def demo(ctx: click.Context, out: Path, accounts: int, seed: int) -> None:
    """Run the platform end to end on a simulated customer base."""
    started = time.perf_counter()
    from core.settings import load_settings
    from pipelines.flows import retrain as retrain_flow
    from pipelines.flows import simulate as simulate_flow

    if accounts < 50:
        raise InputError(f"--accounts {accounts}: expected at least 50 (the demo trains and backtests a model)")
    settings = load_settings()
    with _prefect(settings):
        err.print("[bold]1/3 simulate (Prefect flow)[/bold]")
        stage = time.perf_counter()
        with _progress_bar():
            simulated = simulate_flow(str(out), accounts=accounts, days=730, seed=seed)
        err.print(f"    {simulated['accounts']:,} accounts x {simulated['days']} days, {simulated['churned']:,} churned; "
                  f"simulate took {time.perf_counter() - stage:.1f}s")
        err.print("[bold]2/3 validate[/bold]")
        stage = time.perf_counter()
        ctx.invoke(validate, data=out, as_json=False)
        err.print(f"    validate took {time.perf_counter() - stage:.1f}s")
        err.print("[bold]3/3 retrain flow (Prefect): features -> train (backtest) -> promote -> score -> report[/bold]")
        stage = time.perf_counter()
        with _progress_bar():
            result = retrain_flow(data=str(out), workdir=str(out), text=True)
    for name, seconds in result["stage_seconds"].items():
        err.print(f"    {name} took {seconds:.1f}s")
    err.print(f"    retrain flow took {time.perf_counter() - stage:.1f}s")
    aucs = ", ".join(f"{m} {v:.3f}" for m, v in result["roc_auc_90d_by_model"].items() if v is not None)
    err.print(f"  backtest 90-day ROC-AUC: {aucs}")
    err.print(f"  {result['model']}: " + ("promoted to champion" if result["promoted"] else "not promoted (" + "; ".join(result["promotion_reasons"]) + ")"))
    err.print(f"  {result['accounts_scored']:,} accounts scored, {result['escalations']} escalations")
    from serving.launch import record_demo

    pointer = record_demo(settings, out, result)
    err.print(
        f"\ndemo finished in {time.perf_counter() - started:.1f}s\n"
        f"  report for CS leadership: {out / 'churn_report.html'}\n"
        f"  input tables: {out}/ (ground truth in {out}/truth/); snapshot panel: {out}/features/\n"
        f"  scores, escalation queue and handoff packages: {out}/scores/ (recorded in {pointer} for `churn serve`)\n"
        f"  MLflow UI: mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}\n"
        f"  API: CHURN_API_TOKENS=demo-token churn serve --port 3000   (or: CHURN_API_TOKENS=demo-token make serve)\n"
        f"  then: curl -s -X POST localhost:3000/score -H 'Authorization: Bearer demo-token' -H 'Content-Type: application/json' "
        f"-d '{{\"accounts\": [{{\"account_id\": \"A000001\"}}]}}'"
    )


class _BadInputFilter(logging.Filter):
    """Prefect logs a failed task's or flow's traceback; for bad input (ChurnError) the one line
    that names the problem is the whole story, so the traceback is left out."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ChurnError):
            record.exc_info, record.exc_text = None, None
        return True


def _one_line_for_bad_input() -> None:
    for name in ("prefect.task_runs", "prefect.flow_runs", "prefect.task_engine", "prefect.flow_engine"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _BadInputFilter) for f in logger.filters):
            logger.addFilter(_BadInputFilter())


def prefect_console_to(stream) -> None:
    """Prefect's console log handlers keep the stderr of the moment Prefect was imported; a later
    `main()` in the same process (a notebook, a test) may have another: follow it."""
    if "prefect" not in sys.modules:
        return
    for name in ["", *(n for n in logging.Logger.manager.loggerDict if n.startswith("prefect"))]:
        for handler in logging.getLogger(name).handlers:
            if type(handler).__name__ == "PrefectConsoleHandler":
                handler.stream = stream  # not setStream(): it flushes the old stream, which may be closed
                handler.console.file = stream


def main(argv: list[str] | None = None) -> int:
    """Console entry point: map failures to exit codes and one-line messages.

    Called with no arguments it runs the process's own command line and owns the process: SIGTERM
    and SIGINT raise `Stopped` in the main thread, and the process ends once that has unwound,
    without waiting for worker threads (core/processes.py)."""
    from core import processes

    owner = argv is None
    if owner:
        processes.stop_on_signals()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    # no phoning home from the embedded Prefect server (a user's own setting wins)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    for noisy in ("matplotlib", "alembic", "mlflow.store.db.utils", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _one_line_for_bad_input()
    prefect_console_to(sys.stderr)
    try:
        code = app.main(args=argv, prog_name="churn", standalone_mode=False)
        if isinstance(code, int) and code:
            return code  # a command that ended with click.exceptions.Exit(code)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show(file=sys.stderr)
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt) as exc:  # click turns KeyboardInterrupt into Abort
        signum = getattr(exc.__cause__, "signum", getattr(exc, "signum", signal.SIGINT))
        if owner:
            processes.end_now(signum)
        sys.stderr.write(f"stopped by {signal.Signals(signum).name}\n")
        return 128 + signum
    except ChurnError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
