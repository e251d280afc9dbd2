"""The escalation lifecycle over the API (a real `bentoml serve` over HTTP, bearer auth on):
each endpoint answers what `churn escalations ... --json` / `churn follow-ups ... --json` prints on
the same store, for reads and for every change; bad input is a 400 naming the field, an unknown
escalation a 404, an illegal status change a 400 with the store's message."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import urllib.error
import urllib.request

import pytest

from escalation.store import Store
from tests.integration.test_store_alerts import (
    HOUR,
    PACKAGE,
    make_decision,
    make_policy,
)

pytestmark = pytest.mark.slow
TOKEN = "lifecycle-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    from tests.conftest import champion_environment

    with champion_environment(tmp_path_factory.mktemp("api-lifecycle"), tokens=TOKEN) as env:
        yield env


@pytest.fixture(scope="module")
def base(environment):
    """The server's address. Over HTTP, not a TestClient: a second in-process app in the session
    (tests/integration/test_serving.py has one) would register BentoML's metrics twice. Its relay
    is off: a pass landing between the CLI's read and the API's would re-alert the overdue
    escalation in between, so the two would differ by `realerted_at` (tests/integration/test_relay.py
    covers the relay in the API). One pass before it starts settles the base (expires the stale
    escalations of the scored snapshot) as the API's relay would have."""
    from pipelines.cli import main
    from serving.process import running_server

    assert main(["alerts", "relay", "--once", "--json"]) == 0

    server_env = {
        **environment["env"],
        "BENTOML_HOME": str(environment["root"] / "bentoml"),
        "CHURN_RELAY_INTERVAL_SECONDS": "0",
    }
    with running_server(server_env, timeout=180) as url:
        yield url


def _post(base: str, path: str, body: dict, headers: dict) -> tuple[int, str]:
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture
def cli(environment, capsys):
    """`churn ... --json` in process on the same store: (exit code, parsed JSON or None, its error
    message). The in-process API's own logs share stderr: the message is the CLI's `error:` line."""
    from pipelines.cli import main

    def run(*args: str):
        code = main([*args, "--json"])
        out, err = capsys.readouterr()
        message = next(
            (line.removeprefix("error: ") for line in reversed(err.splitlines()) if line.startswith("error: ")), None
        )
        return code, (json.loads(out) if out.strip() else None), message

    return run


@pytest.fixture
def api(base):
    """POST a JSON body: (status, parsed JSON on 200 else the body's text)."""

    def post(path: str, **body):
        status, text = _post(base, path, body, AUTH)
        return status, (json.loads(text) if status == 200 else text)

    return post


def _record(environment, account: str, *, window: int, queue: str, ago: dt.timedelta, package=None) -> int:
    now = dt.datetime.now(dt.UTC)
    decision = dataclasses.replace(make_decision(account, at=now - ago, queue=queue), response_window_minutes=window)
    with Store(environment["env"]["CHURN_STORE_URL"], make_policy()) as store:
        return store.record(decision, package, now - ago).escalation_id


def _row_of(detail: dict, row: dict) -> dict:
    """The escalation's columns as `show` has them, to compare with an ack/resolve answer."""
    return {k: detail[k] for k in row}


def test_the_api_and_the_cli_give_the_same_answers(environment, api, cli):
    late = _record(environment, "LC-1", window=60, queue="cs-priority", ago=2 * HOUR, package=PACKAGE)
    fresh = _record(environment, "LC-2", window=240, queue="cs-standard", ago=HOUR)
    third = _record(environment, "LC-3", window=240, queue="cs-standard", ago=HOUR)

    reads = [
        (("escalations", "list"), ("/escalations", {})),
        (("escalations", "list", "--overdue"), ("/escalations", {"overdue": True})),
        (
            ("escalations", "list", "--queue", "cs-priority", "--owner", "Laura Chen"),
            ("/escalations", {"queue": "cs-priority", "owner": "Laura Chen"}),
        ),
        (("escalations", "show", str(late)), ("/escalation", {"escalation_id": late})),
        (("follow-ups", "list"), ("/follow_ups", {})),
    ]

    def same_reads() -> None:
        for args, (path, body) in reads:
            code, printed, err = cli(*args)
            status, answered = api(path, **body)
            assert (code, status) == (0, 200), (args, err, answered)
            assert answered == printed, args

    same_reads()
    listed = api("/escalations")[1]
    assert {late, fresh, third} <= {e["id"] for e in listed["escalations"]} and listed["count"] == len(
        listed["escalations"]
    )
    assert [e["id"] for e in api("/escalations", overdue=True)[1]["escalations"]] == [late]
    shown = api("/escalation", escalation_id=late)[1]["escalation"]
    assert (
        shown["package"] == PACKAGE
        and shown["overdue"] is True
        and [c["to_status"] for c in shown["history"]] == ["open"]
    )
    assert dt.datetime.fromisoformat(shown["respond_by"]).tzinfo is not None  # ISO 8601 with its offset, in both

    # changes: one made through the API, one through the CLI; each side then shows the other's
    status, acked = api("/acknowledge", escalation_id=late, by="Laura Chen", note="calling them now")
    assert status == 200 and acked["escalation"]["status"] == "acknowledged"
    assert acked["escalation"] == _row_of(cli("escalations", "show", str(late))[1]["escalation"], acked["escalation"])
    code, acked_cli, _ = cli("escalations", "ack", str(fresh), "--by", "Sam Ortiz")
    assert code == 0 and acked_cli["escalation"] == _row_of(
        api("/escalation", escalation_id=fresh)[1]["escalation"], acked_cli["escalation"]
    )
    assert api("/escalations", overdue=True)[1]["count"] == 0
    same_reads()

    status, resolved = api("/resolve", escalation_id=late, outcome="saved", by="Sam Ortiz", note="renewal signed")
    assert status == 200 and (resolved["escalation"]["status"], resolved["escalation"]["outcome"]) == (
        "resolved",
        "saved",
    )
    assert resolved["escalation"] == _row_of(
        cli("escalations", "show", str(late))[1]["escalation"], resolved["escalation"]
    )
    code, resolved_cli, _ = cli("escalations", "resolve", str(fresh), "--outcome", "not_at_risk", "--by", "Laura Chen")
    assert code == 0 and resolved_cli["escalation"] == _row_of(
        api("/escalation", escalation_id=fresh)[1]["escalation"], resolved_cli["escalation"]
    )
    history = api("/escalation", escalation_id=late)[1]["escalation"]["history"]
    assert [(c["from_status"], c["to_status"], c["actor"], c["outcome"], c["note"]) for c in history] == [
        (None, "open", "policy", None, "risk (policy test)"),
        ("open", "acknowledged", "Laura Chen", None, "calling them now"),
        ("acknowledged", "resolved", "Sam Ortiz", "saved", "renewal signed"),
    ]
    same_reads()

    # follow-ups: the resolved ones' were closed; the third's is done through the API, as the CLI would answer
    pending = api("/follow_ups")[1]["follow_ups"]
    assert third in {f["escalation_id"] for f in pending} and not {late, fresh} & {f["escalation_id"] for f in pending}
    due_by = (dt.datetime.now(dt.UTC) + 25 * HOUR).isoformat()
    assert api("/follow_ups", due_by=due_by) == (200, cli("follow-ups", "list", "--due-by", due_by)[1])
    assert (
        api("/follow_ups", due_by=dt.datetime.now(dt.UTC).isoformat())[1]["count"]
        == cli("follow-ups", "list", "--due")[1]["count"]
    )
    status, done = api("/follow_up_done", escalation_id=third, by="Laura Chen")
    assert (status, done) == (200, {"escalation_id": third, "done": 1, "by": "Laura Chen"})
    code, _, err = cli("follow-ups", "done", str(third), "--by", "Laura Chen")
    status, text = api("/follow_up_done", escalation_id=third, by="Laura Chen")
    assert (code, status) == (2, 400) and err in text  # the same message
    same_reads()


def test_errors_name_the_field_and_unknown_escalations_are_404(environment, api, cli, base):
    known = _record(environment, "LC-9", window=60, queue="cs-standard", ago=HOUR)
    assert _post(base, "/escalations", {}, {})[0] == 401
    assert _post(base, "/acknowledge", {"escalation_id": known, "by": "x"}, {"Authorization": "Bearer nope"})[0] == 401

    for path, body in (
        ("/escalation", {"escalation_id": 424242}),
        ("/acknowledge", {"escalation_id": 424242, "by": "Sam"}),
        ("/resolve", {"escalation_id": 424242, "outcome": "saved", "by": "Sam"}),
        ("/follow_up_done", {"escalation_id": 424242, "by": "Sam"}),
        ("/feedback", {"escalation_id": 424242, "rating": 4}),
    ):
        status, text = api(path, **body)
        assert status == 404 and "escalation_id 424242: no such escalation" in text, (path, text)
    code, _, err = cli("escalations", "ack", "424242", "--by", "Sam")
    assert code == 2 and err in api("/acknowledge", escalation_id=424242, by="Sam")[1]
    assert api("/escalation", escalation_id=10**20)[0] == 404  # past a 64-bit id: it was a 500

    for path, body, field in (
        ("/acknowledge", {"escalation_id": known}, "by"),
        ("/resolve", {"escalation_id": known, "by": "Sam"}, "outcome"),
        ("/escalation", {"escalation_id": "seven"}, "escalation_id"),
        ("/escalations", {"overdue": "often"}, "overdue"),
        ("/escalations", {"status": "closed"}, "status 'closed'"),
        ("/follow_ups", {"due_by": "yesterday"}, "due_by 'yesterday'"),
        ("/resolve", {"escalation_id": known, "outcome": "lost", "by": "Sam"}, "outcome 'lost': expected one of"),
        ("/acknowledge", {"escalation_id": known, "by": "  "}, "expected the name of the person acting"),
    ):
        status, text = api(path, **body)
        assert status == 400 and field in text, (path, body, text)

    assert api("/resolve", escalation_id=known, outcome="churned", by="Sam")[0] == 200
    status, text = api("/acknowledge", escalation_id=known, by="Sam")  # resolved is final: the store's message
    code, _, err = cli("escalations", "ack", str(known), "--by", "Sam")
    assert status == 400 and code == 2 and f"escalation {known} is resolved, which is final" in text and err in text
