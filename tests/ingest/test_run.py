"""`run_ingest` writes all or nothing, never harms a folder the user gave, runs the connectors and
drops (or refuses) the rows outside a contract in every table."""

from __future__ import annotations

import functools
import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from core.contracts import TABLES, load_tables
from core.errors import ContractError, InputError
from ingest.run import SUMMARY_FILE, drop_outside_contract, run_ingest

FIXTURES = Path(__file__).parent / "fixtures"


def base(tmp_path: Path) -> Path:
    """The analytics fixture (Salesforce accounts + Segment events) copied to tmp_path; its mapping."""
    shutil.copytree(FIXTURES / "analytics", tmp_path / "analytics")
    shutil.copytree(FIXTURES / "crm", tmp_path / "crm")
    return tmp_path / "analytics" / "mapping.yaml"


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_a_run_writes_every_table_and_a_summary_that_validate_reads(tmp_path):
    out = tmp_path / "out"
    summary = run_ingest(base(tmp_path), out)
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{t}.parquet" for t in TABLES] + [SUMMARY_FILE])
    assert json.loads((out / SUMMARY_FILE).read_text())["tables"] == summary["tables"]
    loaded = load_tables(out)  # what `churn validate` and `churn features` read
    assert {t: len(f) for t, f in loaded.tables.items()} == summary["tables"]
    assert summary["tables"]["accounts"] == 4 and summary["tables"]["tickets"] == 0


def test_a_failing_run_leaves_an_existing_folder_untouched(tmp_path):
    mapping = base(tmp_path)
    out = tmp_path / "out"
    run_ingest(mapping, out)
    (out / "my_notes.txt").write_text("the user's own file")
    before = snapshot(out)
    events = mapping.parent / "events.csv"
    events.write_text(events.read_text().replace("2024-02-02T11:00:00Z", "not a time"))
    with pytest.raises(
        InputError, match=r"^events.csv row 5: column 'timestamp' value 'not a time' is not a timestamp$"
    ):
        run_ingest(mapping, out)
    assert snapshot(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_a_failing_run_creates_no_folder(tmp_path):
    mapping = base(tmp_path)
    (mapping.parent.parent / "crm" / "accounts.csv").write_text("Account.Id\n1\n")
    with pytest.raises(InputError, match=r"^\.\./crm/accounts.csv: no column 'Account.Name'"):
        run_ingest(mapping, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_a_failure_while_writing_leaves_the_previous_output(tmp_path, monkeypatch):
    mapping = base(tmp_path)
    out = tmp_path / "out"
    run_ingest(mapping, out)
    before = snapshot(out)
    written = []

    def fail_on_the_third(self, path, *args, **kwargs):
        written.append(path)
        if len(written) == 3:
            raise OSError("No space left on device")
        return original(self, path, *args, **kwargs)

    original = pd.DataFrame.to_parquet
    monkeypatch.setattr(pd.DataFrame, "to_parquet", fail_on_the_third)
    with pytest.raises(OSError, match="No space left"):
        run_ingest(mapping, out)
    assert snapshot(out) == before


def test_a_success_replaces_the_tables_and_keeps_the_users_files(tmp_path):
    mapping = base(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "my_notes.txt").write_text("mine")
    pd.DataFrame({"ticket_id": ["old"]}).to_parquet(out / "tickets.parquet")  # an earlier run's table
    run_ingest(mapping, out)
    assert (out / "my_notes.txt").read_text() == "mine"
    # this run has no help desk: written empty, not left stale
    assert len(pd.read_parquet(out / "tickets.parquet")) == 0


def test_a_csv_table_in_the_out_folder_is_refused_before_anything_is_read(tmp_path):
    mapping = base(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "accounts.csv").write_text("the user's own export")
    with pytest.raises(InputError, match=r"already holds accounts.csv; this run writes accounts.parquet"):
        run_ingest(mapping, out)
    assert (out / "accounts.csv").read_text() == "the user's own export"


def test_a_help_desk_section_runs_its_connector(tmp_path):
    shutil.copytree(FIXTURES / "zendesk", tmp_path / "zendesk")
    ids = ["501", "502", "503"]
    pd.DataFrame(
        {
            "account_id": ids,
            "name": ids,
            "segment": "smb",
            "industry": "software",
            "region": "emea",
            "plan": "pro",
            "seats": 10,
            "arr": 1000,
            "contract_start": "2020-01-01",
            "billing": "annual",
            "csm_owner": "",
            "exec_sponsor": "no",
        }
    ).to_csv(tmp_path / "accounts.csv", index=False)
    pd.DataFrame({"account_id": ids, "date": "2024-03-01", "logins": 1}).to_csv(tmp_path / "usage.csv", index=False)
    (tmp_path / "mapping.yaml").write_text(
        "tables:\n  accounts: {source: accounts.csv}\n  usage_daily: {source: usage.csv}\nzendesk:\n  folder: zendesk\n"
    )
    summary = run_ingest(tmp_path / "mapping.yaml", tmp_path / "out")
    assert summary["tables"]["tickets"] == 5 and summary["tables"]["ticket_messages"] > 0
    assert {"section": "zendesk", "table": "tickets", "rows_in": 5} in summary["sources"]
    assert not [n for n in summary["notes"] if "help desk" in n]
    (tmp_path / "mapping.yaml").write_text(
        "tables:\n  accounts: {source: accounts.csv}\n  usage_daily: {source: usage.csv}\n"
        "zendesk:\n  folder: zendesk\n  acount_id: organization.id\n"
    )
    with pytest.raises(InputError, match=r"mapping.yaml: zendesk: unknown key 'acount_id'; expected one of "):
        run_ingest(tmp_path / "mapping.yaml", tmp_path / "out")


def test_accounts_mapped_from_the_crm_win_over_the_billing_systems(tmp_path):
    shutil.copytree(FIXTURES / "stripe", tmp_path / "stripe")
    ids = ["cus_A", "cus_B", "cus_C", "cus_D", "cus_E", "cus_G", "cus_H", "cus_I", "cus_J"]
    pd.DataFrame(
        {
            "account_id": ids,
            "name": [f"CRM {i}" for i in ids],
            "segment": "smb",
            "industry": "software",
            "region": "emea",
            "plan": "pro",
            "seats": 10,
            "arr": 1000,
            "contract_start": "2020-01-01",
            "billing": "annual",
            "csm_owner": "",
            "exec_sponsor": "no",
        }
    ).to_csv(tmp_path / "accounts.csv", index=False)
    pd.DataFrame({"account_id": ids, "date": "2023-01-02", "logins": 1}).to_csv(tmp_path / "usage.csv", index=False)
    (tmp_path / "mapping.yaml").write_text(
        "tables:\n  accounts: {source: accounts.csv}\n  usage_daily: {source: usage.csv}\n"
        "stripe:\n  folder: stripe\n  fx_to_usd: {eur: 1.08, jpy: 0.0067}\n"
    )
    summary = run_ingest(tmp_path / "mapping.yaml", tmp_path / "out")
    accounts = pd.read_parquet(tmp_path / "out" / "accounts.parquet")
    assert accounts["name"].tolist() == [f"CRM {i}" for i in ids]
    assert (
        "accounts: taken from tables.accounts; the accounts of stripe left out (one row per key comes from one place)"
        in summary["notes"]
    )
    assert summary["tables"]["churn"] == 2 and summary["tables"]["account_events"] > 0  # the rest of Stripe is used


def help_desk(tmp_path: Path, extra: str = "") -> Path:
    """Zendesk tickets (1042 opened in 501's trial, 1049 of 503, an account the CRM does not list),
    and usage and surveys with a trial row and a row of an unknown account each; the mapping."""
    shutil.copytree(FIXTURES / "zendesk", tmp_path / "zendesk")
    ids = ["501", "502"]
    pd.DataFrame(
        {
            "account_id": ids,
            "name": ids,
            "segment": "smb",
            "industry": "software",
            "region": "emea",
            "plan": "pro",
            "seats": 10,
            "arr": 1000,
            "contract_start": ["2024-03-05T09:00:00Z", "2020-01-01"],
            "billing": "annual",
            "csm_owner": "",
            "exec_sponsor": "no",
        }
    ).to_csv(tmp_path / "accounts.csv", index=False)
    pd.DataFrame(
        {
            "Account": ["501", "501", "502", "999"],
            "Day": ["2024-03-04", "2024-03-05", "2024-03-01", "2024-03-01"],
            "logins": 1,
        }
    ).to_csv(tmp_path / "usage.csv", index=False)
    pd.DataFrame(
        {
            "account_id": ["501", "502", "ghost"],
            "answered_at": ["2024-03-01T10:00:00Z", "2024-03-02T10:00:00Z", "2024-03-02"],
            "kind": "nps",
            "score": [9, 3, 7],
            "comment": "",
        }
    ).to_csv(tmp_path / "surveys.csv", index=False)
    (tmp_path / "mapping.yaml").write_text(
        "tables:\n  accounts: {source: accounts.csv}\n  usage_daily: {source: usage.csv, columns: {account_id: Account, date: Day}}\n"
        "  surveys: {source: surveys.csv}\nzendesk:\n  folder: zendesk\n" + extra
    )
    return tmp_path / "mapping.yaml"


def test_rows_outside_a_contract_are_dropped_from_every_table_with_a_note_each(tmp_path):
    summary = run_ingest(help_desk(tmp_path), tmp_path / "out")
    assert summary["outside_contract"] == {
        "usage_daily": {"unknown_account": 1, "before_contract_start": 1},
        "tickets": {"unknown_account": 1, "before_contract_start": 1},
        "surveys": {"unknown_account": 1, "before_contract_start": 1},
        "ticket_events": {"dropped_ticket": 6},
        "ticket_messages": {"dropped_ticket": 6},
    }
    notes = summary["notes"]
    assert "tickets: 1 row before their account's contract start dropped (trial period)" in notes
    assert "tickets: 1 row of 1 account(s) not in accounts dropped (e.g. '503')" in notes
    assert "ticket_events: 6 rows of 2 dropped ticket(s) dropped" in notes  # 1042's; 1049 has none
    assert "surveys: 1 row of 1 account(s) not in accounts dropped (e.g. 'ghost')" in notes
    out = {t: pd.read_parquet(tmp_path / "out" / f"{t}.parquet") for t in TABLES}
    assert sorted(out["tickets"]["ticket_id"]) == ["1043", "1044", "1048"]
    assert "1042" not in set(out["ticket_events"]["ticket_id"]) | set(out["ticket_messages"]["ticket_id"])
    usage = out["usage_daily"]
    # the first day of a contract counts
    assert usage["date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-03-05", "2024-03-01"]
    assert out["surveys"]["account_id"].tolist() == ["502"]


def test_the_connectors_records_left_out_become_notes_whatever_the_logging_level(tmp_path, caplog):
    logger = logging.getLogger("ingest")
    logger.setLevel(logging.ERROR)  # a quiet application still gets the notes, and still no warnings
    try:
        summary = run_ingest(help_desk(tmp_path), tmp_path / "out")
        assert (logger.level, logger.propagate, logger.handlers) == (logging.ERROR, True, [])  # left as it was
    finally:
        logger.setLevel(logging.NOTSET)
    assert "zendesk tickets: 1 left out (merged into another ticket): 1045" in summary["notes"]
    assert "zendesk tickets: 1 left out (deleted): 1047" in summary["notes"]
    assert not [r for r in caplog.records if r.name.startswith("ingest")]


def test_outside_contract_error_leaves_the_rows_for_the_contract_to_name(tmp_path):
    with pytest.raises(ContractError) as caught:
        run_ingest(help_desk(tmp_path, "outside_contract: error\n"), tmp_path / "out")
    message = str(caught.value)
    assert (
        "table 'tickets', column 'account_id': rule 'references' broken" in message
        and "offending 1 row(s): 1049" in message
    )
    assert (
        "table 'tickets', column 'created_at': rule 'time_order' broken" in message
        and "offending 1 row(s): 1042" in message
    )
    assert "table 'surveys', column 'account_id': rule 'references' broken" in message
    assert not (tmp_path / "out").exists()


def test_a_table_with_no_row_of_a_known_account_is_a_mapping_mistake(tmp_path):
    mapping = help_desk(tmp_path)
    surveys = pd.read_csv(tmp_path / "surveys.csv", dtype=str)
    surveys.assign(account_id="ACC-" + surveys["account_id"]).to_csv(tmp_path / "surveys.csv", index=False)
    with pytest.raises(
        InputError, match=r"^surveys: none of its 3 rows has an account id in accounts.account_id \(e.g. 'ACC-501'\); "
    ):
        run_ingest(mapping, tmp_path / "out")


def test_the_events_section_follows_the_top_level_rule_unless_it_gives_its_own(tmp_path):
    mapping = base(tmp_path)
    text = mapping.read_text()
    mapping.write_text(text + "outside_contract: error\n")
    with pytest.raises(InputError, match="set events.outside_contract: drop to leave them out"):
        run_ingest(mapping, tmp_path / "out")
    # the events section's own key wins
    mapping.write_text(text + "  outside_contract: drop\noutside_contract: error\n")
    summary = run_ingest(mapping, tmp_path / "out")
    assert any(n.startswith("events: 1 events of 1 account(s) not in accounts left out") for n in summary["notes"])


def test_usage_is_cut_by_day_and_a_blank_or_unreadable_value_is_left_for_the_contract():
    utc = functools.partial(pd.Timestamp, tz="UTC")
    accounts = pd.DataFrame({"account_id": ["a", "b"], "contract_start": [utc("2024-03-05 09:00"), utc("2024-01-01")]})
    usage = pd.DataFrame(
        {
            "account_id": ["a", "a", "b", "b", None, "b"],
            "date": [
                utc("2024-03-04"),
                utc("2024-03-05"),
                utc("2024-03-10"),
                utc("2024-03-11"),
                utc("2024-03-01"),
                None,
            ],
        }
    )
    churn = pd.DataFrame({"account_id": ["b"], "churned_at": [utc("2024-03-10 17:00")]})
    out = drop_outside_contract({"accounts": accounts, "usage_daily": usage, "churn": churn})
    assert out.dropped == {"usage_daily": {"before_contract_start": 1, "after_churn": 1}}
    kept = out.tables["usage_daily"]
    assert kept["date"].iloc[:3].tolist() == [utc("2024-03-05"), utc("2024-03-10"), utc("2024-03-01")] and pd.isna(
        kept["date"].iloc[3]
    )
    assert kept["account_id"].isna().sum() == 1  # the blank id and the blank date: the contract names them
    assert "usage_daily: 1 row dated after their account churned dropped" in out.notes
