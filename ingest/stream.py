"""Streams an event source into daily usage in bounded memory.

Pass 1 reads the source a block at a time (Parquet row batches, pyarrow's streaming CSV reader,
or SQL chunks), turns each block into compact events (ingest/events.normalise_block) and appends
every row to one of N spill files (Arrow IPC in a temporary folder) chosen by a hash of
(account, day). Pass 2 reads one spill file at a time and aggregates it in memory
(ingest/events.aggregate_events). Every event of an (account, day) lands in the same file, so
distinct users, distinct features and duplicate event ids are exact across blocks, and memory
follows the size of a spill file (about `bucket_rows` events), not the stream.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from core.errors import InputError
from ingest import sources
from ingest.events import aggregate_events, event_columns, normalise_block, plan_measures
from ingest.mapping import EventsSpec

Progress = Callable[[str], None]

#: events per block read: larger blocks add memory (a block is decoded whole) and no speed
BLOCK_ROWS = 250_000
#: events per spill file, aggregated in memory one file at a time
BUCKET_ROWS = 2_000_000
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # spreads consecutive days over the buckets
_MAX_BUCKETS = 256  # open spill files at once
_QUERY_BUCKETS = 16  # a query's size is unknown before it runs


@dataclass
class StreamedEvents:
    """Events aggregated per (account_id, day), with the counts the summary reports."""

    usage: pd.DataFrame
    label: str
    events_in: int
    without_account: int
    duplicates: int
    span: tuple[int, int]  # first and last day (days since 1970-01-01 UTC) with an event
    seconds: float


def stream_usage(
    spec: EventsSpec,
    base_dir: Path,
    *,
    block_rows: int = BLOCK_ROWS,
    bucket_rows: int = BUCKET_ROWS,
    spill_dir: Path | None = None,
    progress: Progress | None = None,
) -> StreamedEvents:
    """Read the events section's source in blocks and aggregate it per account and UTC day."""
    started = time.perf_counter()
    say = _every(2.0, progress)
    label = sources.describe(spec.source)
    measures = plan_measures(spec)
    columns = event_columns(spec)
    _check_columns(spec, base_dir, label)
    estimate = sources.count_rows(spec.source, base_dir)
    buckets = _QUERY_BUCKETS if estimate is None else max(1, min(_MAX_BUCKETS, math.ceil(estimate / bucket_rows)))
    events_in = without_account = duplicates = 0
    low, high = np.iinfo("int32").max, np.iinfo("int32").min
    frames: list[pd.DataFrame] = []
    with tempfile.TemporaryDirectory(prefix="churn-ingest-", dir=spill_dir) as tmp:
        writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        try:
            for block in sources.iter_blocks(spec.source, base_dir, columns, block_rows):
                compact, nulls = normalise_block(block.table, spec, measures, block.label, block.first_row)
                events_in += block.table.num_rows
                without_account += nulls
                if compact.num_rows:
                    span = pc.min_max(compact.column("day")).as_py()
                    low, high = min(low, span["min"]), max(high, span["max"])
                    _spill(compact, buckets, writers, Path(tmp))
                say(f"events: {events_in:,} read")
        finally:
            for writer in writers.values():
                writer.close()
        for done, bucket in enumerate(sorted(writers), start=1):
            with pa.memory_map(str(Path(tmp) / f"{bucket}.arrow")) as source:
                events = pa.ipc.open_stream(source).read_all().to_pandas()
            aggregated, dropped = aggregate_events(events, measures)
            frames.append(aggregated)
            duplicates += dropped
            say(f"events: aggregated part {done}/{len(writers)}")
    if events_in == 0:
        raise InputError(f"{label}: no events; expected one row per event")
    if not frames:
        raise InputError(
            f"{label}: none of the {events_in:,} events has an account id in column '{spec.columns.account_id}'"
        )
    usage = pd.concat(frames, ignore_index=True).sort_values(["account_id", "day"], kind="stable", ignore_index=True)
    return StreamedEvents(
        usage, label, events_in, without_account, duplicates, (low, high), time.perf_counter() - started
    )


def _every(seconds: float, progress: Progress | None) -> Progress:
    """`progress`, called at most once per `seconds` (a line per block would flood the terminal)."""
    last = [-seconds]

    def say(line: str) -> None:
        now = time.perf_counter()
        if progress is not None and now - last[0] >= seconds:
            last[0] = now
            progress(line)

    return say


def _check_columns(spec: EventsSpec, base_dir: Path, label: str) -> None:
    """Each mapped column exists in the source (a query's columns are checked on its first chunk)."""
    found = sources.source_columns(spec.source, base_dir)
    if found is None:
        return
    for field, column in spec.columns.model_dump().items():
        if column is not None and column not in found:
            raise InputError(
                f"{label}: no column '{column}' (named in events.columns.{field}); found: {', '.join(found)}"
            )


def _spill(compact: pa.Table, buckets: int, writers: dict[int, pa.ipc.RecordBatchStreamWriter], folder: Path) -> None:
    """Append each row of `compact` to the spill file of its (account, day) bucket."""
    bucket = _bucket_of(compact, buckets)
    order = np.argsort(bucket, kind="stable")
    counts = np.bincount(bucket, minlength=buckets)
    ordered = compact.take(pa.array(order))
    start = 0
    for b in np.flatnonzero(counts):
        if b not in writers:
            writers[b] = pa.ipc.new_stream(str(folder / f"{b}.arrow"), compact.schema)
        writers[b].write_table(ordered.slice(start, counts[b]))
        start += counts[b]


def _bucket_of(compact: pa.Table, buckets: int) -> np.ndarray:
    """A bucket per row from a hash of (account_id, day): the same pair always gets the same
    bucket, in every block, and a large account's days spread over all buckets."""
    if buckets == 1:
        return np.zeros(compact.num_rows, dtype="int64")
    encoded = pc.dictionary_encode(compact.column("account_id")).combine_chunks()
    # hash each distinct account once per block (a few thousand), then index by row
    hashed = pd.util.hash_array(encoded.dictionary.to_numpy(zero_copy_only=False).astype(object))
    day = compact.column("day").to_numpy().astype("uint64")
    with np.errstate(over="ignore"):  # the arithmetic wraps modulo 2**64 on purpose
        mixed = hashed[encoded.indices.to_numpy()] + day * _GOLDEN
    return (mixed % np.uint64(buckets)).astype("int64")
