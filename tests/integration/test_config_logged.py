"""Training logs the whole validated configuration with the model: every key as an MLflow
parameter `config.<file>.<key>`, and the set as configuration.json."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

pytestmark = pytest.mark.slow


def test_train_logs_every_configuration_key_with_the_model(tmp_path):
    from core.config import load_config
    from pipelines.features import run_features
    from pipelines.models import run_train
    from simulation.config import SimulationConfig
    from simulation.simulate import simulate
    from tests.conftest import tracking_uri

    simulate(SimulationConfig(accounts=200, days=420, seed=3), tmp_path / "data")
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "model.yaml").write_text(
        "curve: {n_estimators: 60, learning_rate: 0.1, min_child_samples: 30, early_stopping_rounds: 10, num_threads: 1}\n"
        "backtest: {folds: 2, budget: 0.07}\n"
    )
    (config_dir / "escalation.yaml").write_text("windows: {critical: 20}\n")
    config = load_config(config_dir)
    run_features(tmp_path / "data", tmp_path / "f", every="30d", params=config.features)
    tracking = tracking_uri(tmp_path / "mlflow.db")
    result = run_train(tmp_path / "f", tracking_uri=tracking, config=config)

    client = mlflow.MlflowClient(tracking)
    params = client.get_run(result["run_id"]).data.params
    assert params["config.model.backtest.budget"] == "0.07"  # from the config folder
    assert params["config.escalation.windows.critical"] == "20"
    assert params["config.features.signals.lookback"] == "8"  # a file the folder does not have: the shipped one
    assert params["config.model.curve.formulation"] == "hazard"
    assert json.loads(params["config.model.curve.monotone"]) == config.model.curve.monotone
    logged = {k.removeprefix("config."): v for k, v in params.items() if k.startswith("config.")}
    assert set(logged) == set(config.flat())
    document = json.loads(
        Path(client.download_artifacts(result["run_id"], "configuration.json", str(tmp_path))).read_text()
    )
    assert document["config.model.backtest.folds"] == 2
