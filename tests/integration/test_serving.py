"""The scoring API: the service class in-process, its ASGI app in a TestClient, a real
`bentoml serve` over HTTP with auth, and fuzzing from hypothesis (no request may cause a 5xx)."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.settings import load_settings

pytestmark = pytest.mark.slow
TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    from tests.conftest import champion_environment

    with champion_environment(tmp_path_factory.mktemp("serving"), tokens=f"other,{TOKEN}") as env:
        yield env


@pytest.fixture(scope="module")
def client(environment):
    from starlette.testclient import TestClient

    from serving.server import ChurnService

    with TestClient(ChurnService.to_asgi(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def snapshot(environment):
    import pandas as pd

    return pd.read_parquet(environment["root"] / "scores" / "features.parquet")


def test_auth_on_every_route_but_health_and_metrics(client):
    assert client.get("/livez").status_code == 200 and client.get("/readyz").status_code == 200
    # /metrics needs the server's Prometheus set-up: checked over real HTTP below
    body = {"accounts": [{"account_id": "A000001"}]}
    assert client.post("/score", json=body).status_code == 401
    wrong = client.post("/score", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "bearer token" in wrong.json()["error"]
    assert client.post("/model", json={}, headers={"Authorization": TOKEN}).status_code == 401  # no scheme
    assert client.get("/docs.json").status_code == 401
    assert client.get("/docs.json", headers=AUTH).status_code == 200


def test_score_by_id_and_with_features(client, snapshot):
    ids = snapshot["account_id"].head(3).tolist()
    response = client.post(
        "/score",
        json={
            "accounts": [{"account_id": a} for a in ids]
            + [{"account_id": "new-1", "features": {"days_since_last_login": 40, "nps_last": 2}}]
        },
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    results = response.json()
    assert [r["account_id"] for r in results] == [*ids, "new-1"]
    for r in results:
        curve = [r["curve"][f"p_{h}d"] for h in (30, 60, 90, 180)]
        assert curve == sorted(curve) and all(0 <= p <= 1 for p in curve)
        assert r["tier"] in {"critical", "high", "watch", "none"} and r["model_version"] == "1"
    assert results[0]["snapshot"] is not None and results[-1]["snapshot"] is None


#: where BentoML logs the requests it answers with an error
BENTOML_LOG = "bentoml._internal.server.http_app"


def test_errors_are_4xx_naming_the_field(client, caplog):
    with caplog.at_level(logging.INFO, logger=BENTOML_LOG):
        missing = client.post("/score", json={"accounts": [{"account_id": "NOPE"}]}, headers=AUTH)
    assert missing.status_code == 404 and "NOPE" in missing.text
    # logged as one line, not as an ERROR with a traceback (serving/server.py RefusalsInOneLine)
    logged = [r for r in caplog.records if r.name == BENTOML_LOG]
    assert [(r.levelname, r.exc_info) for r in logged] == [("INFO", None)], logged
    assert logged[0].getMessage().startswith("refused /score: 404 account_id 'NOPE'")
    words = client.post(
        "/score", json={"accounts": [{"account_id": "x", "features": {"days_since_last_login": "forty"}}]}, headers=AUTH
    )
    assert words.status_code == 400 and "features.days_since_last_login 'forty': expected a number" in words.text
    typo = client.post("/score", json={"accounts": [{"acount_id": "A1"}]}, headers=AUTH)
    assert typo.status_code == 400 and "account_id" in typo.text
    too_many = client.post("/score", json={"accounts": [{"account_id": "A1"}] * 1001}, headers=AUTH)
    assert too_many.status_code == 400 and "accounts" in too_many.text
    message = {"author": "customer", "sent_at": "2025-01-01T00:00:00Z", "body": "x" * 10_001}
    long_body = client.post(
        "/assess_ticket",
        json={"account_id": "A000001", "ticket": {"ticket_id": "T", "messages": [message]}},
        headers=AUTH,
    )
    assert long_body.status_code == 400 and "body" in long_body.text
    horizon = client.post("/explain", json={"account_id": "A000001", "horizon_days": 45}, headers=AUTH)
    assert horizon.status_code == 400 and "horizon_days" in horizon.text
    rating = client.post("/feedback", json={"escalation_id": 1, "rating": 9}, headers=AUTH)
    assert rating.status_code == 400 and "rating" in rating.text
    assert client.post("/feedback", json={"escalation_id": 999_999, "rating": 4}, headers=AUTH).status_code == 404
    assert (
        client.post("/score", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}).status_code
        == 400
    )


def test_explain_and_model(client, snapshot):
    account = snapshot["account_id"].iloc[0]
    explained = client.post("/explain", json={"account_id": account, "horizon_days": 60}, headers=AUTH).json()
    # measured from the base's average account, a low-risk account may have no driver raising its risk
    assert (
        explained["horizon_days"] == 60 and (explained["raising"] or explained["lowering"]) and explained["by_family"]
    )
    info = client.post("/model", json={}, headers=AUTH).json()
    assert (
        info["model_version"] == "1"
        and info["accounts"] == len(snapshot)
        and info["backtest"]["backtest.lightgbm.roc_auc_90d"] == 0.8
    )


def test_reasons_are_drivers_whose_points_add_up_to_the_served_risk(client, snapshot):
    """What CS reads: no context feature among the reasons; every feature's points, the base
    rate and the rest add up to the risk the API serves, at every horizon."""
    from features.registry import feature_specs

    specs = feature_specs()
    ids = snapshot["account_id"].head(40).tolist()
    scored = client.post("/score", json={"accounts": [{"account_id": a} for a in ids]}, headers=AUTH).json()
    shown = [r for account in scored for r in account["top_reasons"]]
    assert shown and all(specs[r["feature"]].role == "driver" and r["role"] == "driver" for r in shown)
    assert all(r["points"] > 0 and r["effect"].startswith("adds ") and "90-day risk" in r["effect"] for r in shown)
    assert any(account["context"] for account in scored) and all(
        r["role"] == "context" for a in scored for r in a["context"]
    )
    for account in scored[:5]:
        for horizon in (30, 90, 180):
            explained = client.post(
                "/explain", json={"account_id": account["account_id"], "horizon_days": horizon}, headers=AUTH
            ).json()
            assert explained["probability"] == account["curve"][f"p_{horizon}d"]
            features = [r for key in ("raising", "lowering", "context") for r in explained[key]]
            assert all(r["role"] == "driver" for key in ("raising", "lowering") for r in explained[key])
            total = explained["base_rate"] * 100 + sum(r["points"] for r in features) + explained["rest_points"]
            # each figure rounded to 0.01
            assert total == pytest.approx(explained["probability"] * 100, abs=0.01 * (len(features) + 2))


def test_domain_example_escalates_end_to_end(client, snapshot, environment):
    """Three rephrasings, a frustrated tone, an account worth twice the average: escalated,
    stored with its handoff package, an alert queued, and CS feedback accepted."""
    from escalation.store import Store

    big = snapshot.loc[snapshot["arr_current"] >= 2 * snapshot["arr_current"].mean()].iloc[0]
    messages = [
        {
            "author": "customer",
            "sent_at": "2025-03-11T09:00:00Z",
            "body": "How do I export the monthly usage report to CSV?",
        },
        {
            "author": "agent",
            "sent_at": "2025-03-11T09:20:00Z",
            "body": "We tried resetting your export settings. We'll send a fix by Friday.",
        },
        {
            "author": "customer",
            "sent_at": "2025-03-11T10:00:00Z",
            "body": "I asked already: how can I export the monthly usage report as a CSV file?",
        },
        {
            "author": "customer",
            "sent_at": "2025-03-11T11:00:00Z",
            "body": "Again, how do I export the monthly usage report to CSV? This is really frustrating and unacceptable, nothing works.",
        },
    ]
    response = client.post(
        "/assess_ticket",
        json={
            "account_id": big["account_id"],
            "ticket": {
                "ticket_id": "T-1",
                "category": "how_to",
                "priority": "normal",
                "messages": messages,
                "bot_confidence": 0.3,
            },
        },
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["signals"]["times_asked"] >= 3 and out["signals"]["frustrated"]
    assert out["decision"]["escalate"] and "effort_frustration_value" in {r["rule"] for r in out["decision"]["rules"]}
    assert out["decision"]["bot_action"] == "escalate_to_human" and out["decision"]["response_window_minutes"] == 15
    assert len(out["handoff"]["summary"].split()) <= 200
    with Store(environment["env"]["CHURN_STORE_URL"]) as store:
        assert out["escalation_id"] in {e["id"] for e in store.open_escalations()}
        assert any(a["escalation_id"] == out["escalation_id"] and a["status"] == "pending" for a in store.alerts())
    feedback = client.post(
        "/feedback", json={"escalation_id": out["escalation_id"], "rating": 5, "outcome": "saved"}, headers=AUTH
    )
    assert feedback.status_code == 200 and feedback.json()["escalation_id"] == out["escalation_id"]


def test_service_class_in_process(environment, snapshot):
    from serving import schemas
    from serving.server import ChurnService

    service = ChurnService()
    assert service.runtime.sentiment_model().static is not None  # the cascade, as batch work uses
    scored = service.score([schemas.AccountQuery(account_id=snapshot["account_id"].iloc[1])])
    assert len(scored) == 1 and 0 <= scored[0].curve.p_90d <= 1

    # ticket updates that arrive together are decided in one batch; each gets its own answer
    import asyncio

    from bentoml.exceptions import NotFound

    ids = [*snapshot["account_id"].iloc[2:5], "NO-SUCH-ACCOUNT"]

    def ticket(i: int) -> schemas.Ticket:
        return schemas.Ticket(
            ticket_id=f"B-{i}",
            messages=[
                {
                    "author": "customer",
                    "sent_at": "2025-03-11T09:00:00Z",
                    "body": f"The export of report {i} fails with ERR-5021 again.",
                },
                {
                    "author": "customer",
                    "sent_at": "2025-03-11T10:00:00Z",
                    "body": "Still broken. This is unacceptable, please call me.",
                },
            ],
        )

    async def together():
        return await asyncio.gather(
            *(service.assess_ticket(a, ticket(i)) for i, a in enumerate(ids)), return_exceptions=True
        )

    batched = asyncio.run(together())
    assert service.tickets.batches == 1 and service.tickets.items == 4
    assert isinstance(batched[3], NotFound) and "NO-SUCH-ACCOUNT" in str(batched[3])
    alone = [asyncio.run(service.assess_ticket(a, ticket(i))) for i, a in enumerate(ids[:3])]
    for one, many, account in zip(alone, batched[:3], ids[:3], strict=True):
        assert many.account_id == account and many.ticket_id == one.ticket_id
        assert many.signals.model_dump() == one.signals.model_dump() and many.decision.band == one.decision.band


def test_stored_accounts_score_as_if_sent_with_their_features(environment, snapshot):
    """Stored accounts come from curves and reasons computed at start-up: they must be what the
    model gives for the same features sent with the request."""
    import pandas as pd

    from serving import schemas
    from serving.server import ChurnService

    service = ChurnService()
    for _, row in snapshot.sample(5, random_state=1).iterrows():
        features = {
            n: (None if pd.isna(row[n]) else row[n].item() if hasattr(row[n], "item") else row[n])
            for n in service.runtime.model.features
        }
        by_id, given = service.score(
            [
                schemas.AccountQuery(account_id=row["account_id"]),
                schemas.AccountQuery(account_id=row["account_id"], features=features),
            ]
        )
        assert by_id.curve.model_dump() == pytest.approx(given.curve.model_dump(), abs=1e-12)
        assert [r.feature for r in by_id.top_reasons] == [r.feature for r in given.top_reasons]
        assert [r.sentence for r in by_id.top_reasons] == [r.sentence for r in given.top_reasons]


def test_stored_answers_are_the_ones_computed_on_request(environment, snapshot):
    """A stored account's answer is made once at start-up (tier included): it must be the score
    computed on the request, now or a year later."""
    import datetime as dt

    from escalation.decision import decide
    from serving import schemas
    from serving.server import ChurnService

    runtime = ChurnService().runtime
    ids = snapshot["account_id"].sample(25, random_state=3).tolist()
    fresh = []
    for a in ids:
        k = runtime.position[a]
        score, risk, facts = runtime._account_score(
            a, runtime.records[k], runtime._stored[0][k], runtime._stored[1][k], runtime.snapshot
        )
        # the tier does not depend on when it is asked: a year from now the band is the same
        later = decide(facts, risk, None, runtime.policy, dt.datetime.now(dt.UTC) + dt.timedelta(days=365)).band
        assert later == score.tier
        fresh.append(score)
    served = runtime.score([schemas.AccountQuery(account_id=a) for a in ids])
    assert [s.model_dump() for s in served] == [s.model_dump() for s in fresh]
    assert {s.tier for s in fresh} <= {"critical", "high", "watch", "none"}


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
ENDPOINTS = ["/score", "/assess_ticket", "/explain", "/feedback", "/model"]


def _plausible():
    """Requests close to valid ones, so the fuzzing also gets past the schema into the logic."""
    account = st.one_of(st.just("A000001"), st.text(max_size=20))
    message = st.fixed_dictionaries(
        {
            "author": st.sampled_from(["customer", "agent", "bot"]),
            "sent_at": st.sampled_from(
                ["2025-03-01T00:00:00Z", "2025-03-01", "yesterday", "2025-03-01T10:00:00+05:00"]
            ),
            "body": st.text(max_size=200),
        }
    )
    return st.one_of(
        st.tuples(
            st.just("/score"),
            st.fixed_dictionaries(
                {
                    "accounts": st.lists(
                        st.fixed_dictionaries(
                            {"account_id": account},
                            optional={
                                "features": st.dictionaries(
                                    st.sampled_from(["nps_last", "segment", "days_since_last_login", "x"]),
                                    st.none() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
                                    max_size=3,
                                )
                            },
                        ),
                        max_size=3,
                    )
                }
            ),
        ),
        st.tuples(
            st.just("/assess_ticket"),
            st.fixed_dictionaries(
                {
                    "account_id": account,
                    "ticket": st.fixed_dictionaries(
                        {"ticket_id": st.text(max_size=10), "messages": st.lists(message, max_size=3)},
                        optional={
                            "category": st.sampled_from(["billing", "legal", "nope"]),
                            "bot_confidence": st.floats(-1, 2, allow_nan=False, allow_infinity=False),
                        },
                    ),
                }
            ),
        ),
        st.tuples(
            st.just("/explain"),
            st.fixed_dictionaries({"account_id": account, "horizon_days": st.sampled_from([30, 45, 90, -1])}),
        ),
        st.tuples(
            st.just("/feedback"),
            st.fixed_dictionaries(
                {"escalation_id": st.integers(-5, 10**12), "rating": st.integers(-2, 8)},
                optional={"outcome": st.sampled_from(["saved", "lost"]), "comment": st.text(max_size=50)},
            ),
        ),
    )


@dataclass
class Fuzzed:
    """What one hypothesis run sent: each request's status, and the failure it found (if any)."""

    statuses: list[int] = field(default_factory=list)
    failure: BaseException | None = None

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure


def _fuzz(client, requests: st.SearchStrategy, *, raw: bool) -> Fuzzed:
    """Send 300 requests drawn from `requests` ((endpoint, body) pairs); no answer may be a 5xx.
    `raw`: the body is sent as its JSON text (any JSON value, not only an object)."""
    run = Fuzzed()

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(requests)
    def send(request_):
        endpoint, body = request_
        if raw:
            response = client.post(
                endpoint, content=json.dumps(body), headers={**AUTH, "Content-Type": "application/json"}
            )
        else:
            response = client.post(endpoint, json=body, headers=AUTH)
        run.statuses.append(response.status_code)
        assert response.status_code < 500, (endpoint, body, response.text)

    try:
        send()
    except Exception as failure:  # noqa: BLE001 - hypothesis's shrunk example, raised by the test that owns it
        run.failure = failure
    return run


@pytest.fixture(scope="module")
def fuzzed(client) -> dict[str, Fuzzed]:
    """Both fuzzing runs, made once for the module by whichever test asks first: each test below
    stands alone (run alone, or in any order) and none reads another's leftovers."""
    return {
        "arbitrary": _fuzz(client, st.tuples(st.sampled_from(ENDPOINTS), JSON), raw=True),
        "plausible": _fuzz(client, _plausible(), raw=False),
    }


def test_fuzz_arbitrary_json_never_5xx(fuzzed):
    fuzzed["arbitrary"].raise_failure()


def test_fuzz_plausible_requests_never_5xx(fuzzed):
    fuzzed["plausible"].raise_failure()


def test_fuzzing_sent_enough_requests(fuzzed):
    statuses = fuzzed["arbitrary"].statuses + fuzzed["plausible"].statuses
    assert len(statuses) >= 500, f"only {len(statuses)} fuzzed requests"
    print(f"fuzzed requests: {len(statuses)}, status codes {sorted(set(statuses))}")


def test_real_bentoml_serve_over_http_with_auth(environment, snapshot):
    from serving.process import running_server

    env = {**environment["env"], "BENTOML_HOME": str(environment["root"] / "bentoml")}
    with running_server(env, timeout=120) as base:

        def post(path: str, body: dict, token: str | None) -> tuple[int, object]:
            headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
            req = urllib.request.Request(
                f"{base}{path}", data=json.dumps(body).encode(), headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as err:
                return err.code, err.read().decode()

        body = {"accounts": [{"account_id": snapshot["account_id"].iloc[0]}]}
        assert post("/score", body, None)[0] == 401
        assert post("/score", body, "wrong")[0] == 401
        status, result = post("/score", body, TOKEN)
        assert status == 200 and result[0]["account_id"] == snapshot["account_id"].iloc[0]
        assert post("/score", {"accounts": [{"account_id": "NOPE"}]}, TOKEN)[0] == 404

        # concurrent ticket updates (the worker batches them): each answered for its own account, the unknown one 404
        from concurrent.futures import ThreadPoolExecutor

        accounts = [*snapshot["account_id"].iloc[:6], "NOPE"]
        updates = [
            {
                "account_id": a,
                "ticket": {
                    "ticket_id": f"C-{i}",
                    "messages": [
                        {
                            "author": "customer",
                            "sent_at": "2025-03-11T09:00:00Z",
                            "body": f"Report {i} still fails to export, we are blocked.",
                        }
                    ],
                },
            }
            for i, a in enumerate(accounts)
        ]
        with ThreadPoolExecutor(len(updates)) as pool:
            answers = list(pool.map(lambda u: post("/assess_ticket", u, TOKEN), updates))
        assert [status for status, _ in answers] == [200] * 6 + [404]
        assert [(a["account_id"], a["ticket_id"]) for _, a in answers[:6]] == [
            (u["account_id"], u["ticket"]["ticket_id"]) for u in updates[:6]
        ]
        metrics = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        sizes = {
            line.split()[0]: float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("churn_ticket_batch_size_")
        }
        assert sizes["churn_ticket_batch_size_sum"] == len(updates) and 1 <= sizes[
            "churn_ticket_batch_size_count"
        ] <= len(updates)
        assert urllib.request.urlopen(f"{base}/metrics", timeout=5).status == 200


def test_settings_come_from_the_environment(environment):
    assert load_settings().api_tokens == ["other", TOKEN]
