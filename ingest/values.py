"""Pure conversions of exported values: timestamps in any zone or epoch unit, value maps, money.

Each converter returns the converted column and leaves the decision about bad values to the
caller, who knows the file and the row; `bad_value` words that error the same way everywhere:
`events.csv row 1,204: column 'timestamp' value 'yesterday' is not a timestamp`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from core.contracts import TIME_DTYPE
from core.errors import InputError

# An offset (Z, +02:00, -0500) after a time of day: "2024-01-02" ends in "-02" and has none.
_OFFSET = r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|UTC|[+-]\d{2}(?::?\d{2})?)$"
_NUMBER = r"[+-]?\d+(?:\.\d*)?"
_US_PER_UNIT = {"s": 1e6, "ms": 1e3, "us": 1.0, "ns": 1e-3}


def bad_value(
    label: str, rows: np.ndarray, column: str, values: pd.Series, expected: str, *, first_row: int = 1
) -> InputError:
    """The error for the first offending row of `values` (`rows` is a boolean mask over it);
    `expected` is what the value should have been ("a timestamp")."""
    where = np.flatnonzero(rows)
    more = f" (and {len(where) - 1:,} more rows)" if len(where) > 1 else ""
    value = values.iloc[where[0]]
    problem = f"is blank; expected {expected}" if pd.isna(value) else f"value {str(value)!r} is not {expected}"
    return InputError(f"{label} row {first_row + where[0]:,}: column '{column}' {problem}{more}")


def blank_to_null(values: pd.Series) -> pd.Series:
    """Text cells that hold only spaces are missing values, as an empty cell is."""
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        return values.mask(values.astype("str").str.strip() == "")
    return values


def parse_timestamps(
    values: pd.Series, *, date_format: str | None = None, timezone: str = "UTC", calendar_day: bool = False
) -> tuple[pd.Series, np.ndarray]:
    """UTC timestamps, and a mask of the values that are not timestamps (nulls stay null).

    Accepted: datetime columns (naive ones are in `timezone`), text in ISO 8601 or `date_format`
    with or without an offset (offsets win over `timezone`), and numbers as epoch seconds,
    milliseconds, microseconds or nanoseconds (told apart by size: 1.7e9 is seconds in 2023,
    1.7e12 milliseconds). A `calendar_day` (a contract `date`) is not shifted by `timezone`.
    """
    values = blank_to_null(values).reset_index(drop=True)
    zone = "UTC" if calendar_day else timezone
    null = values.isna().to_numpy()
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        out = values.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(values):
        out = _localize(values, zone)
    elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        out = _from_epoch(values.astype("float64"))
    else:
        out = _from_text(values.astype("str").where(~null), date_format, zone)
    out = out.astype(TIME_DTYPE)
    return out, out.isna().to_numpy() & ~null


def _localize(values: pd.Series, zone: str) -> pd.Series:
    if zone == "UTC":
        return values.dt.tz_localize("UTC")
    # a wall time that occurs twice (clocks going back) is read as the first; one that never
    # occurs (clocks going forward) is moved forward: either way every row keeps a timestamp
    first = np.ones(len(values), dtype=bool)
    return values.dt.tz_localize(zone, ambiguous=first, nonexistent="shift_forward").dt.tz_convert("UTC")


def _from_epoch(numbers: pd.Series) -> pd.Series:
    size = numbers.abs()
    us = numbers * np.select(
        [size >= 1e17, size >= 1e14, size >= 1e11],
        [_US_PER_UNIT["ns"], _US_PER_UNIT["us"], _US_PER_UNIT["ms"]],
        _US_PER_UNIT["s"],
    )
    # beyond the years 1678-2261 a number is not a plausible event time: null, reported as bad
    us = us.where(us.abs() < 9.2e15)
    return pd.to_datetime(us.round(), unit="us", utc=True)


def _from_text(text: pd.Series, date_format: str | None, zone: str) -> pd.Series:
    text = text.str.strip()
    present = text.notna().to_numpy()
    parts = [pd.Series(pd.NaT, index=text.index[:0], dtype=TIME_DTYPE)]
    numeric = np.zeros(len(text), dtype=bool)
    if date_format is None:
        numeric = present & text.str.fullmatch(_NUMBER).fillna(False).to_numpy(dtype=bool)
        parts.append(_from_epoch(pd.to_numeric(text[numeric])))
    rest = present & ~numeric
    fmt = date_format or "ISO8601"
    if date_format is not None and ("%z" in date_format or "%Z" in date_format):
        offset = rest
    else:
        offset = rest & text.str.contains(_OFFSET, regex=True).fillna(False).to_numpy(dtype=bool)
    naive = rest & ~offset
    parts.append(
        pd.to_datetime(text[offset].str.replace(r"\s*UTC$", "Z", regex=True), utc=True, errors="coerce", format=fmt)
    )
    parts.append(_localize(pd.to_datetime(text[naive], errors="coerce", format=fmt), zone))
    # each part keeps its rows' index labels: put them back in order, NaT where nothing parsed
    return pd.concat([p.astype(TIME_DTYPE) for p in parts]).reindex(text.index)


def map_values(values: pd.Series, mapping: Mapping[str, Any]) -> pd.Series:
    """Replace the values listed in `mapping` (compared as stripped text; a blank cell is "");
    others pass through unchanged for the contract to judge."""
    text = values.astype("object").where(values.notna(), "").astype("str").str.strip()
    hit = text.isin(list(mapping)).to_numpy()
    out = values.astype("object")
    out[hit] = text[hit].map(dict(mapping)).to_numpy()
    return out


def parse_numbers(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Numbers as float64, and a mask of values that are not numbers (nulls stay null)."""
    values = blank_to_null(values)
    out = pd.to_numeric(values, errors="coerce").astype("float64")
    return out, out.isna().to_numpy() & values.notna().to_numpy()
