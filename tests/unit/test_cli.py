"""The command line contract: exit codes, JSON on stdout only, one-line errors, nothing written on failure."""

from __future__ import annotations

import datetime as dt
import json
import os

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


def test_validate_json(tiny, tmp_path, capsys, monkeypatch):
    folder = write_tables(tiny, tmp_path / "d")
    assert main(["validate", "--data", str(folder), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["valid"] is True and payload["rows"]["tickets"] == 2
    # without --data, the folder the other commands read (CHURN_DATA_DIR), as they do: it read data/simulated
    monkeypatch.setenv("CHURN_DATA_DIR", str(folder))
    assert main(["validate", "--json"]) == 0 and json.loads(capsys.readouterr().out)["data"] == str(folder)


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
def test_demo_runs_every_stage_on_a_small_base(tmp_path, capsys, monkeypatch, one_waterfall):
    monkeypatch.setenv("CHURN_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("CHURN_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("CHURN_DATA_DIR", str(tmp_path / "data"))  # the demo's record goes there
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--accounts", "150"]) == 0  # on the session's Prefect server
    err = capsys.readouterr().err
    for stage in ("simulate", "validate", "features", "train", "score", "report", "retrain flow"):
        assert f"{stage} took" in err
    assert (out / "scores" / "scores.parquet").is_file() and (tmp_path / "mlflow.db").is_file()
    assert "<h1>Churn risk report</h1>" in (out / "churn_report.html").read_text()
    assert "churn serve" in err and "mlflow ui" in err
    assert (out / "features" / "feature_dictionary.json").is_file()
    assert list((out / "features" / "snapshots").glob("*.parquet"))
    assert json.loads((tmp_path / "data" / "last_demo.json").read_text())["scores_dir"] == str(
        (out / "scores").resolve()
    )


def test_serve_pins_relative_locations_to_the_current_folder(tmp_path, monkeypatch):
    """`churn serve` starts the server from the project folder: relative paths must not move with it."""
    from core.settings import load_settings
    from serving.launch import absolute_locations

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHURN_DATA_DIR", "mydata")
    monkeypatch.setenv("CHURN_SCORES_DIR", "out/scores")
    monkeypatch.setenv("CHURN_MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    monkeypatch.setenv("CHURN_STORE_URL", "postgresql+psycopg://db/churn")
    pinned = absolute_locations(load_settings())
    assert pinned["CHURN_DATA_DIR"] == str(tmp_path / "mydata") and pinned["CHURN_SCORES_DIR"] == str(
        tmp_path / "out" / "scores"
    )
    assert pinned["CHURN_MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert "CHURN_STORE_URL" not in pinned  # not a file: left as it is


@pytest.mark.parametrize("args", [["--help"], ["validate", "--data", "{data}"]], ids=["help", "validate"])
def test_commands_without_pipeline_work_import_no_heavy_stack(args, tiny, tmp_path):
    """`churn --help` and `churn validate` stay fast: no Prefect (never started), MLflow, BentoML or torch."""
    import subprocess
    import sys
    import time

    folder = write_tables(tiny, tmp_path / "d")
    probe = (
        "import sys; from pipelines.cli import main; code = main(%r); "
        "print(sorted(m for m in ('prefect', 'mlflow', 'bentoml', 'torch') if m in sys.modules)); sys.exit(code)"
    )
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-c", probe % [a.format(data=folder) for a in args]],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CHURN_PREFECT_DIR": str(tmp_path / "prefect")},
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"
    assert not (tmp_path / "prefect").exists()
    print(f"churn {args[0]}: {time.monotonic() - started:.2f}s")


def _scores(folder):
    folder.mkdir(parents=True)
    pd.DataFrame({"account_id": ["A1"], "cutoff": [pd.Timestamp("2025-01-01", tz="UTC")]}).to_parquet(
        folder / "features.parquet"
    )
    return folder


def test_serve_fails_fast_with_one_line_naming_the_setting(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CHURN_SCORES_DIR", raising=False)
    monkeypatch.setenv("CHURN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CHURN_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}")
    assert main(["serve", "--port", "3999"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: CHURN_SCORES_DIR {tmp_path / 'data' / 'scores'}: no features.parquet"
    )
    monkeypatch.setenv("CHURN_SCORES_DIR", str(_scores(tmp_path / "scores")))
    assert main(["serve", "--port", "3999"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: CHURN_MLFLOW_TRACKING_URI") and "churn demo" in errors[0]
    assert not (tmp_path / "none").exists()  # the check creates no database


def test_serve_uses_the_last_demo_unless_told(tmp_path, monkeypatch, capsys):
    """`make demo` then `make serve`: the demo's scores without a setting; an explicit setting, or a
    snapshot in the default place, wins."""
    from core.errors import InputError
    from core.settings import load_settings
    from serving.launch import check, resolve

    monkeypatch.setenv("CHURN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CHURN_SCORES_DIR", raising=False)
    demo_scores = _scores(tmp_path / "data" / "demo" / "scores")
    assert resolve(load_settings()).scores_dir is None  # no demo recorded yet
    (tmp_path / "data" / "last_demo.json").write_text(json.dumps({"scores_dir": str(demo_scores)}))
    demo = resolve(load_settings())
    assert demo.scores_dir == demo_scores
    # its data ends in the past: the served clock starts at its end (a set offset wins)
    ends = pd.read_parquet(demo_scores / "features.parquet")["cutoff"].max()
    behind = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=demo.clock_offset_seconds)
    assert abs((behind - ends).total_seconds()) < 60
    said = capsys.readouterr().err
    assert "last demo" in said and "CHURN_CLOCK_OFFSET_SECONDS" in said
    # the clock read the data's end when the demo finished and runs on, across restarts
    finished = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    (tmp_path / "data" / "last_demo.json").write_text(
        json.dumps({"scores_dir": str(demo_scores), "finished_at": finished.isoformat()})
    )
    offset = resolve(load_settings()).clock_offset_seconds
    assert (
        offset == pytest.approx((finished - ends).total_seconds()) and "2025-01-01 01:00 UTC" in capsys.readouterr().err
    )
    monkeypatch.setenv("CHURN_CLOCK_OFFSET_SECONDS", "0")
    assert resolve(load_settings()).clock_offset_seconds == 0
    monkeypatch.delenv("CHURN_CLOCK_OFFSET_SECONDS")
    # a demo whose scores were deleted: no clock, and `check` names the setting (no traceback)
    (tmp_path / "data" / "last_demo.json").write_text(json.dumps({"scores_dir": str(tmp_path / "gone")}))
    gone = resolve(load_settings())
    assert gone.scores_dir == tmp_path / "gone" and gone.clock_offset_seconds == 0
    with pytest.raises(InputError, match="CHURN_SCORES_DIR .*no features.parquet"):
        check(gone)
    (tmp_path / "data" / "last_demo.json").write_text(json.dumps({"scores_dir": str(demo_scores)}))
    assert resolve(load_settings(scores_dir=tmp_path / "mine")).scores_dir == tmp_path / "mine"
    _scores(tmp_path / "data" / "scores")
    assert resolve(load_settings()).scores_dir is None  # DATA_DIR/scores, the documented default


def test_report_and_monitor_read_the_scores_serve_would_and_name_where_they_looked(tmp_path, monkeypatch):
    """The folder comes from --scores, CHURN_SCORES_DIR, the default or, as for `churn serve`, the
    last demo's: the message names which (exit 2). After `make demo`, `churn report` and `churn
    monitor` without flags failed on the empty default folder, naming a --scores never given."""
    from core.errors import InputError
    from core.settings import load_settings
    from pipelines.monitor import run_monitors
    from pipelines.report import run_report
    from serving.launch import scores_folder

    monkeypatch.delenv("CHURN_SCORES_DIR", raising=False)
    monkeypatch.setenv("CHURN_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "report.html"
    with pytest.raises(InputError, match=rf"^--scores {tmp_path / 'given'}: no scores.parquet"):
        run_report(out, settings=load_settings(), scores_dir=tmp_path / "given")
    with pytest.raises(InputError, match=rf"^the default scores folder {tmp_path / 'data' / 'scores'}: no scores"):
        run_report(out, settings=load_settings())
    default, named = scores_folder(load_settings())
    with pytest.raises(InputError, match=rf"^the default scores folder {default}: no scores.parquet and features"):
        run_monitors(default, settings=load_settings(), named=named)
    demo = _scores(tmp_path / "data" / "demo" / "scores")
    (tmp_path / "data" / "last_demo.json").write_text(json.dumps({"scores_dir": str(demo)}))
    assert scores_folder(load_settings())[0] == default  # the demo's folder has no scores to read
    (demo / "scores.parquet").write_bytes((demo / "features.parquet").read_bytes())
    said: list[str] = []
    assert (
        scores_folder(load_settings(), say=said.append) == (demo, "the last demo's scores") and "last demo" in said[0]
    )
    assert scores_folder(load_settings(), tmp_path / "given")[0] == tmp_path / "given"
    monkeypatch.setenv("CHURN_SCORES_DIR", str(tmp_path / "set"))
    with pytest.raises(InputError, match=rf"^CHURN_SCORES_DIR {tmp_path / 'set'}: no scores.parquet"):
        run_report(out, settings=load_settings())
    assert not out.exists()
