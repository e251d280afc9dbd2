"""Every command works on bases shaped unlike the default simulated one (issue 15).

For each shape of tests/shapes.py: validate, features, train, promote, evaluate, score, report and
a /score call on the served model succeed, families without data are null (never cited as a
reason), and the figures each step printed are kept in the test's output for the record. Where the
logistic baseline's backtest beats the curve's, train says so and logs the baseline, and the
baseline, promoted after the curve's run, answers /score too.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from core.vocabulary import HORIZONS
from features.registry import feature_specs
from pipelines.cli import main
from tests.conftest import tracking_uri
from tests.shapes import SHAPES

pytestmark = pytest.mark.slow
TOKEN = "shape-token"  # the service needs one to start


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("name", list(SHAPES))
def test_every_command_on_the_shape(name, tmp_path, capsys, monkeypatch, one_waterfall):
    shape = SHAPES[name](tmp_path)
    # two backtest folds instead of four: every command still runs on the shape, at half the
    # training and evaluation (what the folds measure is benchmarks/quality.py's job)
    config = tmp_path / "config"
    config.mkdir()
    (config / "model.yaml").write_text("backtest:\n  folds: 2\n  budget: 0.05\n")
    for key, value in {
        "CHURN_CONFIG_DIR": str(config),
        "CHURN_MLFLOW_TRACKING_URI": tracking_uri(tmp_path / "mlflow.db"),
        "CHURN_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "CHURN_SCORES_DIR": str(tmp_path / "scores"),
        "CHURN_API_TOKENS": TOKEN,
        "CHURN_DATA_DIR": str(shape.data),
    }.items():
        monkeypatch.setenv(key, value)

    assert main(["validate", "--data", str(shape.data), "--json"]) == 0
    assert _json(capsys)["valid"] is True

    features = tmp_path / "features"
    assert main([*shape.features_args(features), "--json"]) == 0
    panel = _json(capsys)
    without = panel["families_without_data"]
    assert set(shape.expect_without_data) <= set(without), without
    dictionary = json.loads((features / "feature_dictionary.json").read_text())
    noted = {entry["family"] for entry in dictionary if "note" in entry}
    assert noted == set(without) and all(note in panel["notes"] for note in without.values())
    family_of = {entry["name"]: entry["family"] for entry in dictionary}
    snapshots = pd.concat([pd.read_parquet(p) for p in (features / "snapshots").glob("*.parquet")])
    for entry in dictionary:
        if entry["family"] in without:
            assert snapshots[entry["name"]].isna().all(), entry["name"]
    for name in shape.expect_features:
        assert family_of[name] == "usage" and snapshots[name].notna().any(), name
        # what a reason about it reads
        sentence = feature_specs()[name].sentence(float(snapshots[name].dropna().iloc[0]))
        assert "{" not in sentence and name.removeprefix("usage_").split("_")[0] in sentence, sentence

    assert main(["train", "--features", str(features), "--json"]) == 0
    trained = _json(capsys)
    assert trained["version"] and trained["alias"] == "challenger"
    # the capacity search ran in every fit, and where a baseline still beats the curve, train says so
    assert len(trained["search"]) == 3 and trained["chosen_candidate"] in (0, 1, 2)
    auc = {(r["model"], r["horizon_days"]): r["roc_auc"] for r in trained["backtest"]}
    beaten = {
        str(h)
        for (m, h), v in auc.items()
        if m in ("rules", "logistic")
        and v is not None
        and auc.get(("lightgbm", h)) is not None
        and v > auc[("lightgbm", h)] + 0.005
    }
    assert set(trained["baseline_better"]) == beaten, trained["baseline_better"]
    with capsys.disabled():  # for the record (capsys would swallow it with the next command's output)
        print(
            f"[{shape.name}] train: search chose candidate {trained['chosen_candidate']}; ROC-AUC lightgbm vs logistic: "
            + ", ".join(
                f"{h}d {auc[('lightgbm', h)]:.3f} vs {auc[('logistic', h)]:.3f}"
                for m, h in auc
                if m == "lightgbm"
                if auc[("lightgbm", h)] is not None and auc.get(("logistic", h)) is not None
            )
            + f"; baseline_better {trained['baseline_better']}"
        )
    # never silently the worse model: at 90 days (and at every horizon evaluated) the curve is within
    # 0.01 of the logistic baseline, or train says the baseline is better and logs it beside the curve
    for h in HORIZONS:
        curve, logistic = auc.get(("lightgbm", h)), auc.get(("logistic", h))
        if curve is not None and logistic is not None:
            assert curve >= logistic - 0.01 or "logistic" in trained["baseline_better"].get(str(h), {}), (h, auc)
    logged = any("logistic" in rows for rows in trained["baseline_better"].values())
    assert bool(trained["baseline_model_uri"]) == logged
    assert main(["promote", "--force", "--json"]) == 0
    capsys.readouterr()

    assert main(["evaluate", "--features", str(features), "--json"]) == 0
    evaluated = _json(capsys)
    rows = [r for r in evaluated["results"] if r["model"] == "lightgbm"]
    assert rows, evaluated
    shortest = min(rows, key=lambda r: r["horizon_days"])
    assert shortest["roc_auc"] is None or 0 <= shortest["roc_auc"] <= 1
    table = [
        {k: r.get(k) for k in ("model", "horizon_days", "roc_auc", "pr_auc", "ece", "rows")}
        for r in evaluated["results"]
    ]

    scores = tmp_path / "scores"
    # text on: used only where the model reads it
    assert main(["score", "--data", str(shape.data), "--out", str(scores), "--json"]) == 0
    scored = _json(capsys)
    assert scored["accounts"] > 0

    report = tmp_path / "report.html"
    assert main(["report", "--out", str(report), "--json"]) == 0
    capsys.readouterr()
    html = report.read_text()
    assert "<h1>Churn risk report</h1>" in html
    for note in without.values():
        assert note.replace("'", "&#x27;") in html

    # the service class in-process (its HTTP layer is tested in test_serving; an ASGI app per shape
    # would register BentoML's Prometheus metrics twice in one process)
    from serving import schemas
    from serving.server import ChurnService

    ids = pd.read_parquet(scores / "features.parquet")["account_id"].head(5).tolist()
    results = ChurnService().score([schemas.AccountQuery(account_id=a) for a in ids])
    assert [r.account_id for r in results] == ids
    for result in results:
        curve = [getattr(result.curve, f"p_{h}d") for h in (30, 60, 90, 180)]
        assert curve == sorted(curve)
        for reason in result.top_reasons:
            assert family_of.get(reason.feature, reason.family) not in without, reason
    if logged:  # the baseline that beat the curve can be served instead: promoted, it answers /score
        assert main(["promote", "--model", "baseline", "--force", "--json"]) == 0
        promoted = _json(capsys)
        assert promoted["promoted"] and promoted["model_kind"] == "logistic"
        served = ChurnService().score([schemas.AccountQuery(account_id=a) for a in ids])
        assert all(r.model_version == promoted["champion"] for r in served)
        for result in served:
            curve = [getattr(result.curve, f"p_{h}d") for h in HORIZONS]
            assert curve == sorted(curve) and all(0 <= p <= 1 for p in curve)
            assert all(family_of.get(r.feature, r.family) not in without for r in result.top_reasons)
    print(
        f"[{shape.name}] served: the curve"
        + (f", then the logistic baseline (version {promoted['champion']})" if logged else "")
    )
    print(
        f"[{name}] panel: {panel['snapshots']} snapshots, {panel['accounts']} accounts, {len(panel['cutoffs'])} cutoffs, "
        f"{panel['features']} features, without data: {sorted(without)}; scored {scored['accounts']} accounts"
    )
    print(
        f"[{name}] evaluate: "
        + json.dumps({"results": table, "not_evaluated": evaluated.get("not_evaluated")}, default=str)
    )


def test_tickets_without_messages_surveys_or_account_events(tmp_path, capsys):
    """Support tickets and their events but no messages, surveys or account events: the families
    that read those are null with a note each; support and effort are built; text on."""
    from simulation.config import SimulationConfig
    from simulation.simulate import simulate

    data = tmp_path / "data"
    simulate(SimulationConfig(accounts=120, days=200, seed=15), data)
    for name in ("ticket_messages", "surveys", "account_events"):
        (data / f"{name}.parquet").unlink()
    assert main(["features", "--data", str(data), "--out", str(tmp_path / "f"), "--every", "30d", "--json"]) == 0
    panel = _json(capsys)
    assert set(panel["families_without_data"]) == {"communication", "text", "risk_events"}
    snapshots = pd.concat([pd.read_parquet(p) for p in (tmp_path / "f" / "snapshots").glob("*.parquet")])
    assert snapshots["tickets_90d"].gt(0).any() and snapshots["customer_sentiment_90d"].isna().all()
    # CSAT comes from ticket events
    assert snapshots["nps_last"].isna().all() and snapshots["csat_mean_180d"].notna().any()
