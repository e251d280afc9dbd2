"""Reading the snapshot table a user brings (`churn train-table`): one row per customer, one yes/no label.

Business CSVs arrive messy: numbers stored as text with " " for unknown, yes/no labels, id and
free-text columns, dates. `prepare_table` turns such a frame into a model matrix and writes down
every decision it took as a plain sentence (`notes`), so the person who brought the table can check
them; anything it cannot decide safely is an `InputError` naming the column and what was expected.
`apply_columns` prepares new rows the same way. models/table.py chooses and fits the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.errors import InputError

MIN_ROWS = 50
MAX_LEVELS = 200
MAX_UNIQUE_SHARE = 0.5
DATE_SHARE = 0.9
MISSING_LEVEL = "(missing)"

#: Label values read as "churned" (1) and "stayed" (0), compared lower-cased with "_"/"-" as spaces;
#: a value also matches on its first word ("Attrited Customer", "Existing Customer").
POSITIVE = frozenset(
    {
        "yes",
        "y",
        "true",
        "t",
        "1",
        "churn",
        "churned",
        "churner",
        "left",
        "leaver",
        "lost",
        "cancelled",
        "canceled",
        "cancel",
        "exited",
        "exit",
        "attrited",
        "attrition",
        "inactive",
        "closed",
        "terminated",
        "lapsed",
        "positive",
        "pos",
    }
)
NEGATIVE = frozenset(
    {
        "no",
        "n",
        "false",
        "f",
        "0",
        "retained",
        "retain",
        "active",
        "stayed",
        "stay",
        "existing",
        "current",
        "renewed",
        "kept",
        "remained",
        "loyal",
        "negative",
        "neg",
        "not churned",
        "no churn",
        "not churn",
    }
)
#: Text read as "unknown" inside a numeric column (pandas already reads "NA", "null", "" as missing).
MISSING_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "?", "#n/a"})
_TIME = r"(?:[ T]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
_DATE = rf"\d{{4}}[-/.]\d{{1,2}}[-/.]\d{{1,2}}{_TIME}|\d{{1,2}}[-/.]\d{{1,2}}[-/.]\d{{2,4}}{_TIME}"
_THOUSANDS = r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?"
_ID_SUFFIXES = ("id", "key", "number", "index", "_no", "uuid", "guid")


@dataclass
class PreparedTable:
    """The model matrix and everything needed to prepare new rows the same way.

    `columns` maps each feature to its category levels (text) or None (numeric), in X's order."""

    X: pd.DataFrame
    y: np.ndarray
    ids: pd.Series | None
    notes: list[str]
    positive_label: str
    label: str = ""
    id_column: str | None = None
    columns: dict[str, list[str] | None] = field(default_factory=dict)
    negative_label: str = ""


# -- column reading ----------------------------------------------------------------------------
def _text(series: pd.Series) -> pd.Series:
    """Values as stripped strings; blanks become missing."""
    text = series.astype("str").str.strip()
    return text.mask(text == "")


def _to_number(text: pd.Series) -> pd.Series:
    """Text to float: missing tokens and anything unparseable become NaN. A leading currency sign and
    thousands separators ("$1,234.50") are removed; a lone comma is never read as a decimal point."""
    text = text.str.replace(r"^([-+]?)\s*[$€£]\s*", r"\1", regex=True)
    thousands = text.str.fullmatch(_THOUSANDS, na=False)
    text = text.mask(thousands, text.str.replace(",", "", regex=False))
    return pd.to_numeric(text.mask(text.str.lower().isin(MISSING_TOKENS)), errors="coerce").astype("float64")


def _quote(values, limit: int = 5) -> str:
    values = list(values)
    shown = ", ".join(f"'{v}'" for v in values[:limit])
    return shown + (f" (and {len(values) - limit} more)" if len(values) > limit else "")


def _looks_like_id_name(name: str) -> bool:
    low = name.strip().lower()
    return low == "id" or low.endswith(_ID_SUFFIXES)


def _numeric_column(name: str, values: pd.Series, notes: list[str]) -> pd.Series | None:
    """A numeric feature, or None (dropped, with a note)."""
    known = values.dropna()
    if known.empty:
        notes.append(f"column {name}: no values: dropped")
        return None
    if known.nunique() == 1 and len(known) == len(values):  # one value or blank ("1"/"") is a flag: kept
        notes.append(f"column {name}: the same value ({known.iloc[0]:g}) in every row: dropped")
        return None
    whole = bool((known == np.round(known)).all())
    if (
        whole
        and len(known) == len(values)
        and known.is_unique
        and (_looks_like_id_name(name) or known.is_monotonic_increasing)
    ):
        notes.append(f"column {name} looks like an identifier (a different whole number per row): dropped")
        return None
    return values


def _text_column(name: str, raw: pd.Series, notes: list[str]) -> tuple[str, pd.Series, list[str] | None] | None:
    """("numeric", values, None) or ("category", codes-ready text, levels), or None when dropped."""
    text = _text(raw)
    blanks = int((text.isna() & raw.notna()).sum())
    known = text.dropna()
    if known.empty:
        notes.append(f"column {name}: no values: dropped")
        return None
    number = _to_number(text)
    tokens = text.str.lower().isin(MISSING_TOKENS)
    failed = text.notna() & ~tokens & number.isna()
    if not failed.any():
        missing_words = sorted(text[tokens].unique().tolist())
        if blanks:
            notes.append(f"column {name}: {blanks} blank value{'s' if blanks != 1 else ''} read as missing")
        if missing_words:
            notes.append(f"column {name}: {int(tokens.sum())} value(s) {_quote(missing_words)} read as missing")
        plain = text[text.notna() & ~tokens].str.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
        if not plain.all():
            notes.append(f"column {name}: currency signs or thousands separators removed to read numbers")
        notes.append(f"column {name}: text read as numbers")
        values = _numeric_column(name, number, notes)
        return None if values is None else ("numeric", values, None)
    if known.str.fullmatch(_DATE).mean() >= DATE_SHARE:
        notes.append(
            f"column {name} looks like dates (e.g. '{known.iloc[0]}'): dropped; give ages or durations "
            "as of the snapshot (e.g. days since signup) as numbers to use them"
        )
        return None
    levels = int(known.nunique())
    if levels == 1 and len(known) == len(text):
        notes.append(f"column {name}: the same value ('{known.iloc[0]}') in every row: dropped")
        return None
    if levels == len(known) and len(known) >= MIN_ROWS:
        notes.append(f"column {name} looks like an identifier (unique per row): dropped")
        return None
    if levels > MAX_LEVELS or (len(known) >= MIN_ROWS and levels > MAX_UNIQUE_SHARE * len(known)):
        notes.append(
            f"column {name} looks like free text or an identifier ({levels} distinct values in {len(known)} "
            f"rows; a category needs at most {MAX_LEVELS} levels and at most {MAX_UNIQUE_SHARE:.0%} distinct): dropped"
        )
        return None
    if blanks:
        notes.append(f"column {name}: {blanks} blank value{'s' if blanks != 1 else ''} read as missing")
    return "category", text, sorted(known.unique().tolist())


def _label(frame: pd.DataFrame, label: str, notes: list[str]) -> tuple[np.ndarray, str, str]:
    """0/1 labels, the positive value and the negative value (as text)."""
    raw = frame[label]
    text = _text(raw)
    missing = int(text.isna().sum())
    if missing:
        raise InputError(
            f"label column '{label}': {missing} row(s) have no value (blank or empty); expected a value "
            "on every row (drop or fill those rows first)"
        )
    counts = text.value_counts()
    if len(counts) != 2:
        found = ", ".join(f"'{v}' ({n} rows)" for v, n in counts.head(10).items())
        more = f" and {len(counts) - 10} more" if len(counts) > 10 else ""
        raise InputError(
            f"label column '{label}': expected exactly two distinct values (e.g. Yes/No, 1/0), "
            f"found {len(counts)}: {found}{more}"
        )
    key = counts.index.to_series().str.lower().str.replace(r"[_\-]+", " ", regex=True).str.strip()
    key = key.mask(key.isin(["1.0", "0.0"]), key.str[0])
    side = key.map(lambda k: 1 if k in POSITIVE else 0 if k in NEGATIVE else None)
    first = key.str.split().str[0]
    side = side.fillna(first.map(lambda k: 1 if k in POSITIVE else 0 if k in NEGATIVE else None))
    if sorted(side.dropna().tolist()) == [0, 1]:
        positive, negative = side.index[side == 1][0], side.index[side == 0][0]
        notes.append(f"label {label}: '{positive}' = 1, '{negative}' = 0")
    else:
        # rarer first; ties: later in sort order
        positive, negative = sorted(sorted(counts.index, reverse=True), key=counts.get)
        which = (
            "the rarer value"
            if counts[positive] < counts[negative]
            else "as common as the other; the later in sort order"
        )
        notes.append(
            f"label {label}: '{positive}' and '{negative}' are not a recognised yes/no pair; '{positive}' ({which}, "
            f"{counts[positive]} of {len(text)} rows) is taken as 1, '{negative}' = 0"
        )
    return (text == positive).to_numpy(dtype=int), str(positive), str(negative)


def prepare_table(frame: pd.DataFrame, label: str, id_column: str | None = None, *, folds: int = 5) -> PreparedTable:
    """Label, ids and a feature matrix from a raw snapshot table, with a note for every decision.

    Numeric columns stay numbers; text columns whose non-blank values all read as numbers become
    numbers (blanks -> NaN); other text becomes a pandas Categorical with its sorted levels fixed.
    Identifiers, free text, dates, constant and empty columns are dropped with a note. `folds` is
    only used to check there are enough rows of each class to cross-validate."""
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InputError(f"table: column names must be unique, found repeated {_quote(dup)}")
    frame = frame.set_axis(names, axis=1)
    if label not in frame.columns:
        raise InputError(
            f"label column '{label}' is not in the table; expected one of the table's columns: {_quote(names, 50)}"
        )
    if id_column is not None and id_column not in frame.columns:
        raise InputError(
            f"--id column '{id_column}' is not in the table; expected one of the table's columns: {_quote(names, 50)}"
        )
    if id_column == label:
        raise InputError(f"--id column '{id_column}' is the label column; expected a separate identifier column")
    if len(frame) < MIN_ROWS:
        raise InputError(
            f"table: {len(frame)} rows; expected at least {MIN_ROWS} rows to fit and cross-validate a model"
        )

    notes: list[str] = []
    y, positive, negative = _label(frame, label, notes)
    minority = int(min(y.sum(), len(y) - y.sum()))
    if minority < folds:
        small = positive if y.sum() <= len(y) - y.sum() else negative
        raise InputError(
            f"label column '{label}': only {minority} row(s) are '{small}'; expected at least {folds} "
            f"of each value (one per cross-validation fold)"
        )

    ids = None
    if id_column is not None:
        ids = frame[id_column].rename(id_column)
        repeated = int(ids.duplicated().sum())
        notes.append(
            f"column {id_column}: identifier (--id), not a feature"
            + (f"; {repeated} repeated value(s): check the table has one row per customer" if repeated else "")
        )

    columns: dict[str, list[str] | None] = {}
    features: dict[str, pd.Series] = {}
    for name in frame.columns.drop([c for c in (label, id_column) if c is not None]):
        raw = frame[name]
        if pd.api.types.is_datetime64_any_dtype(raw):
            notes.append(
                f"column {name} holds dates: dropped; give ages or durations as of the snapshot as numbers to use them"
            )
            continue
        if pd.api.types.is_timedelta64_dtype(raw):
            notes.append(f"column {name}: durations read as days")
            raw = raw.dt.total_seconds() / 86400
        if pd.api.types.is_bool_dtype(raw) or pd.api.types.is_numeric_dtype(raw):
            values = _numeric_column(
                name, pd.Series(raw.to_numpy(dtype="float64", na_value=np.nan), index=raw.index), notes
            )
            if values is not None:
                features[name], columns[name] = values, None
            continue
        kept = _text_column(name, raw, notes)
        if kept is None:
            continue
        kind, values, levels = kept
        features[name], columns[name] = (
            (values, None) if kind == "numeric" else (pd.Categorical(values, categories=levels), levels)
        )
    if not features:
        raise InputError(
            f"table: no usable feature columns besides label '{label}'"
            + (f" and id '{id_column}'" if id_column else "")
            + "; expected at least one column of numbers or categories (see the notes: "
            + "; ".join(notes[-5:])
            + ")"
        )
    X = pd.DataFrame(features, index=frame.index)
    dropped = [c for c in frame.columns if c not in columns and c not in (label, id_column)]
    n_cat = sum(levels is not None for levels in columns.values())
    notes.append(
        f"features: {len(columns)} used ({len(columns) - n_cat} numeric, {n_cat} categorical)"
        + (f"; dropped: {', '.join(dropped)}" if dropped else "")
    )
    return PreparedTable(
        X=X,
        y=y,
        ids=ids,
        notes=notes,
        positive_label=positive,
        label=label,
        id_column=id_column,
        columns=columns,
        negative_label=negative,
    )


def apply_columns(frame: pd.DataFrame, columns: dict[str, list[str] | None]) -> pd.DataFrame:
    """New rows prepared like the training table: the same numeric reading (unparseable -> NaN) and
    the same category levels (unseen levels -> missing)."""
    frame = frame.set_axis([str(c) for c in frame.columns], axis=1)
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise InputError(
            f"table: missing feature column(s) {_quote(absent, 20)}; expected the columns the model was trained on"
        )
    out = {}
    for name, levels in columns.items():
        raw = frame[name]
        if pd.api.types.is_timedelta64_dtype(raw):
            raw = raw.dt.total_seconds() / 86400
        if levels is None:
            numeric = pd.api.types.is_bool_dtype(raw) or pd.api.types.is_numeric_dtype(raw)
            out[name] = (
                pd.Series(raw.to_numpy(dtype="float64", na_value=np.nan), index=raw.index)
                if numeric
                else _to_number(_text(raw))
            )
        else:
            text = _text(raw)
            out[name] = pd.Categorical(text.where(text.isin(levels)), categories=levels)
    return pd.DataFrame(out, index=frame.index)
