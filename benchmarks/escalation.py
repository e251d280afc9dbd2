"""The escalation policy on simulated data: precision and recall of escalations at a fixed monthly
CS capacity, and median lead time, for the policy fed by the LightGBM risk curve against the same
policy fed by the rules-only baseline (the warning signs of docs/escalation-practice.md as a rate). Out of sample:
the curves are the rolling-origin backtest's test predictions.

    python benchmarks/escalation.py --features DIR [--capacity 0.05 ...] [--folds 4]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import time

from benchmarks._record import save


def main() -> None:
    from core.vocabulary import CURVE_COLUMNS, LABELS
    from escalation.batch import evaluate_at_capacity
    from escalation.policy import load_policy
    from models.backtest import run_backtest
    from models.baselines import RulesBaseline
    from pipelines.features import read_snapshots
    from pipelines.models import churn_times, feature_names, load_model_config, panel_data_dir

    parser = argparse.ArgumentParser()
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--capacity", type=float, nargs="+", default=[0.02, 0.05])
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument(
        "--event-lookback-days",
        type=int,
        nargs="+",
        default=None,
        help="also evaluate with hard triggers counted only this many days back (e.g. 1: since yesterday's run)",
    )
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    config = load_model_config(root / "config")
    policy = load_policy(root / "config")
    panel = read_snapshots(args.features)
    names = feature_names(panel)
    churned_at = churn_times(panel_data_dir(args.features))
    started = time.perf_counter()
    _, pooled = run_backtest(panel, names, folds=args.folds, params=config.curve, baselines={"rules": RulesBaseline})
    print(f"backtest: {args.folds} folds in {time.perf_counter() - started:.0f} s", flush=True)
    results = []
    policies = [policy] + [
        policy.model_copy(update={"hard_triggers": policy.hard_triggers.model_copy(update={"event_lookback_days": d})})
        for d in args.event_lookback_days or []
    ]
    for policy, (model, group) in [(p, g) for p in policies for g in pooled.groupby("model", sort=False)]:
        rows = group[["account_id", "cutoff", *CURVE_COLUMNS]].merge(
            panel.drop(columns=list(LABELS)), on=["account_id", "cutoff"]
        )
        rows = rows.merge(group[["account_id", "cutoff", *LABELS]], on=["account_id", "cutoff"])
        for capacity in args.capacity:
            t0 = time.perf_counter()
            r = evaluate_at_capacity(
                rows, rows[list(CURVE_COLUMNS)].to_numpy(), policy, capacity=capacity, churned_at=churned_at
            )
            r.update(
                model=model,
                event_lookback_days=policy.hard_triggers.event_lookback_days,
                seconds=round(time.perf_counter() - t0, 2),
            )
            results.append(r)
            for kind in ("escalations", "capacity_filled"):
                s = r[kind]
                print(
                    f"triggers {policy.hard_triggers.event_lookback_days:>2}d back, policy fed by {model:<9} "
                    f"capacity {capacity:.0%}/cutoff, {kind:<15}: {s['accounts']:,} flagged of {r['snapshots']:,} snapshots "
                    f"at {r['cutoffs']} cutoffs; precision {s['precision']:.3f}, recall {s['recall']:.3f} of {r['churners']:,} churners "
                    f"within {r['horizon_days']} days, median lead {s['median_lead_days']:.0f} days",
                    flush=True,
                )
    save("escalation", results)


if __name__ == "__main__":
    main()
