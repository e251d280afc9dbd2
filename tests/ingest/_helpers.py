"""What the connector tests (test_zendesk.py, test_intercom.py, test_stripe.py) share: the fixtures,
UTC times, the ticket tables checked against the contracts, events as tuples, the exports as the
pure mappers take them, and the check that an error is one line."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from core.contracts import validate_tables
from core.errors import InputError
from ingest._export import export_files, read_export

FIXTURES = Path(__file__).parent / "fixtures"
TICKET_TABLES = ("accounts", "tickets", "ticket_events", "ticket_messages")


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def accounts_for(ids) -> pd.DataFrame:
    """A minimal valid accounts table, so that the ticket tables' references can be checked."""
    ids = sorted(set(ids))
    return pd.DataFrame(
        {
            "account_id": ids,
            "name": [f"account {i}" for i in ids],
            "segment": "smb",
            "industry": "software",
            "region": "emea",
            "plan": "pro",
            "seats": 10,
            "arr": 12000.0,
            "contract_start": utc("2020-01-01"),
            "billing": "annual",
            "csm_owner": None,
            "exec_sponsor": False,
        }
    )


def ticket_table_counts(tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Rows of tickets, ticket_events and ticket_messages once they meet the contracts (checked with
    a minimal accounts table for their references)."""
    raw = {"accounts": accounts_for(tables["tickets"]["account_id"]), **tables}
    clean = validate_tables(raw, tables=TICKET_TABLES)
    return {t: len(clean[t]) for t in TICKET_TABLES[1:]}


def events_of(tables: dict[str, pd.DataFrame], key: str) -> list[tuple]:
    """(kind, at, value) of one ticket's events, or of one account's from a billing connector."""
    table, column = ("ticket_events", "ticket_id") if "ticket_events" in tables else ("account_events", "account_id")
    rows = tables[table][tables[table][column] == key]
    return [(r.kind, r.at, None if pd.isna(r.value) else r.value) for r in rows.itertuples()]


def fixture_export(folder: str, name: str, keys: tuple[str, ...]) -> pd.DataFrame:
    """One export of the fixtures, read and flattened as the connector reads it."""
    return read_export(export_files(FIXTURES, folder, [name], option=name, explicit=True), FIXTURES, keys)


def copy_fixtures(folder: str, tmp_path: Path) -> Path:
    """A copy of one connector's fixtures to edit: the base directory holding `folder`."""
    shutil.copytree(FIXTURES / folder, tmp_path / folder)
    return tmp_path


def one_line_error_of(read: Callable[[], Any]) -> str:
    """The InputError message `read` raises, which must be one line."""
    with pytest.raises(InputError) as caught:
        read()
    message = str(caught.value)
    assert "\n" not in message
    return message


def assert_leaves_inputs_alone(export: Any, map_export: Callable[[Any], Any]) -> None:
    """Map an export dataclass of frames and check that none of its frames changed."""
    before = {name: frame.copy() for name, frame in export.__dict__.items()}
    map_export(export)
    for name, frame in export.__dict__.items():
        pd.testing.assert_frame_equal(frame, before[name])
