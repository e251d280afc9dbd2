"""The holdout on the simulator: escalation is given a known effect (a treated account that would
churn within 90 days is saved with probability 0.3) and the holdout's estimate recovers it within
its interval; a small base says "too few to tell". The 10,000-account run is
benchmarks/holdout.py; here a 3,000-account base checks coverage over replicates."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.holdout import experiment_policy, run_holdout, truth_at_cutoff
from escalation.holdout import holdout_mask

pytestmark = pytest.mark.slow
SAVE = 0.3


@pytest.fixture(scope="module")
def truth(simulated):
    return truth_at_cutoff(simulated)


def test_held_out_accounts_are_the_hash_of_the_eligible_ones(truth):
    from escalation.batch import apply_policy

    panel, curve, _ = truth
    policy = experiment_policy(0.2, "check", 0.05)
    decisions, queue = apply_policy(panel, curve, policy, panel["cutoff"].iloc[0].to_pydatetime())
    crossed = [d for d in decisions if d.band == "high"]
    held = [d for d in crossed if d.held_out]
    assert len(crossed) > 300 and all({r.rule for r in d.rules} == {"risk"} for d in crossed)
    assert [d.held_out for d in crossed] == holdout_mask([d.account_id for d in crossed], 0.2, "check").tolist()
    assert 0.12 < len(held) / len(crossed) < 0.28 and not any(d.escalate for d in held)
    assert int(queue["held_out"].sum()) == len(held)


def test_the_interval_covers_the_known_effect_over_replicates(truth):
    panel, curve, would_churn = truth
    runs = [
        run_holdout(panel, curve, would_churn, experiment_policy(0.2, f"rep-{k}", 0.05), save_probability=SAVE, seed=k)
        for k in range(40)
    ]
    truths = {round(r["truth"], 12) for r in runs}
    eligible = runs[0]["eligible"]
    # the same accounts, only the split and the draws change
    assert all(r["eligible"] == eligible for r in runs) and len(truths) == 1
    crossed = curve[:, 2] >= 0.05 * 0.8  # the 90-day threshold, lowered at most by the value factor
    assert eligible <= crossed.sum() and runs[0]["truth"] > 0.02
    coverage = np.mean([r["covered"] for r in runs])
    assert coverage >= 0.85, coverage  # nominal 0.95; 40 runs: 0.85 is three standard errors below it
    mean_effect = np.mean([r["effect"] for r in runs])
    assert abs(mean_effect - runs[0]["truth"]) < 0.02  # unbiased: the estimates centre on the truth
    assert all(r["held_out"] >= 30 and r["treated"] >= 30 for r in runs)
    # without an effect the estimates centre on zero
    null = [
        run_holdout(panel, curve, would_churn, experiment_policy(0.2, f"rep-{k}", 0.05), save_probability=0.0, seed=k)
        for k in range(10)
    ]
    assert all(r["truth"] == 0 for r in null) and abs(np.mean([r["effect"] for r in null])) < 0.02


def test_five_hundred_accounts_are_too_few_to_tell(tmp_path):
    from simulation.config import SimulationConfig
    from simulation.simulate import simulate

    simulate(SimulationConfig(accounts=500, days=730, seed=5), tmp_path / "data")
    panel, curve, would_churn = truth_at_cutoff(tmp_path / "data")
    r = run_holdout(panel, curve, would_churn, experiment_policy(0.2, "small", 0.05), save_probability=SAVE, seed=0)
    assert not r["enough"] and r["verdict"].startswith("Too few to tell")
    assert r["reason"] == "group_size" and r["held_out"] < 30 and r["accounts"] == r["eligible"]
