"""Reading what the workspace shows: the scored snapshot's accounts as arrays, the data folder it
was scored from (`score_summary.json`) and that folder's input tables, only the columns the pages
need and coerced by their contracts; and what the store's evaluation needs from them. A missing
source adds a sentence to `notes`, never an exception."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.errors import InputError
from core.settings import Settings

#: weeks of usage on the account page
USAGE_WEEKS = 26
USAGE_MEASURES = {"active_users": "active users (daily average)", "logins": "logins"}
NO_SEGMENT = "(none)"
#: the input tables the pages read and the columns they need of each
WANTED = {
    "usage_daily": ["account_id", "date", *USAGE_MEASURES],
    "tickets": ["ticket_id", "account_id", "created_at", "priority", "category", "channel"],
    "ticket_events": ["ticket_id", "at", "kind", "value"],
    "surveys": ["account_id", "answered_at", "kind", "score"],
    "churn": ["account_id", "churned_at"],
    "accounts": ["account_id", "arr"],
    "ticket_messages": ["sent_at"],
    "account_events": ["at"],
}


def read_json(path: Path) -> dict:
    """A JSON file's object; {} when it is absent or unreadable."""
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def find_data_dir(summary: dict, settings: Settings, notes: list[str]) -> Path | None:
    """The data folder the snapshot was scored from (its summary's `data`, else DATA_DIR)."""
    named = summary.get("data")
    for candidate in (named, None if named else settings.data_dir):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    where = named or settings.data_dir
    notes.append(
        f"The data folder the scores came from ({where}) is not there: usage, support and outcomes cannot be shown."
    )
    return None


def text_column(frame: pd.DataFrame, column: str, missing: str) -> np.ndarray:
    """A text column with `missing` for an absent column, a null or a blank."""
    if column not in frame:
        return np.full(len(frame), missing, dtype=object)
    values = frame[column].astype(object)
    return values.where(values.notna() & (values.astype(str).str.strip() != ""), missing).astype(str).to_numpy()


def codes(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer codes and their names, sorted."""
    found, names = pd.factorize(pd.Series(values), sort=True)
    return found.astype(np.int64), [str(n) for n in names]


def positions(index: pd.Index, ids: pd.Series) -> np.ndarray:
    """Each id's position in the snapshot (-1 when the snapshot does not hold it)."""
    return index.get_indexer(ids.astype(str))


def read_tables(data_dir: Path | None, cutoff: pd.Timestamp, notes: list[str]) -> dict[str, pd.DataFrame]:
    """The input tables the pages show (WANTED), coerced by their contracts (the builders keep the
    rows before the cutoff); an absent table is left out, an unreadable one too, with a note."""
    from core.contracts import TableFiles, coerce_columns
    from core.errors import ChurnError

    if data_dir is None:
        return {}
    files = TableFiles(data_dir)
    out: dict[str, pd.DataFrame] = {}
    for name, columns in WANTED.items():
        try:
            frame = _read(files, name, columns, cutoff)
            if frame is not None:
                out[name] = coerce_columns(name, frame)
        except (ChurnError, ValueError, KeyError) as exc:
            notes.append(f"The {name} table in {data_dir} could not be read ({exc}); it is left out.")
    return out


def _read(files: Any, name: str, columns: list[str], cutoff: pd.Timestamp) -> pd.DataFrame | None:
    """A table's columns (those it has); of a Parquet usage table only the rows of the weeks shown
    and later (the later ones still tell the data's end), read with a filter on its date."""
    path = files.path(name)
    if path is None or path.suffix != ".parquet":
        return files.read(name, columns)
    import pyarrow as pa
    import pyarrow.dataset as ds

    dataset = ds.dataset(path)
    present = [c for c in columns if c in dataset.schema.names]
    kind = dataset.schema.field("date").type if name == "usage_daily" and "date" in present else None
    if kind is not None and (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
        start = cutoff - pd.Timedelta(weeks=USAGE_WEEKS + 1)
        if pa.types.is_date(kind):
            bound = pa.scalar(start.date(), type=kind)
        else:
            bound = pa.scalar((start if kind.tz else start.tz_localize(None)).to_pydatetime(), type=kind)
        try:
            return dataset.to_table(columns=present, filter=ds.field("date") >= bound).to_pandas()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            pass  # an unusual time type: read it whole
    return files.read(name, present)


def outcome_inputs(
    tables: dict[str, pd.DataFrame], data_dir: Path | None, cutoff: pd.Timestamp, ids: np.ndarray, arr: np.ndarray
) -> tuple[pd.Series | None, pd.Timestamp | None, Any]:
    """What the store's evaluation needs from the data: churn times, the data's end (as `churn
    features` computes it) and the accounts' ARR (the accounts table's, else the snapshot's)."""
    from features.panel import TIME_COLUMNS, data_range_of

    if data_dir is None:
        return None, None, None
    churn = tables.get("churn")
    churned = (
        churn.assign(account_id=churn["account_id"].astype(str))
        .drop_duplicates("account_id")
        .set_index("account_id")["churned_at"]
        if churn is not None
        else pd.Series(dtype="datetime64[us, UTC]")
    )
    times = {t: tables[t][c] for t, c in TIME_COLUMNS.items() if t in tables and c in tables[t]}
    try:
        end = data_range_of(times)[1]
    except InputError:
        end = cutoff
    end = max(end, cutoff)
    accounts = tables.get("accounts")
    by_account = (
        accounts.assign(account_id=accounts["account_id"].astype(str)).set_index("account_id")["arr"]
        if accounts is not None and "arr" in accounts
        else pd.Series(arr, index=ids)
    )
    return churned, end, by_account


def utc(value: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def naive(times: pd.Series) -> np.ndarray:
    """UTC times as naive datetime64 (numpy keeps them as numbers; aware ones become objects)."""
    return pd.to_datetime(times, utc=True).dt.tz_localize(None).to_numpy()


def one_of(values: pd.Series, allowed: tuple[str, ...]) -> np.ndarray:
    """values.isin(allowed) for a few allowed values, by comparison (fast on Arrow-backed text)."""
    out = np.zeros(len(values), dtype=bool)
    for value in allowed:
        out |= (values == value).fillna(False).to_numpy(dtype=bool)
    return out
