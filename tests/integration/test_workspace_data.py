"""The workspace's read side (serving/workspace/data/) on the session's scored champion base and on a
base without support data: the account page adds up to the served risk with drivers apart from
context, the book's totals are the sums over the scores and its filters filter, search finds by id
and name, what the store holds shows up (and changes when CS acts), every missing source becomes a
sentence, and the templates render with SVG that parses."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.settings import load_settings
from core.vocabulary import HORIZONS

pytestmark = pytest.mark.slow
TEMPLATES = Path(__file__).resolve().parents[2] / "serving" / "workspace" / "templates"


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    from tests.conftest import champion_environment

    with champion_environment(tmp_path_factory.mktemp("workspace-data")) as env:
        yield env


@pytest.fixture(scope="module")
def runtime(environment):
    from serving.runtime import ServingRuntime

    return ServingRuntime(load_settings(), text=False)


@pytest.fixture(scope="module")
def data(runtime):
    from serving.workspace.data import WorkspaceData

    return WorkspaceData(load_settings(), runtime)


@pytest.fixture(scope="module")
def scored(environment) -> pd.DataFrame:
    """The scores of the latest run with the facts the book groups by."""
    folder = environment["root"] / "scores"
    facts = pd.read_parquet(folder / "features.parquet")[["account_id", "segment", "csm_owner", "arr_current"]]
    return pd.read_parquet(folder / "scores.parquet").merge(facts, on="account_id").set_index("account_id")


def _every_escalation(store) -> list[dict]:
    from escalation.store import STATUSES

    return [e for status in STATUSES for e in store.list_escalations(status=status)]


def _escalated(runtime) -> list[str]:
    return sorted({e["account_id"] for e in _every_escalation(runtime.store)})


def _steps_total(reasons: dict) -> float:
    return reasons["base_rate"] + sum(s["points"] for s in reasons["steps"][1:-1]) / 100


def test_account_reasons_add_up_to_the_served_risk_with_drivers_apart(data, runtime, scored):
    from features.registry import feature_specs

    specs = feature_specs()
    by_risk = scored.sort_values("p_90d")
    accounts = [*_escalated(runtime)[:2], by_risk.index[0], by_risk.index[-1], by_risk.index[len(by_risk) // 2]]
    for account in accounts:
        page = data.account(account)
        reasons = page["reasons"]
        p90 = float(scored.at[account, "p_90d"])
        assert page["account"]["p_90d"] == pytest.approx(p90, abs=1e-9)
        assert [c["p"] for c in page["curve"]] == pytest.approx([scored.at[account, f"p_{h}d"] for h in HORIZONS])
        steps = reasons["steps"]
        assert steps[0]["kind"] == "base" and steps[-1]["kind"] == "total"
        # base rate + every step's points = the 90-day risk, and the last bar ends on it
        assert abs(_steps_total(reasons) - p90) < 0.005, (account, _steps_total(reasons), p90)
        assert steps[-1]["end"] == pytest.approx(p90, abs=1e-9)
        for before, step in zip(steps[1:-2], steps[2:-1], strict=True):
            assert step["start"] == pytest.approx(before["end"])
        # drivers and context apart: the bars, and the sentences below them
        kinds = [s["kind"] for s in steps[1:-1]]
        assert kinds == sorted(kinds, key=["driver", "context", "rest"].index)
        for step in steps:
            if step.get("feature"):
                assert specs[step["feature"]].role == step["kind"], step
        assert all(specs[r["feature"]].role == "driver" for r in reasons["raising"] + reasons["lowering"])
        assert all(specs[r["feature"]].role == "context" for r in reasons["context"])
        assert all(r["points"] > 0 for r in reasons["raising"]) and all(r["points"] < 0 for r in reasons["lowering"])
        assert all("to the 90-day risk" in r["effect"] for r in reasons["raising"])


def test_history_is_the_served_model_on_the_training_panel_then_now(data, runtime, environment):
    from core.vocabulary import CURVE_COLUMNS

    account = _escalated(runtime)[0]
    history = data.account(account)["history"]["points"]
    dates = [p["date"] for p in history]
    assert dates == sorted(dates) and len(set(dates)) == len(dates)
    assert history[-1]["source"] == "now" and history[-1]["date"] == data.as_of
    panel = pd.concat(pd.read_parquet(p) for p in (environment["root"] / "f" / "snapshots").glob("*.parquet"))
    rows = panel[(panel["account_id"] == account) & (panel["cutoff"] < pd.Timestamp(data.as_of, tz="UTC"))]
    rows = rows.sort_values("cutoff")
    trained = [p for p in history if p["source"].endswith("on its training data")]
    assert [p["date"] for p in trained] == [str(c.date()) for c in rows["cutoff"]]
    expected = runtime.state.model.predict_curve(rows)[:, CURVE_COLUMNS.index("p_90d")]
    assert [p["p"] for p in trained] == pytest.approx(expected.tolist())


def test_usage_and_support_are_the_data_before_the_cutoff(data, environment, scored):
    root = environment["root"] / "data"
    cutoff = pd.Timestamp(data.as_of, tz="UTC")
    usage = pd.read_parquet(root / "usage_daily.parquet")
    account = scored.index[0]
    page = data.account(account)
    last = usage[(usage["account_id"] == account) & (usage["date"] >= cutoff - pd.Timedelta(days=7))]
    last = last[last["date"] < cutoff]
    assert page["usage"]["weeks"][0]["logins"] == pytest.approx(float(last["logins"].sum()))
    assert page["usage"]["weeks"][0]["active_users"] == pytest.approx(round(float(last["active_users"].mean()), 1))
    # open tickets as the features count them (created or reopened, less resolved, before the cutoff)
    features = pd.read_parquet(environment["root"] / "scores" / "features.parquet").set_index("account_id")
    ours = pd.Series({a: len(data.account(a)["support"]["open_tickets"]) for a in features.index[:60]})
    assert (ours == features["open_tickets"].reindex(ours.index)).all(), ours.compare(features["open_tickets"])
    tickets = pd.read_parquet(root / "tickets.parquet")
    opened = tickets[(tickets["account_id"] == account) & (tickets["created_at"] < cutoff)]
    opened = opened[opened["created_at"] >= cutoff - pd.Timedelta(days=180)]
    assert page["support"]["tickets_opened"] == len(opened)
    assert all(e["at"] < data.as_of for e in page["support"]["events"])


def test_book_totals_are_the_sums_over_the_scores_and_filters_filter(data, scored):
    book = data.book(None, None, 90)
    arr = scored["arr_current"].fillna(0)
    assert book["totals"]["accounts"] == len(scored)
    for row in book["by_horizon"]:
        p = scored[f"p_{row['horizon']}d"]
        assert row["expected_churners"] == pytest.approx(p.sum())
        assert row["expected_arr_lost"] == pytest.approx((p * arr).sum())
    assert book["totals"]["expected_arr_lost"] == pytest.approx((scored["p_90d"] * arr).sum())
    assert sum(r["expected_arr_lost"] for r in book["by_segment"]) == pytest.approx(book["totals"]["expected_arr_lost"])
    assert sum(r["accounts"] for r in book["by_owner"]) == len(scored)
    assert book["bands"] == {b: int((scored["tier"] == b).sum()) for b in book["bands"]}

    segment = book["by_segment"][-1]["segment"]
    owner = next(o for o in data.owners() if o != "(unassigned)")
    for seg, own, horizon in ((segment, None, 30), (None, owner, 180), (segment, owner, 60)):
        kept = scored[(scored["segment"] == seg if seg else True) & (scored["csm_owner"] == own if own else True)]
        filtered = data.book(seg, own, horizon)
        assert filtered["totals"]["accounts"] == len(kept)
        assert filtered["totals"]["expected_churners"] == pytest.approx(kept[f"p_{horizon}d"].sum())
        assert filtered["totals"]["expected_arr_lost"] == pytest.approx(
            (kept[f"p_{horizon}d"] * kept["arr_current"].fillna(0)).sum()
        )
        assert {r["segment"] for r in filtered["by_segment"]} <= ({seg} if seg else set(data.segments()))
        assert all(a["csm_owner"] == own for a in filtered["top_accounts"]) if own else True
        assert filtered["funnel"]["flagged"] == int((kept["tier"] != "none").sum())
    top = book["top_accounts"]
    lost = [a["p_90d"] * a["arr"] for a in top]
    assert lost == sorted(lost, reverse=True) and lost[0] == pytest.approx((scored["p_90d"] * arr).max())

    nobody = data.book("no such segment", None, 90)
    assert nobody["totals"]["accounts"] == 0 and any("segment 'no such segment'" in n for n in nobody["notes"])
    from core.errors import InputError

    with pytest.raises(InputError, match="horizon 45"):
        data.book(None, None, 45)


def test_the_book_counts_the_bands_the_daily_run_set(environment, runtime, tmp_path, monkeypatch):
    """The book, the account page and the leadership report count the same bands: those the daily run
    set from each account's risk and its tickets (a legal threat or a critical moment raises an
    account above its risk's band), not the API's band for the risk alone."""
    from serving.workspace.data import WorkspaceData

    scores = tmp_path / "scores"
    shutil.copytree(environment["root"] / "scores", scores, ignore=shutil.ignore_patterns("history"))
    daily = pd.read_parquet(scores / "scores.parquet")
    raised = daily.sort_values("p_90d")["account_id"].iloc[:3].tolist()  # the lowest risks, raised by their tickets
    daily.loc[daily["account_id"].isin(raised), "tier"] = "critical"
    daily.to_parquet(scores / "scores.parquet")
    monkeypatch.setenv("CHURN_SCORES_DIR", str(scores))
    data = WorkspaceData(load_settings(), runtime)
    book = data.book(None, None, 90)
    assert book["bands"] == {b: int((daily["tier"] == b).sum()) for b in book["bands"]}
    assert book["bands"]["critical"] >= 3 and "daily run" in book["bands_from"]
    page = data.account(raised[0])
    assert page["account"]["tier"] == "critical" and page["account"]["risk_tier"] == "none"
    html = _environment_jinja().get_template("account.html").render(**_context(False), page=page)
    assert "set by the daily run from its risk and its tickets (its risk alone: no band)" in html
    assert book["funnel"]["flagged"] == int((daily["tier"] != "none").sum())


def test_the_store_shows_up_and_changes_with_what_cs_does(data, runtime):
    store = runtime.store
    escalation = next(e for e in store.list_escalations() if e["status"] == "open")
    account = escalation["account_id"]
    page = data.account(account)
    shown = next(e for e in page["escalations"] if e["id"] == escalation["id"])
    assert shown["status"] == "open" and shown["history"][0]["to"] == "open"
    assert page["handoff"] is not None and page["handoff"]["summary"]
    assert page["actions"]["resolve"] == escalation["id"] and page["actions"]["acknowledge"] == escalation["id"]
    before = data.book(None, None, 90)

    store.acknowledge(escalation["id"], "Test CSM", note="calling them today")
    store.add_feedback(escalation["id"], 4, "clear handoff", "unknown")
    store.resolve(escalation["id"], "saved", "Test CSM", note="renewal agreed")
    page = data.account(account)
    shown = next(e for e in page["escalations"] if e["id"] == escalation["id"])
    assert [c["to"] for c in shown["history"]] == ["open", "acknowledged", "resolved"]
    assert shown["history"][1]["by"] == "Test CSM" and shown["outcome"].startswith("saved")
    assert shown["ratings"][0]["rating"] == 4 and page["ratings"][0]["comment"] == "clear handoff"
    assert page["actions"]["resolve"] is None  # nothing active left to resolve

    after = data.book(None, None, 90)
    assert after["funnel"]["acknowledged"] == before["funnel"]["acknowledged"] + 1
    assert after["funnel"]["resolved"] == before["funnel"]["resolved"] + 1
    saved = {o["outcome"]: o["count"] for o in after["funnel"]["outcomes"]}
    earlier = {o["outcome"]: o["count"] for o in before["funnel"]["outcomes"]}
    assert saved["saved: the customer stays"] == earlier["saved: the customer stays"] + 1
    queue = escalation["queue"] or "(none)"
    rated = {r["queue"]: r for r in after["ratings"]["queue"]}
    assert rated[queue]["ratings"] >= 1
    assert after["outcomes"]["escalations"] == len(_every_escalation(store))
    assert after["holdout"]["verdict"]


def test_search_by_id_and_name(data, scored):
    account = scored.index[5]
    name = str(data.account(account)["account"]["account_name"])
    found = data.search(account.lower())
    assert found[0]["account_id"] == account
    assert set(found[0]) >= {"account_id", "account_name", "segment", "csm_owner", "p_90d"}
    word = name.split()[0]
    by_name = data.search(word.upper())
    assert by_name and all(
        word.lower() in r["account_name"].lower() or word.lower() in r["account_id"].lower() for r in by_name
    )
    assert any(r["account_id"] == account for r in data.search(name, limit=50))
    assert len(data.search("a", limit=3)) == 3
    assert data.search("") == [] and data.search("zzzz-not-a-name") == []
    prefixed = data.search(word.lower())
    starts = [r["account_name"].lower().startswith(word.lower()) for r in prefixed]
    assert starts == sorted(starts, reverse=True)  # names starting with it come first


def test_unknown_account_is_not_found(data):
    from serving.runtime import NotFound

    with pytest.raises(NotFound, match="NOPE"):
        data.account("NOPE")


def _environment(root: Path, **extra: str) -> dict[str, str]:
    return {
        "CHURN_MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "CHURN_STORE_URL": f"sqlite:///{root / 'store.db'}",
        "CHURN_SCORES_DIR": str(root / "scores"),
        "CHURN_DATA_DIR": str(root / "data"),
        **extra,
    }


def test_every_missing_source_is_a_sentence(environment, runtime, tmp_path, monkeypatch):
    """No data folder behind the scores, no kept runs or monitoring, and a store whose tables are
    gone: the pages still come, saying what they could not show."""
    from escalation.store import Store
    from serving.runtime import ServingRuntime
    from serving.workspace.data import WorkspaceData

    scores = tmp_path / "scores"
    shutil.copytree(environment["root"] / "scores", scores, ignore=shutil.ignore_patterns("history", "monitoring.json"))
    summary = json.loads((scores / "score_summary.json").read_text())
    (scores / "score_summary.json").write_text(json.dumps({**summary, "data": str(tmp_path / "gone")}))
    monkeypatch.setenv("CHURN_SCORES_DIR", str(scores))
    monkeypatch.setenv("CHURN_DATA_DIR", str(tmp_path / "also-gone"))
    store = Store(f"sqlite:///{tmp_path / 'broken.db'}")
    with sqlite3.connect(tmp_path / "broken.db") as connection:
        connection.execute("DROP TABLE feedback")
        connection.execute("DROP TABLE escalations")
    settings = load_settings()
    data = WorkspaceData(settings, ServingRuntime(settings, text=False), store)
    account = data.ids[0]
    page = data.account(account)
    notes = " ".join(page["notes"])
    assert "data folder" in notes and "operational store could not be read" in notes
    assert page["usage"]["available"] is False and page["support"]["events"] == []
    assert abs(_steps_total(page["reasons"]) - page["account"]["p_90d"]) < 0.005
    book = data.book(None, None, 90)
    assert book["funnel"] is None and any("store could not be read" in n for n in book["notes"])
    assert book["health"]["drift"] is None and "monitoring" in book["health"]["drift_note"]
    _render_all(data, account, can_act=True)
    store.close()


@pytest.fixture(scope="module")
def without_support(tmp_path_factory):
    """The usage-only shape of tests/shapes.py (no tickets, messages, surveys or account events),
    with its own champion, scores and store."""
    import mlflow

    from models import registry
    from models.curve import CurveParams, fit_curve
    from pipelines.features import read_snapshots, run_features
    from pipelines.models import feature_names
    from pipelines.score import run_score
    from tests.shapes import usage_only

    root = tmp_path_factory.mktemp("no-support")
    shape = usage_only(root)
    # this base's settings and registry while it is built and loaded, the session's again afterwards
    previous = mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in _environment(root).items():
            patch.setenv(key, value)
        patch.setenv("CHURN_DATA_DIR", str(shape.data))
        run_features(shape.data, root / "features", every=shape.every)
        panel = read_snapshots(root / "features")
        model = fit_curve(
            panel,
            feature_names(panel),
            CurveParams(n_estimators=80, learning_rate=0.1, min_child_samples=40, num_threads=1),
        )
        settings = load_settings()
        registry.connect(settings.mlflow_tracking_uri)
        logged = registry.log_training(
            model,
            panel=panel,
            params={},
            metrics={},
            tables={},
            documents={},
            figures={},
            tags={"features_dir": str(root / "features")},
        )
        registry.move_champion(logged["version"], decision={"forced": True})
        run_score(shape.data, root / "scores", settings=settings, text=False)
        from serving.runtime import ServingRuntime
        from serving.workspace.data import WorkspaceData

        runtime = ServingRuntime(settings, text=False)
        built = WorkspaceData(settings, runtime), pd.read_parquet(root / "scores" / "scores.parquet")
    registry.connect(previous)
    return built


def test_a_base_without_support_data(without_support):
    data, scores = without_support
    account = scores.sort_values("p_90d")["account_id"].iloc[-1]
    page = data.account(account)
    assert page["support"]["events"] == [] and page["support"]["open_tickets"] == []
    assert any("No support data" in n for n in page["notes"])
    assert page["usage"]["available"] and set(page["usage"]["series"]) == {"active_users", "logins"}
    assert abs(_steps_total(page["reasons"]) - float(scores.set_index("account_id").at[account, "p_90d"])) < 0.005
    assert len(page["history"]["points"]) > 2  # the training panel's cutoffs, every 14 days
    book = data.book(None, None, 180)
    assert book["totals"]["expected_churners"] == pytest.approx(scores["p_180d"].sum())
    assert data.search(account)[0]["account_id"] == account
    _render_all(data, account, can_act=False)


def _environment_jinja():
    import jinja2

    def url(name: str, **params) -> str:
        path = (
            "/app/" + name + "/" + "/".join(str(params.pop(k)) for k in ("account_id", "escalation_id") if k in params)
        )
        params.pop("path", None)
        return path + ("?" + "&".join(f"{k}={v}" for k, v in params.items() if v not in (None, "")) if params else "")

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.globals.update(url=url, role_labels={"viewer": "viewer", "csm": "CSM", "cs_lead": "CS lead", "admin": "admin"})
    from serving.workspace.format import FILTERS

    env.filters.update(FILTERS)
    return env


def _context(can_act: bool) -> dict:
    return {
        "user": {"username": "laura", "name": "Laura Chen", "role": "csm" if can_act else "viewer"},
        "csrf_token": "token-123",
        "can_act": can_act,
        "is_lead": can_act,
        "request": None,
        "flashes": [],
        "here": "/app/",
        "query": "",
        "active": "",
        "resolution_labels": {"saved": "saved", "churned": "churned", "not_at_risk": "not at risk"},
        "feedback_labels": {"saved": "saved", "churned": "churned", "unknown": "not known yet"},
    }


def _svgs(html: str) -> list[ET.Element]:
    found = re.findall(r"<svg\b.*?</svg>", html, flags=re.S)
    return [ET.fromstring(svg) for svg in found]


def _render_all(data, account: str, *, can_act: bool) -> dict[str, str]:
    env = _environment_jinja()
    pages = {
        "account": env.get_template("account.html").render(**_context(can_act), page=data.account(account)),
        "book": env.get_template("book.html").render(**_context(can_act), page=data.book(None, None, 90)),
        "book_filtered": env.get_template("book.html").render(
            **_context(can_act), page=data.book(data.segments()[0], None, 30)
        ),
        "search": env.get_template("search.html").render(
            **(_context(can_act) | {"query": account}), results=data.search(account)
        ),
        "search_none": env.get_template("search.html").render(**(_context(can_act) | {"query": "zz"}), results=[]),
    }
    for name, html in pages.items():
        for svg in _svgs(html):
            assert svg.get("role") == "img" and svg.find("{http://www.w3.org/2000/svg}title") is not None, name
    return pages


def test_templates_render_with_forms_only_for_those_who_can_act(data, runtime):
    account = _escalated(runtime)[-1]
    acting = _render_all(data, account, can_act=True)
    reading = _render_all(data, account, can_act=False)
    page = acting["account"]
    assert len(_svgs(page)) >= 4  # curve, history, waterfall, usage
    assert 'name="csrf_token" value="token-123"' in page and "Rate this handoff" in page
    assert (
        "Rate this handoff" not in reading["account"] and 'method="post"' not in reading["account"].split("<main")[-1]
    )
    waterfall = next(s for s in _svgs(page) if "risk is what it is" in s.find("{http://www.w3.org/2000/svg}title").text)
    desc = waterfall.find("{http://www.w3.org/2000/svg}desc").text
    assert "Typical account" in desc and "points" in desc
    assert "Accounts expected to churn" in acting["book"] and 'href="/app/report/"' in acting["book"]
    assert account in acting["search"] and "No account" in acting["search_none"]
    assert np.isfinite(data.book(None, None, 90)["totals"]["expected_arr_lost"])
    pages = acting["account"] + acting["book"]
    plural = re.search(r"\b1 days\b", pages)  # "in 1 day", a ticket open "1 day"
    assert plural is None, pages[plural.start() - 200 : plural.end()]
    unmeasured = any(r["roc_auc"] is None for r in data.book(None, None, 90)["health"]["backtest"])
    assert ("A dash: the backtest had too few outcomes" in acting["book"]) == unmeasured  # a bare "-" said nothing
    from serving.workspace.format import days

    assert (days(1), days(0), days(1200)) == ("1 day", "0 days", "1,200 days")


def test_a_new_champion_is_picked_up_and_its_history_follows(data, runtime):
    """A swapped-in model state is served on the next request (curves and tiers at once); its risk
    history on the training panel is built on a background thread and replaces the interim view."""
    import dataclasses
    import time

    from models import registry

    registry.connect(load_settings().mlflow_tracking_uri)  # the registry the runtime loaded its model from
    account = _escalated(runtime)[0]
    served = runtime.state
    trained = sum(p["source"].endswith("training data") for p in data.account(account)["history"]["points"])
    daily = data.book(None, None, 90)
    assert "daily run" in daily["bands_from"]
    try:
        runtime.state = dataclasses.replace(served, version="99")
        book = data.book(None, None, 90)
        assert book["model_version"] == "99"
        # the daily run scored with another model: the bands are the served model's, for the risk alone
        alone = pd.Series([answer[0].tier for answer in served.answers]).value_counts()
        assert book["bands"] == {b: int(alone.get(b, 0)) for b in book["bands"]}
        assert "version 99" in book["bands_from"] and f"version {served.version}" in book["bands_from"]
        assert data.account(account)["model_version"] == "99"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            points = data.account(account)["history"]["points"]
            if sum(p["source"] == "model 99 on its training data" for p in points) == trained:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the history under the new model was not built within 60 s")
    finally:
        runtime.state = served
    assert data.account(account)["model_version"] == served.version
