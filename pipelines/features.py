"""Build the snapshot panel from a data folder and write it (the I/O around features/).

The two big tables (usage_daily, ticket_messages) are read, validated and turned into features one
block of accounts at a time, so memory is bounded by the block, not the customer base; the other
tables are small and read whole. Every block's contract violations are collected and reported
together, and nothing is written unless every block passed.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core.config import load_section
from core.config.features import FeatureParams, OutcomeParams
from core.contracts import CONTRACTS, TableFiles, coerce_column, coerce_columns, validate_tables
from core.errors import ContractError, InputError, Violation, format_keys
from core.io import atomic_dir, write_json
from core.mapping import Mapper, serial_map
from features.families.usage import add_totals, daily_totals
from features.panel import (
    LABELS,
    TIME_COLUMNS,
    build_features,
    calendar_cutoffs,
    data_range_of,
    families_without_data,
    make_cutoffs,
    make_labels,
    parse_every,
    snapshot_keys,
    with_calendar,
)
from features.registry import feature_dictionary
from features.text.sentiment import score_texts
from features.text.signals import SignalParams, message_signals
from models.outcomes import predict_outcomes, ticket_outcome_inputs
from text.cache import TextCache
from text.sentiment import SentimentModel

if TYPE_CHECKING:
    from text.loading import TextSource

SMALL = ("accounts", "churn", "surveys", "account_events", "tickets", "ticket_events")
BIG = ("usage_daily", "ticket_messages")


def load_feature_params(config_dir: Path | str | None) -> FeatureParams:
    """features.yaml of `config_dir` (the shipped one when it has none); errors name the file and the
    key. An entry point that loads the whole configuration (core.config.load_config) takes `.features`."""
    params: FeatureParams = load_section(config_dir, "features")
    return params


#: what `churn features` writes beside the snapshots: the data, parameters, cutoffs and notes of the panel
PANEL_SUMMARY = "panel_summary.json"


def panel_summary(features_dir: Path | str) -> dict:
    """The panel summary of a features folder (empty when a panel was written without one)."""
    import json

    path = Path(features_dir) / PANEL_SUMMARY
    return json.loads(path.read_text()) if path.is_file() else {}


def read_snapshots(features_dir: Path) -> pd.DataFrame:
    """The panel written by `churn features`, sorted by (cutoff, account_id)."""
    folder = Path(features_dir) / "snapshots"
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise InputError(f"--features {features_dir}: no snapshots/*.parquet; expected the output of `churn features`")
    panel = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return panel.sort_values(["cutoff", "account_id"], kind="stable").reset_index(drop=True)


class _Violations:
    """Violations gathered over blocks, merged per (table, column, rule)."""

    def __init__(self) -> None:
        self.found: dict[tuple[str, str, str], Violation] = {}

    def add(self, violations: list[Violation]) -> None:
        for v in violations:
            key = (v.table, v.column, v.rule)
            old = self.found.get(key)
            self.found[key] = (
                v
                if old is None
                else Violation(v.table, v.column, v.rule, v.expected, (old.keys + v.keys)[:5], old.count + v.count)
            )

    def raise_if_any(self) -> None:
        if self.found:
            raise ContractError(list(self.found.values()))


def _load_small(files: TableFiles) -> tuple[dict[str, pd.DataFrame], list[str]]:
    raw, notes = {}, []
    for name in SMALL:
        frame = files.read(name)
        if frame is None:
            if CONTRACTS[name].required:
                raise InputError(
                    f"required table '{name}' not found in {files.data_dir}; expected {name}.parquet or {name}.csv"
                )
            notes.append(f"table '{name}' not found in {files.data_dir}; treated as empty")
            continue
        raw[name] = frame
    return validate_tables(raw, tables=SMALL), notes


def time_column(files: TableFiles, table: str) -> pd.Series:
    """The table's time column (TIME_COLUMNS) alone, typed UTC (empty when the table or the column is absent)."""
    column = TIME_COLUMNS[table]
    frame = files.read(table, columns=[column])
    if frame is None or column not in frame.columns:
        return pd.Series(dtype="datetime64[us, UTC]")
    return coerce_column(table, column, frame[column])


def base_usage_days(files: TableFiles, blocks: list[np.ndarray]) -> pd.DataFrame:
    """Every account's usage summed per day (features/families/usage.py `daily_totals`), read one
    block of accounts at a time: the base's calendar, which every block's usage changes are weighed
    against. Values are coerced as validation coerces them; the feature pass reports violations."""
    known = set(CONTRACTS["usage_daily"].column_names)
    parts = []
    for ids in blocks:
        raw = files.read_where("usage_daily", "account_id", ids)
        if raw is None or raw.empty:
            continue
        rows = coerce_columns("usage_daily", raw.drop(columns="account_id"))
        rows = rows.assign(
            **{c: pd.to_numeric(rows[c], errors="coerce") for c in rows.columns if c not in known},
            **{c: np.nan for c in known if c not in rows.columns},
        )
        parts.append(daily_totals(rows))
    return add_totals(parts)


def _global_checks(
    files: TableFiles,
    small: dict[str, pd.DataFrame],
    seen: dict[str, int],
    message_hashes: list[np.ndarray],
    found: _Violations,
) -> None:
    """What a block cannot see: rows pointing at no known account or ticket, ids repeated across blocks."""
    for table, column, parent in (
        ("usage_daily", "account_id", "accounts"),
        ("ticket_messages", "ticket_id", "tickets"),
    ):
        if files.count(table) != seen.get(table, 0):
            ids = files.read(table, columns=[column])[column].astype("str")
            orphans = ids[~ids.isin(small[parent][column])]
            if len(orphans):
                found.add(
                    [
                        Violation(
                            table,
                            column,
                            "references",
                            f"every {column} to exist in {parent}.{column}",
                            format_keys(orphans),
                            len(orphans),
                        )
                    ]
                )
    if message_hashes:
        hashes = np.concatenate(message_hashes)
        if len(np.unique(hashes)) != len(hashes):
            ids = files.read("ticket_messages", columns=["message_id"])["message_id"].astype("str")
            dup = ids[ids.duplicated(keep=False)]
            found.add(
                [
                    Violation(
                        "ticket_messages",
                        "message_id",
                        "unique_key",
                        "each key at most once",
                        format_keys(dup.unique()),
                        len(dup),
                    )
                ]
            )


def add_message_signals(
    tables: dict[str, pd.DataFrame],
    model: SentimentModel,
    cache: TextCache | None,
    params: SignalParams | None = None,
    outcomes: OutcomeParams | None = None,
) -> dict[str, pd.DataFrame]:
    """The tables plus `message_signals` and `ticket_outcomes` (predicted CSAT/CES), for tables held in memory."""
    signals = _signals(tables, model, cache, params)
    inputs = ticket_outcome_inputs(tables["tickets"], tables["ticket_events"], signals)
    return tables | {"message_signals": signals, "ticket_outcomes": predict_outcomes(inputs, outcomes)}


def _signals(
    tables: dict[str, pd.DataFrame], model: SentimentModel, cache: TextCache | None, params: SignalParams | None = None
) -> pd.DataFrame:
    """Signals of every message; only customer messages go through the model (no feature reads an
    agent's tone, and agents write half the messages)."""
    messages = tables["ticket_messages"].reset_index(drop=True)
    customer = (messages["author"] == "customer").to_numpy()
    scored, emb = score_texts(messages.loc[customer, "body"].tolist(), model, cache)
    scores = pd.DataFrame({"label": pd.Series("neutral", index=messages.index, dtype="str"), "score": np.nan})
    scores.loc[customer, "label"] = scored["label"].to_numpy()
    scores.loc[customer, "score"] = scored["score"].to_numpy()
    embeddings = np.zeros((len(messages), emb.shape[1]), dtype=np.float32)  # no customer message: no columns
    embeddings[customer] = emb
    return message_signals(
        messages, tables["tickets"], scores, embeddings, (params or SignalParams()).within(model.embedder)
    )


@dataclass
class BlockJob:
    """One block of accounts: everything a block needs, so it can run in another process.

    `tables` holds the small tables whole (accounts, churn, surveys, account_events: some features
    compare an account with the whole base) and the block's own tickets and ticket events; the big
    tables are read from `files`, only the block's rows."""

    index: int
    ids: np.ndarray
    files: TableFiles
    tables: dict[str, pd.DataFrame]
    keys: pd.DataFrame
    scratch: str
    parts: str
    params: FeatureParams
    data_end: pd.Timestamp
    text: TextSource | None = None
    outcomes: pd.DataFrame | None = None
    build: bool = True  # False: validate and count only (another block already failed)
    without_data: tuple[str, ...] = ()  # families with no data in the whole base (null features)

    @property
    def name(self) -> str:
        return f"block {self.index + 1}"


def _read_block(job: BlockJob, big: tuple[str, ...]) -> tuple[dict[str, pd.DataFrame] | None, dict]:
    """The block's tables with `big` read and validated, and what the global checks need."""
    tickets = job.tables["tickets"]
    where = {
        "usage_daily": ("account_id", job.ids),
        "ticket_messages": ("ticket_id", tickets["ticket_id"].to_numpy(dtype=object)),
    }
    raw, seen = {}, {}
    for name in big:
        frame = job.files.read_where(name, *where[name])
        if frame is not None:
            raw[name] = frame
            seen[name] = len(frame)
    report = {"index": job.index, "violations": [], "seen": seen, "hashes": None}
    context = {
        "accounts": job.tables["accounts"][job.tables["accounts"]["account_id"].isin(job.ids)],
        "tickets": tickets,
        "churn": job.tables["churn"],
    }
    try:
        clean = validate_tables(raw, tables=big, context=context)
    except ContractError as exc:
        report["violations"] = exc.violations
        return None, report
    if "ticket_messages" in clean:
        report["hashes"] = pd.util.hash_array(clean["ticket_messages"]["message_id"].to_numpy(dtype=object))
    return job.tables | clean, report


def text_block(job: BlockJob) -> dict:
    """Pass 1 of a block: validate its messages, score their text, keep the signals (and the messages
    without bodies: no family reads them) in the scratch folder, return the CSAT/CES model's inputs."""
    started = time.perf_counter()
    tables, report = _read_block(job, ("ticket_messages",))
    report["inputs"] = None
    if tables is not None and job.build:
        signals = _signals(tables, *job.text.get(), job.params.signals)
        signals.to_parquet(Path(job.scratch) / f"signals-{job.index:05d}.parquet", index=False)
        tables["ticket_messages"].drop(columns="body").to_parquet(
            Path(job.scratch) / f"messages-{job.index:05d}.parquet", index=False
        )
        report["inputs"] = ticket_outcome_inputs(tables["tickets"], tables["ticket_events"], signals)
    report["seconds"] = time.perf_counter() - started
    return report


def feature_block(job: BlockJob) -> dict:
    """Pass 2 of a block: validate its usage (and messages, without text), build its features and
    labels at every cutoff, write them as one part file."""
    started = time.perf_counter()
    tables, report = _read_block(job, BIG if job.text is None else ("usage_daily",))
    report.update(rows=0, label_sums={name: [0, 0] for name in LABELS})
    if tables is not None and job.build:
        if job.text is not None:
            tables = tables | {
                "ticket_messages": pd.read_parquet(Path(job.scratch) / f"messages-{job.index:05d}.parquet"),
                "message_signals": pd.read_parquet(Path(job.scratch) / f"signals-{job.index:05d}.parquet"),
                "ticket_outcomes": job.outcomes,
            }
        panel = build_features(tables, job.keys, job.params, without_data=job.without_data)
        panel = pd.concat([panel, make_labels(job.keys, job.tables["churn"], job.data_end)], axis=1)
        panel.to_parquet(Path(job.parts) / f"part-{job.index:05d}.parquet", index=False)
        report["rows"] = len(panel)
        report["columns"] = list(panel.columns)
        report["label_sums"] = {name: [int(panel[name].sum()), int(panel[name].notna().sum())] for name in LABELS}
    report["seconds"] = time.perf_counter() - started
    return report


def run_features(
    data: Path,
    out: Path,
    *,
    start: str | None = None,
    end: str | None = None,
    every: str = "30d",
    params: FeatureParams | None = None,
    text: TextSource | None = None,
    progress: Callable[[str, float], None] | None = None,
    as_of: str | None = None,
    map_blocks: Mapper = serial_map,
) -> dict:
    """Validate `data`, build the panel block by block, write snapshots/ and feature_dictionary.json.

    `text`: None (no text signals) or a text.loading.TextSource (the sentiment model and cache,
    which another process loads for itself).
    `as_of`: one cutoff only, that date ("latest": the end of the data), for scoring.
    `map_blocks`: how the blocks run (here in turn, or as tasks of a Prefect task runner); every
    block is independent, and only the CSAT/CES model between the two passes sees all accounts."""
    started = time.perf_counter()
    params = params or FeatureParams()
    parse_every(every)  # a bad flag fails before any data is read
    files = TableFiles(data)
    if files.path("usage_daily") is None:
        raise InputError(
            f"required table 'usage_daily' not found in {data}; expected usage_daily.parquet or usage_daily.csv"
        )
    small, notes = _load_small(files)
    if files.path("ticket_messages") is None:
        notes.append(f"table 'ticket_messages' not found in {data}; treated as empty")
    times = {t: small[t][TIME_COLUMNS[t]] for t in SMALL if t in TIME_COLUMNS}
    times.update({t: time_column(files, t) for t in BIG})
    data_start, data_end = data_range_of(times)
    if as_of is not None:
        day = data_end.date() if as_of == "latest" else as_of
        cutoffs = make_cutoffs(data_start, data_end, start=day, end=day, every=every)
    else:
        cutoffs = make_cutoffs(data_start, data_end, start=start, end=end, every=every)
    ids = np.sort(small["accounts"]["account_id"].to_numpy(dtype=object))
    blocks = [ids[lo : lo + params.account_block] for lo in range(0, len(ids), params.account_block)]
    usage_days = base_usage_days(files, blocks)
    calendar = calendar_cutoffs(cutoffs, usage_days, data_end) if as_of is None else {}  # scoring: its one cutoff only
    cutoffs = with_calendar(cutoffs, calendar)
    keys = snapshot_keys(small, cutoffs)
    without_data = families_without_data({**{t: len(small[t]) for t in SMALL}, **{t: files.count(t) for t in BIG}})
    if progress:
        progress("load", time.perf_counter() - started)

    tickets, events = small["tickets"], small["ticket_events"]
    found, seen, hashes = _Violations(), {}, []

    def collect(reports: list[dict], step: str) -> None:
        for r in reports:
            found.add(r["violations"])
            for name, n in r["seen"].items():
                seen[name] = seen.get(name, 0) + n
            if r["hashes"] is not None:
                hashes.append(r["hashes"])
            if progress:
                progress(f"{step} {r['index'] + 1}/{len(blocks)}", r["seconds"])

    with (
        tempfile.TemporaryDirectory(
            prefix=".text-", dir=Path(out).parent if Path(out).parent.exists() else None
        ) as scratch,
        atomic_dir(Path(out) / "snapshots") as tmp,
    ):
        jobs = []
        for b, block in enumerate(blocks):
            block_tickets = tickets[tickets["account_id"].isin(block)]
            tables = small | {
                "tickets": block_tickets,
                "ticket_events": events[events["ticket_id"].isin(block_tickets["ticket_id"])],
                "usage_days": usage_days,
            }
            jobs.append(
                BlockJob(
                    b,
                    block,
                    files,
                    tables,
                    keys[keys["account_id"].isin(block)].reset_index(drop=True),
                    scratch,
                    str(tmp),
                    params,
                    data_end,
                    text,
                    without_data=tuple(without_data),
                )
            )
        outcomes = None
        if text is not None:
            # pass 1: text signals per block, then predicted CSAT/CES fitted across every account
            reports = map_blocks(text_block, jobs)
            collect(reports, "text")
            if not found.found:
                t0 = time.perf_counter()
                inputs = [r["inputs"] for r in reports if r["inputs"] is not None]
                if inputs:
                    outcomes = predict_outcomes(pd.concat(inputs, ignore_index=True), params.outcomes)
                else:
                    outcomes = pd.DataFrame(
                        columns=["ticket_id", "account_id", "at", "predicted_csat", "predicted_ces"]
                    )
                if progress:
                    progress("CSAT/CES", time.perf_counter() - t0)
        failed = bool(found.found)
        for job in jobs:  # after a violation every block is still read and validated, but nothing more is built
            job.build = not failed
            job.outcomes = None if outcomes is None else outcomes[outcomes["account_id"].isin(job.ids)]
        reports = map_blocks(feature_block, jobs)
        collect(reports, "block")
        # each big table was read and counted in every block, even after a violation
        _global_checks(files, small, seen, hashes, found)
        found.raise_if_any()  # inside atomic_dir: the temporary folder goes, nothing is written
    n_rows = sum(r["rows"] for r in reports)
    label_sums = {name: [sum(r["label_sums"][name][i] for r in reports) for i in (0, 1)] for name in LABELS}
    columns = next((r["columns"] for r in reports if r.get("columns")), [])
    dictionary = feature_dictionary(columns, without_data)
    write_json(dictionary, Path(out) / "feature_dictionary.json")
    summary = {
        "data": str(Path(data).resolve()),  # absolute: `churn evaluate` finds churn times and truth/ from here
        "out": str(out),
        "data_start": data_start.isoformat(),
        "data_end": data_end.isoformat(),
        "cutoffs": [c.date().isoformat() for c in cutoffs],
        "calendar_cutoffs": {c.date().isoformat(): why for c, why in sorted(calendar.items())},
        "snapshots": n_rows,
        "accounts": int(keys["account_id"].nunique()),
        "features": len(dictionary),
        "blocks": len(blocks),
        "label_rates": {k: (round(s / n, 4) if n else None) for k, (s, n) in label_sums.items()},
        "labelled": {k: n for k, (_, n) in label_sums.items()},
        "notes": notes
        + list(without_data.values())
        + ([] if text is not None else ["text signals not computed (--no-text): text features are null"]),
        "families_without_data": without_data,
        "text_model": text.get()[0].key if text is not None else None,
        "params": params.model_dump(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_json(summary, Path(out) / PANEL_SUMMARY)
    return summary
