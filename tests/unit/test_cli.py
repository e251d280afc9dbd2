"""The command line contract: exit codes, JSON on stdout only, one-line errors, nothing written on failure."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipelines.cli import main
from tests.conftest import write_tables


def test_simulate_json_goes_to_stdout_only(tmp_path, capsys):
    out = tmp_path / "sim"
    code = main(["simulate", "--accounts", "60", "--days", "120", "--seed", "3", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0
    payload = json.loads(captured.out)  # exactly one JSON document
    assert payload["accounts"] == 60 and payload["rows"]["accounts"] == 60
    assert (out / "accounts.parquet").is_file() and (out / "truth" / "meta.json").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_bad_flag_value_exits_2_names_the_flag_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["simulate", "--accounts", "0", "--out", str(out)]) == 2
    assert "--accounts" in capsys.readouterr().err
    assert not out.exists()
    assert main(["simulate", "--start", "2024-02-30", "--out", str(out)]) == 2
    assert "--start" in capsys.readouterr().err
    assert main(["simulate", "--churn-rate", "2", "--out", str(out)]) == 2
    assert "--churn-rate" in capsys.readouterr().err
    assert not out.exists()


def test_unknown_option_exits_2(capsys):
    assert main(["simulate", "--acounts", "5"]) == 2
    assert "No such option" in capsys.readouterr().err


def test_validate_reports_contract_violation_with_exit_2_and_touches_nothing(tiny, tmp_path, capsys):
    tiny["tickets"].loc[0, "category"] = "complaint"
    folder = write_tables(tiny, tmp_path / "d")
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert main(["validate", "--data", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "table 'tickets', column 'category'" in err and "allowed_values" in err and "T1" in err
    assert "Traceback" not in err
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def test_validate_json(tiny, tmp_path, capsys):
    folder = write_tables(tiny, tmp_path / "d")
    assert main(["validate", "--data", str(folder), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["valid"] is True and payload["rows"]["tickets"] == 2


def test_simulated_csv_export_validates(tmp_path, capsys):
    """A customer exporting the simulated tables to CSV gets the same tables back."""
    out = tmp_path / "sim"
    assert main(["simulate", "--accounts", "40", "--days", "90", "--out", str(out)]) == 0
    csv = tmp_path / "csv"
    csv.mkdir()
    for path in out.glob("*.parquet"):
        pd.read_parquet(path).to_csv(csv / f"{path.stem}.csv", index=False)
    assert main(["validate", "--data", str(csv), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"]
    assert rows["accounts"] == 40


@pytest.mark.slow
def test_demo_runs_every_stage_on_a_small_base(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CHURN_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("CHURN_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    from prefect.testing.utilities import prefect_test_harness

    out = tmp_path / "demo"
    with prefect_test_harness(server_startup_timeout=120):
        assert main(["demo", "--out", str(out), "--accounts", "150"]) == 0
    err = capsys.readouterr().err
    for stage in ("simulate", "validate", "features", "train", "evaluate", "score", "report", "retrain flow"):
        assert f"{stage} took" in err
    assert (out / "scores" / "scores.parquet").is_file() and (tmp_path / "mlflow.db").is_file()
    assert "<h1>Churn risk report</h1>" in (out / "churn_report.html").read_text()
    assert "churn serve" in err and "mlflow ui" in err
    assert (out / "features" / "feature_dictionary.json").is_file()
    assert list((out / "features" / "snapshots").glob("*.parquet"))


def test_serve_pins_relative_locations_to_the_current_folder(tmp_path, monkeypatch):
    """`churn serve` starts the server from the project folder: relative paths must not move with it."""
    from core.settings import load_settings
    from pipelines.cli import _absolute_locations

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHURN_DATA_DIR", "mydata")
    monkeypatch.setenv("CHURN_SCORES_DIR", "out/scores")
    monkeypatch.setenv("CHURN_MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    monkeypatch.setenv("CHURN_STORE_URL", "postgresql+psycopg://db/churn")
    pinned = _absolute_locations(load_settings())
    assert pinned["CHURN_DATA_DIR"] == str(tmp_path / "mydata") and pinned["CHURN_SCORES_DIR"] == str(tmp_path / "out" / "scores")
    assert pinned["CHURN_MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert "CHURN_STORE_URL" not in pinned  # not a file: left as it is
