"""Risk-curve quality against the simulator's oracle (issue 16), per simulated base.

For each features folder: the rolling-origin backtest of `churn evaluate` (the same plan, folds and
models, config/model.yaml), with the LightGBM curve also kept uncalibrated, so that it prints
- 90-day ROC-AUC of lightgbm, rules, logistic and oracle, and the goals: >= oracle - 0.02 and
  >= rules + 0.10;
- ECE of the curve at every horizon (goal <= 0.02);
- what calibration changes in ROC-AUC, on the pooled backtest (each fold's model calibrated on
  its own held-out snapshots, so folds move against each other) and within each fold (a strictly
  increasing calibration keeps a fold's ranking: 0 up to rounding); goal < 0.002;
- how sure the 90-day goals are: 95% bootstrap intervals of the margins over the rules and the
  oracle, accounts resampled (with a few hundred churn events an interval spans about ±0.03);
- what the backtest's own ROC-AUC intervals (`churn evaluate`'s roc_auc_low/high) cost, as a share
  of its time;
- the search candidates each fold kept (averaged when more than one: `curve.blend`);
- the share of accounts with a distinct p_90d at the latest cutoff, scored by a model fitted on
  the whole panel as `churn train` fits it (goal >= 95%), and that fit's time;
- with --seeds, the curve's 90-day ROC-AUC refitted with other LightGBM seeds: how far one fit's
  draw moves it on the same features.

    python benchmarks/quality.py --features /tmp/d16/d2000/features /tmp/d16/d3000/features
    python benchmarks/quality.py --features /tmp/d16/d2000/features --seeds 1,2,3
    python benchmarks/quality.py            # simulate and build 2,000 (seed 42), 3,000 (seed 31) and 10,000 (seed 42) accounts, 730 days
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

#: (accounts, seed) of the bases built when no --features is given
DEFAULT_BASES = ((2000, 42), (3000, 31), (10_000, 42))


def build(root: Path, accounts: int, seed: int, text: bool) -> Path:
    """`churn simulate` and `churn features` with their defaults (730 days, monthly cutoffs)."""
    from pipelines.cli import main

    data, features = root / f"d{accounts}_s{seed}", root / f"d{accounts}_s{seed}" / "features"
    assert (
        main(
            [
                "simulate",
                "--accounts",
                str(accounts),
                "--seed",
                str(seed),
                "--days",
                "730",
                "--out",
                str(data),
                "--json",
            ]
        )
        == 0
    )
    assert (
        main(["features", "--data", str(data), "--out", str(features), *([] if text else ["--no-text"]), "--json"]) == 0
    )
    return features


def backtest(features_dir: Path, params, folds: int, curve_only: bool = False) -> dict:
    """The backtest of `churn evaluate` (models.backtest `run_fold`, fold by fold), with the raw
    curve scored too, and the candidates each fold kept; `curve_only`: without the baselines and
    the oracle (which no curve setting changes)."""
    from sklearn.metrics import roc_auc_score

    from core.vocabulary import CURVE_COLUMNS, HORIZONS, LABELS
    from models.backtest import RAW_MODEL, FoldJob, run_fold, score_backtest
    from pipelines.features import read_snapshots
    from pipelines.models import backtest_plan, baselines, feature_names, oracle_for, panel_data_dir

    panel = read_snapshots(features_dir)
    names = feature_names(panel)
    plan = backtest_plan(panel, features_dir, folds)
    oracle = None if curve_only else oracle_for(panel_data_dir(features_dir))
    models = None if curve_only else baselines(names)
    preds, kept, within = [], [], {h: [] for h in HORIZONS}
    for i, cutoff in enumerate(plan.fold_cutoffs):
        fold = run_fold(
            FoldJob(i, cutoff, panel, names, params, models, oracle, None, plan.horizons_at(cutoff), raw=True)
        )
        preds.extend(fold["preds"])
        kept.append(fold["kept"])
        curves = {frame["model"].iloc[0]: frame for frame in fold["preds"]}
        for h, label, column in zip(HORIZONS, LABELS, CURVE_COLUMNS, strict=True):
            y = curves["lightgbm"][label].to_numpy(dtype="float64", na_value=np.nan)
            known = ~np.isnan(y)  # the fold's untested horizons are null
            if 0 < y[known].sum() < known.sum():
                within[h].append(
                    roc_auc_score(y[known], curves["lightgbm"][column][known])
                    - roc_auc_score(y[known], curves[RAW_MODEL][column][known])
                )
    pooled = pd.concat(preds, ignore_index=True)
    return {
        "table": score_backtest(pooled, plan, budget=0.05, churned_at=None),
        "pooled": pooled,
        "kept": kept,
        "within_fold_auc_change": {h: float(np.max(np.abs(v))) if v else None for h, v in within.items()},
        "panel": panel,
        "names": names,
    }


def goal_margins(pooled: pd.DataFrame, resamples: int = 1000) -> dict:
    """How sure the 90-day goals are: the curve's pooled ROC-AUC minus the rules' and the oracle's
    on bootstrap samples of the accounts (models.metrics `bootstrap_roc_auc`), with their 95%
    intervals and the share of samples meeting each goal (with a few hundred churn events an
    interval spans about ±0.03)."""
    from models.metrics import bootstrap_roc_auc, interval_95

    known = pooled[pooled["churned_within_90d"].notna()]
    frames = {m: known[known["model"] == m].reset_index(drop=True) for m in ("lightgbm", "rules", "oracle")}
    frames = {m: f for m, f in frames.items() if len(f)}
    first = frames["lightgbm"]
    samples = bootstrap_roc_auc(
        first["churned_within_90d"].to_numpy(dtype=float),
        {m: f["p_90d"].to_numpy() for m, f in frames.items()},
        first["account_id"].to_numpy(),
        resamples,
    )
    out = {"events": int(first["churned_within_90d"].sum()), "resamples": resamples}
    for other, goal in (("rules", 0.10), ("oracle", -0.02)):
        if other in samples:
            margin = samples["lightgbm"] - samples[other]
            out[f"minus_{other}"] = {
                "interval_95": [round(v, 4) for v in interval_95(margin)],
                "sd": round(float(np.nanstd(margin)), 4),
                "share_meeting_goal": round(float((margin[~np.isnan(margin)] >= goal).mean()), 3),
            }
    return out


def interval_seconds(pooled: pd.DataFrame) -> float:
    """What the backtest's ROC-AUC intervals cost: models.metrics `roc_auc_interval` for every model
    and horizon of the pooled backtest, as `churn evaluate` computes them (benchmarks/intervals.py
    times one on synthetic rows of other sizes)."""
    from core.vocabulary import CURVE_COLUMNS, LABELS
    from models.backtest import RAW_MODEL
    from models.metrics import roc_auc_interval

    started = time.perf_counter()
    for _, frame in pooled[pooled["model"] != RAW_MODEL].groupby("model"):  # the models `churn evaluate` scores
        for label, column in zip(LABELS, CURVE_COLUMNS, strict=True):
            known = frame[frame[label].notna()]
            if known[label].nunique() < 2:  # as score_metrics: no interval without both outcomes
                continue
            roc_auc_interval(
                known[label].to_numpy(dtype=float), known[column].to_numpy(), known["account_id"].to_numpy()
            )
    return time.perf_counter() - started


def distinct_p90(panel: pd.DataFrame, names: list[str], params) -> dict:
    """The model `churn train` fits (every snapshot), scored at the latest cutoff: the share of
    accounts whose p_90d no other account shares, and the fit's time."""
    from models.curve import fit_curve

    started = time.perf_counter()
    model = fit_curve(panel, names, params)
    seconds = time.perf_counter() - started
    latest = panel[panel["cutoff"] == panel["cutoff"].max()]
    p90, raw90 = pd.Series(model.predict_curve(latest)[:, 2]), pd.Series(model.raw_curve(latest)[:, 2])
    return {
        "accounts": len(p90),
        "distinct_p90d_share": float((~p90.duplicated(keep=False)).mean()),
        "largest_tie": int(p90.value_counts().max()),
        "distinct_raw_p90d_share": float((~raw90.duplicated(keep=False)).mean()),
        "final_fit_s": round(seconds, 1),
        "kept": model.info["kept"],
        "search": model.info["search"],
    }


def seed_spread(features_dir: Path, params, folds: int, seeds: list[int], first: float) -> dict[int, float]:
    """The curve's pooled 90-day ROC-AUC of the same backtest refitted with other LightGBM seeds
    (`first`: the configured seed's): bagging and column sampling draw with the seed, so the spread
    is the noise of one fit on these features, whatever the CPU."""
    out = {params.seed: first}
    for seed in seeds:
        table = backtest(features_dir, params.model_copy(update={"seed": seed}), folds, curve_only=True)["table"]
        out[seed] = round(float(table.query("model == 'lightgbm' and horizon_days == 90")["roc_auc"].iloc[0]), 4)
    return out


def main() -> None:
    from core.vocabulary import HORIZONS
    from models.backtest import RAW_MODEL
    from pipelines.models import load_model_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--features",
        type=Path,
        nargs="*",
        default=None,
        help="`churn features` outputs [default: build the three bases]",
    )
    parser.add_argument(
        "--no-text",
        action="store_true",
        help="build the default bases without text signals (faster, not the goals' setting)",
    )
    parser.add_argument(
        "--seeds",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[],
        help="LightGBM seeds to refit each backtest with besides the configured one, e.g. 1,2,3: "
        "prints the curve's 90-day ROC-AUC by seed (one backtest's time per seed)",
    )
    args = parser.parse_args()
    config = load_model_config(Path(__file__).resolve().parent.parent / "config")
    folders = args.features or [
        build(Path(tempfile.mkdtemp(prefix="bench-quality-")), n, seed, not args.no_text) for n, seed in DEFAULT_BASES
    ]
    results = []
    for folder in folders:
        started = time.perf_counter()
        run = backtest(folder, config.curve, config.folds)
        seconds = time.perf_counter() - started
        table = run["table"]
        auc = table.pivot_table(index="model", columns="horizon_days", values="roc_auc")
        ece = table.pivot_table(index="model", columns="horizon_days", values="ece")
        final = distinct_p90(run["panel"], run["names"], config.curve)
        margins = goal_margins(run["pooled"])
        intervals_s = interval_seconds(run["pooled"])
        row = {
            "features": str(folder),
            "snapshots": len(run["panel"]),
            "accounts": int(run["panel"]["account_id"].nunique()),
            "backtest_s": round(seconds, 1),
            "roc_auc_intervals_s": round(intervals_s, 2),
            "roc_auc_90d": {m: round(float(auc.loc[m, 90]), 4) for m in auc.index if 90 in auc.columns},
            "ece": {str(h): round(float(ece.loc["lightgbm", h]), 4) for h in ece.columns},
            "calibration_auc_change_pooled": {
                str(h): round(float(auc.loc["lightgbm", h] - auc.loc[RAW_MODEL, h]), 4) for h in auc.columns
            },
            "calibration_auc_change_within_fold": run["within_fold_auc_change"],
            "goal_margins_90d": margins,
            "kept_by_fold": run["kept"],
            **final,
            "roc_auc": {m: {str(h): round(float(v), 4) for h, v in auc.loc[m].items()} for m in auc.index},
        }
        lgb, rules, oracle = (row["roc_auc_90d"].get(m) for m in ("lightgbm", "rules", "oracle"))
        row["goals"] = {
            "oracle_minus_0.02": None if oracle is None else lgb >= oracle - 0.02,
            "rules_plus_0.10": lgb >= rules + 0.10,
            "ece_0.02": all(v <= 0.02 for v in row["ece"].values()),
            "distinct_p90d_95pct": final["distinct_p90d_share"] >= 0.95,
            "calibration_auc_0.002": all(abs(v) < 0.002 for v in row["calibration_auc_change_pooled"].values()),
        }
        results.append(row)
        print(
            f"{folder}: {row['accounts']:,} accounts, {row['snapshots']:,} snapshots; backtest {seconds:.0f} "
            f"s, final fit {final['final_fit_s']} s; its ROC-AUC intervals {intervals_s:.2f} s "
            f"({intervals_s / seconds:.1%} of the backtest)"
        )
        print("  90-day ROC-AUC " + ", ".join(f"{m} {v:.4f}" for m, v in row["roc_auc_90d"].items()))
        print(
            f"  90-day margins over {margins['events']} churn events, 95% bootstrap interval (accounts resampled): "
            + "; ".join(
                f"lightgbm - {m} [{v['interval_95'][0]:+.4f}, {v['interval_95'][1]:+.4f}], "
                f"goal met in {v['share_meeting_goal']:.0%} of samples"
                for m, v in ((k.removeprefix("minus_"), v) for k, v in margins.items() if k.startswith("minus_"))
            )
        )
        print("  ECE " + ", ".join(f"{h}d {v:.4f}" for h, v in row["ece"].items()))
        print(
            "  calibration's ROC-AUC change, pooled backtest "
            + ", ".join(f"{h}d {v:+.4f}" for h, v in row["calibration_auc_change_pooled"].items())
            + "; within a fold at most "
            + ", ".join(f"{h}d {v:.1e}" for h, v in row["calibration_auc_change_within_fold"].items() if v is not None)
        )
        print(
            f"  search candidates kept by fold {run['kept']}, by the final fit {final['kept']}; distinct p_90d at the latest cutoff "
            f"{final['distinct_p90d_share']:.1%} of {final['accounts']:,} accounts (raw "
            f"{final['distinct_raw_p90d_share']:.1%}, largest tie {final['largest_tie']})"
        )
        if args.seeds:
            by_seed = seed_spread(folder, config.curve, config.folds, args.seeds, row["roc_auc_90d"]["lightgbm"])
            row["lightgbm_roc_auc_90d_by_seed"] = by_seed
            values = list(by_seed.values())
            print(
                "  90-day ROC-AUC of the curve by LightGBM seed "
                + ", ".join(f"{k} {v:.4f}" for k, v in by_seed.items())
                + f"; mean {np.mean(values):.4f}, range {max(values) - min(values):.4f}"
            )
        print(
            "  goals: "
            + ", ".join(f"{k} {'met' if v else ('n/a' if v is None else 'NOT met')}" for k, v in row["goals"].items()),
            flush=True,
        )
    save("quality", {"horizons": list(HORIZONS), "bases": results})


if __name__ == "__main__":
    main()
