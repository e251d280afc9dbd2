"""One test per contract rule: the message names the table, the column, the rule and the keys."""

from __future__ import annotations

import pandas as pd
import pytest

from core.contracts import CONTRACTS, load_tables, validate_tables
from core.errors import ContractError, InputError
from tests.conftest import write_tables


def broken(tables: dict[str, pd.DataFrame], table: str, column: str, row: int, value) -> dict[str, pd.DataFrame]:
    tables[table].loc[row, column] = value
    return tables


def violation(tables) -> ContractError:
    with pytest.raises(ContractError) as info:
        validate_tables(tables)
    return info.value


def assert_names(exc: ContractError, table: str, column: str, rule: str, *keys: str) -> None:
    text = str(exc)
    match = [v for v in exc.violations if (v.table, v.column, v.rule) == (table, column, rule)]
    assert match, f"no violation {table}.{column} {rule} in:\n{text}"
    for key in keys:
        assert key in match[0].keys, f"key {key} not named: {match[0].keys}"
    assert f"table '{table}'" in text and f"column '{column}'" in text and f"rule '{rule}'" in text


def test_tiny_tables_are_valid_and_coerced(tiny):
    clean = validate_tables(tiny)
    accounts = clean["accounts"]
    assert str(accounts["contract_start"].dtype) == "datetime64[us, UTC]"
    assert accounts["exec_sponsor"].tolist() == [False, True]
    assert accounts["seats"].tolist() == [10, 400]
    assert pd.isna(accounts.loc[0, "csm_owner"])  # blank is null, and csm_owner may be null
    # an offset is converted to UTC
    assert clean["tickets"].loc[1, "created_at"] == pd.Timestamp("2024-01-06T08:30:00Z")


def test_missing_column(tiny):
    tiny["tickets"] = tiny["tickets"].drop(columns="channel")
    assert_names(violation(tiny), "tickets", "channel", "column_present")


def test_type_int(tiny):
    exc = violation(broken(tiny, "accounts", "seats", 1, "many"))
    assert_names(exc, "accounts", "seats", "type", "A2")


def test_type_int_rejects_fractions(tiny):
    exc = violation(broken(tiny, "usage_daily", "logins", 0, "2.5"))
    assert_names(exc, "usage_daily", "logins", "type", "(A1, 2024-01-02 00:00:00+00:00)")


def test_type_timestamp(tiny):
    exc = violation(broken(tiny, "tickets", "created_at", 0, "yesterday"))
    assert_names(exc, "tickets", "created_at", "type", "T1")


def test_type_bool(tiny):
    exc = violation(broken(tiny, "accounts", "exec_sponsor", 0, "maybe"))
    assert_names(exc, "accounts", "exec_sponsor", "type", "A1")


def test_not_null(tiny):
    exc = violation(broken(tiny, "tickets", "priority", 1, None))
    assert_names(exc, "tickets", "priority", "not_null", "T2")


def test_null_key_is_reported_by_row_number(tiny):
    exc = violation(broken(tiny, "tickets", "ticket_id", 1, None))
    assert_names(exc, "tickets", "ticket_id", "not_null", "row 2")


def test_allowed_values(tiny):
    exc = violation(broken(tiny, "accounts", "billing", 0, "weekly"))
    assert_names(exc, "accounts", "billing", "allowed_values", "A1")
    assert "monthly, quarterly, semiannual, annual, biennial, triennial" in str(exc) and "months" in str(exc)


def test_minimum(tiny):
    exc = violation(broken(tiny, "usage_daily", "api_calls", 2, "-1"))
    assert_names(exc, "usage_daily", "api_calls", "minimum", "(A2, 2024-01-02 00:00:00+00:00)")


def test_maximum(tiny):
    exc = violation(broken(tiny, "surveys", "score", 0, "11"))
    assert_names(exc, "surveys", "score", "maximum", "(A2, 2024-02-01 10:00:00+00:00)")


def test_date_must_be_midnight(tiny):
    exc = violation(broken(tiny, "usage_daily", "date", 0, "2024-01-02T13:00:00Z"))
    assert_names(exc, "usage_daily", "date", "date")


def test_unique_key(tiny):
    tiny["tickets"].loc[1, "ticket_id"] = "T1"
    tiny["ticket_messages"].loc[1, "ticket_id"] = "T1"
    tiny["ticket_events"].loc[3, "ticket_id"] = "T1"
    exc = violation(tiny)
    assert_names(exc, "tickets", "ticket_id", "unique_key", "T1")


def test_composite_unique_key(tiny):
    exc = violation(broken(tiny, "usage_daily", "date", 1, "2024-01-02"))
    assert_names(exc, "usage_daily", "account_id+date", "unique_key", "(A1, 2024-01-02 00:00:00+00:00)")


@pytest.mark.parametrize(
    ("table", "column", "row", "value", "key"),
    [
        ("usage_daily", "account_id", 2, "A9", "(A9, 2024-01-02 00:00:00+00:00)"),
        ("tickets", "account_id", 0, "A9", "T1"),
        ("ticket_events", "ticket_id", 3, "T9", "(T9, first_response, 2024-01-06 12:00:00+00:00)"),
        ("ticket_messages", "ticket_id", 0, "T9", "M1"),
        ("surveys", "account_id", 0, "A9", "(A9, 2024-02-01 10:00:00+00:00)"),
        ("account_events", "account_id", 0, "A9", "(A9, billing_dispute, 2024-01-06 10:00:00+00:00)"),
        ("churn", "account_id", 0, "A9", "A9"),
    ],
)
def test_references(tiny, table, column, row, value, key):
    exc = violation(broken(tiny, table, column, row, value))
    assert_names(exc, table, column, "references", key)


@pytest.mark.parametrize(
    ("table", "column", "row", "value", "key"),
    [
        ("usage_daily", "date", 0, "2023-12-31", "(A1, 2023-12-31 00:00:00+00:00)"),
        ("tickets", "created_at", 0, "2023-12-30T10:00:00Z", "T1"),
        ("surveys", "answered_at", 0, "2023-01-01T00:00:00Z", "(A2, 2023-01-01 00:00:00+00:00)"),
        ("account_events", "at", 0, "2023-01-01T00:00:00Z", "(A2, billing_dispute, 2023-01-01 00:00:00+00:00)"),
        ("churn", "churned_at", 0, "2023-12-01T00:00:00Z", "A1"),
        ("ticket_events", "at", 0, "2024-01-05T09:00:00Z", "(T1, first_response, 2024-01-05 09:00:00+00:00)"),
        ("ticket_messages", "sent_at", 1, "2024-01-06T08:00:00Z", "M2"),
    ],
)
def test_time_order(tiny, table, column, row, value, key):
    exc = violation(broken(tiny, table, column, row, value))
    assert_names(exc, table, column, "time_order", key)


def test_no_usage_after_churn(tiny):
    exc = violation(broken(tiny, "churn", "churned_at", 0, "2024-01-02T12:00:00Z"))
    assert_names(exc, "usage_daily", "date", "time_order", "(A1, 2024-01-03 00:00:00+00:00)")
    assert "churn.churned_at" in str(exc)


def test_csat_score_range(tiny):
    exc = violation(broken(tiny, "ticket_events", "value", 2, "6"))
    assert_names(exc, "ticket_events", "value", "csat_score", "(T1, csat, 2024-01-07 12:00:00+00:00)")


def test_ces_needs_a_score(tiny):
    broken(tiny, "ticket_events", "kind", 2, "ces")
    tiny["ticket_events"].loc[2, "value"] = ""
    exc = violation(tiny)
    assert_names(exc, "ticket_events", "value", "ces_score", "(T1, ces, 2024-01-07 12:00:00+00:00)")


def test_value_only_for_scored_kinds(tiny):
    exc = violation(broken(tiny, "ticket_events", "value", 0, "3"))
    assert_names(exc, "ticket_events", "value", "value_for_kind", "(T1, first_response, 2024-01-05 12:00:00+00:00)")


def test_at_most_five_keys_and_a_count(tiny):
    usage = pd.concat([tiny["usage_daily"]] * 1, ignore_index=True)
    extra = pd.DataFrame(
        {c: usage.loc[0, c] for c in usage.columns}
        | {"date": [f"2024-02-{d:02d}" for d in range(1, 10)], "logins": "-3"}
    )
    tiny["usage_daily"] = pd.concat([usage, extra], ignore_index=True)
    exc = violation(tiny)
    v = next(v for v in exc.violations if v.rule == "minimum")
    assert v.count == 9 and len(v.keys) == 5
    assert "and 4 more" in str(exc)


def test_all_problems_reported_at_once(tiny):
    broken(tiny, "accounts", "billing", 0, "weekly")
    broken(tiny, "tickets", "channel", 0, "fax")
    exc = violation(tiny)
    assert {(v.table, v.rule) for v in exc.violations} >= {
        ("accounts", "allowed_values"),
        ("tickets", "allowed_values"),
    }


def test_load_reads_csv_and_parquet(tiny, tmp_path):
    folder = write_tables(tiny, tmp_path / "d")
    (folder / "accounts.csv").unlink()
    assert len(validate_tables({"accounts": tiny["accounts"]}, tables=("accounts",))["accounts"]) == 2
    tiny["accounts"].to_parquet(folder / "accounts.parquet")
    loaded = load_tables(folder)
    assert len(loaded["accounts"]) == 2 and loaded.notes == []


def test_missing_optional_table_is_empty_with_a_note(tiny, tmp_path):
    del tiny["surveys"]
    folder = write_tables(tiny, tmp_path / "d")
    loaded = load_tables(folder)
    assert loaded["surveys"].empty and list(loaded["surveys"].columns) == CONTRACTS["surveys"].column_names
    assert any("surveys" in n for n in loaded.notes)


def test_missing_required_table(tiny, tmp_path):
    del tiny["usage_daily"]
    folder = write_tables(tiny, tmp_path / "d")
    with pytest.raises(InputError, match="usage_daily"):
        load_tables(folder)


def test_csv_and_parquet_both_present_is_ambiguous(tiny, tmp_path):
    folder = write_tables(tiny, tmp_path / "d")
    tiny["churn"].to_parquet(folder / "churn.parquet")
    with pytest.raises(InputError, match="both churn.parquet and churn.csv"):
        load_tables(folder)


def test_unreadable_file_names_the_file(tiny, tmp_path):
    folder = write_tables(tiny, tmp_path / "d")
    (folder / "churn.csv").unlink()
    (folder / "churn.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="churn.parquet"):
        load_tables(folder)


# --- extensions for real exports (issue 15): every file valid before stays valid ---------------


def test_billing_accepts_term_names_and_months(tiny):
    tiny["accounts"]["billing"] = ["12", "Quarterly"]
    assert validate_tables(tiny)["accounts"]["billing"].tolist() == ["annual", "quarterly"]
    for given, term in (
        ("24", "biennial"),
        ("36.0", "triennial"),
        ("6", "semiannual"),
        ("semiannual", "semiannual"),
        ("1", "monthly"),
    ):
        tiny["accounts"]["billing"] = [given, "annual"]
        assert validate_tables(tiny)["accounts"].loc[0, "billing"] == term, given
    exc = violation(broken(tiny, "accounts", "billing", 0, "5"))
    assert_names(exc, "accounts", "billing", "allowed_values", "A1")


def test_segment_is_free_text(tiny):
    tiny["accounts"]["segment"] = ["Startup", "Public sector"]
    assert validate_tables(tiny)["accounts"]["segment"].tolist() == ["Startup", "Public sector"]


def test_renewal_date_is_optional_and_also_read_as_contract_end(tiny):
    assert validate_tables(tiny)["accounts"]["renewal_date"].isna().all()
    tiny["accounts"]["contract_end"] = ["2025-03-31", ""]
    clean = validate_tables(tiny)["accounts"]
    assert clean.loc[0, "renewal_date"] == pd.Timestamp("2025-03-31", tz="UTC") and pd.isna(
        clean.loc[1, "renewal_date"]
    )
    exc = violation(broken(tiny, "accounts", "contract_end", 1, "soon"))
    assert_names(exc, "accounts", "renewal_date", "type", "A2")


def test_usage_needs_one_activity_column_and_keeps_extra_measures(tiny):
    usage = tiny["usage_daily"][["account_id", "date", "logins"]].assign(reports_exported=["2", "x", "7"])
    clean = validate_tables({**tiny, "usage_daily": usage})["usage_daily"]
    assert clean["active_users"].isna().all() and clean["logins"].tolist() == [4, 0, 300]
    assert clean["reports_exported"].dtype == "float64" and clean["reports_exported"].isna().tolist() == [
        False,
        True,
        False,
    ]
    exc = violation({**tiny, "usage_daily": usage.drop(columns="logins")})
    assert_names(
        exc,
        "usage_daily",
        "active_users or logins or session_minutes or key_feature_events or distinct_features_used or api_calls",
        "column_present",
    )


def test_support_tables_may_all_be_absent(tiny, tmp_path):
    folder = write_tables({k: tiny[k] for k in ("accounts", "usage_daily", "churn")}, tmp_path / "d")
    loaded = load_tables(folder)
    assert loaded["tickets"].empty and any("tickets" in note for note in loaded.notes)


def test_an_optional_column_with_no_value_at_all_is_absent(tiny):
    usage = tiny["usage_daily"].assign(api_calls=None)
    clean = validate_tables({**tiny, "usage_daily": usage})["usage_daily"]
    assert clean["api_calls"].isna().all()
    exc = violation(broken(tiny, "usage_daily", "api_calls", 0, None))  # some values but not all: still a violation
    assert_names(exc, "usage_daily", "api_calls", "not_null")


def test_a_slice_read_again_gets_the_contract_types():
    from core.contracts import coerce_columns

    raw = pd.DataFrame(
        {"ticket_id": [101, 102], "created_at": ["2024-01-05T10:00:00+01:00", "2024-01-06"], "note": ["x", "y"]}
    )
    out = coerce_columns("tickets", raw)
    assert out["ticket_id"].tolist() == ["101", "102"] and out["note"].tolist() == ["x", "y"]
    assert out["created_at"].tolist() == [pd.Timestamp("2024-01-05T09:00:00Z"), pd.Timestamp("2024-01-06T00:00:00Z")]
