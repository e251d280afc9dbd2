"""`churn score|monitor|report|alerts|serve|retrain|schedule|prefect|demo`: the platform run day to
day: the daily scoring, its monitors and report, the alert outbox, the API, the scheduled flows
and the Prefect server they record to; `demo` runs it all on a simulated base."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from pathlib import Path

import click

from core.errors import InputError
from pipelines.commands.data import validate
from pipelines.console import (
    data_option,
    emit,
    err,
    json_option,
    number,
    path_option,
    prefect_session,
    progress_bar,
    scores_option,
)


@click.command()
@data_option
@path_option(
    "--out",
    required=True,
    help="Folder for scores.parquet, queue.parquet/.csv and score_summary.json.",
)
@click.option(
    "--as-of",
    "as_of",
    default=None,
    help="Score as of this date (YYYY-MM-DD, a cutoff at midnight UTC) [default: the end of the data].",
)
@click.option("--model", "model_uri", default=None, help="Model URI [default: models:/churn-risk@champion].")
@click.option(
    "--text/--no-text", default=True, show_default=True, help="Compute text signals when the model uses them."
)
@click.option(
    "--send-alerts",
    is_flag=True,
    help="Also send the queued alerts (as `churn alerts flush` does); the daily flow always sends them.",
)
@json_option
def score(
    data: Path | None, out: Path, as_of: str | None, model_uri: str | None, text: bool, send_alerts: bool, as_json: bool
) -> None:
    """The daily run: risk curve, reasons and escalations for every live account; escalations go to the store."""
    from core.settings import load_settings
    from pipelines.flows import score_accounts

    settings = load_settings()
    if as_of is not None:
        try:
            dt.date.fromisoformat(as_of)
        except ValueError:
            raise InputError(f"--as-of {as_of!r}: expected a date as YYYY-MM-DD") from None
    with prefect_session(settings):
        result = score_accounts(str(data or settings.data_dir), str(out), model_uri, text, as_of, send_alerts)
    bands = ", ".join(f"{k} {v:,}" for k, v in result["bands"].items())
    sent = (
        f"; alerts {result['alerts']['sent']} sent, {result['alerts']['pending']} pending" if "alerts" in result else ""
    )
    emit(
        result,
        as_json,
        f"scored {result['accounts']:,} accounts as of {result['as_of']} with {result['model']} ({bands}); "
        f"{result['escalations']} escalations; written to {out}{sent}",
    )


@click.command()
@scores_option
@click.option(
    "--alerts/--no-alerts",
    "alert",
    default=True,
    show_default=True,
    help="Queue an alert per breach in the outbox (at most one per monitor and day; sent by the relay or `churn alerts flush`).",
)
@json_option
def monitor(scores_dir: Path | None, alert: bool, as_json: bool) -> None:
    """Run the monitors on a scoring run: feature drift, the score distribution, calibration against matured outcomes."""
    from core.settings import load_settings
    from pipelines.monitor import LABELS, run_monitors
    from serving.launch import scores_folder

    settings = load_settings()
    folder, named = scores_folder(settings, scores_dir, say=err.print)
    result = run_monitors(folder, settings=settings, alert=alert, named=named)
    lines = [f"monitors on {folder} (scores as of {result['as_of']}, model {result['model']}):"]
    lines += [
        f"  {LABELS[m['monitor']]:<19} {m['state']:<16} value {number(m['value']):>7}  threshold {m['threshold']:g}  {m['summary']}"
        for m in result["monitors"]
    ]
    if result["breaches"]:
        lines.append(f"  {result['alerts_queued']} alert(s) queued" + ("" if alert else " (--no-alerts)"))
    emit(result, as_json, "\n".join(lines))


@click.group()
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
    from serving.launch import use_clock

    settings = load_settings()
    use_clock(settings, say=err.print)
    policy = load_policy(settings.config_dir)
    with Store(settings.store_url, policy) as store:
        result = deliver(store, policy)
    emit(
        result,
        as_json,
        f"alerts: {result['sent']} sent, {result['retried']} to retry, {result['failed']} failed, {result['pending']} pending",
    )


@alerts.command("relay")
@click.option("--once", is_flag=True, help="One pass (re-alerts, reminders, expiry, delivery) and exit.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=None,
    help="Seconds between passes [default: CHURN_RELAY_INTERVAL_SECONDS, or 1.0 when that is 0].",
)
@json_option
def alerts_relay(once: bool, interval: float | None, as_json: bool) -> None:
    """Send the outbox continuously and drive the lifecycle's clock (re-alert missed response windows, remind due
    follow-ups, expire stale escalations), for deployments without the API. Runs until SIGINT/SIGTERM."""
    from core.settings import load_settings
    from escalation.policy import load_policy
    from escalation.relay import Relay
    from escalation.store import Store
    from serving.launch import use_clock

    settings = load_settings()
    use_clock(settings, say=err.print)
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
    emit(
        result,
        as_json,
        f"relay: {result['sent']} sent, {result['retried']} to retry, {result['failed']} failed, {result['pending']} pending; "
        f"{result['re_alerted']} re-alerted, {result['reminded']} reminded, {result['expired']} expired",
    )


@click.command()
@path_option(
    "--out",
    required=True,
    help="The HTML file to write (self-contained: images inline).",
)
@scores_option
@click.option(
    "--model", "model_uri", default=None, help="Model URI [default: CHURN_MODEL_URI, models:/churn-risk@champion]."
)
@json_option
def report(out: Path, scores_dir: Path | None, model_uri: str | None, as_json: bool) -> None:
    """The explainability report for CS leadership (HTML), also logged to the model's MLflow run."""
    from core.settings import load_settings
    from pipelines.flows import report as report_flow

    with prefect_session(load_settings()):
        result = report_flow(str(out), str(scores_dir) if scores_dir else None, model_uri)
    emit(
        result,
        as_json,
        f"report written to {result['report']} ({result['bytes'] / 1e3:,.0f} kB, {result['accounts']:,} accounts)"
        + (f"; logged to MLflow run {result['logged_to_run']}" if result["logged_to_run"] else ""),
    )


@click.command()
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
    err.print(
        f"serving {serving} on http://{host}:{port} (OpenAPI document at /docs.json with a bearer token, health at /livez and /readyz, "
        "the CS workspace at /app/; Ctrl-C stops)"
    )
    # the server runs from the project folder: relative paths and sqlite URLs are pinned to where the user is
    env = {
        **os.environ,
        **launch.absolute_locations(settings),
        "CHURN_CLOCK_OFFSET_SECONDS": repr(settings.clock_offset_seconds),  # the demo's clock
    }
    raise click.exceptions.Exit(processes.run_child(launch.serve_command(port, host), cwd=launch.ROOT, env=env))


@click.command()
@data_option
@path_option(
    "--work",
    default=Path("data/work"),
    show_default=True,
    help="Folder for features, scores and the report.",
)
@click.option("--text/--no-text", default=True, show_default=True, help="Compute text signals.")
@click.option("--force-promote", is_flag=True, help="Promote the new model even if it does not win (recorded).")
@json_option
def retrain(data: Path | None, work: Path, text: bool, force_promote: bool, as_json: bool) -> None:
    """The retraining flow (Prefect): features -> train (its backtest is the evaluation) -> promote -> score -> report; a rerun resumes."""
    from core.settings import load_settings
    from pipelines.flows import retrain as retrain_flow

    settings = load_settings()
    data = data or settings.data_dir
    if not Path(data).is_dir():
        raise InputError(f"--data {data}: no such folder; expected a folder holding <table>.parquet or <table>.csv")
    with prefect_session(settings), progress_bar():
        result = retrain_flow(data=str(data), workdir=str(work), text=text, force_promote=force_promote)
    emit(
        result,
        as_json,
        f"retrained: {result['model']} (90-day ROC-AUC {result['roc_auc_90d']:.3f}), "
        f"{'promoted' if result['promoted'] else 'not promoted'}; champion {result['champion']}; report {result['report']}",
    )


@click.command()
@data_option
@path_option(
    "--work",
    default=Path("data/work"),
    show_default=True,
    help="Folder for scores and the report.",
)
def schedule(data: Path | None, work: Path) -> None:
    """Serve the deployments: daily scoring (CHURN_SCORE_CRON) and retraining (CHURN_RETRAIN_CRON). Runs until stopped."""
    import asyncio

    from core.settings import load_settings

    settings = load_settings()
    parameters = {"data": str(data or settings.data_dir), "workdir": str(work)}
    with prefect_session(settings) as url:
        from prefect.runner import Runner

        from core import processes
        from pipelines.flows import daily
        from pipelines.flows import retrain as retrain_flow

        runner = Runner(pause_on_shutdown=True)
        runner.add_deployment(
            daily.to_deployment(name="daily-scoring", cron=settings.score_cron, parameters=parameters)
        )
        runner.add_deployment(
            retrain_flow.to_deployment(name="weekly-retraining", cron=settings.retrain_cron, parameters=parameters)
        )
        err.print(
            f"serving deployments on {url}: daily scoring '{settings.score_cron}', retraining '{settings.retrain_cron}' (Ctrl-C stops)"
        )
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


@click.group("prefect")
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
    human = (
        (
            f"local Prefect server running at {state['url'].removesuffix('/api')} (pid {state['pid']}, since {state['started_at']}, "
            f"stops after {state['idle_minutes']} idle minutes); database {state['database']}; log {state['log']}"
        )
        if state["running"]
        else f"no local Prefect server running (state in {state['folder']}); the next pipeline command starts one"
    )
    emit(
        state,
        as_json,
        human + (f"\nnote: PREFECT_API_URL is set ({user}): pipeline commands use that server" if user else ""),
    )


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
    err.print(
        f"stopped the local Prefect server at {stopped['url'].removesuffix('/api')} (pid {stopped['pid']})"
        if stopped
        else "no local Prefect server was running"
    )


@click.command()
@path_option(
    "--out",
    default=Path("data/demo"),
    show_default=True,
    help="Folder for the demo's data and outputs.",
)
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
    with prefect_session(settings):
        err.print("1/3 simulate (Prefect flow)", style="bold")
        stage = time.perf_counter()
        with progress_bar():
            simulated = simulate_flow(str(out), accounts=accounts, days=730, seed=seed)
        err.print(
            f"    {simulated['accounts']:,} accounts x {simulated['days']} days, {simulated['churned']:,} churned; "
            f"simulate took {time.perf_counter() - stage:.1f}s"
        )
        err.print("2/3 validate", style="bold")
        stage = time.perf_counter()
        ctx.invoke(validate, data=out, as_json=False)
        err.print(f"    validate took {time.perf_counter() - stage:.1f}s")
        err.print(
            "3/3 retrain flow (Prefect): features -> train (backtest) -> promote -> score -> report", style="bold"
        )
        stage = time.perf_counter()
        with progress_bar():
            result = retrain_flow(data=str(out), workdir=str(out), text=True)
    for name, seconds in result["stage_seconds"].items():
        err.print(f"    {name} took {seconds:.1f}s")
    err.print(f"    retrain flow took {time.perf_counter() - stage:.1f}s")
    aucs = ", ".join(f"{m} {v:.3f}" for m, v in result["roc_auc_90d_by_model"].items() if v is not None)
    err.print(f"  backtest 90-day ROC-AUC: {aucs}")
    err.print(
        f"  {result['model']}: "
        + (
            "promoted to champion"
            if result["promoted"]
            else "not promoted (" + "; ".join(result["promotion_reasons"]) + ")"
        )
    )
    err.print(f"  {result['accounts_scored']:,} accounts scored, {result['escalations']} escalations")
    import pandas as pd

    from pipelines.commands.users import busiest_owner, demo_users
    from serving.auth import WORKSPACE_PATH
    from serving.launch import record_demo

    # the workspace's demo sign-ins: a CS lead, and the CSM with the most open escalations
    people = set(pd.read_parquet(out / "scores" / "features.parquet", columns=["csm_owner"])["csm_owner"].dropna())
    owner, owned = busiest_owner(settings, people)
    sign_ins = demo_users(settings, owner)
    workspace = {"url": f"http://127.0.0.1:3000{WORKSPACE_PATH}/", "users": sign_ins}
    pointer = record_demo(settings, out, result, workspace)
    err.print(
        f"\ndemo finished in {time.perf_counter() - started:.1f}s\n"
        f"  report for CS leadership: {out / 'churn_report.html'}\n"
        f"  input tables: {out}/ (ground truth in {out}/truth/); snapshot panel: {out}/features/\n"
        f"  scores, escalation queue and handoff packages: {out}/scores/ (recorded in {pointer} for `churn serve`)\n"
        f"  MLflow UI: mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}\n"
        f"  API: CHURN_API_TOKENS=demo-token churn serve --port 3000   (or: CHURN_API_TOKENS=demo-token make serve)\n"
        f"  then: curl -s -X POST localhost:3000/score -H 'Authorization: Bearer demo-token' -H 'Content-Type: application/json' "
        f'-d \'{{"accounts": [{{"account_id": "A000001"}}]}}\''
    )
    err.print(
        f"  workspace for CS (after `churn serve`): {workspace['url']}\n"
        + "".join(
            f"    sign in as {u['username']} / {u['password']}  ({u['name']}, "
            + (
                f"CSM with {owned} open escalation{'s' if owned != 1 else ''})"
                if u["role"] == "csm"
                else "CS lead: every queue and the book)"
            )
            + "\n"
            for u in sign_ins
        )
        + f"    (recorded in {pointer}; new passwords on every demo run; `churn users` manages the sign-ins)"
    )


COMMANDS = (score, monitor, report, alerts, serve, retrain, schedule, prefect_group, demo)
