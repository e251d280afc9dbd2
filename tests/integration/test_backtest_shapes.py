"""`churn evaluate` and `churn train` on the histories users have: weekly cutoffs over five months,
monthly cutoffs over eight, a history too short for any fold, a churn table stored as text, and
no churn table at all.

Each horizon is tested where its outcomes exist; the others are listed as not evaluated with the
days of data they lack, computed here from the panel's own summary.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines.cli import main
from simulation.config import SimulationConfig
from simulation.simulate import simulate
from tests.conftest import build_features

pytestmark = pytest.mark.slow

QUICK = {
    "n_estimators": 150,
    "learning_rate": 0.08,
    "min_child_samples": 40,
    "early_stopping_rounds": 20,
    "num_threads": 1,
}
MODELS = {"lightgbm", "rules", "logistic", "oracle"}
#: the rule the backtest must follow, restated: training needs at least 28 days of cutoffs (and two
#: cutoffs) whose outcome at the horizon is known at the test cutoff
MIN_TRAIN_DAYS = 28


@pytest.fixture(autouse=True)
def quick_model(tmp_path, monkeypatch):
    """Small trees, so each backtest takes seconds (the plan, not the model, is under test)."""
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "model.yaml").write_text(yaml.safe_dump({"curve": QUICK, "backtest": {"folds": 4, "budget": 0.05}}))
    monkeypatch.setenv("CHURN_CONFIG_DIR", str(folder))
    monkeypatch.setenv("CHURN_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


def build(root: Path, days: int, every: str, start: str = "2024-01-02") -> Path:
    simulate(SimulationConfig(accounts=400, days=days, seed=5), root / "data")
    build_features(str(root / "data"), str(root / "f"), "--every", every, "--start", start)
    return root / "f"


@pytest.fixture(scope="module")
def weekly(tmp_path_factory) -> Path:
    """400 accounts, 150 days of data, a cutoff every 7 days from the second day (the report of issue 15)."""
    return build(tmp_path_factory.mktemp("weekly"), 150, "7d")


def needs_days(features: Path, horizon: int) -> int:
    """Days of data a horizon lacks: its first possible test cutoff (on the panel's grid, after the
    training cutoffs it needs, each with its outcome known there), plus the horizon itself, against
    the end of the data."""
    summary = json.loads((features / "panel_summary.json").read_text())
    cutoffs = pd.to_datetime(summary["cutoffs"], utc=True)
    step = (cutoffs[1] - cutoffs[0]).days
    train = max(2, math.ceil(MIN_TRAIN_DAYS / step))
    first_test = math.ceil(((train - 1) * step + horizon) / step) * step
    return first_test + horizon - (pd.Timestamp(summary["data_end"]) - cutoffs[0]).days


def evaluate(features: Path, capsys, *flags: str) -> dict:
    capsys.readouterr()
    assert main(["evaluate", "--features", str(features), *flags, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_weekly_five_months_evaluates_the_horizons_it_can(weekly, capsys):
    payload = evaluate(weekly, capsys)
    evaluated = {r["horizon_days"] for r in payload["results"]}
    assert evaluated == {30, 60} and {r["model"] for r in payload["results"]} == MODELS
    lacking = {n["horizon_days"]: n for n in payload["not_evaluated"]}
    assert set(lacking) == {90, 180}
    for h, n in lacking.items():
        assert n["needs_days"] == needs_days(weekly, h) > 0
        assert n["reason"].startswith(f"not enough history: needs {needs_days(weekly, h)} more days")
    rows = {(r["model"], r["horizon_days"]): r for r in payload["results"]}
    # the latest 4, and the panel's calendar cutoff 2024-04-01 (a month end)
    assert (
        rows[("lightgbm", 30)]["folds"] == 5
        and rows[("lightgbm", 30)]["roc_auc"] > 0.5
        and rows[("lightgbm", 30)]["rows"] > 0
    )
    # fewer folds than asked, said
    assert rows[("lightgbm", 60)]["folds"] < 4 and any("60 days" in note for note in payload["notes"])
    for key in ("roc_auc", "pr_auc", "brier", "ece", "lift_top_decile", "recall_at_budget", "median_lead_days"):
        assert key in rows[("oracle", 30)]


def test_weekly_five_months_with_two_folds_in_the_human_table(weekly, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--features", str(weekly), "--folds", "2"]) == 0
    err = capsys.readouterr().err
    assert "lightgbm" in err and "30d" in err and "60d" in err
    assert "not evaluated" in err and "180 days" in err and f"needs {needs_days(weekly, 180)} more days" in err
    # two as asked, and the month end
    assert "30 days at 3" in err and "also tested at 2024-04-01 (30 days): a month end" in err


def test_train_on_weekly_five_months_registers_a_challenger(weekly, capsys):
    capsys.readouterr()
    assert main(["train", "--features", str(weekly), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["alias"] == "challenger" and set(payload["roc_auc"]) == {"30", "60"}
    assert {n["horizon_days"] for n in payload["not_evaluated"]} == {90, 180}
    assert any(n.startswith("180 days: no snapshot of the panel has a known 180-day outcome") for n in payload["notes"])
    # no champion yet: promotion judges the horizons the backtest evaluated and says which it could not
    code = main(["promote", "--json"])
    decision = json.loads(capsys.readouterr().out)
    assert (
        code in (0, 1)
        and any("90 days" in n for n in decision["notes"])
        and any("180 days" in n for n in decision["notes"])
    )


def test_monthly_eight_months_cannot_evaluate_180_days(tmp_path, capsys):
    features = build(tmp_path, 240, "30d")
    payload = evaluate(features, capsys)
    assert {r["horizon_days"] for r in payload["results"]} == {30, 60, 90}
    (lacking,) = payload["not_evaluated"]
    assert lacking["horizon_days"] == 180 and lacking["needs_days"] == needs_days(features, 180)
    assert f"needs {needs_days(features, 180)} more days" in lacking["reason"]


def test_too_short_a_history_exits_2_naming_what_it_has_and_needs(tmp_path, capsys):
    features = build(tmp_path, 70, "7d")
    capsys.readouterr()
    assert main(["evaluate", "--features", str(features)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"--features {features}" in err and "2024-01-02 to" in err and "cutoffs every 7 days" in err
    assert "a backtest needs" in err and "at least 86 days" in err and "Traceback" not in err
    assert main(["train", "--features", str(features)]) == 2


@pytest.mark.parametrize("stored", ["parquet_text", "csv"])
def test_churn_times_stored_as_text_are_read_through_the_contract(weekly, tmp_path, capsys, stored):
    data = tmp_path / "data"
    shutil.copytree(json.loads((weekly / "panel_summary.json").read_text())["data"], data)
    churn = pd.read_parquet(data / "churn.parquet")
    text = churn.assign(churned_at=churn["churned_at"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    if stored == "csv":
        (data / "churn.parquet").unlink()
        text.to_csv(data / "churn.csv", index=False)
    else:
        text.to_parquet(data / "churn.parquet", index=False)
    features = tmp_path / "f"
    shutil.copytree(weekly, features)
    summary = json.loads((features / "panel_summary.json").read_text())
    (features / "panel_summary.json").write_text(json.dumps({**summary, "data": str(data)}))
    payload = evaluate(features, capsys, "--folds", "1")
    lead = [r["median_lead_days"] for r in payload["results"] if r["model"] == "lightgbm"]
    assert lead and all(v is None or v >= 0 for v in lead) and any(v is not None for v in lead)


def test_train_and_evaluate_on_a_base_without_churn_exit_2_and_register_nothing(weekly, tmp_path, capsys):
    """A base whose churn table is absent (allowed: no account has churned yet) has nothing to learn from."""
    data = tmp_path / "data"
    source = json.loads((weekly / "panel_summary.json").read_text())["data"]
    shutil.copytree(source, data, ignore=shutil.ignore_patterns("churn.*"))
    assert not list(data.glob("churn.*"))
    features = tmp_path / "f"
    build_features(str(data), str(features), "--every", "7d", "--start", "2024-01-02")
    capsys.readouterr()
    for command in ("train", "evaluate"):  # evaluate too: a table of undefined figures would say nothing
        assert main([command, "--features", str(features)]) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert f"snapshot panel {features}:" in err and "no snapshot's label records a churn" in err
        assert "Traceback" not in err
    database = tmp_path / "mlflow.db"
    if database.exists():
        import mlflow

        assert not mlflow.MlflowClient(f"sqlite:///{database}").search_registered_models()
