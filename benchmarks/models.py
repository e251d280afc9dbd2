"""Risk-curve speed: training time on a panel, batch explanation rows/s, single-account score +
top reasons in-process (goal p50 <= 1 ms with num_threads=1), and how model size trades accuracy
for explanation speed; with --backtest, the hazard and per-horizon formulations side by side.

    python benchmarks/models.py --features DIR [--backtest]   # a `churn features` output (default: simulate 10k accounts)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import tempfile
import time

import numpy as np
import pandas as pd

from benchmarks._record import save


def main() -> None:
    from sklearn.metrics import roc_auc_score

    from features.registry import feature_specs
    from models.backtest import censor_at
    from models.curve import CurveParams, fit_curve
    from models.explain import contributions
    from models.reasons import Reference, top_reasons
    from pipelines.features import read_snapshots, run_features
    from pipelines.models import feature_names, load_model_config

    parser = argparse.ArgumentParser()
    parser.add_argument("--features", type=Path, default=None)
    parser.add_argument(
        "--backtest",
        action="store_true",
        help="also compare the hazard and per-horizon formulations by a 4-fold backtest",
    )
    args = parser.parse_args()
    if args.features is None:
        from simulation.config import SimulationConfig
        from simulation.simulate import simulate

        tmp = Path(tempfile.mkdtemp(prefix="bench-models-"))
        simulate(SimulationConfig(accounts=10_000, days=730, seed=42), tmp / "data")
        run_features(tmp / "data", tmp / "features", start="2024-01-31")
        args.features = tmp / "features"
    panel = read_snapshots(args.features)
    names = feature_names(panel)
    specs = feature_specs()
    test_cutoff = np.sort(panel.loc[panel["churned_within_90d"].notna(), "cutoff"].unique())[-1]
    train = censor_at(panel[panel["cutoff"] < test_cutoff], pd.Timestamp(test_cutoff))
    test = panel[panel["cutoff"] == test_cutoff].reset_index(drop=True)
    y = test["churned_within_90d"].astype(int)
    results = {"snapshots": len(panel), "features": len(names)}
    print(
        f"panel: {len(panel):,} snapshots x {len(names)} features; training on {len(train):,}, testing on "
        f"{len(test):,} (cutoff {pd.Timestamp(test_cutoff).date()})"
    )
    rows = test[names].to_dict("records")

    def measure(label: str, params: CurveParams) -> dict:
        t0 = time.perf_counter()
        model = fit_curve(train, names, params)
        fit_s = time.perf_counter() - t0
        auc = roc_auc_score(y, model.predict_curve(test)[:, 2])
        batch = test.head(2000)
        t0 = time.perf_counter()
        contributions(model, batch, 90)
        explain_rate = len(batch) / (time.perf_counter() - t0)
        X = model.encode(test)  # the base the API measures points from (computed once at its start)
        reference = Reference.of(
            90, model.curve_matrix(X)[:, 2], model.contributions_matrix(X, 90)[:, :-1], test, model.features, specs
        )
        times = []
        for i in range(500):
            values = rows[i % len(rows)]
            t0 = time.perf_counter()
            x = model.row(values)  # the API's path: one account's values -> curve + reasons, one thread
            curve = model.curve_matrix(x, num_threads=1)
            contrib = model.contributions_matrix(x, 90, num_threads=1)
            top_reasons(contrib[:, :-1], curve[:, 2], model.features, [values], specs, reference)
            times.append(time.perf_counter() - t0)
        trees = sum(b.num_trees() for b in model.boosters)
        r = {
            "model": label,
            "formulation": params.formulation,
            "trees": trees,
            "leaves": params.num_leaves,
            "fit_s": round(fit_s, 1),
            "roc_auc_90d": round(float(auc), 4),
            "explain_rows_per_s": round(explain_rate),
            "single_p50_ms": round(float(np.median(times)) * 1000, 3),
            "single_p99_ms": round(float(np.quantile(times, 0.99)) * 1000, 3),
        }
        print(
            f"{label:<28} {trees:>5} trees x {params.num_leaves:>2} leaves: fit {r['fit_s']:6.1f} s, 90-day "
            f"ROC-AUC {r['roc_auc_90d']:.4f}, "
            f"batch explanations {r['explain_rows_per_s']:,} rows/s, single account score + reasons p50 {r['single_p50_ms']} ms "
            f"(p99 {r['single_p99_ms']} ms)",
            flush=True,
        )
        return r

    configured = load_model_config(Path(__file__).resolve().parent.parent / "config").curve
    results["configured"] = [
        measure(f"config/model.yaml ({f})", configured.model_copy(update={"formulation": f}))
        for f in ("hazard", "per_horizon")
    ]
    results["sizes"] = [
        measure(
            f"fixed size {trees} x {leaves}",
            CurveParams(n_estimators=trees, num_leaves=leaves, early_stopping_rounds=0),
        )
        for trees, leaves in ((100, 15), (200, 15), (800, 31), (1500, 63))
    ]
    if args.backtest:
        from models.backtest import run_backtest

        results["formulations"] = []
        for formulation in ("hazard", "per_horizon"):
            t0 = time.perf_counter()
            table, _ = run_backtest(
                panel, names, folds=4, params=configured.model_copy(update={"formulation": formulation})
            )
            seconds = time.perf_counter() - t0
            for row in table.to_dict("records"):
                results["formulations"].append(
                    {
                        "formulation": formulation,
                        "seconds": round(seconds, 1),
                        **{k: row[k] for k in ("horizon_days", "roc_auc", "pr_auc", "brier", "ece")},
                    }
                )
            print(
                f"backtest {formulation:<12} ({seconds:.0f} s): "
                + ", ".join(
                    f"{r['horizon_days']}d AUC {r['roc_auc']:.4f} ECE {r['ece']:.4f}" for r in table.to_dict("records")
                ),
                flush=True,
            )
    save("models", results)


if __name__ == "__main__":
    main()
