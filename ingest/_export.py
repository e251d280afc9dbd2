"""Vendors' JSON exports -> flat frames, and the field-level helpers every connector shares.

A connector (ingest/zendesk.py, ingest/intercom.py, ingest/stripe.py) reads its exports here and
maps the frames with pure functions. An export is a file or a folder of files, each holding one
JSON array, JSON Lines (one record, or one page, per line), an API list envelope
(`{"object": "list", "data": [...]}`, `{"type": "conversation.list", "conversations": [...]}`) or
an incremental export page (`{"tickets": [...], "end_of_stream": false}`). Records are flattened
with `pandas.json_normalize` (nested objects become dotted columns; lists stay lists) and keep the
file they came from in `_file`, so a bad value is reported as one line naming the file, the record
and the field: `zendesk/tickets.json ticket 1042: field 'created_at' value 'x' is not a timestamp`.
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np
import pandas as pd
from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

from core.contracts import TIME_DTYPE
from core.errors import InputError

log = logging.getLogger(__name__)

FILE = "_file"
SUFFIXES = (".json", ".jsonl", ".ndjson")


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


#: One export: a file or folder name, or a list of them (YAML accepts either).
Paths = Annotated[list[str], BeforeValidator(_as_list)]


class Options(BaseModel):
    """Options from the mapping file (a connector's or any section's): an unknown key is refused
    with the keys that are allowed, in the order they are declared."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        # pydantic's "extra inputs are not permitted" does not say what was meant instead
        if isinstance(data, dict):
            known = [*cls.model_fields, *(f.alias for f in cls.model_fields.values() if f.alias)]
            unknown = [str(k) for k in data if k not in known]
            if unknown:
                raise ValueError(f"unknown key '{unknown[0]}'; expected one of {', '.join(known)}")
        return data


class Section(Options):
    """A connector's section of the mapping file (`zendesk:`, ...): its exports lie under `folder`."""

    #: the section's key in the mapping file, which names its options in messages (`zendesk.tickets`)
    section: ClassVar[str]
    #: folder holding the exports, relative to the mapping file
    folder: str = "."


def check_values(mapping: Mapping[str, Any], allowed: Iterable[Any], where: str = "") -> None:
    """Raise ValueError (pydantic reports it under the option's key) for a value that is not allowed;
    `where` is the key inside the option (e.g. "map")."""
    allowed = tuple(allowed)
    for key, value in mapping.items():
        if value not in allowed:
            name = f"{where}.{key}" if where else str(key)
            raise ValueError(f"{name}: {value!r} is not allowed; expected one of {', '.join(map(str, allowed))}")


# --- reading ---------------------------------------------------------------------------------


def export_files(base_dir: Path, folder: str, entries: list[str], *, option: str, explicit: bool) -> list[Path]:
    """The files of one export. A name may omit its suffix; a folder gives every JSON file under it.

    A default name that is absent means "not exported" (an empty export); a name the user wrote
    that is absent is an error.
    """
    files: list[Path] = []
    for entry in entries:
        path = base_dir / folder / entry
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
        elif path.is_file():
            found = [path]
        else:
            found = [p for p in (path.with_name(path.name + s) for s in SUFFIXES) if p.is_file()][:1]
        if not found and explicit:
            raise InputError(f"{option}: {path} not found; expected a JSON or JSON Lines file, or a folder of them")
        files.extend(found)
    return files


def read_option(
    source: Section, option: str, base_dir: Path, keys: tuple[str, ...] | None = None, *, required: bool = False
) -> pd.DataFrame:
    """The export a section's option names (`tickets`), read and flattened; `keys` are its envelope
    keys (default: the option's name). It must exist when the connector needs it or the user named it."""
    files = export_files(
        base_dir,
        source.folder,
        getattr(source, option),
        option=f"{source.section}.{option}",
        explicit=required or option in source.model_fields_set,
    )
    return read_export(files, base_dir, keys or (option,))


def read_export(files: list[Path], base_dir: Path, keys: tuple[str, ...]) -> pd.DataFrame:
    """Every record of the files, flattened, with `_file` (relative to base_dir). `keys` are the
    envelope keys that may hold the records (`tickets`, `conversations`, ...)."""
    frames = []
    for path in files:
        records = _records(path, display_name(path, base_dir), keys)
        if records:
            frame = pd.json_normalize(records)
            frames.append(frame.assign(**{FILE: display_name(path, base_dir)}))
    if not frames:
        return pd.DataFrame({FILE: pd.Series(dtype="str"), "id": pd.Series(dtype="object")})
    return pd.concat(frames, ignore_index=True)


def display_name(path: Path, base_dir: Path) -> str:
    try:
        return path.relative_to(base_dir).as_posix()
    except ValueError:
        return str(path)


def _records(path: Path, shown: str, keys: tuple[str, ...]) -> list[dict]:
    try:
        text = path.read_text(encoding="utf-8-sig").strip()  # -sig: exports saved on Windows start with a BOM
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"could not read {shown}: {exc}") from None
    if not text:
        return []
    try:
        return _page_records(json.loads(text), shown, keys, where="")
    except json.JSONDecodeError as whole:
        # JSON Lines stop a whole-file parse with "Extra data" after the first line; anything else is broken JSON
        if whole.msg != "Extra data":
            raise InputError(
                f"{shown}: not valid JSON ({whole.msg} at line {whole.lineno} column {whole.colno})"
            ) from None
    records: list[dict] = []  # JSON Lines: one record, or one page, per line
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{shown} line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            records.extend(_page_records(value, shown, keys, where=f" line {number}"))
    return records


def _page_records(value: Any, shown: str, keys: tuple[str, ...], where: str) -> list[dict]:
    if isinstance(value, dict):
        for key in (*keys, "data"):
            if isinstance(value.get(key), list):
                value = value[key]
                break
        else:
            if value.get("object") == "list" or str(value.get("type", "")).endswith("list"):
                value = []  # an empty page whose list key is not one we know
            else:
                return [value]  # a single record
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise InputError(
            f"{shown}{where}: expected JSON objects (an array, JSON Lines or a page with {', '.join(keys)})"
        )
    return value


# --- columns ---------------------------------------------------------------------------------


def column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column, or an all-missing one when no record had the field."""
    if name in frame.columns:
        return frame[name]
    return pd.Series(np.nan, index=frame.index, dtype="object")


def expandable(frame: pd.DataFrame, name: str) -> pd.Series:
    """The id of a field that is either an id or the expanded object (Stripe's `customer`):
    flattened, the id sits in `name` for some records and in `name.id` for others."""
    return as_id(column(frame, name).fillna(column(frame, f"{name}.id")))


def as_id(values: pd.Series) -> pd.Series:
    """Identifiers as text: 1042 and 1042.0 (a numeric column with gaps) both become "1042"."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype("str")
    if pd.api.types.is_numeric_dtype(values) and not (values.dropna() % 1 != 0).any():
        return values.astype("Int64").astype("str").where(values.notna())
    text = values.astype("str").str.replace(r"^(-?\d+)\.0$", r"\1", regex=True)
    return text.where(values.notna())


def flag(values: pd.Series) -> pd.Series:
    """A JSON boolean column as bool (missing -> False)."""
    return values.astype("str").str.lower().eq("true").to_numpy(dtype=bool)


def latest(frame: pd.DataFrame, key: str = "id", order: str | None = None) -> pd.DataFrame:
    """One row per key: the latest by `order`, else the last seen (later export pages are newer)."""
    if frame.empty:
        return frame
    if order is not None and order in frame.columns:
        rank = pd.to_numeric(frame[order], errors="coerce")
        if rank.isna().all():
            rank = pd.to_datetime(frame[order].astype("str"), utc=True, errors="coerce", format="ISO8601")
        frame = frame.assign(_rank=rank).sort_values("_rank", kind="stable", na_position="first").drop(columns="_rank")
    return frame.drop_duplicates(key, keep="last").sort_index()


def explode(frame: pd.DataFrame, list_column: str, parent: Mapping[str, str]) -> pd.DataFrame:
    """One row per element of a list-of-objects column, flattened, with parent columns renamed
    (`parent` maps the parent's column -> its name in the result)."""
    present = {k: v for k, v in parent.items() if k in frame.columns}
    if list_column not in frame.columns or frame.empty:
        return pd.DataFrame(columns=[*present.values(), FILE])
    long = frame[[*present, FILE]].rename(columns=present).assign(_child=frame[list_column]).explode("_child")
    long = long[long["_child"].map(type).eq(dict).to_numpy()].reset_index(drop=True)
    children = pd.json_normalize(long["_child"].tolist()) if len(long) else pd.DataFrame()
    clash = [c for c in children.columns if c in long.columns]
    return pd.concat([long.drop(columns="_child"), children.drop(columns=clash)], axis=1)


def first_mapped(lists: pd.Series, mapping: Mapping[str, str], *, key: str | None = None) -> pd.Series:
    """Per row, the mapped value of the first list element (tag, topic) that the map knows; with
    `key`, the elements are objects and their `key` field is mapped."""
    long = lists.explode()
    if key is not None:
        long = long.map(lambda element: element.get(key) if isinstance(element, dict) else None)
    mapped = long[long.notna()].astype("str").map(dict(mapping)).dropna()
    return mapped.groupby(level=0).first().reindex(lists.index)


def strip_html(values: pd.Series) -> pd.Series:
    """HTML bodies as plain text: block ends become line breaks, tags go, entities are decoded."""
    text = values.astype("str").str.replace(r"(?i)<br\s*/?>|</(p|div|li|h\d|tr|blockquote)>", "\n", regex=True)
    text = text.str.replace(r"<[^>]+>", "", regex=True)
    entity = text.str.contains("&", regex=False).fillna(False).to_numpy(dtype=bool)
    text = text.astype("object")
    text[entity] = text[entity].map(html.unescape)
    text = text.astype("str")
    text = text.str.replace(r"[ \t\r\f\v]+", " ", regex=True).str.replace(r"\s*\n\s*", "\n", regex=True).str.strip()
    return text.where(values.notna())


# --- checked values --------------------------------------------------------------------------


def fail(
    frame: pd.DataFrame, mask: pd.Series | np.ndarray, field: str, noun: str, problem: str, *, id_column: str = "id"
) -> None:
    """Raise one InputError line for the first offending record (and say how many more there are)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return
    first = int(np.flatnonzero(mask)[0])
    row = frame.iloc[first]
    record = row.get(id_column)
    name = f"{noun} {as_id(pd.Series([record])).iloc[0]}" if pd.notna(record) else f"{noun} (record {first + 1}, no id)"
    value = row.get(field) if field in frame.columns else None
    shown = (
        f" value {_shown(value)}" if value is not None and not (isinstance(value, float) and np.isnan(value)) else ""
    )
    more = int(mask.sum()) - 1
    tail = f" (and {more} more record(s))" if more else ""
    raise InputError(f"{row.get(FILE, '?')} {name}: field '{field}'{shown} {problem}{tail}")


def _shown(value: Any) -> str:
    """A value as the user wrote it in the export: 7, not np.float64(7.0)."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return repr(value)


def require(frame: pd.DataFrame, field: str, noun: str, *, id_column: str = "id") -> pd.Series:
    """A field every record must have."""
    values = column(frame, field)
    fail(frame, values.isna(), field, noun, "is missing", id_column=id_column)
    return values


def timestamps(
    frame: pd.DataFrame, field: str, noun: str, *, required: bool = True, id_column: str = "id"
) -> pd.Series:
    """A time field as UTC: ISO 8601 text (offsets converted, naive read as UTC) or epoch seconds."""
    raw = require(frame, field, noun, id_column=id_column) if required else column(frame, field)
    numbers = pd.to_numeric(raw, errors="coerce")
    is_text = raw.notna() & numbers.isna()
    # an out-of-range epoch (milliseconds, say) is as wrong as a bad text
    sane = numbers.where((numbers > -1e10) & (numbers < 1e10))
    out = pd.to_datetime(sane, unit="s", utc=True)
    if is_text.any():
        text = pd.to_datetime(raw.where(is_text).astype("str"), utc=True, errors="coerce", format="ISO8601")
        out = out.where(~is_text, text)
    out = out.astype(TIME_DTYPE)
    fail(
        frame,
        raw.notna() & out.isna(),
        field,
        noun,
        "is not a timestamp (expected ISO 8601 or epoch seconds)",
        id_column=id_column,
    )
    return out


def numbers(frame: pd.DataFrame, field: str, noun: str, *, required: bool = False, id_column: str = "id") -> pd.Series:
    """A numeric field as float64 (missing -> NaN, or an error if required)."""
    raw = require(frame, field, noun, id_column=id_column) if required else column(frame, field)
    out = pd.to_numeric(raw, errors="coerce").astype("float64")
    fail(frame, raw.notna() & out.isna(), field, noun, "is not a number", id_column=id_column)
    return out


def entity_key(spec: str, entity: str, frame: pd.DataFrame, option: str) -> pd.Series:
    """An account key read from an entity (organization, company, customer), indexed by its id.

    `spec` is `<entity>.<field>` with the field dotted as in the export
    (`organization.external_id`, `customer.metadata.account_id`).
    """
    field = spec.removeprefix(f"{entity}.")
    if frame.empty:
        return pd.Series(dtype="str")
    if field not in frame.columns:
        seen = ", ".join(sorted(c for c in frame.columns if c != FILE)[:12])
        raise InputError(f"{option}: {spec!r}: no {entity} in the export has the field '{field}'; fields seen: {seen}")
    ids = as_id(frame["id"])
    values = as_id(column(frame, field)) if field != "id" else ids
    return pd.Series(values.to_numpy(), index=ids.to_numpy()).dropna()


def account_key(spec: str, entity: str, records: pd.DataFrame, option: str) -> pd.Series | None:
    """entity id -> account id for the account key `spec`, read from the entity's latest records;
    None when `spec` is the entity's own id (`organization.id`): that id is the account."""
    if spec == f"{entity}.id":
        return None
    return entity_key(spec, entity, latest(records, "id"), option)


def accounts_of(ids: pd.Series, key: pd.Series | None) -> pd.Series:
    """The account of each entity id by an `account_key` (null where the key has none)."""
    return ids if key is None else ids.map(key)


def event_frame(key: str, ids: pd.Series, at: pd.Series, kind: str | np.ndarray, value: Any = np.nan) -> pd.DataFrame:
    """Rows of an event table (ticket_events, account_events): key, at, kind, value."""
    values = value if np.isscalar(value) else np.asarray(value, dtype="float64")
    frame = pd.DataFrame({key: np.asarray(ids, dtype=object), "at": pd.Series(at).array, "kind": kind, "value": values})
    return frame.astype({key: "str", "at": TIME_DTYPE, "kind": "str", "value": "float64"})


def warn_dropped(what: str, count: int, why: str, examples: Iterable[Any] = ()) -> None:
    """Log rows a connector leaves out on purpose (the run shows them; they are not errors)."""
    if count:
        shown = ", ".join(str(e) for e in list(examples)[:5])
        log.warning("%s: %d left out (%s)%s", what, count, why, f": {shown}" if shown else "")
