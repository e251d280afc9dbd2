"""The mapping file (ingest/mapping.py): every mistake is one message naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InputError
from ingest.mapping import load_mapping

GOOD_TABLE = "    source: accounts.csv\n    columns: {account_id: Id}\n"


def problem(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mapping.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as caught:
        load_mapping(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message.removeprefix(f"{path}: ")


def test_a_misspelt_key_names_where_it_is_and_what_was_meant(tmp_path):
    message = problem(tmp_path, "tables:\n  accounts:\n    source: a.csv\n    colums: {account_id: Id}\n")
    assert message.startswith("tables.accounts: unknown key 'colums'; expected one of ")
    assert "source, columns, values, constants, defaults, keep" in message


def test_an_unknown_section_table_or_column_is_named(tmp_path):
    assert problem(tmp_path, "event:\n  source: e.csv\n").startswith(
        "unknown key 'event'; expected one of tables, events, zendesk"
    )
    assert "unknown table 'acounts'; expected one of accounts, usage_daily" in problem(
        tmp_path, "tables:\n  acounts:\n" + GOOD_TABLE
    )
    message = problem(tmp_path, "tables:\n  accounts:\n" + GOOD_TABLE + "    values: {annual_revenue: {a: b}}\n")
    assert message.startswith(
        "tables.accounts.values.annual_revenue: not a column of accounts; expected one of account_id, name"
    )


def test_bad_values_of_known_keys(tmp_path):
    assert problem(tmp_path, "tables:\n  accounts:\n" + GOOD_TABLE + "    timezone: Mars/Olympus\n").startswith(
        "tables.accounts.timezone: unknown time zone 'Mars/Olympus'"
    )
    assert problem(tmp_path, "tables:\n  accounts:\n" + GOOD_TABLE + "    unit: pennies\n").startswith(
        "tables.accounts.unit: Input should be 'dollars' or 'cents'"
    )
    assert "url 'sqlite:///crm.db' needs a query" in problem(
        tmp_path, "tables:\n  churn:\n    source: {url: 'sqlite:///crm.db'}\n"
    )
    assert problem(tmp_path, "events:\n  source: e.csv\n  quiet_days: maybe\n").startswith(
        "events.quiet_days: Input should be"
    )
    assert problem(tmp_path, "tables:\n  accounts:\n" + GOOD_TABLE + "outside_contract: keep\n").startswith(
        "outside_contract: Input should be 'drop' or 'error'"
    )
    assert "events.counts: 'logins': expected a new column name" in problem(
        tmp_path, "events:\n  source: e.csv\n  counts: {logins: [x]}\n"
    )


def test_not_yaml_or_empty(tmp_path):
    assert problem(tmp_path, "tables: [unclosed\n").startswith("not valid YAML")
    assert problem(tmp_path, "").startswith("expected a mapping with at least one of tables, events")
    with pytest.raises(InputError, match="--mapping .*nope.yaml: no such file"):
        load_mapping(tmp_path / "nope.yaml")


def test_usage_from_two_places_is_refused(tmp_path):
    text = "tables:\n  usage_daily:\n    source: u.csv\nevents:\n  source: e.csv\n"
    assert "usage_daily comes from both tables.usage_daily and events" in problem(tmp_path, text)


def test_yes_and_no_stay_text_in_value_maps(tmp_path):
    # YAML 1.1 would read the keys Yes/No as booleans and never match the cells "Yes"/"No"
    path = tmp_path / "mapping.yaml"
    path.write_text(
        "tables:\n  accounts:\n" + GOOD_TABLE + "    values: {exec_sponsor: {Yes: true, No: false, 1: true}}\n"
    )
    mapping = load_mapping(path)
    assert mapping.tables["accounts"].values["exec_sponsor"] == {"Yes": True, "No": False, "1": True}
    assert mapping.tables["accounts"].source.path == "accounts.csv"
    assert mapping.outside_contract == "drop"  # the default: trial tickets and prospects' rows are noted, not fatal


def test_the_documented_example_is_a_valid_mapping():
    example = Path(__file__).parent / "fixtures" / "mapping_example.yaml"
    mapping = load_mapping(example)
    assert set(mapping.tables) == {"accounts", "churn"} and mapping.events.counts == {
        "exports": ["Export Run", "CSV Downloaded"]
    }
    assert mapping.tables["accounts"].values["exec_sponsor"] == {"Yes": True, "No": False}
    assert mapping.zendesk == {"folder": "zendesk"} and mapping.outside_contract == "drop"
    from ingest.stripe import StripeSource
    from ingest.zendesk import ZendeskSource

    ZendeskSource.model_validate(mapping.zendesk)  # the connectors' own options check the sections
    StripeSource.model_validate(mapping.stripe)
