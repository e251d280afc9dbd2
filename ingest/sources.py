"""Readers of a mapping file's sources: CSV files, Parquet files or folders, SQL queries.

A table source is read whole (`read_source`); an event source is read in blocks of rows
(`iter_blocks`) so a stream of tens of millions of events never sits in memory at once. Paths
and relative sqlite URLs are taken relative to the mapping file. Every failure names the source.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from core.errors import InputError
from ingest.mapping import Source

#: bytes of CSV per row, to turn a block of rows into pyarrow's block size in bytes
_CSV_ROW_BYTES = 128


@dataclass(frozen=True)
class Block:
    """Rows of an event source: `first_row` is the 1-based row number of the first one in `label`."""

    table: pa.Table
    label: str
    first_row: int


def describe(source: Source) -> str:
    """How messages name a source: its path as written in the mapping, or the query's URL
    without its password."""
    if source.path is not None:
        return source.path
    from sqlalchemy.engine import make_url

    try:
        url = make_url(source.url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is reported when it is opened
        url = "<url>"
    return f"query on {url}"


def resolve(source: Source, base_dir: Path) -> Path:
    """The file or folder a path source names (relative to the mapping file)."""
    path = Path(source.path).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.exists():
        raise InputError(f"{source.path}: no such file or folder (looked in {path.parent})")
    return path


def _kind(path: Path) -> str:
    if path.is_dir() or path.suffix.lower() in (".parquet", ".pq"):
        return "parquet"
    if path.name.lower().endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zst")):
        return "csv"
    raise InputError(f"{path}: expected a .csv file (or .csv.gz), a .parquet file or a folder of Parquet files")


def _sql_url(source: Source, base_dir: Path) -> str:
    # `sqlite:///crm.db` in a mapping file means next to the file, as every other path in it does
    url = source.url or ""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and url != "sqlite:///:memory:":
        return "sqlite:///" + str((base_dir / url.removeprefix("sqlite:///")).resolve())
    return url


def read_source(source: Source, base_dir: Path) -> pd.DataFrame:
    """A table source as a DataFrame. CSV cells come back as text (the mapper parses them), so an
    identifier such as 00123 keeps its zeros."""
    label = describe(source)
    if source.url is not None:
        return _read_sql(source, base_dir, label)
    path = resolve(source, base_dir)
    try:
        if _kind(path) == "csv":
            return pd.read_csv(path, dtype=str, keep_default_na=True, encoding="utf-8-sig")
        return pd.read_parquet(path)
    except InputError:
        raise
    except Exception as exc:  # the parsers raise many types; the user needs the file and the reason
        raise InputError(f"{label}: could not read it: {' '.join(str(exc).split())}") from exc


@contextlib.contextmanager
def _connection(source: Source, base_dir: Path, label: str) -> Iterator:
    """A connection to the query's database; its errors name the source."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(_sql_url(source, base_dir))
    except Exception as exc:  # noqa: BLE001 - a bad URL or a missing driver
        raise InputError(f"{label}: not a usable SQLAlchemy URL: {' '.join(str(exc).split())}") from exc
    try:
        with engine.connect() as connection:
            yield connection
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise InputError(f"{label}: the query failed: {reason}") from exc
    finally:
        engine.dispose()


def _read_sql(source: Source, base_dir: Path, label: str) -> pd.DataFrame:
    import sqlalchemy

    with _connection(source, base_dir, label) as connection:
        return pd.read_sql_query(sqlalchemy.text(source.query), connection)


def _sql_chunks(source: Source, base_dir: Path, label: str, rows: int) -> Iterator[pd.DataFrame]:
    import sqlalchemy

    with _connection(source, base_dir, label) as connection:
        yield from pd.read_sql_query(sqlalchemy.text(source.query), connection, chunksize=rows)


def source_columns(source: Source, base_dir: Path) -> list[str] | None:
    """The column names of a file source, read from its header or schema (None for a query:
    its columns are known once it runs)."""
    if source.url is not None:
        return None
    path = resolve(source, base_dir)
    if _kind(path) == "csv":
        # through pyarrow's stream, so a compressed CSV (.csv.gz, .csv.zst) is read the same way
        with (
            pa.input_stream(str(path), compression="detect") as raw,
            io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text,
        ):
            return next(csv.reader(text), [])
    import pyarrow.dataset as ds

    return list(ds.dataset(path, format="parquet").schema.names)


def count_rows(source: Source, base_dir: Path) -> int | None:
    """Rows of a source without reading it: exact for Parquet, estimated from a CSV's size,
    unknown (None) for a query."""
    if source.url is not None:
        return None
    path = resolve(source, base_dir)
    if _kind(path) == "csv":
        # an event row is ~64 bytes of CSV; compressed, ~8 (an over-estimate only adds spill files)
        return path.stat().st_size // (64 if path.suffix.lower() == ".csv" else 8) + 1
    import pyarrow.dataset as ds

    return ds.dataset(path, format="parquet").count_rows()


def iter_blocks(source: Source, base_dir: Path, columns: list[str], block_rows: int) -> Iterator[Block]:
    """The source's `columns` in blocks of about `block_rows` rows (CSV cells as text)."""
    label = describe(source)
    if source.url is not None:
        first = 1
        for chunk in _sql_chunks(source, base_dir, label, block_rows):
            missing = [c for c in columns if c not in chunk.columns]
            if missing:
                raise InputError(
                    f"{label}: no column '{missing[0]}'; the query returns {', '.join(map(str, chunk.columns))}"
                )
            yield Block(pa.Table.from_pandas(chunk[columns], preserve_index=False), label, first)
            first += len(chunk)
        return
    path = resolve(source, base_dir)
    try:
        if _kind(path) == "csv":
            yield from _csv_blocks(path, label, columns, block_rows)
        else:
            yield from _parquet_blocks(path, label, columns, block_rows)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{label}: could not read it: {' '.join(str(exc).split())}") from exc


def _csv_blocks(path: Path, label: str, columns: list[str], block_rows: int) -> Iterator[Block]:
    import pyarrow.csv as pacsv

    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=max(block_rows * _CSV_ROW_BYTES, 4096)),
        # every column as text: type inference on the first block would refuse a later one
        convert_options=pacsv.ConvertOptions(
            include_columns=columns, column_types={c: pa.string() for c in columns}, strings_can_be_null=True
        ),
    )
    first = 1
    for batch in reader:
        yield Block(pa.Table.from_batches([batch]), label, first)
        first += batch.num_rows


def _parquet_blocks(path: Path, label: str, columns: list[str], block_rows: int) -> Iterator[Block]:
    import pyarrow.dataset as ds

    dataset = ds.dataset(path, format="parquet")
    for fragment in dataset.get_fragments():
        # rows are numbered per file, so the message names the file of a folder that holds the row
        name = label if path.is_file() else f"{label.rstrip('/')}/{Path(fragment.path).name}"
        first = 1
        for batch in fragment.to_batches(
            columns=columns, batch_size=block_rows, batch_readahead=1, fragment_readahead=1
        ):
            yield Block(pa.Table.from_batches([batch]), name, first)
            first += batch.num_rows
