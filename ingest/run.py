"""`churn ingest`: a mapping file -> a validated data folder of contract tables, all or nothing.

Every section of the mapping is read and mapped first, the tables are checked against the
contracts (every violation reported at once), and only then is anything written: the tables go to
`OUT/<table>.parquet` through a staging folder, so a failed run leaves OUT as it was. Every contract
table is written, the ones no source gives as empty tables, so a table left over from an earlier
run can never be mistaken for this run's. Other files in OUT are left alone.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from core.contracts import CONTRACTS, TABLES, validate_tables
from core.errors import ChurnError, InputError
from core.io import staged_output, write_json
from ingest.events import fit_to_contracts
from ingest.mapping import CONNECTORS, MappingFile, describe_errors, load_mapping
from ingest.sources import describe, read_source
from ingest.stream import BLOCK_ROWS, BUCKET_ROWS, StreamedEvents, stream_usage
from ingest.tables import map_table

Progress = Callable[[str], None]
SUMMARY_FILE = "ingest_summary.json"
#: why a table may be empty, in the words of the system that would give it
_ABSENT = {"tickets": "no help desk given", "ticket_events": "no help desk given", "ticket_messages": "no help desk given",
           "surveys": "no survey source given", "account_events": "no billing or CRM events given", "churn": "no churn source given"}


def run_ingest(mapping_path: str | Path, out_dir: str | Path, *, progress: Progress | None = None, block_rows: int = BLOCK_ROWS,
               bucket_rows: int = BUCKET_ROWS, spill_dir: Path | None = None) -> dict[str, Any]:
    """Read every section of the mapping file, build and validate the contract tables, write them
    to `out_dir`. Returns the summary: rows in per source, rows out per table, notes.

    Raises `InputError` (bad mapping, source or value; contract violations, all at once) before
    anything is written.
    """
    started = time.perf_counter()
    say = progress or (lambda line: None)
    mapping_path, out_dir = Path(mapping_path), Path(out_dir)
    mapping = load_mapping(mapping_path)
    base = mapping_path.resolve().parent
    _check_out(out_dir)
    parts: dict[str, dict[str, pd.DataFrame]] = {}  # table -> section -> frame
    summary_sources: list[dict[str, Any]] = []
    notes: list[str] = []
    for table, spec in mapping.tables.items():
        label = describe(spec.source)
        raw = read_source(spec.source, base)
        say(f"tables.{table}: {len(raw):,} rows from {label}")
        mapped = map_table(raw, spec, table, label)
        parts.setdefault(table, {})[f"tables.{table}"] = mapped.frame
        summary_sources.append({"section": f"tables.{table}", "source": label, "rows_in": len(raw)})
        notes += mapped.notes
    for section, tables in _read_connectors(mapping, mapping_path, base):
        for table, frame in tables.items():
            parts.setdefault(table, {})[section] = frame
            summary_sources.append({"section": section, "table": table, "rows_in": len(frame)})
            say(f"{section}: {len(frame):,} {table} rows")
    raw, combined = _combine(parts)
    notes += combined
    streamed = None
    if mapping.events is not None:
        streamed = stream_usage(mapping.events, base, block_rows=block_rows, bucket_rows=bucket_rows, spill_dir=spill_dir, progress=say)
        say(f"events: {streamed.events_in:,} events -> {len(streamed.usage):,} account-days in {streamed.seconds:.1f}s")
    clean, event_notes, event_source = _validate(raw, mapping, streamed)
    notes += event_notes
    if event_source is not None:
        summary_sources.append(event_source)
    notes += [f"{_ABSENT[t]}: {t} written empty" for t in TABLES if t not in raw and t in _ABSENT]
    rows = {table: len(frame) for table, frame in clean.items()}
    summary = {"mapping": str(mapping_path), "out": str(out_dir), "sources": summary_sources, "tables": rows, "notes": notes,
               "seconds": round(time.perf_counter() - started, 2)}
    with staged_output(out_dir) as stage:
        for table, frame in clean.items():
            frame.to_parquet(stage / f"{table}.parquet", index=False)
        write_json(summary, stage / SUMMARY_FILE)
    say(f"wrote {len(clean)} tables to {out_dir}")
    return summary


def _check_out(out_dir: Path) -> None:
    """A data folder holds each table once: a CSV of a table this run writes as Parquet would
    make the folder ambiguous (and is likely the user's own export)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir}: is a file; expected a folder")
    clashes = [t for t in TABLES if (out_dir / f"{t}.csv").exists()]
    if clashes:
        raise InputError(f"--out {out_dir}: already holds {clashes[0]}.csv; this run writes {clashes[0]}.parquet and a data folder "
                         "holds each table once: choose another folder or move the CSV files")


def _combine(parts: dict[str, dict[str, pd.DataFrame]]) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """One frame per table from the sections that give it, and notes.

    A table with one row per key (accounts, tickets, churn, ...) given under `tables:` replaces
    what a connector gives for it: the user chose that mapping (CRM accounts over Stripe's, which
    know no segment or CSM owner). Otherwise the sections' rows are stacked: Stripe's failed
    payments and the CRM's sponsor changes are all account_events.
    """
    raw: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    for table, by_section in parts.items():
        explicit = f"tables.{table}"
        if CONTRACTS[table].unique and explicit in by_section and len(by_section) > 1:
            others = ", ".join(s for s in by_section if s != explicit)
            notes.append(f"{table}: taken from {explicit}; the {table} of {others} left out (one row per key comes from one place)")
            by_section = {explicit: by_section[explicit]}
        frames = list(by_section.values())
        raw[table] = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return raw, notes


def _read_connectors(mapping: MappingFile, mapping_path: Path, base: Path):
    """(section, {table: frame}) for each help desk / billing section of the mapping.

    Each connector module (ingest/zendesk.py, ...) has a `<Name>Source` options model and a
    `read_<name>(source, base_dir)` returning contract-shaped tables; it is imported only when its
    section is used, so a run without a help desk never loads the help desk code.
    """
    for section, (module_name, model_name, reader_name) in CONNECTORS.items():
        options = getattr(mapping, section)
        if options is None:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            raise ChurnError(f"{mapping_path}: section '{section}': this installation has no {section} reader ({module_name})") from None
        try:
            source = getattr(module, model_name).model_validate(options)
        except ValidationError as exc:
            raise InputError(f"{mapping_path}: " + "; ".join(describe_errors(exc, prefix=(section,)))) from None
        tables = getattr(module, reader_name)(source, base)
        unknown = [t for t in tables if t not in CONTRACTS]
        if unknown:
            raise ChurnError(f"the {section} reader returned a table '{unknown[0]}' the contracts do not know")
        yield section, tables


def _validate(raw: dict[str, pd.DataFrame], mapping: MappingFile,
              streamed: StreamedEvents | None) -> tuple[dict[str, pd.DataFrame], list[str], dict[str, Any] | None]:
    """The contract tables, checked; with events, the notes and summary of how they became usage."""
    if streamed is None:
        return validate_tables(raw), [], None
    # usage from events is cut to each contract, so the accounts and churn must be read first
    others = tuple(t for t in TABLES if t != "usage_daily")
    clean = validate_tables(raw, tables=others)
    fitted = fit_to_contracts(streamed.usage, clean["accounts"], clean["churn"], streamed.span, mapping.events, streamed.label)
    clean |= validate_tables({"usage_daily": fitted.usage}, tables=("usage_daily",), context=clean)
    clean = {t: clean[t] for t in TABLES}
    notes = []
    if streamed.duplicates:
        notes.append(f"events: {streamed.duplicates:,} duplicate events (same event id) counted once")
    if streamed.without_account:
        notes.append(f"events: {streamed.without_account:,} events without an account id left out")
    if fitted.unknown_events:
        shown = ", ".join(fitted.unknown_accounts[:5])
        notes.append(f"events: {fitted.unknown_events:,} events of {len(fitted.unknown_accounts):,} account(s) not in accounts "
                     f"left out (e.g. {shown})")
    if fitted.outside_events:
        notes.append(f"events: {fitted.outside_events:,} events on {fitted.outside_days:,} account-days before contract start "
                     "or after churn left out")
    if fitted.quiet_days:
        notes.append(f"events: {fitted.quiet_days:,} account-days without an event inside the stream's span written as zeros")
    if fitted.silent_accounts:
        notes.append(f"events: {fitted.silent_accounts:,} account(s) have no event at all: their days in the stream's span are zeros")
    source = {"section": "events", "source": streamed.label, "rows_in": streamed.events_in, "duplicates": streamed.duplicates,
              "without_account": streamed.without_account, "unknown_account_events": fitted.unknown_events,
              "outside_contract_events": fitted.outside_events, "quiet_days": fitted.quiet_days, "seconds": round(streamed.seconds, 2)}
    return clean, notes, source
