"""The holiday check: does a company-wide holiday read as every account declining?

Trains the risk curve on a base's panel (as `churn train` fits its final model), then scores the
base at a cutoff in a holiday week and at one `--weeks` earlier (same weekday), and compares
- the change in the base's mean `p_90d` with the change in the simulator oracle's mean `p_90d`
  (truth/: the latent health that drives churn ignores holidays); goal: the difference within 10%
  of the oracle's mean `p_90d` at the holiday cutoff;
- the PSI (models/drift.py `psi`) of each usage feature among the model's ten most important
  (mean |TreeSHAP| of the 90-day risk on both scoring snapshots) between the two cutoffs; goal:
  none above 0.25.

    python benchmarks/holiday.py [--data DIR] [--holiday 2025-12-29] [--weeks 2] [--text] [--name holiday]

Without --data it simulates the demo base (2,000 accounts, 730 days, seed 42). Text signals are off
unless --text (they do not react to holidays and take most of the feature time). The figures of the
usage definitions before the calendar adjustment were recorded by this script run on that code:
results/holiday_before.json and results/holiday_2024_before.json (--holiday 2024-12-27).
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

ROOT = Path(__file__).resolve().parent.parent
P90 = 2  # column of p_90d in a curve (horizons 30, 60, 90, 180)


def snapshot(data: Path, work: Path, cutoff: pd.Timestamp, text) -> pd.DataFrame:
    """Every live account's features at one cutoff (the scoring path: run_features with as_of)."""
    from pipelines.features import read_snapshots, run_features

    out = work / f"at-{cutoff.date()}"
    run_features(data, out, as_of=str(cutoff.date()), text=text)
    return read_snapshots(out)


def main() -> None:
    from features.registry import feature_specs
    from models.curve import fit_curve
    from models.drift import psi
    from models.explain import contributions, global_importance
    from pipelines.features import read_snapshots, run_features
    from pipelines.models import feature_names, load_model_config
    from simulation.oracle import churn_probability

    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--data", type=Path, default=None, help="a simulated base (with truth/); default: simulate the demo base"
    )
    parser.add_argument("--holiday", default="2025-12-29", help="a cutoff in a holiday week")
    parser.add_argument("--weeks", type=int, default=2, help="weeks between the earlier cutoff and the holiday one")
    parser.add_argument(
        "--text", action="store_true", help="compute text signals (slow; they do not react to holidays)"
    )
    parser.add_argument("--name", default="holiday", help="benchmarks/results/<name>.json")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-holiday-"))
    work.mkdir(parents=True, exist_ok=True)
    data = args.data
    if data is None:
        from simulation.config import SimulationConfig
        from simulation.simulate import simulate

        data = work / "data"
        simulate(SimulationConfig(accounts=2000, days=730, seed=42), data)
    text = None
    if args.text:
        from core.settings import load_settings
        from text.loading import text_source

        text_cm = text_source(load_settings(), data, True)
        text = text_cm.__enter__()
    holiday = pd.Timestamp(args.holiday, tz="UTC")
    before = holiday - pd.Timedelta(weeks=args.weeks)

    t0 = time.perf_counter()
    summary = run_features(data, work / "features", text=text)
    panel = read_snapshots(work / "features")
    names = feature_names(panel)
    feature_s = time.perf_counter() - t0
    print(
        f"panel: {len(panel):,} snapshots x {len(names)} features at {len(summary['cutoffs'])} cutoffs ({feature_s:.0f} s)",
        flush=True,
    )
    t0 = time.perf_counter()
    model = fit_curve(panel, names, load_model_config(ROOT / "config").curve)
    print(f"fitted the final curve in {time.perf_counter() - t0:.0f} s", flush=True)

    snaps = {c: snapshot(data, work, c, text) for c in (before, holiday)}
    result: dict = {
        "data": str(data),
        "text": bool(args.text),
        "holiday": str(holiday.date()),
        "before": str(before.date()),
        "snapshots": len(panel),
        "cutoffs": summary["cutoffs"],
    }
    means = {}
    for c, snap in snaps.items():
        p90 = model.predict_curve(snap)[:, P90]
        oracle = churn_probability(data / "truth", snap[["account_id", "cutoff"]])["oracle_90d"].to_numpy()
        means[c] = (float(np.mean(p90)), float(np.nanmean(oracle)))
        print(f"{c.date()}: {len(snap):,} accounts, mean p_90d {means[c][0]:.4f}, oracle {means[c][1]:.4f}", flush=True)
    model_move = means[holiday][0] - means[before][0]
    oracle_move = means[holiday][1] - means[before][1]
    gap = abs(model_move - oracle_move) / means[holiday][1]
    result["mean_p90"] = {str(c.date()): {"model": round(m, 4), "oracle": round(o, 4)} for c, (m, o) in means.items()}
    result["model_change"], result["oracle_change"] = round(model_move, 4), round(oracle_move, 4)
    result["gap_share_of_oracle"] = round(gap, 4)
    result["mean_goal_met"] = bool(gap <= 0.10)
    print(
        f"mean p_90d moved {model_move:+.4f}, the oracle's {oracle_move:+.4f}: a gap of {gap:.1%} of the oracle's mean p_90d "
        f"({'within' if gap <= 0.10 else 'outside'} the 10% goal)",
        flush=True,
    )

    specs = feature_specs()
    both = pd.concat(list(snaps.values()), ignore_index=True)
    importance = global_importance(contributions(model, both, 90), specs)
    top = importance["feature"].head(10).tolist()
    a, b = snaps[before], snaps[holiday]

    def drift(feature: str) -> dict:
        x, y = a[feature].to_numpy(dtype=float, na_value=np.nan), b[feature].to_numpy(dtype=float, na_value=np.nan)
        return {
            "feature": feature,
            "top_ten": feature in top,
            "psi": round(psi(x, y), 4),
            "mean_before": round(float(np.nanmean(x)), 4),
            "mean_holiday": round(float(np.nanmean(y)), 4),
        }

    usage = [f for f in names if specs.get(f) is not None and specs[f].family == "usage"]
    rows = [drift(f) for f in usage]
    result["top_ten"] = top
    result["usage_psi"] = rows
    worst = max((r["psi"] for r in rows if r["top_ten"]), default=float("nan"))
    result["max_top_ten_usage_psi"] = worst
    result["psi_goal_met"] = bool(not worst > 0.25)
    print("top ten by mean |TreeSHAP| (90 days): " + ", ".join(top))
    for r in rows:
        print(
            f"  {'*' if r['top_ten'] else ' '} {r['feature']:<34} PSI {r['psi']:6.3f}  mean "
            f"{r['mean_before']:9.3f} -> {r['mean_holiday']:9.3f}"
        )
    print(
        f"largest PSI of a top-ten usage feature: {worst:.3f} ({'within' if not worst > 0.25 else 'above'} the 0.25 goal)"
    )
    if args.text:
        text_cm.__exit__(None, None, None)
    print(f"written to {save(args.name, result)}")


if __name__ == "__main__":
    main()
