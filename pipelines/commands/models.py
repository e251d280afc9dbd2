"""`churn evaluate|train|promote|rollback|train-table`: the risk model backtested, trained, promoted
and rolled back; a customer's own snapshot table trained on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console

from core.errors import InputError
from pipelines.console import emit, err, features_option, json_option, number, path_option, prefect_session


def _require_features(features_dir: Path) -> None:
    if not any((Path(features_dir) / "snapshots").glob("*.parquet")):
        raise InputError(f"--features {features_dir}: no snapshots/*.parquet; expected the output of `churn features`")


@click.command()
@features_option
@click.option("--folds", type=int, default=None, help="Rolling-origin folds [default: backtest.folds of model.yaml].")
@click.option(
    "--budget",
    type=float,
    default=None,
    help="Share of accounts CS can work each cutoff [default: backtest.budget of model.yaml].",
)
@click.option(
    "--model",
    "model_uri",
    default=None,
    help="Score this trained model (e.g. models:/churn-risk@champion) on the snapshots after its training outcomes.",
)
@click.option(
    "--escalations-horizon",
    "escalations_horizon",
    type=click.Choice(["30", "60", "90", "180"]),
    default="90",
    show_default=True,
    help="Days after an escalation opened in which churn counts (the `escalations` block, from CHURN_STORE_URL).",
)
@json_option
def evaluate(
    features_dir: Path,
    folds: int | None,
    budget: float | None,
    model_uri: str | None,
    escalations_horizon: str,
    as_json: bool,
) -> None:
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

    with prefect_session(settings):
        result = evaluate_flow.with_options(task_runner=task_runner(settings))(
            str(features_dir), folds, budget, model_uri
        )
    result["escalations"] = _escalations_outcomes(features_dir, settings, model_uri, int(escalations_horizon))
    if as_json:
        emit(result, True, "")
        return
    from rich.table import Table

    title = (
        f"{model_uri} on snapshots from {result['out_of_time_from']}"
        if model_uri
        else f"backtest: up to {folds} folds per horizon"
    ) + f", CS budget {budget:.0%} of accounts per cutoff"
    table = Table(title=title)
    for col in (
        "model",
        "horizon",
        "folds",
        "ROC-AUC",
        "95% interval",
        "PR-AUC",
        "Brier",
        "ECE",
        "lift@10%",
        "recall@budget",
        "ARR recall",
        "lead days",
    ):
        table.add_column(col)
    for r in result["results"]:
        table.add_row(
            r["model"],
            f"{r['horizon_days']}d",
            str(r.get("folds", "-")),
            number(r["roc_auc"]),
            _interval(r.get("roc_auc_low"), r.get("roc_auc_high")),
            number(r["pr_auc"]),
            number(r["brier"], ".4f"),
            number(r["ece"], ".4f"),
            number(r["lift_top_decile"], ".2f"),
            number(r["recall_at_budget"]),
            number(r.get("arr_recall_at_budget")),
            number(r.get("median_lead_days"), ".0f"),
        )
    Console(stderr=True, width=max(err.width, 150)).print(table)
    _print_backtest_notes(result)
    from pipelines.outcomes import human_lines

    for line in human_lines(result["escalations"]):
        err.print(line)


def _interval(low: float | None, high: float | None) -> str:
    """A ROC-AUC's 95% bootstrap interval (accounts resampled) as "0.772-0.834"; "-" without one."""
    return "-" if low is None or high is None else f"{low:.3f}-{high:.3f}"


def _escalations_outcomes(features_dir: Path, settings, model_uri: str | None, horizon: int) -> dict:
    """The store's escalations joined to what happened next (pipelines/outcomes.py), logged to the
    evaluated model's MLflow run (--model, else the served one) when it has one."""
    from pipelines.outcomes import evaluate_block, log_block, missing_sqlite

    block = evaluate_block(features_dir, settings.store_url, horizon)
    uri = model_uri or settings.model_uri
    logged = (
        None
        if missing_sqlite(settings.mlflow_tracking_uri)
        else log_block(block, tracking_uri=settings.mlflow_tracking_uri, model_uri=uri)
    )
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


@click.command()
@features_option
@json_option
def train(features_dir: Path, as_json: bool) -> None:
    """Backtest, fit the risk curve on every snapshot, log to MLflow and register it as the challenger."""
    from core.config import load_config
    from core.settings import load_settings
    from pipelines.flows import task_runner
    from pipelines.flows import train as train_flow

    settings = load_settings()
    load_config(settings.config_dir)  # a bad configuration (any of its files) fails before the flow starts
    _require_features(features_dir)
    with prefect_session(settings):
        result = train_flow.with_options(task_runner=task_runner(settings))(str(features_dir))
    auc = ", ".join(f"{h}d {v:.3f}" for h, v in result["roc_auc"].items() if v is not None)
    skipped = ", ".join(f"{n['horizon_days']}d" for n in result.get("not_evaluated", []))
    emit(
        result,
        as_json,
        f"registered {result['model_uri']} (alias {result['alias']}, run {result['run_id']}) in {result['seconds']:.0f}s; "
        f"backtest ROC-AUC {auc}"
        + (f"; not evaluated: {skipped} (not enough history)" if skipped else "")
        + "; `churn promote` makes it the champion if it wins"
        + (
            "; the logistic baseline beat it and is logged beside it: `churn promote --model baseline` serves it instead"
            if result.get("baseline_model_uri")
            else ""
        ),
    )


@click.command()
@click.option(
    "--force", is_flag=True, help="Promote even if the challenger does not win (recorded on the model version)."
)
@click.option(
    "--model",
    "model",
    type=click.Choice(["curve", "baseline"]),
    default="curve",
    show_default=True,
    help="What to promote: the challenger's LightGBM curve, or the logistic baseline its run logged where the "
    "baseline's backtest beat the curve (`baseline_better` of `churn train`; registered as a version of its own).",
)
@json_option
def promote(force: bool, model: str, as_json: bool) -> None:
    """Move the `champion` alias to the challenger if it wins on the same backtest and is calibrated (exit 1 if refused)."""
    from core.settings import load_settings
    from pipelines.models import load_model_config
    from pipelines.promote import run_promote

    settings = load_settings()
    result = run_promote(
        tracking_uri=settings.mlflow_tracking_uri,
        config=load_model_config(settings.config_dir),
        force=force,
        progress=lambda line: err.print(f"  {line}"),
        model=model,
    )
    if result["source_version"]:
        result_name = (
            f"version {result['challenger']} (the logistic baseline of version {result['source_version']}'s run)"
        )
    else:
        result_name = f"version {result['challenger']}"
    if result["promoted"]:
        human = f"{result_name} is now the champion" + (
            " (forced: " + "; ".join(result["reasons"]) + ")" if result["reasons"] else ""
        )
    else:
        human = f"refused to promote {result_name}: " + "; ".join(result["reasons"])
    human += "".join(f"\n  note: {note}" for note in result["notes"])
    emit(result, as_json, human)
    if not result["promoted"]:
        raise click.exceptions.Exit(1)


@click.command()
@click.option("--reason", required=True, help="Why the champion is rolled back (recorded on both model versions).")
@click.option("--by", "by", default=None, help="Who rolls it back (recorded) [default: the login name].")
@json_option
def rollback(reason: str, by: str | None, as_json: bool) -> None:
    """Move the `champion` alias back to the version it replaced (else the highest version below it).

    A running API swaps to it on its next poll.
    """
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
    emit(
        result,
        as_json,
        f"version {result['champion']} is the champion again (was {result['champion_before']}; {result['basis']}); "
        f"reason recorded: {result['reason']}",
    )


@click.command("train-table")
@path_option(
    "--table",
    required=True,
    help="CSV or Parquet: one row per customer, one yes/no label column.",
)
@click.option("--label", required=True, help="The label column (yes/no, true/false, 1/0, churned/stayed, ...).")
@click.option("--id", "id_column", default=None, help="An identifier column to leave out of the features.")
@json_option
def train_table(table: Path, label: str, id_column: str | None, as_json: bool) -> None:
    """Bring your own snapshot table: the model chosen by inner CV, stratified 5-fold CV of the choice, the final model logged to MLflow."""
    from core.settings import load_settings
    from pipelines.table import run_train_table

    result = run_train_table(
        table,
        label=label,
        id_column=id_column,
        tracking_uri=load_settings().mlflow_tracking_uri,
        progress=lambda line: err.print(f"  {line}"),
    )
    emit(result, as_json, _train_table_summary(result))


def _train_table_summary(result: dict[str, Any]) -> str:
    """The headline, each candidate alone on the same folds and how often the inner CV chose it, the final model."""
    folds, chosen = result["folds"], result["chosen"]
    headline = (
        f"{folds}-fold ROC-AUC {result['roc_auc_mean']:.4f} +- {result['roc_auc_std']:.4f} "
        f"(logistic baseline {result['baseline_logistic_roc_auc_mean']:.4f}) on {result['rows']:,} rows"
    )
    lines = [
        headline,
        f"each fold chose its model by a {result['inner_folds']}-fold inner CV of its training rows:",
        f"  {'candidate':<18} {folds}-fold ROC-AUC    chosen in",
    ]
    for c in result["candidates"]:
        lines.append(
            f"  {c:<18} {result[f'{c}_roc_auc_mean']:.4f} +- {result[f'{c}_roc_auc_std']:.4f}  "
            f"{result['wins'][c]} of {folds} folds" + ("  <- final model" if c == chosen else "")
        )
    return "\n".join(
        [*lines, f"final model: {chosen}: {result['model']}", f"run {result['run_id']}, model {result['model_uri']}"]
    )


COMMANDS = (evaluate, train, promote, rollback, train_table)
