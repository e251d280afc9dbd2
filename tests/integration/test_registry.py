"""MLflow on a real sqlite backend: train registers a challenger whose pyfunc gives the curve back,
and promotion moves `champion` only when the challenger wins (or is forced, which is recorded)."""

from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from core.vocabulary import CURVE_COLUMNS
from models import registry
from models.curve import CurveParams, fit_curve
from models.promotion import PromotionPolicy, decide, metric_key
from pipelines.cli import main
from pipelines.features import read_snapshots
from pipelines.models import feature_names
from simulation.config import SimulationConfig
from simulation.simulate import simulate
from tests.conftest import build_features, tracking_uri

pytestmark = pytest.mark.slow

QUICK = {
    "n_estimators": 200,
    "learning_rate": 0.08,
    "num_leaves": 15,
    "min_child_samples": 40,
    "early_stopping_rounds": 20,
    "num_threads": 1,
}


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    simulate(SimulationConfig(accounts=600, days=500, seed=4), root / "data")
    build_features(str(root / "data"), str(root / "f"), "--every", "20d")
    return root / "f"


def write_config(folder, curve: dict, max_ece: float = 0.1):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.yaml").write_text(
        yaml.safe_dump(
            {
                "curve": curve,
                "backtest": {"folds": 2, "budget": 0.05},
                # the challenger-against-champion rule on its own (test_backtest.py holds a first model to the rules)
                "promotion": {"tolerance": 0.005, "max_ece": max_ece, "first_against": "none"},
            }
        )
    )
    return folder


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    uri = tracking_uri(tmp_path / "mlflow.db")
    monkeypatch.setenv("CHURN_MLFLOW_TRACKING_URI", uri)
    return uri


def test_logged_model_loads_with_pyfunc_and_gives_the_same_curve(features_dir, tracking, capsys):
    from models.backtest import censor_at

    panel = read_snapshots(features_dir)
    names = feature_names(panel)
    cutoffs = np.sort(panel["cutoff"].unique())
    moment = cutoffs[len(cutoffs) // 2 + 2]
    # trained as of `moment`
    model = fit_curve(censor_at(panel[panel["cutoff"] < moment], moment), names, CurveParams(**QUICK))
    registry.connect(tracking)
    logged = registry.log_training(
        model, panel=panel, params={"n": 1}, metrics={"m": 1.0}, tables={}, documents={}, figures={}, tags={"t": "x"}
    )
    loaded = mlflow.pyfunc.load_model(logged["model_uri"])
    sample = panel[names].sample(300, random_state=1)
    got = loaded.predict(sample)
    assert list(got.columns) == list(CURVE_COLUMNS)
    np.testing.assert_allclose(got.to_numpy(), model.predict_curve(sample), rtol=0, atol=1e-12)
    assert loaded.metadata.get_input_schema() is not None and loaded.metadata.get_output_schema() is not None
    # the registry's own loader returns the same model (the API loads it this way)
    np.testing.assert_allclose(
        registry.load_curve(logged["model_uri"]).predict_curve(sample), got.to_numpy(), atol=1e-12
    )

    # evaluated out of time: only snapshots at or after the last outcome its training saw
    assert main(["evaluate", "--features", str(features_dir), "--model", logged["model_uri"], "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["out_of_time_from"] <= str(pd.Timestamp(moment).date()) and payload["results"]
    assert all(r["model"] == "registered" and r["rows"] > 0 for r in payload["results"])


def test_train_then_promote_and_refuse_a_worse_challenger(features_dir, tracking, tmp_path, monkeypatch, capsys):
    from models.plots import pyplot

    monkeypatch.setenv("CHURN_CONFIG_DIR", str(write_config(tmp_path / "good", QUICK)))
    open_figures = set(pyplot().get_fignums())
    assert main(["train", "--features", str(features_dir), "--json"]) == 0
    assert set(pyplot().get_fignums()) == open_figures  # the logged figures are closed, not kept by pyplot
    first = json.loads(capsys.readouterr().out)
    assert first["alias"] == "challenger" and first["version"] == "1" and first["model_uri"] == "models:/churn-risk/1"
    run = mlflow.MlflowClient(tracking).get_run(first["run_id"])
    assert run.data.metrics[metric_key("roc_auc", 90)] == pytest.approx(first["roc_auc"]["90"])
    assert {"backtest.lightgbm.ece_90d", "backtest.rules.roc_auc_90d", "backtest.logistic.roc_auc_90d"} <= set(
        run.data.metrics
    )
    low, high = (run.data.metrics[metric_key(m, 90)] for m in ("roc_auc_low", "roc_auc_high"))
    assert low < first["roc_auc"]["90"] < high  # the interval is logged beside the figure
    artifacts = {a.path for a in mlflow.MlflowClient(tracking).list_artifacts(first["run_id"])}
    assert {
        "backtest.csv",
        "calibration.png",
        "shap_importance.png",
        "feature_dictionary.json",
        "data_fingerprint.json",
    } <= artifacts
    assert len(run.data.tags["data.fingerprint"]) == 64

    assert main(["promote", "--json"]) == 0  # no champion yet: the calibration bound alone decides
    promoted = json.loads(capsys.readouterr().out)
    assert promoted["promoted"] is True and promoted["champion"] == "1"

    # a deliberately weak configuration: two-leaf stumps, a handful of them
    monkeypatch.setenv(
        "CHURN_CONFIG_DIR",
        str(write_config(tmp_path / "weak", {**QUICK, "n_estimators": 2, "num_leaves": 2, "learning_rate": 0.01})),
    )
    assert main(["train", "--features", str(features_dir), "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["version"] == "2"
    assert main(["promote", "--json"]) == 1
    refused = json.loads(capsys.readouterr().out)
    assert refused["promoted"] is False and refused["champion"] == "1"
    assert any("below the champion" in reason for reason in refused["reasons"])
    assert main(["promote"]) == 1  # the same decision for a person: every reason, then every note
    said = capsys.readouterr().err
    assert "refused to promote version 2: " in said and all(
        text in said for text in (*refused["reasons"], *(f"note: {n}" for n in refused["notes"]))
    )
    client = mlflow.MlflowClient(tracking)
    assert str(client.get_model_version_by_alias("churn-risk", "champion").version) == "1"
    assert "below the champion" in client.get_model_version("churn-risk", "2").tags["promotion.refused"]

    # a model trained on every outcome of this panel has nothing out of time to be evaluated on
    assert main(["evaluate", "--features", str(features_dir), "--model", "models:/churn-risk@champion"]) == 2
    assert "newer data" in capsys.readouterr().err

    assert main(["promote", "--force", "--json"]) == 0
    forced = json.loads(capsys.readouterr().out)
    assert forced["promoted"] is True and forced["forced"] is True and forced["reasons"]
    assert str(client.get_model_version_by_alias("churn-risk", "champion").version) == "2"
    assert client.get_model_version("churn-risk", "2").tags["promotion.forced"] == "true"

    # the daily run with the champion: scores, queue and escalations in the store; a rerun merges
    monkeypatch.setenv("CHURN_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("CHURN_CONFIG_DIR", str(write_config(tmp_path / "good", QUICK)))
    data = features_dir.parent / "data"
    good = ["--model", "models:/churn-risk/1"]  # the champion now is the forced weak one; score with the good version
    assert main(["score", "--data", str(data), "--out", str(tmp_path / "scored"), "--no-text", *good, "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["model"] == "models:/churn-risk/1" and scored["accounts"] == sum(scored["bands"].values())
    scores = pd.read_parquet(tmp_path / "scored" / "scores.parquet")
    assert (
        len(scores) == scored["accounts"]
        and (np.diff(scores[["p_30d", "p_60d", "p_90d", "p_180d"]].to_numpy(), axis=1) >= 0).all()
    )
    assert scores["reason_1"].notna().mean() > 0.9
    queue = pd.read_csv(tmp_path / "scored" / "queue.csv")
    assert int(queue["escalate"].sum()) == scored["escalations"] == scored["opened"]
    if scored["escalations"]:
        packages = list((tmp_path / "scored" / "handoffs").glob("*.json"))
        assert len(packages) == scored["escalations"]
        assert len(json.loads(packages[0].read_text())["summary"].split()) <= 200
        # each package names the reasons the scores give its account, strongest first
        first_reason = scores.set_index("account_id")["reason_1"]
        for package in map(json.loads, (p.read_text() for p in packages)):
            shown = package["business_impact"]["top_reasons"]
            expected = first_reason[package["customer"]["account_id"]]
            assert shown[0].startswith(expected) if isinstance(expected, str) else not shown, package["customer"]
    monkeypatch.chdir(data.parent)  # --data relative: the API reads the summary's `data` from its own folder
    assert main(["score", "--data", "data", "--out", str(tmp_path / "scored2"), "--no-text", *good, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["data"] == str(data.resolve())
    assert again["opened"] == 0 and again["updated"] == scored["escalations"]  # the cooldown merges repeats


def test_promotion_rule_reasons():
    policy = PromotionPolicy(tolerance=0.01, max_ece=0.02, horizons=(90,))
    good = {metric_key("roc_auc", 90): 0.80, metric_key("ece", 90): 0.01}
    assert decide(good, None, policy)["promote"]
    assert decide({**good, metric_key("roc_auc", 90): 0.795}, good, policy)["promote"]  # within the tolerance
    worse = decide({**good, metric_key("roc_auc", 90): 0.78}, good, policy)
    assert not worse["promote"] and "0.7800" in worse["reasons"][0] and "0.8000" in worse["reasons"][0]
    uncalibrated = decide({**good, metric_key("ece", 90): 0.05}, None, policy)
    assert not uncalibrated["promote"] and "calibration bound" in uncalibrated["reasons"][0]


def test_promote_without_a_challenger_says_what_to_do(tracking, capsys):
    assert main(["promote"]) == 1
    assert "churn train" in capsys.readouterr().err


def test_train_table_cli_reports_cv_and_logs_a_loadable_model(tracking, tmp_path, capsys):
    from tests.unit.test_table import messy

    frame = messy(400, seed=3)
    path = tmp_path / "customers.csv"
    frame.to_csv(path, index=False)
    assert main(["train-table", "--table", str(path), "--label", "Churn", "--id", "customerID", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["folds"] == 5 and len(payload["per_fold"]) == 5 and payload["roc_auc_mean"] > 0.6
    run = mlflow.MlflowClient(tracking).get_run(payload["run_id"])
    assert run.data.metrics["roc_auc_mean"] == pytest.approx(payload["roc_auc_mean"])
    loaded = mlflow.pyfunc.load_model(payload["model_uri"])
    scored = loaded.predict(frame.drop(columns=["Churn"]).head(20))
    assert scored["probability"].between(0, 1).all() and scored["probability"].nunique() > 1

    assert main(["train-table", "--table", str(path), "--label", "Churned"]) == 2
    assert "label column 'Churned'" in capsys.readouterr().err
