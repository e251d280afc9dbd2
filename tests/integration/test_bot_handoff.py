"""The ticket path end to end (ServingRuntime.assess_tickets, a real store): a low-confidence bot
hands a low-risk account's ticket to a human queue with its handoff package; an accepted offer
does the same; a risk-only escalation in the holdout is recorded, not sent."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml

from escalation.holdout import holdout_mask

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    from tests.conftest import champion_environment

    with champion_environment(tmp_path_factory.mktemp("handoff")) as env:
        yield env


def runtime_with(environment, **policy):
    """A runtime (no text models: these tickets need none) over the environment's config with
    `policy` keys added to its escalation.yaml."""
    from core.settings import load_settings
    from serving.runtime import ServingRuntime

    path = environment["root"] / "config" / "escalation.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), **policy}))
    return ServingRuntime(load_settings(), text=False)


def tiers(runtime) -> dict[str, str]:
    """Each stored account's band for its risk alone (no ticket): "high" is a risk crossing only."""
    from serving import schemas

    return {s.account_id: s.tier for s in runtime.score([schemas.AccountQuery(account_id=a) for a in runtime.position])}


def ticket(account_id: str, ticket_id: str, **fields):
    from serving import schemas

    return schemas.AssessTicketRequest(
        account_id=account_id,
        ticket=schemas.Ticket(
            ticket_id=ticket_id,
            category="how_to",
            messages=[
                {
                    "author": "customer",
                    "sent_at": "2025-03-11T09:00:00Z",
                    "body": "Where do I change the language of the dashboard?",
                }
            ],
            **fields,
        ),
    )


def decisions(environment) -> list[dict]:
    url = environment["env"]["CHURN_STORE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(url) as db:
        return [json.loads(payload) for (payload,) in db.execute("SELECT payload FROM decisions ORDER BY id")]


def test_low_confidence_and_accepted_offers_reach_a_human_queue_with_a_package(environment):
    from escalation.store import Store

    runtime = runtime_with(environment)
    calm = [a for a, tier in tiers(runtime).items() if tier == "none"][:4]
    assert len(calm) == 4
    low, offer, declined, sure = runtime.assess_tickets(
        [
            ticket(calm[0], "H-1", bot_confidence=0.2),
            ticket(calm[1], "H-2", bot_confidence=0.5, escalation_offer_accepted=True),
            ticket(calm[2], "H-3", bot_confidence=0.5, escalation_offer_accepted=False),
            ticket(calm[3], "H-4", bot_confidence=0.9, escalation_offer_accepted=True),
        ]
    )
    for answer, action in ((low, "escalate_to_human"), (offer, "offer_escalation")):
        assert not isinstance(answer, Exception), answer
        d = answer.decision
        assert d.escalate and d.band == "high" and d.queue == "human-review" and d.bot_action == action
        assert [r.rule for r in d.rules] == ["bot_handoff"] and answer.escalation_id is not None
        assert answer.handoff is not None and answer.handoff.form["decision"]["queue"] == "human-review"
    assert (
        not declined.decision.escalate
        and declined.decision.bot_action == "offer_escalation"
        and declined.escalation_id is None
    )
    assert not sure.decision.escalate and sure.decision.bot_action == "continue" and sure.handoff is None
    with Store(environment["env"]["CHURN_STORE_URL"]) as store:
        opened = {e["id"]: e for e in store.list_escalations(queue="human-review", package=True)}
        for answer in (low, offer):
            row = opened[answer.escalation_id]
            assert (
                row["account_id"] == answer.account_id
                and row["reason"] == "bot_handoff"
                and row["ticket_id"] == answer.ticket_id
            )
            assert row["package"]["form"]["decision"]["primary_reason"] == "bot_handoff" and row["status"] == "open"
        assert any(a["escalation_id"] == low.escalation_id for a in store.alerts())  # its alert is in the outbox
    audit = {p["ticket_id"]: p for p in decisions(environment)}
    assert audit["H-3"]["bot_action"] == "offer_escalation" and not audit["H-3"]["escalate"]


def test_a_risk_only_escalation_in_the_holdout_is_audited_and_not_sent(environment):
    from escalation.store import Store

    risky = [a for a, tier in tiers(runtime_with(environment)).items() if tier == "high"]
    assert risky, "the 400-account base has no account over a risk threshold"
    salt = next(f"s{k}" for k in range(1000) if holdout_mask(risky, 0.5, f"s{k}")[0])
    runtime = runtime_with(environment, holdout={"share": 0.5, "salt": salt})
    [answer] = runtime.assess_tickets([ticket(risky[0], "HO-1")])
    assert not isinstance(answer, Exception), answer
    assert not answer.decision.escalate and answer.escalation_id is None and answer.handoff is None
    assert answer.decision.held_out and answer.decision.band == "high" and answer.decision.queue is not None
    [audit] = [p for p in decisions(environment) if p["ticket_id"] == "HO-1"]
    assert (
        audit["held_out"] is True
        and audit["escalate"] is False
        and audit["primary_reason"] == "risk"
        and audit["queue"]
    )
    assert [r["rule"] for r in audit["rules"]] == ["risk"] and audit["response_window_minutes"] is None
    assert audit["policy_version"] == runtime.policy.version
    with Store(environment["env"]["CHURN_STORE_URL"]) as store:
        assert risky[0] not in {
            e["account_id"] for e in store.list_escalations() if e["reason"] == "risk" and e["ticket_id"] == "HO-1"
        }
