"""Does the holdout recover a known effect? On a simulated base, escalation is given an effect we
choose (a treated account that would churn within the horizon is saved with probability
`--save`), and the holdout's estimate is compared with it.

The risk curve is the simulator's oracle at one cutoff (the truth a perfect model would give), so
the experiment tests the holdout and the estimate, not a model. Accounts go through the real
decision path (`escalation.batch.apply_policy` with a holdout policy); the eligible ones (risk
crossings only) are split by the stable hash; churn within the horizon comes from the simulated
churn table, and treated churners are saved at random with a fixed seed. The true effect is
`save x` the natural churn rate of the eligible accounts.

    python benchmarks/holdout.py [--accounts 10000 500] [--share 0.2] [--save 0.3] [--threshold 0.05] [--replicates 200]

Prints, per base size, the first replicate (effect, interval, verdict, truth) and, over all
replicates (a new salt and new saving draws each time), the coverage of the interval, the share
of runs with enough accounts to tell, and the mean estimate; writes
benchmarks/results/holdout.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

#: one cutoff with 214 days of simulated future in a 730-day base starting 2024-01-01
CUTOFF = "2025-06-01"


def truth_at_cutoff(
    data: Path, cutoff: str | pd.Timestamp = CUTOFF, *, horizon_days: int = 90, n_paths: int = 64
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The accounts alive at `cutoff` of a simulated base in `data` (with its truth/ folder): a
    panel the policy can read (account_id, cutoff, arr_current, segment), the oracle's risk curve
    (rows x HORIZONS) and whether each account churns within `horizon_days` after the cutoff
    with no escalation at all."""
    from core.vocabulary import HORIZONS
    from simulation.oracle import churn_probability

    cutoff = pd.Timestamp(cutoff)
    cutoff = cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff
    accounts = pd.read_parquet(data / "accounts.parquet", columns=["account_id", "segment", "arr"])
    oracle = churn_probability(
        data / "truth",
        pd.DataFrame({"account_id": accounts["account_id"], "cutoff": cutoff}),
        horizons=HORIZONS,
        n_paths=n_paths,
    )
    alive = oracle[f"oracle_{HORIZONS[0]}d"].notna().to_numpy()
    panel = pd.DataFrame(
        {
            "account_id": accounts["account_id"].to_numpy()[alive],
            "cutoff": cutoff,
            "arr_current": accounts["arr"].to_numpy(dtype=float)[alive],
            "segment": accounts["segment"].to_numpy()[alive],
        }
    )
    curve = oracle.loc[alive, [f"oracle_{h}d" for h in HORIZONS]].to_numpy()
    churned_at = (
        pd.read_parquet(data / "churn.parquet").set_index("account_id")["churned_at"].reindex(panel["account_id"])
    )
    would_churn = ((churned_at >= cutoff) & (churned_at < cutoff + pd.Timedelta(days=horizon_days))).to_numpy()
    return panel, curve, would_churn


def run_holdout(
    panel: pd.DataFrame, curve: np.ndarray, would_churn: np.ndarray, policy, *, save_probability: float, seed: int
) -> dict:
    """One experiment: decisions under `policy` (its holdout share and salt), the known effect
    applied to the treated, and `estimate_effect` on the outcome. Adds the true effect, whether
    the interval covers it, and how many accounts were eligible."""
    from escalation.batch import apply_policy
    from escalation.holdout import eligible, estimate_effect

    now = pd.Timestamp(panel["cutoff"].iloc[0]).to_pydatetime()
    decisions, _ = apply_policy(panel, curve, policy, now)
    position = pd.Series(np.arange(len(panel)), index=panel["account_id"].to_numpy())
    risk_only = [d for d in decisions if (d.escalate or d.held_out) and eligible(r.rule for r in d.rules)]
    treated = np.zeros(len(panel), dtype=bool)
    held = np.zeros(len(panel), dtype=bool)
    treated[position[[d.account_id for d in risk_only if d.escalate]].to_numpy(dtype=int)] = True
    held[position[[d.account_id for d in risk_only if d.held_out]].to_numpy(dtype=int)] = True
    saved = treated & would_churn & (np.random.default_rng(seed).random(len(panel)) < save_probability)
    churned = would_churn & ~saved
    out = estimate_effect(churned[treated], churned[held])
    truth = save_probability * float(would_churn[treated | held].mean()) if (treated | held).any() else 0.0
    covered = out["ci"] is not None and out["ci"][0] <= truth <= out["ci"][1]
    return {
        **out,
        "truth": truth,
        "covered": bool(covered),
        "eligible": int((treated | held).sum()),
        "saved_actual": int(saved.sum()),
        "alive": len(panel),
    }


def experiment_policy(share: float, salt: str, threshold: float, horizon_days: int = 90):
    """The shipped policy with the holdout on and one risk threshold at the outcome's horizon."""
    from escalation.policy import EscalationPolicy, Holdout

    return EscalationPolicy(risk_thresholds={horizon_days: threshold}, holdout=Holdout(share=share, salt=salt))


def main() -> None:
    from benchmarks._record import save
    from simulation.config import SimulationConfig
    from simulation.simulate import simulate

    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, nargs="+", default=[10_000, 500])
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument(
        "--save", type=float, default=0.3, help="probability that escalation saves a treated account that would churn"
    )
    parser.add_argument(
        "--threshold", type=float, default=0.05, help="90-day risk threshold of the experiment's policy"
    )
    parser.add_argument("--replicates", type=int, default=200, help="runs per base size (at least 1)")
    args = parser.parse_args()
    if args.replicates < 1:
        parser.error(f"--replicates {args.replicates}: expected at least 1")
    results = []
    for n in args.accounts:
        with tempfile.TemporaryDirectory(prefix="holdout-bench-") as tmp:
            started = time.perf_counter()
            simulate(SimulationConfig(accounts=n, days=args.days, seed=args.seed), Path(tmp) / "data")
            panel, curve, would_churn = truth_at_cutoff(Path(tmp) / "data")
            prepared = time.perf_counter() - started
        started = time.perf_counter()
        reps = [
            run_holdout(
                panel,
                curve,
                would_churn,
                experiment_policy(args.share, f"rep-{k}", args.threshold),
                save_probability=args.save,
                seed=k,
            )
            for k in range(args.replicates)
        ]
        one = reps[0]  # the example printed: the first replicate (salt rep-0, seed 0), not a chosen one
        coverage = float(np.mean([r["covered"] for r in reps]))
        enough = float(np.mean([r["enough"] for r in reps]))
        effects = np.array([r["effect"] for r in reps if r["effect"] is not None])
        row = {
            "accounts": n,
            "alive_at_cutoff": one["alive"],
            "eligible": one["eligible"],
            "treated": one["treated"],
            "held_out": one["held_out"],
            "truth": round(one["truth"], 4),
            "effect": one["effect"],
            "ci": one["ci"],
            "covered": one["covered"],
            "enough": one["enough"],
            "reason": one["reason"],
            "saved": one["saved"],
            "saved_ci": one["saved_ci"],
            "saved_actual": one["saved_actual"],
            "verdict": one["verdict"],
            "replicates": args.replicates,
            "coverage": coverage,
            "share_enough": enough,
            "mean_effect": float(effects.mean()) if len(effects) else None,
            "prepare_seconds": round(prepared, 1),
            "seconds_per_run": round((time.perf_counter() - started) / args.replicates, 3),
        }
        results.append(row)
        print(
            f"{n:,} accounts ({row['alive_at_cutoff']:,} alive at {CUTOFF}, {row['eligible']} eligible: {row['treated']} escalated, "
            f"{row['held_out']} held out): truth {row['truth']:+.2%}",
            flush=True,
        )
        print(f"  replicate 0: {one['verdict']}", flush=True)
        print(
            f"  replicate 0's interval covers the truth: {one['covered']}; over {args.replicates} replicates coverage {coverage:.1%}, "
            f"'enough' in {enough:.1%}, mean estimate {row['mean_effect']:+.2%}",
            flush=True,
        )
    save(
        "holdout",
        {
            "share": args.share,
            "save_probability": args.save,
            "threshold_90d": args.threshold,
            "cutoff": CUTOFF,
            "seed": args.seed,
            "days": args.days,
            "results": results,
        },
    )


if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    main()
