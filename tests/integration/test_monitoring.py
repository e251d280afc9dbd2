"""Monitoring that speaks up (pipelines/monitor.py): a drift alert fires on a base made to drift
and stays quiet on one that does not; at most one alert per monitor and day; calibration waits
for matured outcomes and fires when they are far from the predictions."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from models.drift import category_psi
from pipelines.monitor import (
    HISTORY,
    calibration,
    feature_drift,
    score_distribution,
)
from tests.conftest import champion_environment

UTC = dt.UTC


# -- the computations, on small frames ------------------------------------------------------------


def test_psi_of_a_distribution_against_itself_is_zero_and_a_shift_is_large() -> None:
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"logins": rng.gamma(2.0, 10.0, 4000), "plan": rng.choice(["a", "b", "c"], 4000)})
    same = pd.DataFrame({"logins": rng.gamma(2.0, 10.0, 400), "plan": rng.choice(["a", "b", "c"], 400)})
    quiet = feature_drift(ref, same, ["logins", "plan"], 0.25)
    assert quiet.state == "ok" and quiet.value < 0.1
    loud = feature_drift(ref, same.assign(logins=same["logins"] * 0.3), ["logins", "plan"], 0.25)
    assert loud.state == "breach" and loud.details["shifted"] == ["logins"] and loud.value > 1
    assert category_psi(ref["plan"], ref["plan"]) == pytest.approx(0.0)
    assert category_psi(ref["plan"], pd.Series(["a"] * 100)) > 1


def test_score_distribution_breaches_on_psi_or_on_the_mean() -> None:
    rng = np.random.default_rng(1)
    ref = rng.beta(1, 30, 5000)
    assert score_distribution(ref, rng.beta(1, 30, 500), 0.25, 0.5).state == "ok"
    moved = score_distribution(ref, ref[:500] * 2.0, 0.25, 0.5)
    assert moved.state == "breach" and moved.details["mean_shift"] == pytest.approx(
        2 * ref[:500].mean() / ref.mean() - 1, abs=1e-3
    )
    assert moved.value > 0.25


def _runs(p: float, n: int, churned: int, run: pd.Timestamp) -> tuple[dict, pd.Series]:
    frame = pd.DataFrame({"account_id": [f"A{i}" for i in range(n)], **{f"p_{h}d": p for h in (30, 60, 90, 180)}})
    churned_at = pd.Series(run + pd.Timedelta(days=10), index=[f"A{i}" for i in range(churned)])
    return {h: (run, frame) for h in (30, 60, 90, 180)}, churned_at


def test_calibration_has_a_binomial_tolerance_and_waits_for_enough_churns() -> None:
    run, known = pd.Timestamp("2025-01-01", tz="UTC"), pd.Timestamp("2025-09-01", tz="UTC")
    kwargs = {"first_run": run, "z_threshold": 3.0, "tolerance": 0.25, "min_expected": 10}
    # 6 churns predicted: too few to judge, whatever happened
    assert calibration(*_runs(0.02, 300, 20, run), known, **kwargs).state == "not_enough_data"
    # 20 predicted, 28 observed: 40% off but within 3 binomial standard deviations (a small base's noise)
    assert calibration(*_runs(0.05, 400, 28, run), known, **kwargs).state == "ok"
    fired = calibration(*_runs(0.05, 400, 60, run), known, **kwargs)
    assert fired.state == "breach" and fired.value > 3
    assert calibration({}, pd.Series(dtype=object), known, **kwargs).state == "not_enough_data"


def test_a_monitoring_destination_must_be_defined(tmp_path) -> None:
    from escalation.policy import load_policy

    (tmp_path / "escalation.yaml").write_text("monitoring: {destinations: [ops-slack]}\n")
    with pytest.raises(InputError, match="monitoring.destinations.*ops-slack"):
        load_policy(tmp_path)


# -- on a simulated base with a champion ----------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with champion_environment(tmp_path_factory.mktemp("monitoring")) as environment:
        # what the champion's daily run queued, before any test here runs monitors on the same store
        environment["daily_run_alerts"] = _monitor_alerts(environment)
        yield environment


def _monitor_alerts(env) -> list[dict]:
    from escalation.store import Store

    with Store(env["env"]["CHURN_STORE_URL"]) as store:
        return [a for a in store.alerts() if a["topic"] == "monitor"]


def _copy_run(env, name: str):
    """A copy of the champion's scoring run (its output files, no history) to change."""
    source, target = env["root"] / "scores", env["root"] / name
    target.mkdir()
    for file in ("scores.parquet", "features.parquet", "score_summary.json"):
        shutil.copy(source / file, target / file)
    return target


def _model(env):
    from models import registry

    registry.connect(env["env"]["CHURN_MLFLOW_TRACKING_URI"])
    return registry.load_curve("models:/churn-risk@champion")


def test_the_daily_run_monitors_and_an_undrifted_base_stays_quiet(env) -> None:
    out = json.loads((env["root"] / "scores" / "monitoring.json").read_text())
    states = {m["monitor"]: m for m in out["monitors"]}
    drift, scores = states["feature_drift"], states["score_distribution"]
    print(
        f"\nundrifted: largest feature PSI {drift['value']:.4f}; p_90d PSI {scores['value']:.4f}, "
        f"mean shift {scores['details']['mean_shift']:+.3f}; per feature "
        + ", ".join(f"{f['feature']} {f['psi']:.3f}" for f in drift["details"]["features"])
    )
    assert drift["state"] == "ok" and drift["value"] < 0.25 and len(drift["details"]["features"]) == 10
    assert scores["state"] == "ok" and scores["value"] < 0.1
    assert states["calibration"]["state"] == "not_enough_data"  # one run: nothing has matured
    assert "not enough matured outcomes yet" in states["calibration"]["summary"]
    assert out["breaches"] == [] and env["daily_run_alerts"] == []
    assert (env["root"] / "scores" / HISTORY / f"{out['as_of']}.parquet").is_file()


@pytest.fixture(scope="module")
def drifted(env):
    """The champion's scoring run with the model's top usage features at 30% for every account,
    and the model's scores of that snapshot; (folder, the usage features changed)."""
    from features.registry import feature_specs
    from pipelines.monitor import top_features

    model, specs = _model(env), feature_specs()
    folder = _copy_run(env, "drifted")
    snapshot = pd.read_parquet(folder / "features.parquet")
    usage = [
        f for f in top_features(model, env["features"].sample(1000, random_state=0), 10) if specs[f].family == "usage"
    ]
    assert usage, "the model's top features should include usage"
    snapshot[usage] = snapshot[usage] * 0.3
    snapshot.to_parquet(folder / "features.parquet", index=False)
    scores = pd.read_parquet(folder / "scores.parquet")
    scores[["p_30d", "p_60d", "p_90d", "p_180d"]] = model.predict_curve(snapshot)
    scores.to_parquet(folder / "scores.parquet", index=False)
    return folder, usage


def test_a_drifted_base_fires_once_per_monitor_and_day(env, drifted, capsys) -> None:
    from core.settings import load_settings
    from pipelines.cli import main
    from pipelines.monitor import run_monitors

    drifted, usage = drifted
    before = {a["id"] for a in _monitor_alerts(env)}
    first = run_monitors(drifted, settings=load_settings())
    drift = next(m for m in first["monitors"] if m["monitor"] == "feature_drift")
    scored = next(m for m in first["monitors"] if m["monitor"] == "score_distribution")
    measured = (
        f"drifted ({', '.join(usage)} x 0.3): largest feature PSI {drift['value']:.3f}, shifted {drift['details']['shifted']}; "
        f"p_90d PSI {scored['value']:.3f}, mean shift {scored['details']['mean_shift']:+.3f}"
    )
    assert drift["state"] == "breach" and drift["value"] > 0.25 and set(drift["details"]["shifted"]) <= set(usage)
    alerts = [a for a in _monitor_alerts(env) if a["id"] not in before]
    fired = [a for a in alerts if a["payload"]["facts"]["monitor"] == "feature drift"]
    assert len(fired) == 1 and fired[0]["destination"] == "hook" and fired[0]["status"] == "pending"
    assert fired[0]["payload"]["type"] == "churn.monitor" and "shifted" in fired[0]["payload"]["text"]
    assert len(alerts) == len(first["breaches"]) == first["alerts_queued"]  # one per breached monitor (one destination)

    # the same day again, from the command line: reported, not alerted again
    capsys.readouterr()
    assert main(["monitor", "--scores", str(drifted), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["breaches"] == first["breaches"] and again["alerts_queued"] == 0
    assert len(_monitor_alerts(env)) == len(before) + len(alerts)
    assert json.loads((drifted / "monitoring.json").read_text())["alerts_queued"] == 0

    # the next day it still breaches: one more alert per monitor
    tomorrow = dt.datetime.now(UTC) + dt.timedelta(days=1)
    assert run_monitors(drifted, settings=load_settings(), now=tomorrow)["alerts_queued"] == len(first["breaches"])
    with capsys.disabled():
        print(f"\n{measured}")


def test_calibration_waits_for_matured_outcomes_and_fires_when_they_differ(env) -> None:
    from core.settings import load_settings
    from pipelines.monitor import run_monitors

    model, panel = _model(env), env["features"]
    run = _copy_run(env, "calibration")
    as_of = pd.Timestamp(pd.read_parquet(run / "scores.parquet")["cutoff"].max())
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of
    cutoffs = pd.to_datetime(panel["cutoff"], utc=True)
    (run / HISTORY).mkdir()

    def keep(frame: pd.DataFrame, date) -> None:
        frame.to_parquet(run / HISTORY / f"{pd.Timestamp(date).date()}.parquet", index=False)

    # a run 10 days ago: no horizon has matured
    recent = pd.read_parquet(run / "scores.parquet")
    keep(recent, as_of - pd.Timedelta(days=10))
    waiting = run_monitors(run, settings=load_settings(), alert=False)
    assert next(m for m in waiting["monitors"] if m["monitor"] == "calibration")["state"] == "not_enough_data"

    # the champion's own scores of an earlier cutoff whose 90 days have passed: they are what happened, within tolerance
    past = cutoffs[cutoffs + pd.Timedelta(days=180) <= as_of].max()
    rows = panel[cutoffs == past]
    scores = rows[["account_id", "cutoff"]].assign(account_id=lambda f: f["account_id"].astype(str))
    scores[["p_30d", "p_60d", "p_90d", "p_180d"]] = model.predict_curve(rows)
    keep(scores, past)
    honest = next(
        m for m in run_monitors(run, settings=load_settings(), alert=False)["monitors"] if m["monitor"] == "calibration"
    )
    print(
        f"\ncalibration of the {past.date()} run: "
        + "; ".join(
            f"{h['horizon_days']}d {h['state']} observed {h.get('observed_churns')} expected {h.get('expected_churns')} z {h.get('z')}"
            for h in honest["details"]["horizons"]
        )
    )
    assert honest["state"] in ("ok", "not_enough_data")

    # the same run, had it predicted five times the risk: far outside any tolerance
    keep(scores.assign(**{c: np.minimum(scores[c] * 5, 0.99) for c in ("p_30d", "p_60d", "p_90d", "p_180d")}), past)
    fired = next(
        m for m in run_monitors(run, settings=load_settings(), alert=False)["monitors"] if m["monitor"] == "calibration"
    )
    assert fired["state"] == "breach" and fired["value"] < -3
    assert any(h["state"] == "breach" and h["run"] == str(past.date()) for h in fired["details"]["horizons"])

    # a base without a churn table has seen no churn: the same run is judged against none, not left out
    summary = json.loads((run / "score_summary.json").read_text())
    data = Path(summary["data"])
    no_churn = env["root"] / "data-without-churn"
    shutil.copytree(data, no_churn, ignore=lambda _folder, names: [n for n in names if n.startswith("churn.")])
    assert not list(no_churn.glob("churn.*")) and list(data.glob("churn.*"))

    def calibration_with(folder) -> dict:
        (run / "score_summary.json").write_text(json.dumps({**summary, "data": str(folder)}))
        result = run_monitors(run, settings=load_settings(), alert=False)["monitors"]
        return next(m for m in result if m["monitor"] == "calibration")

    none_seen = calibration_with(no_churn)
    assert none_seen["state"] == "breach"
    assert all(h.get("observed_churns") in (None, 0) for h in none_seen["details"]["horizons"])
    # and a data folder that is gone cannot say what happened
    assert calibration_with(env["root"] / "gone")["state"] == "unavailable"


def test_a_breach_reaches_its_destination_over_http(env, drifted, tmp_path) -> None:
    """monitoring.destinations names its own destination; the outbox's flusher POSTs the notice to it."""
    import http.server
    import threading

    import yaml

    from core.settings import load_settings
    from escalation.alerts import deliver
    from escalation.policy import load_policy
    from escalation.store import Store
    from pipelines.monitor import run_monitors

    received: list[tuple[dict, str]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(
                (json.loads(self.rfile.read(int(self.headers["Content-Length"]))), self.headers["Idempotency-Key"])
            )
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = yaml.safe_load((env["root"] / "config" / "escalation.yaml").read_text())
        config["alerts"]["destinations"]["ops"] = {
            "kind": "webhook",
            "url": f"http://127.0.0.1:{server.server_port}/monitor",
        }
        config["monitoring"] = {"destinations": ["ops"]}
        (tmp_path / "escalation.yaml").write_text(yaml.safe_dump(config))
        # a store of its own: the other tests here count the alerts in the champion's store
        settings = load_settings().model_copy(
            update={"config_dir": tmp_path, "store_url": f"sqlite:///{tmp_path / 'store.db'}"}
        )
        result = run_monitors(drifted[0], settings=settings)
        assert "feature_drift" in result["breaches"] and result["alerts_queued"] == len(result["breaches"])
        with Store(settings.store_url) as store:
            sent = deliver(store, load_policy(tmp_path))
        assert sent["sent"] >= len(result["breaches"])
    finally:
        server.shutdown()
    notices = [(body, key) for body, key in received if body.get("type") == "churn.monitor"]
    assert sorted(body["facts"]["monitor"] for body, _ in notices) == sorted(
        b.replace("_", " ") for b in result["breaches"]
    )
    drift = next(body for body, _ in notices if body["facts"]["monitor"] == "feature drift")
    assert drift["title"] == "Churn model monitor: feature drift breached" and drift["facts"]["threshold"] == 0.25
    assert all(key == body["idempotency_key"] for body, key in notices)
