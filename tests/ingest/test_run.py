"""`run_ingest` writes all or nothing, never harms a folder the user gave, and runs the connectors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from core.contracts import TABLES, load_tables
from core.errors import InputError
from ingest.run import SUMMARY_FILE, run_ingest

FIXTURES = Path(__file__).parent / "fixtures"


def base(tmp_path: Path) -> Path:
    """The analytics fixture (Salesforce accounts + Segment events) copied to tmp_path; its mapping."""
    shutil.copytree(FIXTURES / "analytics", tmp_path / "analytics")
    shutil.copytree(FIXTURES / "crm", tmp_path / "crm")
    return tmp_path / "analytics" / "mapping.yaml"


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.rglob("*") if p.is_file()}


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
    with pytest.raises(InputError, match=r"^events.csv row 5: column 'timestamp' value 'not a time' is not a timestamp$"):
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
    assert len(pd.read_parquet(out / "tickets.parquet")) == 0  # this run has no help desk: written empty, not left stale


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
    pd.DataFrame({"account_id": ids, "name": ids, "segment": "smb", "industry": "software", "region": "emea", "plan": "pro",
                  "seats": 10, "arr": 1000, "contract_start": "2020-01-01", "billing": "annual", "csm_owner": "",
                  "exec_sponsor": "no"}).to_csv(tmp_path / "accounts.csv", index=False)
    pd.DataFrame({"account_id": ids, "date": "2024-03-01", "logins": 1}).to_csv(tmp_path / "usage.csv", index=False)
    (tmp_path / "mapping.yaml").write_text("tables:\n  accounts: {source: accounts.csv}\n  usage_daily: {source: usage.csv}\n"
                                           "zendesk:\n  folder: zendesk\n")
    summary = run_ingest(tmp_path / "mapping.yaml", tmp_path / "out")
    assert summary["tables"]["tickets"] == 5 and summary["tables"]["ticket_messages"] > 0
    assert {"section": "zendesk", "table": "tickets", "rows_in": 5} in summary["sources"]
    assert not [n for n in summary["notes"] if "help desk" in n]
    (tmp_path / "mapping.yaml").write_text("tables:\n  accounts: {source: accounts.csv}\n  usage_daily: {source: usage.csv}\n"
                                           "zendesk:\n  folder: zendesk\n  acount_id: organization.id\n")
    with pytest.raises(InputError, match=r"mapping.yaml: zendesk: unknown key 'acount_id'; expected one of "):
        run_ingest(tmp_path / "mapping.yaml", tmp_path / "out")


def test_accounts_mapped_from_the_crm_win_over_the_billing_systems(tmp_path):
    shutil.copytree(FIXTURES / "stripe", tmp_path / "stripe")
    ids = ["cus_A", "cus_B", "cus_C", "cus_D", "cus_E", "cus_G", "cus_H", "cus_I", "cus_J"]
    pd.DataFrame({"account_id": ids, "name": [f"CRM {i}" for i in ids], "segment": "smb", "industry": "software", "region": "emea",
                  "plan": "pro", "seats": 10, "arr": 1000, "contract_start": "2020-01-01", "billing": "annual", "csm_owner": "",
                  "exec_sponsor": "no"}).to_csv(tmp_path / "accounts.csv", index=False)
    pd.DataFrame({"account_id": ids, "date": "2023-01-02", "logins": 1}).to_csv(tmp_path / "usage.csv", index=False)
    (tmp_path / "mapping.yaml").write_text("tables:\n  accounts: {source: accounts.csv}\n  usage_daily: {source: usage.csv}\n"
                                           "stripe:\n  folder: stripe\n  fx_to_usd: {eur: 1.08, jpy: 0.0067}\n")
    summary = run_ingest(tmp_path / "mapping.yaml", tmp_path / "out")
    accounts = pd.read_parquet(tmp_path / "out" / "accounts.parquet")
    assert accounts["name"].tolist() == [f"CRM {i}" for i in ids]
    assert "accounts: taken from tables.accounts; the accounts of stripe left out (one row per key comes from one place)" in summary["notes"]
    assert summary["tables"]["churn"] == 2 and summary["tables"]["account_events"] > 0  # the rest of Stripe is used
