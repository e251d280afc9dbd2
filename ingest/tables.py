"""Any contract table from any export, through a `tables:` entry of the mapping file (pure).

`map_table` renames the source's columns to the contract's, applies value maps, constants and
defaults, and parses timestamps and money in the units the mapping gives. Everything else (types,
allowed values, keys, references) is left to the contract check, which reports every violation
at once. Source columns neither mapped nor listed under `keep` are dropped: an export carries
dozens of fields, and in usage_daily each extra numeric column would become a feature.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from core.contracts import CONTRACTS, Column
from core.errors import InputError
from ingest.mapping import TableSpec
from ingest.values import bad_value, blank_to_null, map_values, parse_numbers, parse_timestamps

#: Columns that hold an amount of money (USD): `unit: cents` divides them by 100.
MONEY_COLUMNS: dict[str, tuple[str, ...]] = {"accounts": ("arr",), "account_events": ("value",)}


@dataclass
class MappedTable:
    """A table in contract shape (values still to be checked by the contract), with notes."""

    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def map_table(raw: pd.DataFrame, spec: TableSpec, table: str, label: str) -> MappedTable:
    """The source frame `raw` (read from `label`) as contract table `table`."""
    contract = CONTRACTS[table]
    wanted = [*spec.columns.values(), *spec.keep]
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        role = {src: f"tables.{table}.columns.{dst}" for dst, src in spec.columns.items()}
        raise InputError(
            f"{label}: no column '{missing[0]}' (named in {role.get(missing[0], f'tables.{table}.keep')}); "
            f"found: {', '.join(map(str, raw.columns))}"
        )
    raw = raw.reset_index(drop=True)
    columns: dict[str, pd.Series] = {}
    origin: dict[str, str] = {}  # contract column -> the name a message should use for it
    notes: list[str] = []
    absent: list[str] = []
    for col in contract.columns:
        source = _source_column(col, spec, raw)
        if col.name in spec.constants:
            columns[col.name] = pd.Series([spec.constants[col.name]] * len(raw), dtype="object")
            origin[col.name] = f"tables.{table}.constants.{col.name}"
        elif source is not None:
            columns[col.name] = blank_to_null(raw[source])
            origin[col.name] = source
        elif getattr(col, "optional", False):
            continue  # the contract reads an absent optional column as null
        elif col.nullable or col.name in spec.defaults:
            columns[col.name] = pd.Series([None] * len(raw), dtype="object")
            origin[col.name] = col.name
            if col.name not in spec.defaults:
                notes.append(f"{table}.{col.name}: not in {label}; left blank")
        else:
            absent.append(col.name)
    if absent:
        raise InputError(
            f"{label}: nothing gives {', '.join(f'{table}.{c}' for c in absent)}; map a source column under "
            f"tables.{table}.columns, give a value under tables.{table}.constants, or name a column '{absent[0]}' "
            f"(found: {', '.join(map(str, raw.columns))})"
        )
    for name, mapping in spec.values.items():
        if name in columns:
            columns[name] = map_values(columns[name], mapping)
    for name, default in spec.defaults.items():
        columns[name] = blank_to_null(columns[name]).fillna(default) if default is not None else columns[name]
    kinds = {c.name: c.kind for c in contract.columns}
    for name in columns:
        if kinds[name] in ("timestamp", "date"):
            columns[name] = _timestamps(columns[name], spec, kinds[name] == "date", label, origin[name])
    if spec.unit == "cents":
        for name in MONEY_COLUMNS.get(table, ()):
            if name in columns:
                dollars, bad = parse_numbers(columns[name])
                if bad.any():
                    raise bad_value(label, bad, origin[name], columns[name], "an amount in cents")
                columns[name] = dollars / 100
    kept = {c: raw[c] for c in spec.keep}
    return MappedTable(pd.DataFrame({**columns, **kept}), notes)


def _source_column(col: Column, spec: TableSpec, raw: pd.DataFrame) -> str | None:
    """The source column that gives `col`: mapped, under its own name, or under another name the
    contract knows it by."""
    if col.name in spec.columns:
        return spec.columns[col.name]
    mapped = set(spec.columns.values())
    for name in (col.name, *getattr(col, "also", ())):
        if name in raw.columns and name not in mapped:
            return name
    return None


def _timestamps(values: pd.Series, spec: TableSpec, calendar_day: bool, label: str, column: str) -> pd.Series:
    parsed, bad = parse_timestamps(
        values, date_format=spec.date_format, timezone=spec.timezone, calendar_day=calendar_day
    )
    if bad.any():
        expected = "a timestamp" + (f" in the format {spec.date_format}" if spec.date_format else "")
        raise bad_value(label, bad, column, values.reset_index(drop=True), expected)
    return parsed
