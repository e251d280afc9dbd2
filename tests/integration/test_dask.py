"""The Dask path on a local two-worker cluster: `churn features` fans its blocks out to the workers
(text signals included, each worker loading its own sentiment model) and gives the same panel as
the default path; `churn evaluate` runs its backtest folds there; `churn train` grows the boosters
with lightgbm's Dask estimator, and the model it registers loads and scores in the BentoML service."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import tracking_uri

pytestmark = pytest.mark.slow

distributed = pytest.importorskip(
    "distributed", reason="the dask extra is not installed (pip install 'churn-platform[dask]')"
)
pytest.importorskip("prefect_dask", reason="the dask extra is not installed (pip install 'churn-platform[dask]')")

QUICK = {
    "n_estimators": 120,
    "learning_rate": 0.08,
    "min_child_samples": 40,
    "early_stopping_rounds": 20,
    "num_threads": 1,
}


@pytest.fixture
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as local:
        yield local


def test_dask_features_equal_default_and_dask_model_serves(tmp_path, monkeypatch, cluster, capsys):
    from models import registry
    from pipelines.cli import main
    from pipelines.features import read_snapshots
    from simulation.config import SimulationConfig
    from simulation.simulate import simulate

    data = tmp_path / "data"
    simulate(SimulationConfig(accounts=240, days=420, seed=5), data)
    config = tmp_path / "config"
    config.mkdir()
    (config / "features.yaml").write_text(yaml.safe_dump({"account_block": 100}))  # three blocks
    (config / "model.yaml").write_text(
        yaml.safe_dump({"curve": QUICK, "backtest": {"folds": 2}, "dask": {"min_snapshots": 0}})
    )
    monkeypatch.setenv("CHURN_CONFIG_DIR", str(config))
    tracking = tracking_uri(tmp_path / "mlflow.db")
    monkeypatch.setenv("CHURN_MLFLOW_TRACKING_URI", tracking)
    monkeypatch.setenv("CHURN_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    monkeypatch.setenv("CHURN_TEXT_CACHE", str(tmp_path / "cache-default.sqlite"))

    assert main(["features", "--data", str(data), "--out", str(tmp_path / "default"), "--every", "30d", "--json"]) == 0
    capsys.readouterr()
    # the Dask run scores the text afresh (its own cache), on the workers
    monkeypatch.setenv("CHURN_DASK_ADDRESS", cluster.scheduler_address)
    monkeypatch.setenv("CHURN_TEXT_CACHE", str(tmp_path / "cache-dask.sqlite"))
    assert main(["features", "--data", str(data), "--out", str(tmp_path / "dask"), "--every", "30d", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["blocks"] == 3

    with distributed.Client(cluster.scheduler_address) as client:
        loaded = client.run(lambda: sorted(__import__("text.loading", fromlist=["_MODELS"])._MODELS))
    assert any(loaded.values()), "no worker loaded the sentiment model: the text blocks did not run on the cluster"

    default, dask = read_snapshots(tmp_path / "default"), read_snapshots(tmp_path / "dask")
    assert len(default) == summary["snapshots"] > 0
    assert default["customer_sentiment_90d"].notna().any()  # text features are in the comparison
    # the encoder runs in float32 and pads each batch to its longest text: the same message scored in
    # another batch (another process here) can differ in the 7th digit, so text features agree to 1e-6
    pd.testing.assert_frame_equal(default, dask, check_exact=False, rtol=1e-5, atol=1e-6)
    from features.registry import feature_specs

    specs = feature_specs()
    text_columns = [c for c in default.columns if c in specs and specs[c].family in ("text", "experience")]
    other = default.columns.difference(text_columns)
    # the rest: the same numbers
    pd.testing.assert_frame_equal(default[other], dask[other], check_exact=False, rtol=1e-12, atol=0)

    # the backtest folds run as tasks on the workers
    import datetime as dt

    since = dt.datetime.now(dt.UTC)
    assert main(["evaluate", "--features", str(tmp_path / "dask"), "--folds", "2", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert {r["model"] for r in evaluated["results"]} >= {"lightgbm", "rules", "logistic"}
    assert all(
        0.5 < r["roc_auc"] <= 1 for r in evaluated["results"] if r["model"] == "lightgbm" and r["roc_auc"] is not None
    )
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect:
        ran = {t.name for t in prefect.read_task_runs(limit=200) if t.created >= since}
    assert {"run_fold 0", "run_fold 1"} <= ran

    assert main(["train", "--features", str(tmp_path / "dask"), "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    registry.connect(tracking)
    model = registry.load_curve(trained["model_uri"])
    assert model.info["trainer"] == "lightgbm.dask"
    assert 1 <= model.info["best_iteration"][0] <= QUICK["n_estimators"]
    # 240 accounts and two folds: one horizon's AUC is noisy; together they must show a working model
    # (models/dask_training.py says why each worker must hold a sample of all the rows)
    aucs = [v for v in trained["roc_auc"].values() if v is not None]
    assert aucs and all(0 <= v <= 1 for v in aucs) and np.mean(aucs) > 0.55

    monkeypatch.delenv("CHURN_DASK_ADDRESS")
    assert (
        main(
            ["score", "--data", str(data), "--out", str(tmp_path / "scores"), "--model", trained["model_uri"], "--json"]
        )
        == 0
    )
    scored = json.loads(capsys.readouterr().out)
    monkeypatch.setenv("CHURN_MODEL_URI", trained["model_uri"])
    monkeypatch.setenv("CHURN_SCORES_DIR", str(tmp_path / "scores"))
    from serving import schemas
    from serving.server import ChurnService

    service = ChurnService()
    account = pd.read_parquet(tmp_path / "scores" / "scores.parquet")["account_id"].iloc[0]
    [score] = service.score([schemas.AccountQuery(account_id=account)])
    stored = pd.read_parquet(tmp_path / "scores" / "scores.parquet").set_index("account_id").loc[account]
    assert score.curve.p_90d == pytest.approx(stored["p_90d"], abs=1e-9)
    assert scored["accounts"] > 0 and score.model_version == trained["version"]
