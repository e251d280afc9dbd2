"""`churn evaluate`: a rolling-origin backtest whose folds never train on outcomes from the test period."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from models.backtest import censor_at
from models.curve import HORIZONS, LABELS
from pipelines.cli import main
from simulation.config import SimulationConfig
from simulation.simulate import simulate

pytestmark = pytest.mark.slow


def test_censor_at_hides_outcomes_after_the_moment():
    cutoffs = pd.to_datetime(["2024-01-01", "2024-03-01", "2024-05-01"], utc=True)
    panel = pd.DataFrame({"cutoff": cutoffs, **{label: pd.array([0, 1, 0], dtype="Int8") for label in LABELS}})
    out = censor_at(panel, pd.Timestamp("2024-05-01", tz="UTC"))
    for h, label in zip(HORIZONS, LABELS, strict=True):
        for i, cutoff in enumerate(cutoffs):
            assert pd.isna(out.loc[i, label]) == (cutoff + pd.Timedelta(days=h) > pd.Timestamp("2024-05-01", tz="UTC"))


def test_evaluate_json_has_every_model_and_horizon(tmp_path, capsys):
    data = tmp_path / "data"
    simulate(SimulationConfig(accounts=600, days=500, seed=4), data)
    assert main(["features", "--data", str(data), "--out", str(tmp_path / "f"), "--every", "20d", "--no-text"]) == 0
    assert "\nnote: text signals not computed (--no-text)" in capsys.readouterr().err  # what the panel lacks, said
    assert main(["evaluate", "--features", str(tmp_path / "f"), "--folds", "2", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    rows = {(r["model"], r["horizon_days"]): r for r in payload["results"]}
    assert {m for m, _ in rows} == {"lightgbm", "rules", "logistic", "oracle"} and payload["oracle"] is True
    for model in ("lightgbm", "rules", "logistic", "oracle"):
        r = rows[(model, 90)]
        assert 0.5 < r["roc_auc"] <= 1 and 0 <= r["ece"] < 0.1 and r["rows"] > 0
        assert r["roc_auc_low"] < r["roc_auc"] < r["roc_auc_high"]  # its 95% interval, accounts resampled
        for key in (
            "pr_auc",
            "brier",
            "lift_top_decile",
            "recall_at_budget",
            "arr_recall_at_budget",
            "median_lead_days",
        ):
            assert key in r
    # the oracle is the upper bound on realised labels (allowing for sampling noise on a small base)
    assert rows[("lightgbm", 90)]["roc_auc"] < rows[("oracle", 90)]["roc_auc"] + 0.03


def test_evaluate_bad_flags_exit_2(tmp_path, capsys):
    assert main(["evaluate", "--features", str(tmp_path), "--budget", "5"]) == 2
    assert "--budget" in capsys.readouterr().err
    assert main(["evaluate", "--features", str(tmp_path / "none")]) == 2
    assert "--features" in capsys.readouterr().err
