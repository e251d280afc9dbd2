"""The operational store and the alert outbox, on SQLite and (when CHURN_TEST_POSTGRES_URL is set)
PostgreSQL, with a local HTTP receiver that fails, times out and dedupes by Idempotency-Key."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import create_engine, insert
from sqlalchemy.exc import IntegrityError

from core.errors import InputError
from escalation.alerts import deliver, flush_until_done, http_post
from escalation.decision import (
    AccountFacts,
    Decision,
    FiredRule,
    RiskView,
    TicketSignals,
    decide,
)
from escalation.payloads import slack_payload, webhook_payload
from escalation.policy import Alerts, EscalationPolicy
from escalation.store import Base, FeedbackRow, Store

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
POSTGRES_URL = os.environ.get("CHURN_TEST_POSTGRES_URL")
PACKAGE = {
    "customer": {"account_id": "A1", "name": "Acme Inc", "arr": 250000.0},
    "summary": "Acme's admins cannot log in since Monday.",
}


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """Every store test runs on both backends; PostgreSQL starts from empty tables."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ops.db'}"
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL not available: set CHURN_TEST_POSTGRES_URL (CI starts Debian's postgresql)")
    engine = create_engine(POSTGRES_URL)
    Base.metadata.drop_all(engine)
    engine.dispose()
    return POSTGRES_URL


@pytest.fixture
def open_store(store_url):
    """Opens stores on the backend's URL (a second one plays a restarted process); closes them all."""
    stores: list[Store] = []

    def _open(policy: EscalationPolicy) -> Store:
        stores.append(Store(store_url, policy))
        return stores[-1]

    yield _open
    for store in stores:
        store.close()


class Receiver:
    """A webhook receiver on 127.0.0.1 that dedupes by Idempotency-Key, as ours are asked to.

    flaky: keys whose hash is even get a 500 on their first two requests (about half of all
    requests fail); the first `slow_keys` keys accepted are processed but not answered until
    `release` is set (when the receiver closes), so the client's timeout always fires, however
    fast or loaded the machine, and the sender retries something already delivered. Every other
    request is answered at once, well within the client's timeout."""

    def __init__(self, flaky: bool, slow_keys: int = 2):
        self.flaky, self.slow_keys = flaky, slow_keys
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.attempts: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.delivered: list[tuple[str, str, dict]] = []  # (key, path, payload) of each new alert
        self.seen: set[str] = set()
        self.duplicates = 0
        self.slowed: set[str] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers["Idempotency-Key"]
                bucket = int(key[:8], 16)
                with receiver.lock:
                    receiver.attempts[key] += 1
                    attempt = receiver.attempts[key]
                if receiver.flaky and bucket % 2 == 0 and attempt <= 2:
                    return self._reply(500)
                with receiver.lock:
                    if key in receiver.seen:
                        receiver.duplicates += 1
                    else:
                        receiver.seen.add(key)
                        receiver.delivered.append((key, self.path, body))
                    slow = receiver.flaky and len(receiver.slowed) < receiver.slow_keys and key not in receiver.slowed
                    receiver.slowed.add(key) if slow else None
                if slow:
                    receiver.release.wait()  # held until the test is done: the client has given up by then
                self._reply(200)

            def _reply(self, status: int) -> None:
                with receiver.lock:
                    receiver.statuses[status] += 1
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the client gave up waiting (a held reply)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky_receiver():
    receiver = Receiver(flaky=True)
    yield receiver
    receiver.close()


@pytest.fixture
def receiver():
    receiver = Receiver(flaky=False)
    yield receiver
    receiver.close()


def make_policy(base_url: str = "http://127.0.0.1:9", **alerts: object) -> EscalationPolicy:
    settings = {
        "destinations": {
            "cs-slack": {"kind": "slack", "url": f"{base_url}/slack"},
            "ops-hook": {"kind": "webhook", "url": f"{base_url}/hook"},
        },
        "by_queue": {"security-response": ["cs-slack", "ops-hook"], "cs-priority": ["cs-slack"]},
        "default": ["ops-hook"],
        "max_attempts": 6,
        "backoff_seconds": 1.0,
        # generous against a local reply however loaded the machine; only a held reply times out
        "timeout_seconds": 5.0,
    }
    return EscalationPolicy(cooldown_hours=72, alerts=Alerts(**{**settings, **alerts}))


def make_decision(
    account: str = "A1",
    *,
    reason: str = "risk",
    severity: int = 3,
    band: str = "high",
    queue: str = "cs-standard",
    at: dt.datetime = T0,
    escalate: bool = True,
) -> Decision:
    return Decision(
        account_id=account,
        ticket_id="T1",
        escalate=escalate,
        band=band,
        queue=queue if escalate else None,
        priority="high",
        response_window_minutes=240 if escalate else None,
        follow_up_due=(at + 24 * HOUR).isoformat() if escalate else None,
        owner="Laura Chen",
        rules=[FiredRule(reason, "30-day churn risk 45% at or above the threshold 20%", {"probability": 0.45})],
        primary_reason=reason,
        severity=severity,
        policy_version="test",
        model_version="m1",
        decided_at=at.isoformat(),
    )


# ---------------------------------------------------------------------------------- the store


def test_repeat_within_cooldown_merges_into_the_open_escalation(open_store):
    store = open_store(make_policy())
    first = store.record(make_decision(), PACKAGE, T0)
    second = store.record(make_decision(at=T0 + 5 * HOUR), {**PACKAGE, "summary": "still locked out"}, T0 + 5 * HOUR)

    assert (first.action, second.action) == ("created", "merged")
    assert second.escalation_id == first.escalation_id and second.occurrences == 2
    assert (first.alerts_enqueued, second.alerts_enqueued) == (1, 0)
    [escalation] = store.open_escalations()
    assert escalation["occurrences"] == 2 and escalation["last_decision_id"] == second.decision_id
    assert escalation["package"]["summary"] == "still locked out"  # replaced by the latest
    assert escalation["updated_at"] == T0 + 5 * HOUR and escalation["opened_at"] == T0
    counts = store.counts()
    assert (counts["decisions"], counts["escalations"], counts["alert_outbox"], counts["follow_ups"]) == (2, 1, 1, 1)


def test_higher_severity_raises_the_escalation_and_alerts_again(open_store):
    store = open_store(make_policy())
    first = store.record(make_decision(queue="cs-priority"), PACKAGE, T0)
    raised = store.record(
        make_decision(severity=5, band="critical", queue="security-response", at=T0 + HOUR), None, T0 + HOUR
    )
    same_again = store.record(
        make_decision(severity=5, band="critical", queue="security-response", at=T0 + 2 * HOUR), None, T0 + 2 * HOUR
    )

    assert (first.action, raised.action, same_again.action) == ("created", "raised", "merged")
    # the new queue's two destinations
    assert raised.escalation_id == first.escalation_id and raised.alerts_enqueued == 2
    escalation = store.get_escalation(first.escalation_id)
    assert (escalation["severity"], escalation["band"], escalation["queue"], escalation["occurrences"]) == (
        5,
        "critical",
        "security-response",
        3,
    )
    assert escalation["package"] == PACKAGE  # a repeat without a package keeps the one it had
    alerts = store.alerts()
    assert [a["destination"] for a in alerts] == ["cs-slack", "cs-slack", "ops-hook"]
    assert len({a["idempotency_key"] for a in alerts}) == 3  # severity is part of the key: the re-alert is new
    assert "CRITICAL" in alerts[1]["payload"]["text"]


def test_after_the_cooldown_a_new_escalation_opens(open_store):
    store = open_store(make_policy())
    first = store.record(make_decision(), PACKAGE, T0)
    # the cooldown runs from the last occurrence: 71 h, then 71 h again, still the same escalation
    assert store.record(make_decision(at=T0 + 71 * HOUR), None, T0 + 71 * HOUR).action == "merged"
    assert store.record(make_decision(at=T0 + 142 * HOUR), None, T0 + 142 * HOUR).action == "merged"
    later = store.record(make_decision(at=T0 + 215 * HOUR), None, T0 + 215 * HOUR)

    assert later.action == "created" and later.escalation_id != first.escalation_id and later.alerts_enqueued == 1
    counts = store.counts()
    assert (counts["escalations"], counts["alert_outbox"], counts["follow_ups"]) == (2, 2, 2)


def test_status_decides_what_a_repeat_merges_into(open_store):
    store = open_store(make_policy())
    first = store.record(make_decision(), None, T0)
    store.set_status(first.escalation_id, "acknowledged", T0 + HOUR)
    # someone is on it: no new page
    assert store.record(make_decision(at=T0 + 2 * HOUR), None, T0 + 2 * HOUR).action == "merged"
    store.set_status(first.escalation_id, "resolved", T0 + 3 * HOUR)
    reopened = store.record(make_decision(at=T0 + 4 * HOUR), None, T0 + 4 * HOUR)
    assert reopened.action == "created" and reopened.escalation_id != first.escalation_id
    with pytest.raises(InputError, match="status 'closed': expected one of"):
        store.set_status(first.escalation_id, "closed")
    with pytest.raises(InputError, match="escalation_id 999"):
        store.set_status(999, "resolved")


def test_decisions_are_all_audited_and_alerts_respect_min_band(open_store):
    store = open_store(make_policy(min_band="critical"))
    quiet = store.record(make_decision("A2", reason="watch", severity=1, band="watch", escalate=False), None, T0)
    high = store.record(make_decision("A3"), None, T0)
    critical = store.record(make_decision("A4", reason="legal_threat", severity=5, band="critical"), None, T0)

    assert quiet.action == "audit_only" and quiet.escalation_id is None
    assert (high.alerts_enqueued, critical.alerts_enqueued) == (0, 1)
    counts = store.counts()
    assert (counts["decisions"], counts["escalations"], counts["alert_outbox"]) == (3, 2, 1)


def test_decisions_recorded_together_are_stored_as_one_by_one(open_store):
    """record_all (the API's batch of ticket updates): quiet ones audited in one transaction, each
    escalation through record(): same actions, ids in order, merging across the batch."""
    store = open_store(make_policy())
    items = [
        (make_decision("A1", escalate=False, band="watch"), None, T0),
        (make_decision("A2"), PACKAGE, T0),
        (make_decision("A3", escalate=False, band="none"), None, T0 + HOUR),
        (make_decision("A2", at=T0 + HOUR), None, T0 + HOUR),
    ]  # a repeat of the batch's own escalation
    results = store.record_all(items)
    assert [r.action for r in results] == ["audit_only", "created", "audit_only", "merged"]
    assert results[3].escalation_id == results[1].escalation_id and results[3].occurrences == 2
    assert len({r.decision_id for r in results}) == 4 and results[0].decision_id < results[2].decision_id
    counts = store.counts()
    assert (counts["decisions"], counts["escalations"], counts["alert_outbox"]) == (4, 1, 1)
    assert store.record_all([]) == []


def test_a_real_decision_round_trips(open_store):
    """decide() output, numpy-free but with nested rules and int-keyed thresholds, stored and alerted."""
    policy = make_policy()
    store = open_store(policy)
    facts = AccountFacts(
        "A9", name="Initech", segment="enterprise", arr=400000.0, average_arr=50000.0, csm_owner="Sam Ortiz"
    )
    signals = TicketSignals(
        ticket_id="T9", category="security", priority="urgent", sentiment=-0.6, sentiment_first=-0.1
    )
    decision = decide(facts, RiskView({30: 0.5, 60: 0.6, 90: 0.7, 180: 0.8}, model_version="m7"), signals, policy, T0)
    result = store.record(
        decision, {"account_name": "Initech", "arr": 400000.0, "summary": "Possible breach reported."}, T0
    )

    assert decision.escalate and result.action == "created" and result.alerts_enqueued == 2
    [slack, hook] = store.alerts()
    assert "Initech (A9)" in slack["payload"]["text"] and "$400,000" in json.dumps(slack["payload"]["blocks"])
    assert (
        hook["payload"]["escalation"]["reason"] == "security"
        and hook["payload"]["idempotency_key"] == hook["idempotency_key"]
    )
    [follow_up] = store.due_follow_ups(T0 + 24 * HOUR)
    assert follow_up["owner"] == "Sam Ortiz" and follow_up["queue"] == "security-response"


def test_feedback_is_validated(open_store):
    store = open_store(make_policy())
    escalation_id = store.record(make_decision(), None, T0).escalation_id
    for rating in (0, 6, 3.5, True, "4"):
        with pytest.raises(InputError, match=r"rating .*expected a whole number from 1 to 5"):
            store.add_feedback(escalation_id, rating)
    with pytest.raises(InputError, match=r"outcome 'lost': expected one of \['saved', 'churned', 'unknown'\]"):
        store.add_feedback(escalation_id, 4, outcome="lost")
    with pytest.raises(InputError, match="escalation_id 12345: no such escalation"):
        store.add_feedback(12345, 4)

    feedback_id = store.add_feedback(escalation_id, 5, "clear handoff, no call needed", "saved", T0 + HOUR)
    [row] = store.feedback()
    assert (row["id"], row["rating"], row["outcome"], row["created_at"]) == (feedback_id, 5, "saved", T0 + HOUR)
    # the database holds the rule too, for writers that bypass the store
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(
            insert(FeedbackRow).values(escalation_id=escalation_id, rating=9, outcome="saved", created_at=T0)
        )


def test_follow_ups_fall_due(open_store):
    store = open_store(make_policy())
    first = store.record(make_decision("A1"), None, T0)
    second = store.record(make_decision("A2", at=T0 + 2 * HOUR), None, T0 + 2 * HOUR)

    assert store.due_follow_ups(T0 + 23 * HOUR) == []
    [due] = store.due_follow_ups(T0 + 24 * HOUR)
    assert (due["escalation_id"], due["due_at"], due["owner"]) == (first.escalation_id, T0 + 24 * HOUR, "Laura Chen")
    assert [d["escalation_id"] for d in store.due_follow_ups(T0 + 30 * HOUR)] == [
        first.escalation_id,
        second.escalation_id,
    ]
    assert store.complete_follow_up(first.escalation_id, T0 + 25 * HOUR) == 1
    store.set_status(second.escalation_id, "resolved", T0 + 26 * HOUR)  # resolving closes its follow-up
    assert store.due_follow_ups(T0 + 30 * HOUR) == []
    assert [e["follow_up_due"] for e in store.open_escalations()] == [None]


def test_concurrent_repeats_open_one_escalation(open_store):
    """Eight workers recording the same account and reason at once: one escalation, one alert."""
    store = open_store(make_policy())
    from tests.conftest import run_in_threads

    def work(i: int) -> None:
        store.record(make_decision(at=T0 + i * dt.timedelta(minutes=1)), None, T0 + i * dt.timedelta(minutes=1))

    assert run_in_threads(work, 8) == []
    [escalation] = store.open_escalations()
    assert escalation["occurrences"] == 8 and store.counts()["alert_outbox"] == 1


# ---------------------------------------------------------------------------------- delivery


def test_every_alert_is_delivered_exactly_once_through_failures(open_store, flaky_receiver):
    # two held replies, each waited out for timeout_seconds: 2 s keeps the test short and is still
    # generous against a local reply (milliseconds)
    policy = make_policy(flaky_receiver.url, timeout_seconds=2.0)
    store = open_store(policy)
    for i in range(30):
        store.record(make_decision(f"A{i:02d}", queue="cs-priority" if i % 2 else "cs-standard"), PACKAGE, T0)
    assert store.counts()["alerts_pending"] == 30

    result = flush_until_done(store, policy, T0)

    assert result["sent"] == 30 and result["failed"] == 0 and result["pending"] == 0
    assert result["retried"] > 0 and flaky_receiver.statuses[500] > 0 and flaky_receiver.slowed  # the failures happened
    keys = [key for key, _, _ in flaky_receiver.delivered]
    assert len(keys) == len(set(keys)) == 30  # deduped count: each alert new exactly once
    assert flaky_receiver.duplicates > 0  # timed-out deliveries were retried and dropped by key
    assert set(keys) == {a["idempotency_key"] for a in store.alerts()}
    assert Counter(path for _, path, _ in flaky_receiver.delivered) == {"/slack": 15, "/hook": 15}
    assert any("timed out" in (a["last_error"] or "") or a["attempts"] > 1 for a in store.alerts())
    counts = store.counts()
    assert (counts["alerts_sent"], counts["alerts_pending"], counts["alerts_failed"]) == (30, 0, 0)
    assert store.pending_alerts() == []


def test_a_dead_receiver_fails_alerts_after_max_attempts(open_store):
    policy = make_policy("http://127.0.0.1:9", max_attempts=3)  # port 9 (discard): connection refused
    store = open_store(policy)
    store.record(make_decision(), None, T0)

    first = deliver(store, policy, T0)
    assert first == {"sent": 0, "retried": 1, "failed": 0, "pending": 1}
    assert deliver(store, policy, T0 + dt.timedelta(seconds=0.5)) == {
        "sent": 0,
        "retried": 0,
        "failed": 0,
        "pending": 1,
    }  # backing off
    assert store.pending_alerts(T0 + dt.timedelta(seconds=1)) != []  # due after backoff_seconds * 2**0
    result = flush_until_done(store, policy, T0)
    assert (result["failed"], result["pending"]) == (1, 0)
    [alert] = store.alerts()
    assert (alert["status"], alert["attempts"]) == ("failed", 3) and alert["last_error"]


def test_backoff_is_capped_and_a_stopping_sender_hands_its_claims_back(open_store):
    """max_backoff_seconds caps the doubling; a sender told to stop mid-batch releases the rows it
    claimed but did not try (due again at once, that claim's attempt not counted), the rest stay leased."""
    policy = make_policy("http://127.0.0.1:9", backoff_seconds=1.0, max_backoff_seconds=3.0, max_attempts=10)
    store = open_store(policy)
    store.record(make_decision("A0"), None, T0)
    now = T0
    waits = []
    for _ in range(4):  # refused each time: waits 1, 2, 3 (capped), 3
        deliver(store, policy, now)
        due = store.next_alert_due()
        waits.append((due - now).total_seconds())
        now = due
    assert waits == [1.0, 2.0, 3.0, 3.0]

    for i in range(1, 6):
        store.record(make_decision(f"A{i}"), None, T0)
    tried = []

    def send(url: str, body: bytes, headers: dict, timeout: float) -> int:
        tried.append(headers["Idempotency-Key"])
        return 200

    counts = deliver(store, policy, T0, send=send, batch_size=10, stopping=lambda: len(tried) >= 2)
    assert counts["sent"] == 2 and counts["pending"] == 4
    pending = store.pending_alerts(T0)
    # handed back untried: due now, no attempt counted
    assert len(pending) == 3 and all(a["attempts"] == 0 for a in pending)


class Crash(BaseException):
    """The process dies: not an error deliver() may catch."""


def test_a_crash_between_commit_and_send_loses_nothing(open_store, receiver):
    policy = make_policy(receiver.url)
    store = open_store(policy)
    for i in range(10):
        store.record(make_decision(f"A{i}"), PACKAGE, T0)
    calls = 0

    def send_then_die(url: str, body: bytes, headers: dict, timeout: float) -> int:
        nonlocal calls
        calls += 1
        status = http_post(url, body, headers, timeout)
        if calls == 4:
            raise Crash  # the receiver has alert 4; we die before marking it sent
        return status

    with pytest.raises(Crash):
        deliver(store, policy, T0, send=send_then_die, batch_size=5)  # alert 5 claimed, never tried; 6-10 never claimed
    store.close()

    restarted = open_store(policy)  # a new process on the same database
    assert restarted.counts()["alerts_sent"] == 3 and restarted.counts()["alerts_pending"] == 7
    # 4 and 5 still leased
    assert deliver(restarted, policy, T0) == {"sent": 5, "retried": 0, "failed": 0, "pending": 2}
    result = flush_until_done(restarted, policy, T0)  # jumps to the lease's end
    assert (result["sent"], result["pending"]) == (2, 0) and result["now"] > T0

    keys = [key for key, _, _ in receiver.delivered]
    assert len(keys) == len(set(keys)) == 10 and receiver.duplicates == 1  # alert 4 came twice and was dropped by key
    assert restarted.counts()["alerts_sent"] == 10


# ---------------------------------------------------------------------------------- payloads


def test_payloads_carry_the_facts():
    escalation = {
        "id": 7,
        "account_id": "A1",
        "band": "critical",
        "reason": "legal_threat",
        "detail": "legal language <or> a threat",
        "owner": "Laura Chen",
        "queue": "legal-cs",
        "occurrences": 2,
        "response_window_minutes": 15,
        "follow_up_due": "2026-03-03T09:00:00+00:00",
    }
    message = slack_payload(escalation, PACKAGE, idempotency_key="ab" * 32)
    assert message["text"].startswith(":rotating_light: CRITICAL churn escalation: Acme Inc (A1)")
    rendered = json.dumps(message["blocks"])
    for fact in (
        "CRITICAL",
        "Acme Inc (A1)",
        "$250,000",
        "legal language &lt;or&gt; a threat",
        "Laura Chen",
        "15 min",
        "cannot log in",
        "ref abababababababab",
    ):
        assert fact in rendered
    assert [b["type"] for b in message["blocks"]] == ["header", "section", "section", "context"]

    event = webhook_payload(escalation, PACKAGE, idempotency_key="k")
    assert event["type"] == "churn.escalation" and event["idempotency_key"] == "k" and event["package"] == PACKAGE
    assert event["headline"]["arr"] == 250000.0 and event["headline"]["window"] == "15 min"
    assert slack_payload({"account_id": "A2", "band": "high", "reason": "risk"}, None)["text"].endswith(
        "respond within not set."
    )


def test_alerts_flush_command_sends_what_the_outbox_holds(tmp_path, monkeypatch, receiver, capsys):
    """`churn alerts flush` with the policy from CHURN_CONFIG_DIR and the store from CHURN_STORE_URL."""
    import yaml

    from pipelines.cli import main

    config = tmp_path / "config"
    config.mkdir()
    (config / "escalation.yaml").write_text(
        yaml.safe_dump(
            {
                "alerts": {
                    "destinations": {"ops-hook": {"kind": "webhook", "url": f"{receiver.url}/hook"}},
                    "default": ["ops-hook"],
                    "timeout_seconds": 2.0,
                }
            }
        )
    )
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("CHURN_CONFIG_DIR", str(config))
    monkeypatch.setenv("CHURN_STORE_URL", url)
    from escalation.policy import load_policy

    with Store(url, load_policy(config)) as store:
        for i in range(3):
            store.record(make_decision(f"A{i}"), None, dt.datetime.now(dt.UTC))
    assert main(["alerts", "flush", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sent"] == 3
    assert len(receiver.delivered) == 3 and {path for _, path, _ in receiver.delivered} == {"/hook"}
    assert main(["alerts", "flush", "--json"]) == 0  # nothing left: nothing sent twice
    assert json.loads(capsys.readouterr().out)["sent"] == 0 and len(receiver.delivered) == 3
