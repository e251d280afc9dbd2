"""Input table contracts: the shape a customer's own data must have (docs/data.md, "Input tables").

Each table is described once, as data: its columns (type, nullability, allowed values, range), its
key, and the cross-table rules (references, time order). `load_tables` reads a data folder,
coerces every column to its contract type and checks every rule at once, so one run reports all
problems. A violation names the table, the column, the rule and up to five offending keys.

All timestamps are UTC: naive values are read as UTC, offsets are converted. Time columns are
normalised to ``datetime64[us, UTC]``; ``date`` columns must fall on midnight.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from core.errors import ContractError, InputError, Violation
from core.vocabulary import (
    ACCOUNT_EVENT_KINDS,
    AUTHORS,
    BILLING,
    CHANNELS,
    PRIORITIES,
    SCORED_EVENT_RANGES,
    SURVEY_KINDS,
    TERM_MONTHS,
    TICKET_CATEGORIES,
    TICKET_EVENT_KINDS,
    USAGE_METRICS,
)

log = logging.getLogger(__name__)

Kind = Literal["id", "category", "text", "int", "float", "bool", "timestamp", "date"]
TIME_DTYPE = "datetime64[us, UTC]"

_BILLING_ALIASES = {
    **{str(m): name for name, m in TERM_MONTHS.items()},
    **{f"{m}.0": name for name, m in TERM_MONTHS.items()},
    "yearly": "annual",
    "year": "annual",
    "month": "monthly",
    "quarter": "quarterly",
    "semi-annual": "semiannual",
    "semi_annual": "semiannual",
    "half-yearly": "semiannual",
    "2-year": "biennial",
    "3-year": "triennial",
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    description: str = ""
    #: the column may be absent from a file (it is then null in every row)
    optional: bool = False
    #: other names the column goes by in exports (the first found is renamed to `name`)
    also: tuple[str, ...] = ()
    #: other spellings of allowed values (compared lowercased), mapped to the allowed value
    aliases: Mapping[str, str] | None = None
    #: what else is accepted, said after the allowed values in an error
    also_accepted: str = ""


@dataclass(frozen=True)
class TableContract:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    unique: bool
    required: bool
    description: str = ""
    #: at least one of these (optional) columns must be present
    one_of: tuple[str, ...] = ()
    #: extra columns are numeric measures, coerced to float64 (a value that is not a number is null)
    numeric_extras: bool = False

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def empty(self) -> pd.DataFrame:
        """A zero-row frame with the contract's columns and dtypes (for an absent optional table)."""
        return pd.DataFrame({c.name: pd.Series(dtype=_DTYPES[c.kind]) for c in self.columns})


_DTYPES: dict[str, str] = {
    "id": "str",
    "category": "str",
    "text": "str",
    "int": "Int64",
    "float": "float64",
    "bool": "boolean",
    "timestamp": TIME_DTYPE,
    "date": TIME_DTYPE,
}

CONTRACTS: dict[str, TableContract] = {
    c.name: c
    for c in (
        TableContract(
            "accounts",
            (
                Column("account_id", "id"),
                Column("name", "text"),
                Column(
                    "segment",
                    "category",
                    description="free text; the policy derives a value tier from ARR where it is not smb, mid_market or enterprise",
                ),
                Column("industry", "category"),
                Column("region", "category"),
                Column("plan", "category"),
                Column("seats", "int", min=1),
                Column("arr", "float", min=0, description="annual recurring revenue in USD at contract"),
                Column("contract_start", "timestamp"),
                Column(
                    "billing",
                    "category",
                    allowed=BILLING,
                    aliases=_BILLING_ALIASES,
                    also_accepted="or the months " + ", ".join(map(str, TERM_MONTHS.values())),
                    description="contract term (a name or months: 1, 3, 6, 12, 24, 36); renewals every term",
                ),
                Column("csm_owner", "text", nullable=True),
                Column("exec_sponsor", "bool", description="an executive sponsor existed at contract"),
                Column(
                    "renewal_date",
                    "timestamp",
                    nullable=True,
                    optional=True,
                    also=("contract_end",),
                    description="a renewal date agreed in the contract; renewals recur every term before and after it "
                    "(default: contract_start + k terms)",
                ),
            ),
            key=("account_id",),
            unique=True,
            required=True,
        ),
        TableContract(
            "usage_daily",
            (
                Column("account_id", "id"),
                Column("date", "date"),
                *(
                    Column(name, "float" if name == "session_minutes" else "int", min=0, optional=True)
                    for name in USAGE_METRICS
                ),
            ),
            key=("account_id", "date"),
            unique=True,
            required=True,
            description="one row per account and day; a row of zeros is a day without activity; extra numeric columns are "
            "activity measures too",
            one_of=USAGE_METRICS,
            numeric_extras=True,
        ),
        TableContract(
            "tickets",
            (
                Column("ticket_id", "id"),
                Column("account_id", "id"),
                Column("created_at", "timestamp"),
                Column("priority", "category", allowed=PRIORITIES),
                Column("category", "category", allowed=TICKET_CATEGORIES),
                Column("channel", "category", allowed=CHANNELS),
            ),
            key=("ticket_id",),
            unique=True,
            required=False,
        ),
        TableContract(
            "ticket_events",
            (
                Column("ticket_id", "id"),
                Column("at", "timestamp"),
                Column("kind", "category", allowed=TICKET_EVENT_KINDS),
                Column("value", "float", nullable=True, description="csat 1-5, ces 1-7 (7 = most effort), else null"),
            ),
            key=("ticket_id", "kind", "at"),
            unique=False,
            required=False,
        ),
        TableContract(
            "ticket_messages",
            (
                Column("message_id", "id"),
                Column("ticket_id", "id"),
                Column("sent_at", "timestamp"),
                Column("author", "category", allowed=AUTHORS),
                Column("body", "text"),
            ),
            key=("message_id",),
            unique=True,
            required=False,
        ),
        TableContract(
            "surveys",
            (
                Column("account_id", "id"),
                Column("answered_at", "timestamp"),
                Column("kind", "category", allowed=SURVEY_KINDS),
                Column("score", "int", min=0, max=10),
                Column("comment", "text", nullable=True),
            ),
            key=("account_id", "answered_at"),
            unique=False,
            required=False,
        ),
        TableContract(
            "account_events",
            (
                Column("account_id", "id"),
                Column("at", "timestamp"),
                Column("kind", "category", allowed=ACCOUNT_EVENT_KINDS),
                Column("value", "float", nullable=True, description="ARR change in USD where it applies"),
            ),
            key=("account_id", "kind", "at"),
            unique=False,
            required=False,
        ),
        TableContract(
            "churn",
            (Column("account_id", "id"), Column("churned_at", "timestamp")),
            key=("account_id",),
            unique=True,
            required=False,
            description="one row per churned account",
        ),
    )
}

TABLES: tuple[str, ...] = tuple(CONTRACTS)


@dataclass
class LoadedTables:
    """The validated input tables, by name, plus notes for the user (e.g. absent optional tables)."""

    tables: dict[str, pd.DataFrame]
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tables)


# --- reading ---------------------------------------------------------------------------------


def find_table_file(data_dir: Path, name: str) -> Path | None:
    """`DIR/<name>.parquet` or `DIR/<name>.csv`; both present is ambiguous and an error."""
    found = [p for p in (data_dir / f"{name}.parquet", data_dir / f"{name}.csv") if p.is_file()]
    if len(found) > 1:
        raise InputError(
            f"table '{name}': both {found[0].name} and {found[1].name} exist in {data_dir}; expected exactly one"
        )
    return found[0] if found else None


def read_raw_table(path: Path) -> pd.DataFrame:
    """Read a CSV (every column as text, coerced later by the contract) or a Parquet file."""
    try:
        if path.suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=True)
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow and the csv parser raise many types; the user needs the file name
        raise InputError(f"could not read {path}: {exc}") from exc


class TableFiles:
    """The raw input files of a data folder, readable whole or a slice at a time.

    Parquet files are sliced with pyarrow filters (row groups that cannot match are skipped);
    a CSV file is read once and sliced in memory. Values come back raw: validate them after.
    """

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        if not self.data_dir.is_dir():
            raise InputError(
                f"--data {self.data_dir}: no such folder; expected a folder holding <table>.parquet or <table>.csv"
            )
        self._csv: dict[str, pd.DataFrame] = {}

    def __getstate__(self) -> dict:
        # shipped to another process (a Dask worker): the path only; CSV tables are read again there
        return {"data_dir": self.data_dir, "_csv": {}}

    def path(self, name: str) -> Path | None:
        return find_table_file(self.data_dir, name)

    def read(self, name: str, columns: list[str] | None = None) -> pd.DataFrame | None:
        path = self.path(name)
        return None if path is None else self._read_file(name, path, columns)

    def _read_file(self, name: str, path: Path, columns: list[str] | None) -> pd.DataFrame:
        if path.suffix == ".csv":
            frame = self._csv_frame(name, path)
            return frame if columns is None else frame[[c for c in columns if c in frame.columns]]
        try:
            return pd.read_parquet(path, columns=columns)
        except Exception as exc:  # a missing column or a broken file: name the file
            raise InputError(f"could not read {path}: {exc}") from exc

    def read_where(
        self, name: str, column: str, values: np.ndarray, columns: list[str] | None = None
    ) -> pd.DataFrame | None:
        """Rows whose `column` is one of `values` (compared as text)."""
        path = self.path(name)
        if path is None:
            return None
        if path.suffix == ".csv":
            frame = self._csv_frame(name, path)
            frame = frame[frame[column].isin(values)] if column in frame.columns else frame.iloc[0:0]
            return frame if columns is None else frame[[c for c in columns if c in frame.columns]]
        import pyarrow as pa
        import pyarrow.dataset as ds

        try:
            dataset = ds.dataset(path)
            field = dataset.schema.field(column)
            wanted = pa.array(np.asarray(values, dtype=object), type=pa.string())
            if not pa.types.is_string(field.type) and not pa.types.is_large_string(field.type):
                wanted = wanted.cast(field.type)
            return dataset.to_table(columns=columns, filter=ds.field(column).isin(wanted)).to_pandas()
        except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
            frame = self._read_file(name, path, columns=None)
            if column not in frame.columns:
                return frame  # the contract check will name the missing column
            frame = frame[frame[column].astype("str").isin(values)]
            return frame if columns is None else frame[[c for c in columns if c in frame.columns]]
        except Exception as exc:
            raise InputError(f"could not read {path}: {exc}") from exc

    def count(self, name: str) -> int:
        path = self.path(name)
        if path is None:
            return 0
        if path.suffix == ".csv":
            return len(self._csv_frame(name, path))
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows

    def _csv_frame(self, name: str, path: Path) -> pd.DataFrame:
        if name not in self._csv:
            self._csv[name] = read_raw_table(path)
        return self._csv[name]


def load_tables(data_dir: str | Path, *, tables: tuple[str, ...] = TABLES) -> LoadedTables:
    """Read and validate the input tables of a data folder.

    Raises `ContractError` (an `InputError`) listing every broken rule; nothing is written.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"--data {data_dir}: no such folder; expected a folder holding <table>.parquet or <table>.csv")
    raw: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    missing_required = []
    for name in tables:
        path = find_table_file(data_dir, name)
        if path is None:
            if CONTRACTS[name].required:
                missing_required.append(name)
            else:
                notes.append(f"table '{name}' not found in {data_dir}; treated as empty")
            continue
        raw[name] = read_raw_table(path)
    if missing_required:
        raise InputError(
            f"required table(s) {', '.join(missing_required)} not found in {data_dir}; "
            "expected <table>.parquet or <table>.csv for each"
        )
    return LoadedTables(validate_tables(raw, tables=tables), notes)


# --- validation ------------------------------------------------------------------------------


def validate_tables(
    raw: Mapping[str, pd.DataFrame],
    *,
    tables: tuple[str, ...] = TABLES,
    context: Mapping[str, pd.DataFrame] | None = None,
) -> dict[str, pd.DataFrame]:
    """Coerce each table to its contract and check every rule; return the clean tables.

    Absent optional tables come back as empty frames with the right columns and dtypes.
    `context` holds tables validated before (say, the accounts when usage is checked block by
    block); cross-table rules that involve at least one of `tables` see them.
    """
    violations: list[Violation] = []
    clean: dict[str, pd.DataFrame] = {}
    for name in tables:
        contract = CONTRACTS[name]
        if name not in raw:
            if contract.required:
                violations.append(Violation(name, "*", "table_present", "the table to be present"))
            clean[name] = contract.empty()
            continue
        frame, found = _coerce_table(contract, raw[name])
        violations.extend(found)
        clean[name] = frame
    if not violations:
        # cross-table rules see every table; one neither checked nor given as context counts as empty
        known = {**(context or {}), **clean}
        everything = {name: known.get(name, contract.empty()) for name, contract in CONTRACTS.items()}
        for involved, rule in CROSS_TABLE_RULES:
            if involved & set(tables):
                violations.extend(rule(everything))
    if violations:
        raise ContractError(violations)
    return clean


def _row_keys(frame: pd.DataFrame, contract: TableContract, mask: np.ndarray | pd.Series) -> tuple[str, ...]:
    """Describe up to five offending rows by their key (or by data row number if the key is blank)."""
    mask = np.asarray(mask, dtype=bool)
    rows = frame.loc[mask, [c for c in contract.key if c in frame.columns]].head(5)
    out = []
    for position, (_, row) in zip(np.flatnonzero(mask)[:5], rows.iterrows(), strict=False):
        values = [v for v in row.tolist()]
        if any(pd.isna(v) for v in values) or not values:
            out.append(f"row {position + 1}")
        elif len(values) == 1:
            out.append(str(values[0]))
        else:
            out.append("(" + ", ".join(str(v) for v in values) + ")")
    return tuple(out)


def _violation(
    contract: TableContract, frame: pd.DataFrame, column: str, rule: str, expected: str, mask
) -> list[Violation]:
    mask = np.asarray(mask, dtype=bool)
    count = int(mask.sum())
    if count == 0:
        return []
    return [Violation(contract.name, column, rule, expected, _row_keys(frame, contract, mask), count)]


def _coerce_table(contract: TableContract, raw: pd.DataFrame) -> tuple[pd.DataFrame, list[Violation]]:
    violations: list[Violation] = []
    raw = _rename_also(contract, raw)
    missing = [c.name for c in contract.columns if c.name not in raw.columns and not c.optional]
    found = ", ".join(map(str, raw.columns))
    if contract.one_of and not any(c in raw.columns for c in contract.one_of):
        missing.append(" or ".join(contract.one_of))
    if missing:
        return raw, [
            Violation(contract.name, col, "column_present", f"a column named '{col}' (found: {found})")
            for col in missing
        ]
    raw = raw.reset_index(drop=True)
    # an optional column written with no value at all (an export's empty measure) is absent too
    absent = {
        c.name
        for c in contract.columns
        if c.name not in raw.columns or (c.optional and len(raw) and raw[c.name].isna().all())
    }
    columns: dict[str, pd.Series] = {}
    unparseable: dict[str, np.ndarray] = {}
    for col in contract.columns:
        values = raw[col.name] if col.name not in absent else pd.Series(pd.NA, index=raw.index, dtype="object")
        columns[col.name], unparseable[col.name] = _coerce_column(values, col)
    extra = {c: raw[c] for c in raw.columns if c not in columns}
    if contract.numeric_extras:
        extra = {c: pd.to_numeric(v, errors="coerce").astype("float64") for c, v in extra.items()}
    frame = pd.DataFrame({**columns, **extra})
    for col in contract.columns:
        violations += _violation(contract, frame, col.name, "type", _TYPE_EXPECTED[col.kind], unparseable[col.name])
    for col in contract.columns:
        if col.name in absent:
            continue
        values = frame[col.name]
        null = values.isna().to_numpy()
        if not col.nullable:
            violations += _violation(contract, frame, col.name, "not_null", "a value in every row", null)
        if col.allowed is not None:
            bad = ~null & ~values.isin(col.allowed).to_numpy()
            expected = f"one of {', '.join(col.allowed)}" + (f" ({col.also_accepted})" if col.also_accepted else "")
            violations += _violation(contract, frame, col.name, "allowed_values", expected, bad)
        if col.min is not None:
            bad = ~null & (values.to_numpy(dtype="float64", na_value=np.nan) < col.min)
            violations += _violation(contract, frame, col.name, "minimum", f"values >= {col.min:g}", bad)
        if col.max is not None:
            bad = ~null & (values.to_numpy(dtype="float64", na_value=np.nan) > col.max)
            violations += _violation(contract, frame, col.name, "maximum", f"values <= {col.max:g}", bad)
        if col.kind == "date":
            bad = ~null & (values != values.dt.floor("D")).fillna(False).to_numpy(dtype=bool)
            violations += _violation(contract, frame, col.name, "date", "dates at midnight UTC (no time of day)", bad)
    if contract.unique:
        dup = frame.duplicated(list(contract.key), keep=False).to_numpy()
        violations += _violation(contract, frame, "+".join(contract.key), "unique_key", "each key at most once", dup)
    return frame, violations


def _rename_also(contract: TableContract, raw: pd.DataFrame) -> pd.DataFrame:
    """Columns found under another name an export uses (contract_end for renewal_date) get the contract's name."""
    renames = {}
    for col in contract.columns:
        if col.name not in raw.columns:
            other = next((name for name in col.also if name in raw.columns), None)
            if other is not None:
                renames[other] = col.name
    return raw.rename(columns=renames) if renames else raw


_TYPE_EXPECTED = {
    "id": "a text identifier",
    "category": "a text label",
    "text": "text",
    "int": "whole numbers",
    "float": "numbers",
    "bool": "true/false (or yes/no, 1/0)",
    "timestamp": "ISO 8601 timestamps (UTC; naive values are read as UTC)",
    "date": "ISO 8601 dates",
}

_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


def coerce_column(table: str, column: str, values: pd.Series) -> pd.Series:
    """One column coerced to its contract type (unparseable values become null)."""
    spec = next(c for c in CONTRACTS[table].columns if c.name == column)
    return _coerce_column(values, spec)[0]


def coerce_columns(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """A slice of an input table read again after validation, its contract columns coerced to their
    contract types (ids as text, times as UTC), so a second reader sees what the first validated."""
    known = {c.name for c in CONTRACTS[table].columns}
    return frame.assign(**{c: coerce_column(table, c, frame[c]) for c in frame.columns if c in known})


def _coerce_column(values: pd.Series, col: Column) -> tuple[pd.Series, np.ndarray]:
    """Convert one column to its contract dtype; return it and a mask of unparseable values."""
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        values = values.mask(values.astype("str").str.strip() == "")  # a blank cell is a missing value
    was_null = values.isna().to_numpy()
    if col.kind in ("id", "category", "text"):
        out = values.astype("str")
        if col.kind != "text":
            out = out.str.strip()
        if col.aliases:
            lowered = out.str.lower()
            out = lowered.map(col.aliases).fillna(lowered).astype("str").where(~was_null)
        return out, np.zeros(len(values), dtype=bool)
    if col.kind in ("int", "float"):
        out = pd.to_numeric(values, errors="coerce").astype("float64")
        bad = out.isna().to_numpy() & ~was_null
        if col.kind == "int":
            fractional = (out.to_numpy() % 1 != 0) & ~np.isnan(out.to_numpy())
            bad |= fractional
            out = out.where(~fractional).round().astype("Int64")
        return out, bad
    if col.kind == "bool":
        if pd.api.types.is_bool_dtype(values):
            return values.astype("boolean"), np.zeros(len(values), dtype=bool)
        text = values.astype("str").str.strip().str.lower()
        out = pd.Series(pd.NA, index=values.index, dtype="boolean")
        out[text.isin(_TRUE).to_numpy()] = True
        out[text.isin(_FALSE).to_numpy()] = False
        return out, out.isna().to_numpy() & ~was_null
    # timestamp / date
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        out = values.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(values):
        out = values.dt.tz_localize("UTC")
    else:
        out = pd.to_datetime(values.astype("str"), utc=True, errors="coerce", format="ISO8601")
    out = out.astype(TIME_DTYPE)
    return out, out.isna().to_numpy() & ~was_null


# --- cross-table rules -----------------------------------------------------------------------

Rule = Callable[[dict[str, pd.DataFrame]], list[Violation]]


def _references(child: str, column: str, parent: str, parent_column: str) -> Rule:
    def rule(t: dict[str, pd.DataFrame]) -> list[Violation]:
        frame = t[child]
        bad = ~frame[column].isin(t[parent][parent_column]).to_numpy()
        return _violation(
            CONTRACTS[child], frame, column, "references", f"every {column} to exist in {parent}.{parent_column}", bad
        )

    return rule


def _not_before(child: str, column: str, on: str, parent: str, parent_column: str, *, by_day: bool = False) -> Rule:
    """Rows of `child` must not be dated before their parent's `parent_column`."""

    def rule(t: dict[str, pd.DataFrame]) -> list[Violation]:
        frame = t[child]
        if frame.empty or t[parent].empty:  # nothing to order (a missing parent is a `references` violation)
            return []
        start = frame[on].map(t[parent].drop_duplicates(on).set_index(on)[parent_column])
        if by_day:
            start = start.dt.floor("D")
        bad = (frame[column] < start).fillna(False).to_numpy(dtype=bool)
        what = f"{column} on or after {parent}.{parent_column}" + (" (same day allowed)" if by_day else "")
        return _violation(CONTRACTS[child], frame, column, "time_order", what, bad)

    return rule


def _usage_not_after_churn(t: dict[str, pd.DataFrame]) -> list[Violation]:
    frame = t["usage_daily"]
    if frame.empty or t["churn"].empty:
        return []
    churned = frame["account_id"].map(t["churn"].set_index("account_id")["churned_at"])
    bad = (frame["date"] > churned).fillna(False).to_numpy(dtype=bool)
    return _violation(CONTRACTS["usage_daily"], frame, "date", "time_order", "no usage after churn.churned_at", bad)


def _event_values(t: dict[str, pd.DataFrame]) -> list[Violation]:
    frame = t["ticket_events"]
    contract = CONTRACTS["ticket_events"]
    value = frame["value"].to_numpy(dtype="float64", na_value=np.nan)
    kind = frame["kind"].to_numpy(dtype=object)
    out: list[Violation] = []
    scored = np.zeros(len(frame), dtype=bool)
    for name, (low, high) in SCORED_EVENT_RANGES.items():
        is_kind = kind == name
        scored |= is_kind
        bad = is_kind & ~((value >= low) & (value <= high) & (value % 1 == 0))
        out += _violation(
            contract, frame, "value", f"{name}_score", f"a whole number {low}-{high} for kind={name}", bad
        )
    bad = ~scored & ~np.isnan(value)
    out += _violation(contract, frame, "value", "value_for_kind", "no value for kinds other than csat and ces", bad)
    return out


CROSS_TABLE_RULES: tuple[tuple[set[str], Rule], ...] = (
    ({"usage_daily", "accounts"}, _references("usage_daily", "account_id", "accounts", "account_id")),
    ({"tickets", "accounts"}, _references("tickets", "account_id", "accounts", "account_id")),
    ({"ticket_events", "tickets"}, _references("ticket_events", "ticket_id", "tickets", "ticket_id")),
    ({"ticket_messages", "tickets"}, _references("ticket_messages", "ticket_id", "tickets", "ticket_id")),
    ({"surveys", "accounts"}, _references("surveys", "account_id", "accounts", "account_id")),
    ({"account_events", "accounts"}, _references("account_events", "account_id", "accounts", "account_id")),
    ({"churn", "accounts"}, _references("churn", "account_id", "accounts", "account_id")),
    (
        {"usage_daily", "accounts"},
        _not_before("usage_daily", "date", "account_id", "accounts", "contract_start", by_day=True),
    ),
    ({"tickets", "accounts"}, _not_before("tickets", "created_at", "account_id", "accounts", "contract_start")),
    ({"surveys", "accounts"}, _not_before("surveys", "answered_at", "account_id", "accounts", "contract_start")),
    ({"account_events", "accounts"}, _not_before("account_events", "at", "account_id", "accounts", "contract_start")),
    ({"churn", "accounts"}, _not_before("churn", "churned_at", "account_id", "accounts", "contract_start")),
    ({"ticket_events", "tickets"}, _not_before("ticket_events", "at", "ticket_id", "tickets", "created_at")),
    ({"ticket_messages", "tickets"}, _not_before("ticket_messages", "sent_at", "ticket_id", "tickets", "created_at")),
    ({"usage_daily", "churn"}, _usage_not_after_churn),
    ({"ticket_events"}, _event_values),
)
