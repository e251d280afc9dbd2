"""`churn ingest`: a mapping file -> a validated data folder of contract tables, all or nothing.

Every section of the mapping is read and mapped first, the tables are checked against the
contracts (every violation reported at once), and only then is anything written: the tables go to
`OUT/<table>.parquet` through a staging folder, so a failed run leaves OUT as it was. Every contract
table is written, the ones no source gives as empty tables, so a table left over from an earlier
run can never be mistaken for this run's. Other files in OUT are left alone.

Exports hold rows the contract refuses: tickets, surveys and account events of a trial (before
contract start), rows of accounts the CRM does not list (prospects, test workspaces). With
`outside_contract: drop` (the default) they are dropped from every table once the sections are
combined, with a note per table and reason; with `error` the contract check names them. Records a
connector leaves out on purpose (merged tickets, deleted customers) are logged by it and become
notes too.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from core.contracts import CONTRACTS, TABLES, TIME_DTYPE, coerce_column, validate_tables
from core.errors import ChurnError, InputError
from core.io import staged_output, write_json
from ingest.events import fit_to_contracts
from ingest.mapping import CONNECTORS, EventsSpec, MappingFile, describe_errors, load_mapping
from ingest.sources import describe, read_source
from ingest.stream import BLOCK_ROWS, BUCKET_ROWS, StreamedEvents, stream_usage
from ingest.tables import map_table

Progress = Callable[[str], None]
SUMMARY_FILE = "ingest_summary.json"
#: why a table may be empty, in the words of the system that would give it
_ABSENT = {
    "tickets": "no help desk given",
    "ticket_events": "no help desk given",
    "ticket_messages": "no help desk given",
    "surveys": "no survey source given",
    "account_events": "no billing or CRM events given",
    "churn": "no churn source given",
}
#: tables keyed by an account (each references accounts) and tables keyed by a ticket
_BY_ACCOUNT = tuple(t for t in TABLES if t != "accounts" and "account_id" in CONTRACTS[t].column_names)
_BY_TICKET = tuple(t for t in TABLES if t != "tickets" and "ticket_id" in CONTRACTS[t].column_names)
#: the column that dates a row against its account's contract start (the contract's time-order rules)
_DATED = {"usage_daily": "date", "tickets": "created_at", "surveys": "answered_at", "account_events": "at"}
#: why rows are outside the contract -> how the note says it
_REASONS = {
    "unknown_account": "of {accounts:,} account(s) not in accounts dropped (e.g. {examples})",
    "before_contract_start": "before their account's contract start dropped (trial period)",
    "after_churn": "dated after their account churned dropped",
    "dropped_ticket": "of {tickets:,} dropped ticket(s) dropped",
}
#: the package logger: connectors log the records they leave out under it (ingest._export.warn_dropped)
_CONNECTOR_LOG = "ingest"


def run_ingest(
    mapping_path: str | Path,
    out_dir: str | Path,
    *,
    progress: Progress | None = None,
    block_rows: int = BLOCK_ROWS,
    bucket_rows: int = BUCKET_ROWS,
    spill_dir: Path | None = None,
) -> dict[str, Any]:
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
    with _logged_warnings() as logged:
        for section, tables in _read_connectors(mapping, mapping_path, base):
            for table, frame in tables.items():
                parts.setdefault(table, {})[section] = frame
                summary_sources.append({"section": section, "table": table, "rows_in": len(frame)})
                say(f"{section}: {len(frame):,} {table} rows")
    notes += logged
    raw, combined = _combine(parts)
    notes += combined
    outside = drop_outside_contract(raw) if mapping.outside_contract == "drop" else OutsideContract(raw)
    notes += outside.notes
    streamed = None
    if mapping.events is not None:
        streamed = stream_usage(
            mapping.events, base, block_rows=block_rows, bucket_rows=bucket_rows, spill_dir=spill_dir, progress=say
        )
        say(f"events: {streamed.events_in:,} events -> {len(streamed.usage):,} account-days in {streamed.seconds:.1f}s")
    clean, event_notes, event_source = _validate(outside.tables, mapping, streamed)
    notes += event_notes
    if event_source is not None:
        summary_sources.append(event_source)
    notes += [f"{_ABSENT[t]}: {t} written empty" for t in TABLES if t not in raw and t in _ABSENT]
    rows = {table: len(frame) for table, frame in clean.items()}
    summary = {
        "mapping": str(mapping_path),
        "out": str(out_dir),
        "sources": summary_sources,
        "tables": rows,
        "outside_contract": outside.dropped,
        "notes": notes,
        "seconds": round(time.perf_counter() - started, 2),
    }
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
        raise InputError(
            f"--out {out_dir}: already holds {clashes[0]}.csv; this run writes {clashes[0]}.parquet and a data folder "
            "holds each table once: choose another folder or move the CSV files"
        )


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
            notes.append(
                f"{table}: taken from {explicit}; the {table} of {others} left out (one row per key comes from one place)"
            )
            by_section = {explicit: by_section[explicit]}
        frames = list(by_section.values())
        raw[table] = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return raw, notes


@dataclass
class OutsideContract:
    """The tables without the rows outside their contracts, how many went per table and reason
    (table -> reason -> rows), and a note for each."""

    tables: dict[str, pd.DataFrame]
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def drop_outside_contract(raw: dict[str, pd.DataFrame]) -> OutsideContract:
    """`raw` without the rows the contract would refuse for falling outside an account's contract:
    rows of accounts not in accounts, rows dated before their account's contract start (usage by
    day: the first day counts), usage after churn, and the events and messages of dropped tickets.

    A value that cannot be read (a blank id, a bad date) is left for the contract check to name,
    and so is everything when accounts is absent, empty or lacks its columns. A table none of
    whose rows is of a known account is an error, not a note: its account id is mapped from the
    wrong field.
    """
    accounts = raw.get("accounts")
    if accounts is None or accounts.empty or not {"account_id", "contract_start"} <= set(accounts.columns):
        return OutsideContract(raw)
    starts = _by_account("accounts", accounts, "contract_start")
    churned = _by_account("churn", raw["churn"], "churned_at") if "churn" in raw else None
    out = OutsideContract(dict(raw))
    gone_tickets = np.zeros(0, dtype=bool)
    for table in _BY_ACCOUNT:
        frame = raw.get(table)
        if frame is None or frame.empty or "account_id" not in frame.columns:
            continue
        account = coerce_column(table, "account_id", frame["account_id"])
        reasons = _outside_rows(table, frame, account, starts, churned)
        unknown = account[reasons["unknown_account"]]
        if len(unknown) == len(frame):
            raise InputError(
                f"{table}: none of its {len(frame):,} rows has an account id in accounts.account_id (e.g. "
                f"{unknown.iloc[0]!r}); is the account id mapped for {table} the one accounts uses?"
            )
        examples = ", ".join(repr(a) for a in unknown.unique()[:5])
        outside = _drop(out, table, reasons, accounts=unknown.nunique(), examples=examples)
        if table == "tickets":
            gone_tickets = outside
    if gone_tickets.any() and "ticket_id" in raw["tickets"].columns:
        ids = coerce_column("tickets", "ticket_id", raw["tickets"]["ticket_id"]).to_numpy()
        # an id that a kept ticket also has is the contract's duplicate to name, not a dropped ticket
        gone = set(ids[gone_tickets]) - set(ids[~gone_tickets])
        for child in _BY_TICKET:
            frame = raw.get(child)
            if frame is not None and "ticket_id" in frame.columns and gone:
                of_gone = coerce_column(child, "ticket_id", frame["ticket_id"]).isin(gone).to_numpy()
                _drop(out, child, {"dropped_ticket": of_gone}, tickets=len(gone))
    return out


def _by_account(table: str, frame: pd.DataFrame, column: str) -> pd.Series:
    """`column` of `table` as contract values, indexed by account id (the first row of an id:
    a repeated id is the contract check's to name)."""
    if not {"account_id", column} <= set(frame.columns):
        return pd.Series(dtype=TIME_DTYPE)
    ids = coerce_column(table, "account_id", frame["account_id"]).to_numpy()
    values = pd.Series(coerce_column(table, column, frame[column]).to_numpy(), index=ids)
    return values[~values.index.duplicated() & values.index.notna()]


def _outside_rows(
    table: str, frame: pd.DataFrame, account: pd.Series, starts: pd.Series, churned: pd.Series | None
) -> dict[str, np.ndarray]:
    """Masks of `frame`'s rows outside their account's contract, one per reason, disjoint."""
    reasons = {"unknown_account": (account.notna() & ~account.isin(starts.index)).to_numpy()}
    column = _DATED.get(table)
    if column in frame.columns:
        when = pd.DatetimeIndex(coerce_column(table, column, frame[column]))
        start = pd.DatetimeIndex(starts.reindex(account.to_numpy()))
        if table == "usage_daily":
            start = start.floor("D")  # usage is by day: the day the contract starts is inside it
        reasons["before_contract_start"] = np.asarray(when < start, dtype=bool)  # NaT compares False
        if table == "usage_daily" and churned is not None and len(churned):
            end = pd.DatetimeIndex(churned.reindex(account.to_numpy()))
            reasons["after_churn"] = np.asarray(when > end, dtype=bool) & ~reasons["before_contract_start"]
    return reasons


def _drop(out: OutsideContract, table: str, reasons: dict[str, np.ndarray], **words: Any) -> np.ndarray:
    """Drop the rows of `table` that any reason marks, count and note them per reason; the mask."""
    outside = np.logical_or.reduce(list(reasons.values()))
    if not outside.any():
        return outside
    out.tables[table] = out.tables[table][~outside].reset_index(drop=True)
    counts = {reason: int(mask.sum()) for reason, mask in reasons.items() if mask.any()}
    out.dropped[table] = counts
    out.notes += [
        f"{table}: {n:,} row{'' if n == 1 else 's'} " + _REASONS[reason].format(**words) for reason, n in counts.items()
    ]
    return outside


def _events_spec(mapping: MappingFile) -> EventsSpec:
    """The events section, whose `outside_contract` is the mapping's unless the section sets its own."""
    spec = mapping.events
    if "outside_contract" in spec.model_fields_set:
        return spec
    return spec.model_copy(update={"outside_contract": mapping.outside_contract})


class _Collected(logging.Handler):
    """Keeps the messages logged by one thread (a run in another thread keeps its own)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def _logged_warnings() -> Iterator[list[str]]:
    """The warnings logged under the ingest package while the block runs (the records connectors
    leave out on purpose), for the summary's notes. What the application's logging shows is
    unchanged: warnings it shows it still shows, and one that silences them still sees none."""
    logger = logging.getLogger(_CONNECTOR_LOG)
    level, propagate = logger.level, logger.propagate
    if not logger.isEnabledFor(logging.WARNING):
        # the notes must not depend on the logging setup: collect the warnings, but only here
        logger.setLevel(logging.WARNING)
        logger.propagate = False
    handler = _Collected()
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


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
            raise ChurnError(
                f"{mapping_path}: section '{section}': this installation has no {section} reader ({module_name})"
            ) from None
        try:
            source = getattr(module, model_name).model_validate(options)
        except ValidationError as exc:
            raise InputError(f"{mapping_path}: " + describe_errors(exc, prefix=(section,))) from None
        tables = getattr(module, reader_name)(source, base)
        unknown = [t for t in tables if t not in CONTRACTS]
        if unknown:
            raise ChurnError(f"the {section} reader returned a table '{unknown[0]}' the contracts do not know")
        yield section, tables


def _validate(
    raw: dict[str, pd.DataFrame], mapping: MappingFile, streamed: StreamedEvents | None
) -> tuple[dict[str, pd.DataFrame], list[str], dict[str, Any] | None]:
    """The contract tables, checked; with events, the notes and summary of how they became usage."""
    if streamed is None:
        return validate_tables(raw), [], None
    # usage from events is cut to each contract, so the accounts and churn must be read first
    others = tuple(t for t in TABLES if t != "usage_daily")
    clean = validate_tables(raw, tables=others)
    fitted = fit_to_contracts(
        streamed.usage, clean["accounts"], clean["churn"], streamed.span, _events_spec(mapping), streamed.label
    )
    clean |= validate_tables({"usage_daily": fitted.usage}, tables=("usage_daily",), context=clean)
    clean = {t: clean[t] for t in TABLES}
    notes = []
    if streamed.duplicates:
        notes.append(f"events: {streamed.duplicates:,} duplicate events (same event id) counted once")
    if streamed.without_account:
        notes.append(f"events: {streamed.without_account:,} events without an account id left out")
    if fitted.unknown_events:
        shown = ", ".join(fitted.unknown_accounts[:5])
        notes.append(
            f"events: {fitted.unknown_events:,} events of {len(fitted.unknown_accounts):,} account(s) not in accounts "
            f"left out (e.g. {shown})"
        )
    if fitted.outside_events:
        notes.append(
            f"events: {fitted.outside_events:,} events on {fitted.outside_days:,} account-days before contract start "
            "or after churn left out"
        )
    if fitted.quiet_days:
        notes.append(
            f"events: {fitted.quiet_days:,} account-days without an event inside the stream's span written as zeros"
        )
    if fitted.silent_accounts:
        notes.append(
            f"events: {fitted.silent_accounts:,} account(s) have no event at all: their days in the stream's span are zeros"
        )
    source = {
        "section": "events",
        "source": streamed.label,
        "rows_in": streamed.events_in,
        "duplicates": streamed.duplicates,
        "without_account": streamed.without_account,
        "unknown_account_events": fitted.unknown_events,
        "outside_contract_events": fitted.outside_events,
        "quiet_days": fitted.quiet_days,
        "seconds": round(streamed.seconds, 2),
    }
    return clean, notes, source
