"""The holdout: which escalations may be held out (only a bare risk crossing), the stable hash that
assigns accounts, the policy settings, the decision and batch paths, and the effect estimate."""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from escalation.batch import apply_policy
from escalation.decision import AccountFacts, RiskView, TicketSignals, decide
from escalation.holdout import eligible, estimate_effect, holdout_mask, in_holdout
from escalation.policy import EscalationPolicy, Holdout, load_policy

NOW = dt.datetime(2025, 3, 3, 9, 30, tzinfo=dt.UTC)
RISKY = RiskView({30: 0.05, 60: 0.2, 90: 0.45, 180: 0.5})  # crosses the 90-day threshold only (0.40)
LOW_RISK = RiskView({30: 0.01, 60: 0.02, 90: 0.03, 180: 0.06})
HOLDOUT = EscalationPolicy(holdout=Holdout(share=0.5, salt="trial-1"))


def ids(n: int, prefix: str = "A") -> list[str]:
    return [f"{prefix}{i:06d}" for i in range(n)]


#: accounts on each side of the holdout of HOLDOUT, found by the hash itself
HELD = next(a for a in ids(100) if in_holdout(a, 0.5, "trial-1"))
SENT = next(a for a in ids(100) if not in_holdout(a, 0.5, "trial-1"))


def facts(account_id: str, **kw) -> AccountFacts:
    return AccountFacts(
        **{
            "account_id": account_id,
            "segment": "mid_market",
            "arr": 20_000.0,
            "average_arr": 20_000.0,
            "days_to_renewal": 200.0,
            "csm_owner": "Laura Chen",
            **kw,
        }
    )


# ---------------------------------------------------------------------------- assignment


def test_the_hash_is_sha256_of_salt_and_account_and_stable():
    draw = int.from_bytes(hashlib.sha256(b"trial-1|" + HELD.encode()).digest()[:8], "big") / 2**64
    assert draw < 0.5 and in_holdout(HELD, 0.5, "trial-1")
    assert [in_holdout(a, 0.2, "s") for a in ids(500)] == holdout_mask(ids(500), 0.2, "s").tolist()
    assert (
        holdout_mask(ids(500), 0.2, "s").tolist() == holdout_mask(np.array(ids(500), dtype=object), 0.2, "s").tolist()
    )
    assert not holdout_mask(ids(500), 0.0, "s").any() and not in_holdout(HELD, 0.0, "trial-1")
    assert holdout_mask([], 0.2).shape == (0,)


def test_share_accuracy_and_a_new_salt_draws_a_new_group():
    accounts = ids(100_000)
    mask = holdout_mask(accounts, 0.2, "q1")
    assert abs(mask.mean() - 0.2) < 0.01
    other = holdout_mask(accounts, 0.2, "q2")
    assert abs(other.mean() - 0.2) < 0.01
    assert abs((mask & other).mean() - 0.04) < 0.005  # independent draws: 0.2 x 0.2 overlap
    assert (
        holdout_mask(accounts, 0.1, "q1") <= mask
    ).all()  # a smaller share is a subset: raising it only adds accounts


@pytest.mark.parametrize("share", [-0.1, 0.51, 1.0])
def test_a_share_out_of_range_is_an_error_naming_the_key(share, tmp_path):
    with pytest.raises(InputError, match=r"holdout\.share"):
        in_holdout("A1", share)
    with pytest.raises(InputError, match=r"holdout\.share"):
        holdout_mask(["A1"], share)
    (tmp_path / "escalation.yaml").write_text(f"holdout: {{share: {share}}}\n")
    with pytest.raises(InputError, match=r"key 'holdout\.share'.*0\.5") as err:
        load_policy(tmp_path)
    assert str(share) in str(err.value)
    (tmp_path / "escalation.yaml").write_text("holdout: {share: 0.2, salts: x}\n")
    with pytest.raises(InputError, match=r"holdout\.salts"):
        load_policy(tmp_path)


def test_the_policy_version_changes_with_the_holdout_and_the_default_is_off(tmp_path):
    from core.settings import DEFAULT_CONFIG_DIR

    off = EscalationPolicy()
    assert off.holdout.share == 0.0 and load_policy(DEFAULT_CONFIG_DIR).holdout == off.holdout
    versions = {
        off.version,
        EscalationPolicy(holdout=Holdout(share=0.2)).version,
        EscalationPolicy(holdout=Holdout(share=0.2, salt="b")).version,
    }
    assert len(versions) == 3
    (tmp_path / "escalation.yaml").write_text("holdout: {share: 0.2, salt: b}\n")
    assert load_policy(tmp_path).version == EscalationPolicy(holdout=Holdout(share=0.2, salt="b")).version


# ---------------------------------------------------------------------------- eligibility and the decision


def test_eligible_only_when_every_fired_rule_is_a_risk_crossing():
    assert eligible(["risk"]) and eligible({"risk"})
    for rules in (
        [],
        ["watch"],
        ["risk", "critical_moment"],
        ["risk", "bot_handoff"],
        ["risk", "effort_frustration_value"],
        ["security"],
    ):
        assert not eligible(rules), rules


def test_a_risk_only_escalation_in_the_holdout_is_recorded_not_sent():
    sent = decide(facts(HELD), RISKY, None, EscalationPolicy(), NOW)
    held = decide(facts(HELD), RISKY, None, HOLDOUT, NOW)
    assert sent.escalate and not sent.held_out
    assert held.held_out and not held.escalate
    # what it would have been stays in the decision (the store's audit payload is its to_dict)
    assert (
        (held.band, held.queue, held.primary_reason, held.priority)
        == (sent.band, sent.queue, sent.primary_reason, sent.priority)
        == ("high", "cs-standard", "risk", "high")
    )
    assert held.response_window_minutes is None and held.follow_up_due is None and held.owner == "Laura Chen"
    assert held.to_dict()["held_out"] is True and held.policy_version == HOLDOUT.version != sent.policy_version
    other = decide(facts(SENT), RISKY, None, HOLDOUT, NOW)
    assert other.escalate and not other.held_out


@pytest.mark.parametrize(
    ("case", "account", "signals"),
    [
        ("hard trigger", {}, TicketSignals(category="legal")),
        ("critical moment", {}, TicketSignals(critical=("cancel",))),
        ("security incident on the account", {"recent_events": ("security_incident",)}, None),
        ("bot handoff", {}, TicketSignals(bot_confidence=0.2)),
        ("accepted offer", {}, TicketSignals(bot_confidence=0.5, escalation_offer_accepted=True)),
        ("effort", {"arr": 60_000.0}, TicketSignals(sentiment=-0.7, sentiment_first=-0.1, asks=3)),
    ],
)
def test_triggers_critical_bands_handoffs_and_effort_are_never_held_out(case, account, signals):
    d = decide(facts(HELD, **account), RISKY, signals, HOLDOUT, NOW)
    assert d.escalate and not d.held_out, case
    # the risk rule fired too: the other rule is what keeps it
    assert any(r.rule == "risk" for r in d.rules) and len(d.rules) > 1


def test_below_the_thresholds_nothing_is_held_out():
    d = decide(facts(HELD), LOW_RISK, None, HOLDOUT, NOW)
    assert not d.escalate and not d.held_out and d.band == "none"


def test_batch_path_holds_out_the_same_accounts_and_lists_them_last():
    n = 300
    accounts = ids(n, "B")
    panel = pd.DataFrame(
        {"account_id": accounts, "cutoff": pd.Timestamp(NOW), "arr_current": 10_000.0, "segment": "smb"}
    )
    curve = np.tile([0.05, 0.2, 0.45, 0.5], (n, 1))
    curve[:50] = [0.01, 0.02, 0.03, 0.06]  # not candidates at all
    policy = EscalationPolicy(holdout=Holdout(share=0.3, salt="batch"))
    decisions, queue = apply_policy(panel, curve, policy, NOW)
    expected = holdout_mask(accounts, 0.3, "batch") & (np.arange(n) >= 50)
    held = {d.account_id for d in decisions if d.held_out}
    assert held == set(np.array(accounts)[expected]) and 0 < len(held) < n - 50
    assert not any(d.escalate for d in decisions if d.held_out)
    assert queue["held_out"].sum() == len(held) and not queue.loc[queue["held_out"], "escalate"].any()
    assert (
        (queue.loc[queue["held_out"], ["band", "queue", "primary_reason"]] == ["high", "cs-standard", "risk"])
        .all()
        .all()
    )
    first_held = int(np.flatnonzero(queue["held_out"].to_numpy())[0])
    assert not queue["held_out"].iloc[:first_held].any() and queue["held_out"].iloc[first_held:].all()
    # the live decision for the same account agrees with the batch one
    live = decide(facts(next(iter(held)), segment="smb", arr=10_000.0, average_arr=10_000.0), RISKY, None, policy, NOW)
    assert live.held_out


# ---------------------------------------------------------------------------- the effect estimate


def test_newcombe_interval_matches_the_published_example():
    # Newcombe (1998), Stat Med 17:873, example (a): 56/70 - 48/80, method 10: 0.0524 to 0.3339
    r = estimate_effect([1] * 48 + [0] * 32, [1] * 56 + [0] * 14)
    assert r["effect"] == pytest.approx(0.2)
    assert r["ci"] == pytest.approx([0.0524, 0.3339], abs=1e-4)
    assert r["enough"] and r["reason"] is None and r["accounts"] == 150 and r["treated"] == 80 and r["held_out"] == 70
    assert r["saved"] == pytest.approx(16.0) and r["saved_ci"] == pytest.approx([80 * 0.0524, 80 * 0.3339], abs=0.01)
    assert "about 16 of the 80 escalated accounts saved, between 4 and 27" in r["verdict"]


def test_the_interval_covers_the_true_effect_at_its_level_across_seeds():
    p_treated, p_held = 0.14, 0.20
    covered, runs = 0, 400
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        r = estimate_effect(rng.random(800) < p_treated, rng.random(200) < p_held)
        covered += r["ci"][0] <= p_held - p_treated <= r["ci"][1]
    assert 0.925 <= covered / runs <= 0.975, covered / runs
    wide = estimate_effect(
        np.random.default_rng(1).random(800) < p_treated, np.random.default_rng(2).random(200) < p_held, confidence=0.5
    )
    narrow = estimate_effect(
        np.random.default_rng(1).random(800) < p_treated, np.random.default_rng(2).random(200) < p_held
    )
    assert narrow["ci"][1] - narrow["ci"][0] > wide["ci"][1] - wide["ci"][0]


def test_too_few_to_tell_names_its_reason():
    rng = np.random.default_rng(3)
    small = estimate_effect(rng.random(100) < 0.1, rng.random(29) < 0.5)  # a large difference, but 29 held out
    assert not small["enough"] and small["reason"] == "group_size" and small["verdict"].startswith("Too few to tell")
    assert "at least 30" in small["verdict"] and small["effect"] is not None
    spans = estimate_effect(rng.random(400) < 0.20, rng.random(100) < 0.22)
    assert spans["ci"][0] < 0 < spans["ci"][1]
    assert not spans["enough"] and spans["reason"] == "interval_spans_zero" and "includes zero" in spans["verdict"]
    empty = estimate_effect([0, 1, 0], [])
    assert (
        empty["effect"] is None
        and empty["ci"] is None
        and empty["churn_held_out"] is None
        and empty["reason"] == "group_size"
    )
    worse = estimate_effect([1] * 60 + [0] * 40, [1] * 20 + [0] * 80)
    assert worse["enough"] and worse["effect"] < 0 and "churned more" in worse["verdict"]


def test_bad_outcomes_are_errors_naming_the_argument():
    with pytest.raises(InputError, match="held_out_churned"):
        estimate_effect([0, 1], [0, np.nan])
    with pytest.raises(InputError, match="treated_churned.*2"):
        estimate_effect([0, 2], [0, 1])
    with pytest.raises(InputError, match="confidence"):
        estimate_effect([0, 1], [0, 1], confidence=1.5)
