"""Any contract table through a `tables:` entry (ingest/tables.py, ingest/sources.py, ingest/run.py).

The CRM fixture is a Salesforce account export (Account.Id, AnnualRevenue, Type, CreatedDate with
+0000/-0700 offsets); it is read from CSV, from Parquet and through a SQL query on a sqlite file,
and must give the same accounts table every way.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from core.contracts import validate_tables
from core.errors import ContractError, InputError
from ingest.mapping import TableSpec
from ingest.run import run_ingest
from ingest.sources import read_source
from ingest.tables import map_table

FIXTURES = Path(__file__).parent / "fixtures"
ACCOUNT_IDS = ["0015g00000AbCdE", "0015g00000FgHiJ", "0015g00000KlMnO", "0015g00000PqRsT"]


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def crm_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "crm"
    shutil.copytree(FIXTURES / "crm", folder)
    return folder


def mapped_accounts(folder: Path, source: object) -> pd.DataFrame:
    """The fixture mapping's accounts entry with another source, mapped and validated."""
    import yaml

    from ingest.mapping import load_mapping

    text = yaml.safe_dump(
        {
            "tables": {
                "accounts": {
                    **yaml.safe_load((FIXTURES / "crm" / "mapping.yaml").read_text())["tables"]["accounts"],
                    "source": source,
                }
            }
        }
    )
    # PyYAML's dump quotes Yes/No, so the value map survives the round trip
    (folder / "variant.yaml").write_text(text)
    spec = load_mapping(folder / "variant.yaml").tables["accounts"]
    raw = read_source(spec.source, folder)
    return validate_tables({"accounts": map_table(raw, spec, "accounts", "x").frame}, tables=("accounts",))["accounts"]


def test_salesforce_accounts_from_csv(tmp_path):
    folder = crm_folder(tmp_path)
    accounts = mapped_accounts(folder, "accounts.csv").set_index("account_id")
    assert list(accounts.index) == ACCOUNT_IDS
    assert accounts["segment"].tolist() == ["smb", "enterprise", "mid_market", "smb"]
    assert accounts["billing"].tolist() == ["annual", "monthly", "quarterly", "annual"]
    assert accounts["exec_sponsor"].tolist() == [True, False, False, False]
    assert accounts["arr"].tolist() == [12000.0, 250000.5, 60000.0, 9600.0]
    assert accounts["seats"].tolist() == [10, 400, 45, 8]
    # offsets converted: 17:00 at -07:00 is the next day in UTC
    assert accounts.loc["0015g00000FgHiJ", "contract_start"] == utc("2023-06-16 00:00")
    assert accounts.loc["0015g00000KlMnO", "contract_start"] == utc("2023-12-01 01:30")
    assert pd.isna(accounts.loc["0015g00000FgHiJ", "csm_owner"])


def test_the_same_export_from_parquet_and_from_a_sql_query(tmp_path):
    folder = crm_folder(tmp_path)
    expected = mapped_accounts(folder, "accounts.csv")
    raw = pd.read_csv(folder / "accounts.csv", dtype=str)
    raw.to_parquet(folder / "accounts.parquet", index=False)
    pd.testing.assert_frame_equal(mapped_accounts(folder, "accounts.parquet"), expected)
    with sqlite3.connect(folder / "crm.db") as db:
        raw.assign(Seats__c=raw["Seats__c"].astype(int), AnnualRevenue=raw["AnnualRevenue"].astype(float)).to_sql(
            "Account", db, index=False
        )
    # a relative sqlite path is next to the mapping file, as every path in it is
    query = {"url": "sqlite:///crm.db", "query": 'SELECT * FROM "Account" ORDER BY "Account.Id"'}
    pd.testing.assert_frame_equal(mapped_accounts(folder, query), expected)


def test_a_whole_run_with_churn_from_a_sql_query(tmp_path):
    folder = crm_folder(tmp_path)
    with sqlite3.connect(folder / "crm.db") as db:
        db.execute("CREATE TABLE Opportunity (AccountId TEXT, StageName TEXT, CloseDate TEXT)")
        db.executemany(
            "INSERT INTO Opportunity VALUES (?, ?, ?)",
            [("0015g00000FgHiJ", "Closed Lost", "2024-03-01"), ("0015g00000AbCdE", "Closed Won", "2024-01-15")],
        )
    pd.DataFrame({"account_id": ["0015g00000AbCdE"], "date": ["2024-02-01"], "logins": ["3"]}).to_csv(
        folder / "usage.csv", index=False
    )
    (folder / "mapping.yaml").write_text(
        (folder / "mapping.yaml").read_text()
        + """
  churn:
    source:
      url: sqlite:///crm.db
      query: SELECT AccountId, CloseDate FROM Opportunity WHERE StageName = 'Closed Lost'
    columns: {account_id: AccountId, churned_at: CloseDate}
  usage_daily:
    source: usage.csv
"""
    )
    summary = run_ingest(folder / "mapping.yaml", tmp_path / "out")
    churn = pd.read_parquet(tmp_path / "out" / "churn.parquet")
    assert churn.to_dict("records") == [{"account_id": "0015g00000FgHiJ", "churned_at": utc("2024-03-01")}]
    assert summary["tables"]["churn"] == 1 and summary["tables"]["usage_daily"] == 1
    assert {"section": "tables.churn", "source": "query on sqlite:///crm.db", "rows_in": 1} in summary["sources"]
    assert "no help desk given: tickets written empty" in summary["notes"]
    usage = pd.read_parquet(tmp_path / "out" / "usage_daily.parquet")
    assert usage["logins"].tolist() == [3] and usage["active_users"].isna().all()  # not in the source: null, not zero


def frame(**columns) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(values, dtype="str") for name, values in columns.items()})


ACCOUNT_ROW = dict(
    Id=["A1", "A2"], Name=["Acme", "Globex"], Rev=["1200050", "99"], Start=["2024-01-02", "2024-03-10 02:30"]
)


def test_constants_defaults_cents_date_format_and_time_zone():
    spec = TableSpec.model_validate(
        {
            "source": "x.csv",
            "columns": {
                "account_id": "Id",
                "name": "Name",
                "arr": "Rev",
                "contract_start": "Start",
                "csm_owner": "Owner",
            },
            "constants": {
                "segment": "smb",
                "industry": "software",
                "region": "emea",
                "plan": "pro",
                "seats": 5,
                "billing": 12,
                "exec_sponsor": False,
            },
            "defaults": {"csm_owner": "unassigned"},
            "unit": "cents",
            "timezone": "America/New_York",
        }
    )
    raw = frame(**ACCOUNT_ROW, Owner=["Ann", " "])
    out = map_table(raw, spec, "accounts", "crm.csv").frame
    clean = validate_tables({"accounts": out}, tables=("accounts",))["accounts"]
    assert clean["arr"].tolist() == [12000.5, 0.99]
    assert clean["csm_owner"].tolist() == ["Ann", "unassigned"]
    assert clean["billing"].tolist() == ["annual", "annual"]  # 12 months is annual
    # naive local times: New York midnight is 05:00 UTC; 02:30 on the spring-forward night does not exist
    assert clean["contract_start"].tolist() == [utc("2024-01-02 05:00"), utc("2024-03-10 07:00")]
    assert "renewal_date" not in out.columns  # optional in the contract: absent, not a column of nulls


def test_a_missing_column_is_one_message_naming_file_column_and_key():
    spec = TableSpec.model_validate(
        {"source": "crm.csv", "columns": {"account_id": "Account.Id", "arr": "AnnualRevenue"}}
    )
    with pytest.raises(InputError) as caught:
        map_table(frame(Id=["1"]), spec, "accounts", "crm.csv")
    assert (
        str(caught.value) == "crm.csv: no column 'Account.Id' (named in tables.accounts.columns.account_id); found: Id"
    )
    spec = TableSpec.model_validate({"source": "crm.csv", "columns": {"account_id": "Id"}})
    with pytest.raises(
        InputError,
        match=r"^crm.csv: nothing gives accounts.name, accounts.segment, .* accounts.exec_sponsor; map a source ",
    ):
        map_table(frame(Id=["1"]), spec, "accounts", "crm.csv")


def test_a_bad_value_names_file_row_column_and_value():
    spec = TableSpec.model_validate({"source": "crm.csv", "columns": {"churned_at": "Closed", "account_id": "Id"}})
    raw = frame(Id=["A1", "A2", "A3", "A4"], Closed=["2024-01-01", "2024-02-01", "yesterday", "soon"])
    with pytest.raises(InputError) as caught:
        map_table(raw, spec, "churn", "crm.csv")
    assert str(caught.value) == "crm.csv row 3: column 'Closed' value 'yesterday' is not a timestamp (and 1 more rows)"
    cents = TableSpec.model_validate(
        {"source": "crm.csv", "columns": {"account_id": "Id", "at": "At", "kind": "K", "value": "V"}, "unit": "cents"}
    )
    with pytest.raises(InputError, match=r"^crm.csv row 2: column 'V' value '12,50' is not an amount in cents$"):
        map_table(
            frame(Id=["A1", "A1"], At=["2024-01-01", "2024-01-02"], K=["upgrade", "upgrade"], V=["100", "12,50"]),
            cents,
            "account_events",
            "crm.csv",
        )


def test_values_the_contract_refuses_are_all_reported_at_once(tmp_path):
    folder = crm_folder(tmp_path)
    text = (
        (folder / "accounts.csv").read_text().replace(",10,12000,", ",ten,12000,").replace(",Monthly,", ",Fortnightly,")
    )
    (folder / "accounts.csv").write_text(text)
    pd.DataFrame({"account_id": ["0015g00000AbCdE"], "date": ["2024-02-01"], "logins": ["3"]}).to_csv(
        folder / "usage.csv", index=False
    )
    (folder / "mapping.yaml").write_text((folder / "mapping.yaml").read_text() + "  usage_daily: {source: usage.csv}\n")
    with pytest.raises(ContractError) as caught:
        run_ingest(folder / "mapping.yaml", tmp_path / "out")
    message = str(caught.value)
    assert "table 'accounts', column 'seats': rule 'type'" in message and "0015g00000AbCdE" in message
    assert "table 'accounts', column 'billing': rule 'allowed_values'" in message and "0015g00000FgHiJ" in message
    assert not (tmp_path / "out").exists()


def test_unmapped_source_columns_are_dropped_and_keep_carries_extras(tmp_path):
    spec = TableSpec.model_validate(
        {"source": "u.csv", "columns": {"account_id": "acct", "date": "day", "logins": "n_logins"}, "keep": ["exports"]}
    )
    raw = frame(acct=["A1"], day=["2024-02-01"], n_logins=["4"], exports=["7"], notes=["call back"])
    out = map_table(raw, spec, "usage_daily", "u.csv").frame
    assert list(out.columns) == ["account_id", "date", "logins", "exports"]
