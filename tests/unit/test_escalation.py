"""The escalation policy of docs/escalation-practice.md as tests: the cases that must and must not escalate, hard
triggers, routing, response windows and the bot-confidence bands; policy validation."""

from __future__ import annotations

import datetime as dt

import pytest

from core.errors import InputError
from escalation.decision import AccountFacts, RiskView, TicketSignals, decide
from escalation.policy import EscalationPolicy, Route, load_policy

NOW = dt.datetime(2025, 3, 3, 9, 30, tzinfo=dt.UTC)
POLICY = EscalationPolicy()
LOW_RISK = RiskView({30: 0.01, 60: 0.02, 90: 0.03, 180: 0.06}, model_version="7")


def facts(**kw) -> AccountFacts:
    return AccountFacts(
        **{
            "account_id": "A1",
            "name": "Acme",
            "segment": "mid_market",
            "arr": 20_000.0,
            "average_arr": 20_000.0,
            "days_to_renewal": 200.0,
            "csm_owner": "Laura Chen",
            **kw,
        }
    )


def test_domain_example_rephrased_three_times_frustrated_and_twice_the_average_escalates():
    signals = TicketSignals(
        ticket_id="T1",
        category="how_to",
        sentiment=-0.6,
        sentiment_first=-0.1,
        asks=4,
        customer_messages=4,
        negative_messages=3,
    )
    d = decide(facts(arr=40_000.0), LOW_RISK, signals, POLICY, NOW)
    assert d.escalate and d.band == "high" and d.primary_reason == "effort_frustration_value"
    assert d.response_window_minutes == 15  # an actively frustrated customer: 15-30 minutes
    assert d.follow_up_due == (NOW + dt.timedelta(hours=24)).isoformat()
    assert d.owner == "Laura Chen" and d.policy_version == POLICY.version and d.model_version == "7"
    fired = {r.rule: r.inputs for r in d.rules}
    assert fired["effort_frustration_value"]["asks"] == 4


def test_one_negative_message_on_a_healthy_low_value_account_does_not_escalate():
    signals = TicketSignals(
        ticket_id="T2",
        category="how_to",
        sentiment=-0.7,
        sentiment_first=-0.7,
        asks=1,
        customer_messages=1,
        negative_messages=1,
    )
    d = decide(facts(arr=5_000.0), LOW_RISK, signals, POLICY, NOW)
    assert not d.escalate and d.band == "none" and d.queue is None and d.rules == []


def test_sentiment_alone_never_escalates_even_on_a_high_value_account():
    signals = TicketSignals(sentiment=-1.0, sentiment_first=0.5, asks=1)
    assert not decide(facts(arr=100_000.0, days_to_renewal=10), LOW_RISK, signals, POLICY, NOW).escalate


def test_sentiment_lowers_the_threshold_only_with_value_or_renewal():
    risk = RiskView({30: 0.15, 60: 0.2, 90: 0.25, 180: 0.4})  # below the 30-day threshold 0.20
    calm, angry = TicketSignals(sentiment=0.2), TicketSignals(sentiment=-0.8)
    assert not decide(facts(), risk, calm, POLICY, NOW).escalate
    assert not decide(facts(), risk, angry, POLICY, NOW).escalate  # low value, far renewal: sentiment changes nothing
    high_value = facts(arr=60_000.0)
    assert not decide(high_value, risk, calm, POLICY, NOW).escalate  # 0.20 x 0.8 = 0.16 > 0.15
    d = decide(high_value, risk, angry, POLICY, NOW)  # 0.20 x 0.8 x 0.6 = 0.096 <= 0.15
    assert d.escalate and d.primary_reason == "risk" and d.thresholds[30] == pytest.approx(0.096)
    near_renewal = decide(facts(days_to_renewal=30), risk, angry, POLICY, NOW)
    assert near_renewal.escalate and near_renewal.renewal_near


@pytest.mark.parametrize(
    ("rule", "account", "signals"),
    [
        ("security", {}, TicketSignals(category="security")),
        ("security", {"recent_events": ("security_incident",)}, TicketSignals()),
        ("privacy", {}, TicketSignals(privacy=True)),
        ("fraud", {}, TicketSignals(fraud=True)),
        ("legal_threat", {}, TicketSignals(critical=("legal",))),
        ("legal_threat", {"recent_events": ("legal_threat",)}, TicketSignals()),
        (
            "billing_dispute_high_value",
            {"arr": 50_000.0, "recent_events": ("billing_dispute",)},
            TicketSignals(category="billing"),
        ),
        ("critical_moment", {}, TicketSignals(critical=("cancel",))),
        ("critical_moment", {}, TicketSignals(critical=("supervisor",))),
    ],
)
def test_each_hard_trigger_escalates_regardless_of_the_model(rule, account, signals):
    d = decide(facts(**account), LOW_RISK, signals, POLICY, NOW)
    assert d.escalate and d.band == "critical" and rule in {r.rule for r in d.rules}
    assert d.response_window_minutes == POLICY.windows.critical


def test_billing_dispute_on_a_low_value_account_is_not_a_hard_trigger():
    d = decide(
        facts(arr=5_000.0, recent_events=("billing_dispute",)), LOW_RISK, TicketSignals(category="billing"), POLICY, NOW
    )
    assert not d.escalate


def test_enterprise_billing_dispute_goes_to_the_retention_ready_l2_queue():
    d = decide(
        facts(segment="enterprise", arr=300_000.0, recent_events=("billing_dispute",)),
        LOW_RISK,
        TicketSignals(category="billing", critical=("chargeback",)),
        POLICY,
        NOW,
    )
    assert d.escalate and d.queue == "retention-l2"


def test_complex_issue_on_a_high_value_account_gets_human_review():
    risk = RiskView({30: 0.3, 60: 0.4, 90: 0.5, 180: 0.7})
    d = decide(facts(arr=90_000.0), risk, TicketSignals(category="technical"), POLICY, NOW)
    assert d.escalate and d.queue == "human-review"
    assert decide(facts(), risk, TicketSignals(category="technical"), POLICY, NOW).queue == POLICY.default_queue


@pytest.mark.parametrize(
    ("confidence", "action"),
    [
        (0.1, "escalate_to_human"),
        (0.39, "escalate_to_human"),
        (0.4, "offer_escalation"),
        (0.59, "offer_escalation"),
        (0.6, "continue"),
        (0.95, "continue"),
        (None, None),
    ],
)
def test_bot_confidence_bands(confidence, action):
    assert decide(facts(), LOW_RISK, TicketSignals(bot_confidence=confidence), POLICY, NOW).bot_action == action


def test_low_bot_confidence_hands_the_ticket_to_a_human_queue_with_no_risk_rule():
    d = decide(
        facts(arr=5_000.0), LOW_RISK, TicketSignals(ticket_id="T9", category="how_to", bot_confidence=0.25), POLICY, NOW
    )
    assert d.escalate and d.band == "high" and d.bot_action == "escalate_to_human" and d.primary_reason == "bot_handoff"
    assert d.queue == POLICY.bot_confidence.queue == "human-review" and d.response_window_minutes == POLICY.windows.high
    assert d.follow_up_due is not None and d.owner == "Laura Chen" and not d.held_out
    [rule] = d.rules
    assert rule.inputs == {"bot_confidence": 0.25, "escalate_below": 0.4, "offer_below": 0.6, "offer_accepted": False}
    assert "25%" in rule.detail and "40%" in rule.detail
    # a route may still name a more specific queue; the policy names the bot's own
    enterprise = decide(
        facts(segment="enterprise"), LOW_RISK, TicketSignals(category="billing", bot_confidence=0.1), POLICY, NOW
    )
    assert enterprise.escalate and enterprise.queue == "retention-l2"
    own = EscalationPolicy(bot_confidence={"queue": "bot-rescue"})
    assert decide(facts(), LOW_RISK, TicketSignals(bot_confidence=0.1), own, NOW).queue == "bot-rescue"
    # with a risk rule too, the risk reason stays primary and the bot's queue is kept
    both = decide(
        facts(), RiskView({30: 0.3, 60: 0.4, 90: 0.5, 180: 0.7}), TicketSignals(bot_confidence=0.1), POLICY, NOW
    )
    assert (
        both.primary_reason == "risk"
        and {r.rule for r in both.rules} == {"risk", "bot_handoff"}
        and both.queue == "human-review"
    )


@pytest.mark.parametrize(
    ("confidence", "accepted", "escalates"),
    [
        (0.5, None, False),
        (0.5, False, False),
        (0.5, True, True),
        (0.4, True, True),
        (0.6, True, False),
        (0.9, True, False),
        (0.2, False, True),
        (None, True, False),
    ],
)
def test_an_accepted_offer_in_the_middle_band_hands_over_like_low_confidence(confidence, accepted, escalates):
    signals = TicketSignals(bot_confidence=confidence, escalation_offer_accepted=accepted)
    d = decide(facts(), LOW_RISK, signals, POLICY, NOW)
    assert d.escalate == escalates and (d.queue == "human-review") == escalates
    assert (d.primary_reason == "bot_handoff") == escalates
    if escalates and confidence >= POLICY.bot_confidence.escalate_below:
        assert (
            d.bot_action == "offer_escalation"
            and d.rules[0].inputs["offer_accepted"] is True
            and "accepted" in d.rules[0].detail
        )


def test_watch_band_does_not_interrupt_anyone():
    d = decide(facts(), RiskView({30: 0.05, 60: 0.1, 90: 0.22, 180: 0.3}), None, POLICY, NOW)
    assert d.band == "watch" and not d.escalate and d.queue is None and d.response_window_minutes is None


def test_policy_yaml_errors_name_the_key(tmp_path):
    (tmp_path / "escalation.yaml").write_text("risk_thresholds: {90: 1.5}\nsentiment: {multipler: 0.5}\n")
    with pytest.raises(InputError) as err:
        load_policy(tmp_path)
    message = str(err.value)
    assert "risk_thresholds" in message and "1.5" in message and "sentiment.multipler" in message
    (tmp_path / "escalation.yaml").write_text("bot_confidence: {escalate_below: 0.7, offer_below: 0.6}\n")
    with pytest.raises(InputError, match="offer_below"):
        load_policy(tmp_path)
    (tmp_path / "escalation.yaml").write_text("alerts: {by_queue: {retention-l2: [slack-cs]}}\n")
    with pytest.raises(InputError, match="slack-cs"):
        load_policy(tmp_path)


def test_shipped_policy_file_is_the_default_policy():
    from core.settings import DEFAULT_CONFIG_DIR

    shipped = load_policy(DEFAULT_CONFIG_DIR)
    assert shipped.risk_thresholds == POLICY.risk_thresholds and shipped.bot_confidence == POLICY.bot_confidence
    assert shipped.holdout == POLICY.holdout
    assert shipped.version == load_policy(DEFAULT_CONFIG_DIR).version  # content hash: stable


def test_incident_language_is_found_the_same_way_in_one_ticket_and_in_a_batch():
    import pandas as pd

    from escalation.signals import incident_flags

    texts = pd.Series(
        [
            "Our account was hacked last night",
            "This looks like a data breach of personal data",
            "There are unauthorized charges on our card",
            "How do I reset my password?",
            None,
            "We found a security vulnerability in the login page",
        ]
    )
    small = incident_flags(texts)
    big = incident_flags(pd.concat([texts] * 10, ignore_index=True)).head(len(texts))
    assert small.to_dict("list") == big.to_dict("list")
    assert small["security"].tolist() == [True, False, False, False, False, True]
    assert small["privacy"].tolist() == [False, True, False, False, False, False]
    assert small["fraud"].tolist() == [False, False, True, False, False, False]


def test_free_text_segments_read_as_tiers_by_arr():
    """A base with segments of its own: value and routing follow ARR against the average account."""
    from escalation.decision import is_high_value, value_tier

    strategic = facts(segment="Strategic", arr=300_000.0)
    assert value_tier(strategic, POLICY) == "enterprise" and is_high_value(strategic, POLICY)
    assert value_tier(facts(segment="consumer", arr=15_000.0), POLICY) == "mid_market"
    assert value_tier(facts(segment="consumer", arr=120.0), POLICY) == "smb"
    assert value_tier(facts(segment="Enterprise", arr=120.0), POLICY) == "enterprise"  # a tier the policy names is kept
    d = decide(
        facts(segment="Strategic", arr=300_000.0, recent_events=("billing_dispute",)),
        LOW_RISK,
        TicketSignals(category="billing", critical=("chargeback",)),
        POLICY,
        NOW,
    )
    assert d.escalate and d.queue == "retention-l2"
    # a route may also name the customer's own segment
    own = POLICY.model_copy(update={"routes": (Route(queue="strategic-desk", segments=("strategic",)), *POLICY.routes)})
    d = decide(
        facts(segment="Strategic", arr=5_000.0, recent_events=("billing_dispute",)),
        LOW_RISK,
        TicketSignals(category="billing", critical=("chargeback",)),
        own,
        NOW,
    )
    assert d.queue == "strategic-desk"
