"""`churn simulate|ingest|validate|features`: input tables made, checked, turned into the snapshot panel."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import click
from pydantic import ValidationError

from core.errors import InputError, describe_validation
from pipelines.console import data_option, emit, err, json_option, path_option, prefect_session, progress_bar


def _config_error(exc: ValidationError, flags: dict[str, str]) -> InputError:
    return InputError(describe_validation(exc, depth=1, empty="config", names=flags, got=True))


@click.command()
@click.option("--accounts", type=int, default=2000, show_default=True, help="Number of accounts to simulate.")
@click.option("--days", type=int, default=730, show_default=True, help="Length of the observed window in days.")
@click.option(
    "--seed", type=int, default=42, show_default=True, help="Random seed; the same seed gives identical files."
)
@path_option(
    "--out",
    default=Path("data/simulated"),
    show_default=True,
    help="Folder to write the input tables and truth/ into (other files there are left alone).",
)
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
        config = SimulationConfig(
            accounts=accounts, days=days, seed=seed, start=start_date, annual_churn_rate=churn_rate
        )
    except ValidationError as exc:
        flags = {"accounts": "--accounts", "days": "--days", "seed": "--seed", "annual_churn_rate": "--churn-rate"}
        raise _config_error(exc, flags) from None
    with Progress(
        "simulating", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True
    ) as bar:
        task = bar.add_task("simulate", total=accounts)
        summary = run(config, out, progress=lambda done, total: bar.update(task, completed=done))
    rows = ", ".join(f"{k}={v:,}" for k, v in summary.rows.items())
    emit(
        summary.to_dict(),
        as_json,
        f"simulated {summary.accounts:,} accounts x {summary.days} days into {out} in {summary.seconds:.1f}s: "
        f"{summary.churned:,} churned (yearly rate {summary.annual_churn_rate:.1%}); {rows}",
    )


@click.command()
@path_option(
    "--mapping",
    required=True,
    help="YAML mapping file: where each table comes from (paths in it are relative to it).",
)
@path_option(
    "--out",
    required=True,
    help="Folder to write <table>.parquet into (written only if every table meets its contract; other files left alone).",
)
@json_option
def ingest(mapping: Path, out: Path, as_json: bool) -> None:
    """Turn exports (CRM, billing, help desk, product events) into validated contract tables."""
    from ingest.run import run_ingest

    summary = run_ingest(mapping, out, progress=lambda line: err.print(f"  {line}"))
    for note in summary["notes"]:
        err.print(f"note: {note}")
    rows = ", ".join(f"{table}={count:,}" for table, count in summary["tables"].items())
    emit(
        summary,
        as_json,
        f"ingested {len(summary['sources'])} source(s) into {out} in {summary['seconds']:.1f}s: {rows}",
    )


@click.command()
@path_option(
    "--data",
    default=None,
    help="Folder with the input tables (<table>.parquet or <table>.csv) "
    "[default: CHURN_DATA_DIR, as the other commands read; data/simulated, where `churn simulate` writes, "
    "when that holds no accounts table].",
)
@json_option
def validate(data: Path | None, as_json: bool) -> None:
    """Check a data folder against the input table contracts (exit 2 listing every broken rule)."""
    from core.contracts import load_tables
    from core.settings import load_settings

    if data is None:
        configured = Path(load_settings().data_dir)
        tables = [configured / f"accounts.{kind}" for kind in ("parquet", "csv")]
        data = configured if any(t.is_file() for t in tables) else Path("data/simulated")
    started = time.perf_counter()
    loaded = load_tables(data)
    for note in loaded.notes:
        err.print(f"note: {note}")
    rows = {name: len(frame) for name, frame in loaded.tables.items()}
    emit(
        {
            "data": str(data),
            "valid": True,
            "rows": rows,
            "notes": loaded.notes,
            "seconds": round(time.perf_counter() - started, 2),
        },
        as_json,
        f"{data}: all {len(rows)} tables meet their contracts ("
        + ", ".join(f"{k}={v:,}" for k, v in rows.items())
        + ")",
    )


@click.command()
@data_option
@path_option(
    "--out",
    required=True,
    help="Folder to write snapshots/ and feature_dictionary.json into.",
)
@click.option(
    "--start", default=None, help="First cutoff (YYYY-MM-DD) [default: 120 days after the first day of data]."
)
@click.option("--end", default=None, help="Last cutoff (YYYY-MM-DD) [default: the end of the data].")
@click.option("--every", default="30d", show_default=True, help="Spacing of cutoffs: days or weeks, e.g. 30d, 7d, 2w.")
@click.option(
    "--text/--no-text",
    default=True,
    show_default=True,
    help="Compute text signals (sentiment, critical moments, rephrasings) with the sentiment model.",
)
@json_option
def features(
    data: Path | None, out: Path, start: str | None, end: str | None, every: str, text: bool, as_json: bool
) -> None:
    """Build the point-in-time snapshot panel (features + censored labels)."""
    from core.settings import load_settings
    from features.panel import parse_every
    from pipelines.flows import build_features, task_runner

    settings = load_settings()
    data = data or settings.data_dir
    parse_every(every)  # bad flags fail before the flow starts
    with prefect_session(settings), progress_bar():
        summary = build_features.with_options(task_runner=task_runner(settings))(
            str(data), str(out), every, text, start, end
        )
    rates = ", ".join(
        f"{k.removeprefix('churned_within_')}={v:.2%}" for k, v in summary["label_rates"].items() if v is not None
    )
    emit(
        summary,
        as_json,
        f"{summary['snapshots']:,} snapshots of {summary['accounts']:,} accounts at {len(summary['cutoffs'])} cutoffs "
        f"({summary['cutoffs'][0]} .. {summary['cutoffs'][-1]}), {summary['features']} features, churn rates {rates}; "
        f"written to {out}/snapshots/ in {summary['seconds']:.1f}s"
        + "".join(f"\nnote: {note}" for note in summary["notes"]),  # what the panel lacks, e.g. a table not there
    )


COMMANDS = (simulate, ingest, validate, features)
