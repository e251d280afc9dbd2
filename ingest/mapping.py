"""The mapping file of `churn ingest`: where each contract table comes from, as pydantic models.

```yaml
tables:            # any contract table from a source through a column map
  accounts: {source: crm/accounts.csv, columns: {account_id: Account.Id, ...}, values: {...}}
events: {...}      # product analytics events -> usage_daily
zendesk: {...}     # help desk / billing connectors; their options live in ingest/<name>.py
outside_contract: drop   # rows of unknown accounts or before contract start: drop (noted) or error
```

Every key is checked: an unknown key, a table or column the contracts do not know, a bad time
zone is an `InputError` naming the file and the key. Paths inside the file are relative to it.
"""

from __future__ import annotations

import re
import zoneinfo
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError, field_validator, model_validator

from core.contracts import CONTRACTS
from core.errors import InputError, describe_validation
from ingest._export import Options

#: Sections read by a connector module of this package: section -> (module, options model, reader).
CONNECTORS: dict[str, tuple[str, str, str]] = {
    "zendesk": ("ingest.zendesk", "ZendeskSource", "read_zendesk"),
    "intercom": ("ingest.intercom", "IntercomSource", "read_intercom"),
    "stripe": ("ingest.stripe", "StripeSource", "read_stripe"),
}


class Source(Options):
    """A CSV file, a Parquet file or folder (`path`), or a SQL query on a SQLAlchemy URL."""

    path: str | None = None
    url: str | None = None
    query: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_path(cls, data: Any) -> Any:
        return {"path": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        if (self.path is None) == (self.url is None):
            raise ValueError("expected a file path, or {url: <SQLAlchemy URL>, query: <SQL>}")
        if self.url is not None and not self.query:
            raise ValueError(f"url {self.url!r} needs a query: the SQL that returns the rows")
        if self.path is not None and self.query is not None:
            raise ValueError("a query needs a url, not a path")
        return self


class _TimeOptions(Options):
    """How a section's timestamps are written."""

    #: strptime format of the timestamps; default ISO 8601 (numbers are epoch seconds or milliseconds)
    date_format: str | None = None
    #: the zone of timestamps written without an offset
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; expected an IANA name such as UTC or Europe/Paris"
            ) from None
        return value


class TableSpec(_TimeOptions):
    """One contract table from one source: column map, value maps, constants, defaults."""

    source: Source
    #: contract column -> source column (a contract column found under its own name needs no entry)
    columns: dict[str, str] = {}
    #: contract column -> {source value: contract value}; values not listed pass through unchanged
    values: dict[str, dict[str, Any]] = {}
    #: contract column -> one value for every row (the source has no such column)
    constants: dict[str, Any] = {}
    #: contract column -> the value where the source is blank
    defaults: dict[str, Any] = {}
    #: extra source columns carried along under their own names (usage_daily: extra measures)
    keep: list[str] = []
    #: the unit of the money columns (accounts.arr, account_events.value)
    unit: Literal["dollars", "cents"] = "dollars"

    @field_validator("values", mode="before")
    @classmethod
    def _text_keys(cls, value: Any) -> Any:
        # source values are compared as text: YAML's 1 or true must match the cell "1" or "true"
        if isinstance(value, dict):
            return {
                col: {_as_text(k): v for k, v in (m or {}).items()} if isinstance(m, dict) else m
                for col, m in value.items()
            }
        return value


class EventColumns(Options):
    """Where each field of an event is in the source (Segment, Amplitude, Mixpanel, a warehouse)."""

    timestamp: str = "timestamp"
    account_id: str = "account_id"
    user_id: str = "user_id"
    event: str = "event"
    #: message id / insert id: a second event with the same id (same account and day) is a duplicate
    event_id: str | None = None
    #: a session's length, carried by one event per session (e.g. a session-end event)
    duration: str | None = None


class EventsSpec(_TimeOptions):
    """Product analytics events -> usage_daily. A measure whose events are not named is left out
    (null), never a false zero."""

    source: Source
    columns: EventColumns = EventColumns()
    logins: list[str] | None = None
    key_features: list[str] | None = None
    api: list[str] | None = None
    #: extra measures: column name -> the events it counts (kept in usage_daily as features)
    counts: dict[str, list[str]] = {}
    duration_unit: Literal["seconds", "minutes", "milliseconds"] = "seconds"
    #: days without an event inside the stream's span (and the contract) are rows of zeros, or absent
    quiet_days: Literal["zeros", "unknown"] = "zeros"
    #: events of accounts not in accounts, or dated before contract start or after churn
    outside_contract: Literal["drop", "error"] = "drop"

    @field_validator("counts")
    @classmethod
    def _count_names(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        taken = set(CONTRACTS["usage_daily"].column_names)
        for name in value:
            if name in taken or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
                raise ValueError(
                    f"'{name}': expected a new column name in snake_case, not one of {', '.join(sorted(taken))}"
                )
        return value


class MappingFile(Options):
    """The whole mapping file."""

    tables: dict[str, TableSpec] = {}
    events: EventsSpec | None = None
    zendesk: dict[str, Any] | None = None
    intercom: dict[str, Any] | None = None
    stripe: dict[str, Any] | None = None
    #: rows of every table that fall outside a contract (unknown account, before contract start,
    #: usage after churn, children of such tickets): dropped with a note, or left for the contract
    #: check to refuse; `events.outside_contract`, where given, overrides it for the events
    outside_contract: Literal["drop", "error"] = "drop"

    @field_validator("tables", mode="before")
    @classmethod
    def _contract_tables(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for name in value:
                if name not in CONTRACTS:
                    raise ValueError(f"unknown table '{name}'; expected one of {', '.join(CONTRACTS)}")
        return value

    @model_validator(mode="after")
    def _contract_columns(self) -> MappingFile:
        for table, spec in self.tables.items():
            known = CONTRACTS[table].column_names
            for section in ("columns", "values", "constants", "defaults"):
                for column in getattr(spec, section):
                    if column not in known:
                        raise ValueError(
                            f"tables.{table}.{section}.{column}: not a column of {table}; expected one of {', '.join(known)}"
                        )
            for column in spec.constants:
                if column in spec.columns:
                    raise ValueError(
                        f"tables.{table}.constants.{column}: the column is also mapped in columns; give one"
                    )
            for column in spec.keep:
                if column in known:
                    raise ValueError(
                        f"tables.{table}.keep: '{column}' is a contract column; map it under columns instead"
                    )
        if self.events is not None and "usage_daily" in self.tables:
            raise ValueError("usage_daily comes from both tables.usage_daily and events; give one")
        return self


def _as_text(key: Any) -> str:
    if isinstance(key, bool):
        return str(key).lower()
    return "" if key is None else str(key)


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML reads YAML 1.1, where `Yes`, `No`, `On` and `Off` are booleans; in a value map
    `{Yes: true}` the key must stay the text "Yes" (YAML 1.2: only true/false are booleans)."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_mapping(path: str | Path) -> MappingFile:
    """Read and check a mapping file; every problem is an `InputError` naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--mapping {path}: no such file; expected a YAML mapping file")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"{path}: expected a mapping with at least one of tables, events, {', '.join(CONNECTORS)}")
    try:
        return MappingFile.model_validate(raw)
    except ValidationError as exc:
        raise InputError(f"{path}: " + describe_errors(exc)) from None


def describe_errors(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> str:
    """pydantic errors as `key: problem (got value)`, the key dotted from the file's top."""
    return describe_validation(exc, prefix=prefix, empty=None, got=True, plain_value_errors=True)
