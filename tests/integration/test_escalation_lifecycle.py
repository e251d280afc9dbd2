"""The escalation lifecycle (open -> acknowledged -> resolved or expired), its audit trail,
overdue listing and follow-ups, in the store and through `churn escalations` / `churn follow-ups`;
on SQLite and (when CHURN_TEST_POSTGRES_URL is set) PostgreSQL, with a controlled clock."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3

import pytest
import yaml

from core.errors import InputError
from escalation.store import RESOLUTION_OUTCOMES, STATUSES, Store
from tests.integration import test_store_alerts as store_tests
from tests.integration.test_store_alerts import (
    HOUR,
    PACKAGE,
    T0,
    make_decision,
    make_policy,
)

#: the same fixtures: every test runs on SQLite and, when CHURN_TEST_POSTGRES_URL is set, PostgreSQL
store_url, open_store = store_tests.store_url, store_tests.open_store

MINUTE = dt.timedelta(minutes=1)

#: the schema escalation/store.py (now escalation/store/) created before the lifecycle (no status-change table, no
#: respond_by/outcome/done_by, a status CHECK without 'expired'), as SQLite printed it
OLD_SQLITE_SCHEMA = """CREATE TABLE decisions (
	id INTEGER NOT NULL,
	account_id VARCHAR(128) NOT NULL,
	ticket_id VARCHAR(128),
	band VARCHAR(16) NOT NULL,
	escalate BOOLEAN NOT NULL,
	dedupe_key VARCHAR(256) NOT NULL,
	policy_version VARCHAR(64) NOT NULL,
	model_version VARCHAR(128),
	decided_at DATETIME NOT NULL,
	recorded_at DATETIME NOT NULL,
	payload JSON NOT NULL,
	PRIMARY KEY (id)
);
CREATE INDEX ix_decisions_account_decided ON decisions (account_id, decided_at);
CREATE TABLE escalations (
	id INTEGER NOT NULL,
	account_id VARCHAR(128) NOT NULL,
	reason VARCHAR(64) NOT NULL,
	dedupe_key VARCHAR(256) NOT NULL,
	severity INTEGER NOT NULL,
	band VARCHAR(16) NOT NULL,
	queue VARCHAR(128),
	owner VARCHAR(256),
	status VARCHAR(16) NOT NULL,
	opened_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	occurrences INTEGER NOT NULL,
	last_decision_id INTEGER NOT NULL,
	package JSON,
	ticket_id VARCHAR(128),
	PRIMARY KEY (id),
	CONSTRAINT ck_escalations_status CHECK (status IN ('open', 'acknowledged', 'resolved')),
	CONSTRAINT ck_escalations_occurrences CHECK (occurrences >= 1),
	FOREIGN KEY(last_decision_id) REFERENCES decisions (id)
);
CREATE INDEX ix_escalations_dedupe ON escalations (dedupe_key, status, updated_at);
CREATE INDEX ix_escalations_status ON escalations (status, severity);
CREATE TABLE alert_outbox (
	id INTEGER NOT NULL,
	escalation_id INTEGER NOT NULL,
	destination VARCHAR(128) NOT NULL,
	kind VARCHAR(16) NOT NULL,
	url TEXT NOT NULL,
	payload JSON NOT NULL,
	idempotency_key VARCHAR(64) NOT NULL,
	status VARCHAR(16) NOT NULL,
	attempts INTEGER NOT NULL,
	next_attempt_at DATETIME NOT NULL,
	last_error TEXT,
	created_at DATETIME NOT NULL,
	sent_at DATETIME,
	PRIMARY KEY (id),
	CONSTRAINT ck_alert_outbox_status CHECK (status IN ('pending', 'sent', 'failed')),
	FOREIGN KEY(escalation_id) REFERENCES escalations (id),
	UNIQUE (idempotency_key)
);
CREATE INDEX ix_alert_outbox_due ON alert_outbox (status, next_attempt_at);
CREATE INDEX ix_alert_outbox_escalation_id ON alert_outbox (escalation_id);
CREATE TABLE follow_ups (
	id INTEGER NOT NULL,
	escalation_id INTEGER NOT NULL,
	due_at DATETIME NOT NULL,
	done_at DATETIME,
	PRIMARY KEY (id),
	FOREIGN KEY(escalation_id) REFERENCES escalations (id)
);
CREATE INDEX ix_follow_ups_escalation_id ON follow_ups (escalation_id);
CREATE INDEX ix_follow_ups_due ON follow_ups (done_at, due_at);
CREATE TABLE feedback (
	id INTEGER NOT NULL,
	escalation_id INTEGER NOT NULL,
	rating INTEGER NOT NULL,
	comment TEXT,
	outcome VARCHAR(16) NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT ck_feedback_rating CHECK (rating BETWEEN 1 AND 5),
	CONSTRAINT ck_feedback_outcome CHECK (outcome IN ('saved', 'churned', 'unknown')),
	FOREIGN KEY(escalation_id) REFERENCES escalations (id)
);
CREATE INDEX ix_feedback_escalation_id ON feedback (escalation_id);"""


def _decision(account: str, *, window: int | None = 240, at: dt.datetime = T0, **kwargs):
    return dataclasses.replace(make_decision(account, at=at, **kwargs), response_window_minutes=window)


def _trail(store: Store, escalation_id: int) -> list[tuple]:
    return [
        (c["from_status"], c["to_status"], c["actor"], c["at"], c["outcome"], c["note"])
        for c in store.history(escalation_id)
    ]


# ---------------------------------------------------------------------------------- the store


def test_an_escalation_is_worked_to_an_outcome_with_its_audit_trail(open_store):
    store = open_store(make_policy())
    first = store.record(_decision("A1", queue="cs-priority"), PACKAGE, T0).escalation_id
    other = store.record(_decision("A2", queue="cs-standard"), None, T0).escalation_id

    assert [e["id"] for e in store.list_escalations(now=T0)] == [first, other]
    [listed] = store.list_escalations(queue="cs-priority", owner="Laura Chen", status="open", now=T0)
    assert listed["id"] == first and "package" not in listed and listed["respond_by"] == T0 + 240 * MINUTE
    assert listed["follow_up_due"] == T0 + 24 * HOUR and listed["overdue"] is False

    acked = store.acknowledge(first, "Laura Chen", T0 + HOUR)
    assert (acked["status"], acked["updated_at"]) == ("acknowledged", T0 + HOUR)
    resolved = store.resolve(first, "saved", "Sam Ortiz", "renewed after a call with their CFO", T0 + 3 * HOUR)
    assert (resolved["status"], resolved["outcome"]) == ("resolved", "saved")

    assert _trail(store, first) == [
        (None, "open", "policy", T0, None, "risk (policy test)"),
        ("open", "acknowledged", "Laura Chen", T0 + HOUR, None, None),
        ("acknowledged", "resolved", "Sam Ortiz", T0 + 3 * HOUR, "saved", "renewed after a call with their CFO"),
    ]
    assert [e["id"] for e in store.list_escalations(now=T0 + 3 * HOUR)] == [other]  # closed: out of the active list
    [closed] = store.list_escalations(status="resolved")
    assert (closed["id"], closed["outcome"]) == (first, "saved")
    detail = store.escalation_detail(first)
    # resolving closed it
    assert detail["package"] == PACKAGE and [f["done_at"] for f in detail["follow_ups"]] == [T0 + 3 * HOUR]
    assert store.counts()["escalation_status_changes"] == 4  # two openings, an ack, a resolution


def test_invalid_transitions_are_refused_with_one_line_naming_the_escalation(open_store):
    store = open_store(make_policy())
    eid = store.record(_decision("A1"), None, T0).escalation_id
    with pytest.raises(
        InputError, match=rf"^escalation {eid}: outcome 'lost': expected one of \['saved', 'churned', 'not_at_risk'\]$"
    ):
        store.resolve(eid, "lost", "Sam")
    with pytest.raises(InputError, match=rf"^escalation {eid}: --by '  ': expected the name of the person acting$"):
        store.acknowledge(eid, "  ")
    for unknown in (999, 10**20, -1):  # 10**20: past a 64-bit id (it was the driver's OverflowError, an HTTP 500)
        with pytest.raises(InputError, match=f"escalation_id {unknown}: no such escalation"):
            store.acknowledge(unknown, "Sam")
    store.acknowledge(eid, "Sam", T0 + HOUR)
    with pytest.raises(
        InputError,
        match=rf"^escalation {eid} is already acknowledged: expected a move to resolved or expired, not to acknowledged$",
    ):
        store.acknowledge(eid, "Sam", T0 + HOUR)
    store.resolve(eid, "not_at_risk", "Sam", None, T0 + 2 * HOUR)
    for again in (
        lambda: store.resolve(eid, "saved", "Ana"),
        lambda: store.set_status(eid, "expired", actor="sweeper"),
    ):
        with pytest.raises(
            InputError,
            match=rf"^escalation {eid} is (already )?resolved, which is final: expected an open or acknowledged escalation",
        ):
            again()
    # refusals leave no trace
    assert [c["to_status"] for c in store.history(eid)] == ["open", "acknowledged", "resolved"]
    assert store.get_escalation(eid)["outcome"] == "not_at_risk"
    assert set(RESOLUTION_OUTCOMES) == {"saved", "churned", "not_at_risk"} and STATUSES[-1] == "expired"


def test_overdue_means_open_past_the_response_window(open_store):
    """Controlled clock: the window runs from the recording; acknowledging stops it; a raise
    (higher severity) can only bring the deadline forward."""
    store = open_store(make_policy())
    slow = store.record(_decision("A1", window=240), None, T0).escalation_id
    fast = store.record(
        _decision("A2", window=15, reason="legal_threat", severity=5, band="critical"), None, T0
    ).escalation_id
    store.record(_decision("A3", window=None), None, T0)  # no window: never overdue

    def overdue(at):
        return [e["id"] for e in store.list_escalations(overdue=True, now=at)]

    assert overdue(T0 + 14 * MINUTE) == []
    assert overdue(T0 + 15 * MINUTE) == [fast]
    assert overdue(T0 + 240 * MINUTE) == [fast, slow]  # most severe first
    assert [e["overdue"] for e in store.list_escalations(now=T0 + 240 * MINUTE)] == [True, True, False]
    store.acknowledge(fast, "Laura Chen", T0 + 5 * HOUR)
    assert overdue(T0 + 5 * HOUR) == [slow]
    raised = store.record(_decision("A1", window=15, severity=5, band="critical", at=T0 + HOUR), None, T0 + HOUR)
    assert raised.action == "raised" and store.get_escalation(slow)["respond_by"] == T0 + HOUR + 15 * MINUTE
    assert store.escalation_detail(slow, now=T0 + 2 * HOUR)["overdue"] is True


def test_expired_is_final_and_closes_the_follow_ups(open_store):
    store = open_store(make_policy())
    eid = store.record(_decision("A1"), None, T0).escalation_id
    store.set_status(eid, "expired", T0 + 80 * HOUR, actor="sweeper", note="cooldown passed without an outcome")
    assert store.follow_ups() == [] and store.list_escalations(status="expired")[0]["id"] == eid
    # a repeat opens anew
    assert store.record(_decision("A1", at=T0 + 81 * HOUR), None, T0 + 81 * HOUR).action == "created"


def test_follow_ups_are_done_by_someone(open_store):
    store = open_store(make_policy())
    first = store.record(_decision("A1"), None, T0).escalation_id
    second = store.record(_decision("A2", at=T0 + 2 * HOUR), None, T0 + 2 * HOUR).escalation_id
    assert [f["escalation_id"] for f in store.follow_ups()] == [first, second]
    assert [f["escalation_id"] for f in store.follow_ups(due_by=T0 + 25 * HOUR)] == [first]
    assert store.complete_follow_up(first, T0 + 25 * HOUR, by="Laura Chen") == 1
    assert store.complete_follow_up(first, T0 + 26 * HOUR, by="Laura Chen") == 0  # nothing left to do
    [follow_up] = store.escalation_detail(first)["follow_ups"]
    assert (follow_up["done_at"], follow_up["done_by"]) == (T0 + 25 * HOUR, "Laura Chen")
    assert [f["escalation_id"] for f in store.follow_ups()] == [second]


def test_a_database_made_before_the_lifecycle_is_upgraded_in_place(tmp_path):
    """An older store file: the new table and columns appear, every row stays, active escalations
    get their respond_by from their decision's window, and 'expired' passes the status CHECK."""
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(OLD_SQLITE_SCHEMA)
    payload = json.dumps(make_decision("A1").to_dict() | {"response_window_minutes": 60})
    old.execute(
        "INSERT INTO decisions VALUES (1, 'A1', 'T1', 'high', 1, 'A1|risk', 'test', 'm1', '2026-03-02 09:00:00', '2026-03-02 09:00:00', ?)",
        (payload,),
    )
    old.executemany(
        "INSERT INTO escalations VALUES (?, 'A1', 'risk', 'A1|risk', 3, 'high', 'cs-standard', 'Laura Chen', ?, "
        "'2026-03-02 09:00:00', '2026-03-02 09:00:00', 1, 1, NULL, 'T1')",
        [(1, "open"), (2, "resolved")],
    )
    old.execute("INSERT INTO follow_ups VALUES (1, 1, '2026-03-03 09:00:00', NULL)")
    old.execute("INSERT INTO feedback VALUES (1, 2, 4, 'ok', 'saved', '2026-03-02 10:00:00')")
    old.commit()
    old.close()

    with Store(f"sqlite:///{path}", make_policy()) as store:
        counts = store.counts()
        assert (
            counts["decisions"],
            counts["escalations"],
            counts["follow_ups"],
            counts["feedback"],
            counts["escalation_status_changes"],
        ) == (1, 2, 1, 1, 0)
        assert store.get_escalation(1)["respond_by"] == T0 + HOUR and store.get_escalation(2)["respond_by"] is None
        assert [e["id"] for e in store.list_escalations(overdue=True, now=T0 + HOUR)] == [1]
        store.set_status(1, "expired", T0 + 2 * HOUR, actor="sweeper")
        assert store.complete_follow_up(1, by="x") == 0 and store.feedback()[0]["outcome"] == "saved"
    with Store(f"sqlite:///{path}", make_policy()) as again:  # a second open changes nothing
        assert again.get_escalation(1)["status"] == "expired" and len(again.history(1)) == 1
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA foreign_key_check").fetchall() == [] and check.execute(
        "PRAGMA integrity_check"
    ).fetchone() == ("ok",)
    check.close()


# ---------------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli(store_url, tmp_path, monkeypatch, capsys):
    """`churn ...` in process on the store at CHURN_STORE_URL; returns (exit code, parsed JSON or None, stderr)."""
    from pipelines.cli import main

    config = tmp_path / "config"
    config.mkdir()
    (config / "escalation.yaml").write_text(
        yaml.safe_dump(
            {
                "alerts": {
                    "destinations": {"ops-hook": {"kind": "webhook", "url": "http://127.0.0.1:9/hook"}},
                    "default": ["ops-hook"],
                }
            }
        )
    )
    monkeypatch.setenv("CHURN_CONFIG_DIR", str(config))
    monkeypatch.setenv("CHURN_STORE_URL", store_url)

    def run(*args: str):
        code = main([*args, "--json"])
        out, err = capsys.readouterr()
        return code, (json.loads(out) if out.strip() else None), err

    run.url = store_url
    return run


def test_the_cli_works_an_escalation(cli, capsys):
    now = dt.datetime.now(dt.UTC)
    with Store(cli.url, make_policy()) as store:  # one past its window, one not
        late = store.record(
            _decision("A1", window=60, queue="cs-priority", at=now - 2 * HOUR), PACKAGE, now - 2 * HOUR
        ).escalation_id
        fresh = store.record(_decision("A2", window=240, at=now - HOUR), None, now - HOUR).escalation_id

    code, out, _ = cli("escalations", "list")
    assert code == 0 and out["count"] == 2 and {e["id"] for e in out["escalations"]} == {late, fresh}
    assert [e["id"] for e in cli("escalations", "list", "--overdue")[1]["escalations"]] == [late]
    assert [
        e["id"] for e in cli("escalations", "list", "--queue", "cs-priority", "--owner", "Laura Chen")[1]["escalations"]
    ] == [late]
    code, out, _ = cli("escalations", "show", str(late))
    assert code == 0 and out["escalation"]["package"] == PACKAGE and out["escalation"]["overdue"] is True
    assert [c["to_status"] for c in out["escalation"]["history"]] == ["open"]
    from pipelines.cli import main

    assert main(["escalations", "show", str(fresh)]) == 0  # the console: its next follow-up and its handoff's summary
    first, *rest = capsys.readouterr().err.splitlines()
    (due,) = [f["due_at"] for f in cli("follow-ups", "list")[1]["follow_ups"] if f["escalation_id"] == fresh]
    assert first.endswith(f"  {due}") and rest[:2] == ["handoff:", "  none recorded"]

    code, out, _ = cli("escalations", "ack", str(late), "--by", "Laura Chen")
    assert code == 0 and out["escalation"]["status"] == "acknowledged"
    assert cli("escalations", "list", "--overdue")[1]["count"] == 0
    code, out, _ = cli(
        "escalations", "resolve", str(late), "--outcome", "saved", "--note", "renewal signed", "--by", "Sam Ortiz"
    )
    assert code == 0 and (out["escalation"]["status"], out["escalation"]["outcome"]) == ("resolved", "saved")
    history = cli("escalations", "show", str(late))[1]["escalation"]["history"]
    assert [(c["from_status"], c["to_status"], c["actor"], c["note"]) for c in history] == [
        (None, "open", "policy", "risk (policy test)"),
        ("open", "acknowledged", "Laura Chen", None),
        ("acknowledged", "resolved", "Sam Ortiz", "renewal signed"),
    ]
    assert dt.datetime.fromisoformat(history[-1]["at"]) >= now
    assert [e["id"] for e in cli("escalations", "list", "--status", "resolved")[1]["escalations"]] == [late]

    code, out, err = cli("escalations", "resolve", str(late), "--outcome", "churned", "--by", "Sam Ortiz")
    assert (code, out) == (2, None)
    assert (
        err
        == f"error: escalation {late} is already resolved, which is final: expected an open or acknowledged escalation to become resolved\n"
    )
    code, _, err = cli("escalations", "resolve", str(fresh), "--outcome", "lost", "--by", "Sam")
    assert (
        code == 2
        and err == f"error: escalation {fresh}: outcome 'lost': expected one of ['saved', 'churned', 'not_at_risk']\n"
    )
    code, _, err = cli("escalations", "list", "--status", "closed")
    assert (
        code == 2
        and err == "error: --status 'closed': expected one of ['open', 'acknowledged', 'resolved', 'expired']\n"
    )
    code, _, err = cli("follow-ups", "list", "--due-by", "yesterday")
    assert (
        code == 2 and err.startswith("error: --due-by 'yesterday': expected an ISO 8601 time") and err.count("\n") == 1
    )
    assert cli("escalations", "ack", "424242", "--by", "Sam")[0] == 2

    code, out, _ = cli("follow-ups", "list")
    assert code == 0 and [f["escalation_id"] for f in out["follow_ups"]] == [fresh]  # the resolved one's was closed
    assert cli("follow-ups", "list", "--due")[1]["count"] == 0  # due in 24 hours
    code, out, _ = cli("follow-ups", "done", str(fresh), "--by", "Laura Chen")
    assert code == 0 and (out["done"], out["by"]) == (1, "Laura Chen")
    code, _, err = cli("follow-ups", "done", str(fresh), "--by", "Laura Chen")
    assert (
        code == 2
        and err
        == f"error: escalation {fresh}: no pending follow-up; expected an escalation listed by `churn follow-ups list`\n"
    )


def test_the_cli_works_the_demo_store_on_the_demo_clock(tmp_path, monkeypatch, capsys):
    """After `churn demo`, `churn escalations` on the demo's store runs on the clock `churn serve` runs
    the demo on: the end of its data when the demo finished, running on since. On the wall clock its
    escalations read months overdue and an acknowledgement came months after they opened. A store or
    clock the user names is theirs: the wall clock, or their offset."""
    import pandas as pd

    from core import clock
    from pipelines.cli import main

    monkeypatch.chdir(tmp_path)
    for name in ("CHURN_SCORES_DIR", "CHURN_STORE_URL", "CHURN_CLOCK_OFFSET_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CHURN_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "escalation.yaml").write_text(yaml.safe_dump({"alerts": {"destinations": {}}}))
    monkeypatch.setenv("CHURN_CONFIG_DIR", str(tmp_path / "config"))
    ends = dt.datetime(2025, 12, 31, tzinfo=dt.UTC)
    scores = tmp_path / "data" / "demo" / "scores"
    scores.mkdir(parents=True)
    pd.DataFrame({"account_id": ["A1"], "cutoff": [pd.Timestamp(ends)]}).to_parquet(scores / "features.parquet")
    finished = dt.datetime.now(dt.UTC) - 30 * MINUTE
    demo_store = f"sqlite:///{tmp_path / 'data' / 'store.db'}"  # the default store, as the demo records it
    record = {"scores_dir": str(scores), "finished_at": finished.isoformat(timespec="seconds"), "store_url": demo_store}
    (tmp_path / "data" / "last_demo.json").write_text(json.dumps(record))
    with Store(demo_store, make_policy()) as store:
        opened = store.record(_decision("A1", window=60, at=ends), PACKAGE, ends).escalation_id

    def run(*args: str):
        code = main([*args, "--json"])
        out, err = capsys.readouterr()
        return code, json.loads(out) if out.strip() else None, err

    try:
        code, out, err = run("escalations", "list", "--overdue")
        assert code == 0 and out["count"] == 0, out  # 30 minutes into a 60-minute window
        assert "on the last demo's clock: 2025-12-31 00:30 UTC" in err
        assert run("escalations", "ack", str(opened), "--by", "Laura Chen")[0] == 0
        history = run("escalations", "show", str(opened))[1]["escalation"]["history"]
        acked = dt.datetime.fromisoformat(history[-1]["at"]).replace(tzinfo=dt.UTC)
        assert dt.timedelta(minutes=29) < acked - ends < dt.timedelta(minutes=35), history

        yours = f"sqlite:///{tmp_path / 'yours.db'}"  # another store: the wall clock
        monkeypatch.setenv("CHURN_STORE_URL", yours)
        with Store(yours, make_policy()) as store:
            late = store.record(_decision("A2", window=60, at=ends), None, ends).escalation_id
        code, out, err = run("escalations", "list", "--overdue")
        assert [e["id"] for e in out["escalations"]] == [late] and "demo" not in err
        monkeypatch.setenv("CHURN_CLOCK_OFFSET_SECONDS", str((dt.datetime.now(dt.UTC) - ends).total_seconds()))
        assert run("escalations", "list", "--overdue")[1]["count"] == 0
        monkeypatch.delenv("CHURN_CLOCK_OFFSET_SECONDS")
        (tmp_path / "data" / "last_demo.json").write_text("[]")  # broken: the store still answers, on the wall clock
        assert run("escalations", "list", "--overdue")[0] == 0
    finally:
        clock.set_offset(0)
