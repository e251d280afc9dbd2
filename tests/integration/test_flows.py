"""The retrain flow under the Prefect test harness: a model is registered, promoted, the report
exists; a failure in the middle followed by a rerun finishes without redoing finished tasks."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import tracking_uri

pytestmark = pytest.mark.slow

QUICK = {
    "n_estimators": 150,
    "learning_rate": 0.08,
    "min_child_samples": 40,
    "early_stopping_rounds": 20,
    "num_threads": 1,
}


@pytest.fixture
def prefect_env(tmp_path, monkeypatch):
    """The session's Prefect server (tests/conftest.py prefect_backend), this test's own config,
    MLflow and store."""
    config = tmp_path / "config"
    config.mkdir()
    # the quick curve on this small base ranks below the rules at some horizon, which would keep it
    # from a first promotion (tests/unit/test_backtest.py): the flow's mechanics are what is tested here
    promotion = {"max_ece": 0.1, "first_against": "none"}
    (config / "model.yaml").write_text(
        yaml.safe_dump({"curve": QUICK, "backtest": {"folds": 2, "budget": 0.05}, "promotion": promotion})
    )
    monkeypatch.setenv("CHURN_CONFIG_DIR", str(config))
    monkeypatch.setenv("CHURN_MLFLOW_TRACKING_URI", tracking_uri(tmp_path / "mlflow.db"))
    monkeypatch.setenv("CHURN_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    return tmp_path


def test_retrain_registers_promotes_reports_and_resumes_after_a_failure(prefect_env, monkeypatch, one_waterfall):
    import mlflow

    import pipelines.features
    import pipelines.models
    import pipelines.promote
    from core.errors import ChurnError
    from pipelines.flows import retrain
    from simulation.config import SimulationConfig
    from simulation.simulate import simulate

    data = prefect_env / "data"
    simulate(SimulationConfig(accounts=400, days=450, seed=21), data)
    calls = {"features": 0, "train": 0, "promote": 0}
    real = {
        "features": pipelines.features.run_features,
        "train": pipelines.models.run_train,
        "promote": pipelines.promote.run_promote,
    }

    def counting(name, fail=False):
        def wrapper(*args, **kwargs):
            # scoring builds one cutoff with run_features too: not the features task
            calls[name] += kwargs.get("as_of") is None
            if fail:  # bad input: failed at once, not retried
                raise ChurnError(f"forced failure in {name}")
            return real[name](*args, **kwargs)

        return wrapper

    monkeypatch.setattr(pipelines.features, "run_features", counting("features"))
    monkeypatch.setattr(pipelines.models, "run_train", counting("train"))
    monkeypatch.setattr(pipelines.promote, "run_promote", counting("promote", fail=True))
    with pytest.raises(ChurnError, match="forced failure in promote"):
        retrain(data=str(data), workdir=str(prefect_env / "work"), text=False)
    assert calls == {"features": 1, "train": 1, "promote": 1}

    monkeypatch.setattr(pipelines.promote, "run_promote", counting("promote"))
    result = retrain(data=str(data), workdir=str(prefect_env / "work"), text=False)
    assert calls == {"features": 1, "train": 1, "promote": 2}  # features and training came from the first run's results
    # the training backtest is the evaluation
    assert set(result["roc_auc_90d_by_model"]) >= {"lightgbm", "rules", "logistic", "oracle"}
    assert result["version"] == "1" and result["promoted"] is True and result["champion"] == "1"
    client = mlflow.MlflowClient(f"sqlite:///{prefect_env / 'mlflow.db'}")
    assert str(client.get_model_version_by_alias("churn-risk", "champion").version) == "1"
    assert (prefect_env / "work" / "churn_report.html").is_file() and (
        prefect_env / "work" / "scores" / "scores.parquet"
    ).is_file()
    assert 0.5 < result["roc_auc_90d"] <= 1

    # the cached features stand for files: delete them and the next run builds them again
    import shutil

    shutil.rmtree(prefect_env / "work" / "features")
    retrain(data=str(data), workdir=str(prefect_env / "work"), text=False)
    assert calls["features"] == 2 and (prefect_env / "work" / "features" / "snapshots").is_dir()
    assert calls["train"] == 1  # same snapshots: the registered model still stands

    # a reused training result stands for a registered model: with the model deleted, train again
    client.delete_registered_model("churn-risk")
    again = retrain(data=str(data), workdir=str(prefect_env / "work"), text=False)
    assert calls["train"] == 2 and again["version"] == "1" and again["promoted"] is True
    assert str(client.get_model_version_by_alias("churn-risk", "champion").version) == "1"

    # another work folder never sees this one's results
    other = retrain(data=str(data), workdir=str(prefect_env / "other"), text=False)
    assert calls["train"] == 3 and other["version"] == "2"
