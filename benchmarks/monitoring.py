"""Do the monitors (pipelines/monitor.py) stay quiet on a base that does not drift, and speak up on
one that does?

Replays production on a snapshot panel: the risk curve is fitted on the cutoffs up to `--trained`
(labels censored there, as the backtest does), and every later cutoff of the panel is "today":
its snapshot and the model's scores of it are monitored against the training panel's last 365
days, as the daily run does. At each cutoff it records
- feature drift and score distribution as they are (a breach here is a false alarm), and with the
  model's top usage features multiplied by `--factor` for every account (a breach here is a
  detection);
- calibration of that cutoff's scores against the churn table, at each horizon already matured by
  the end of the data.

    python benchmarks/monitoring.py [--features data/demo/features] [--data data/demo] [--trained 2025-03-31] [--factor 0.3]

Defaults: the demo's panel (`churn demo`; 2,000 accounts, 730 days). Writes results/monitoring.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import time

import pandas as pd

from benchmarks._record import save

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    from core.vocabulary import HORIZONS
    from escalation.policy import Monitoring
    from features.registry import feature_specs
    from models.backtest import censor_at
    from models.curve import fit_curve
    from pipelines.features import panel_summary, read_snapshots
    from pipelines.models import churn_times, feature_names, load_model_config
    from pipelines.monitor import (
        IMPORTANCE_ROWS,
        SCORE_HORIZON,
        calibration,
        feature_drift,
        score_distribution,
        top_features,
    )

    parser = argparse.ArgumentParser()
    parser.add_argument("--features", type=Path, default=ROOT / "data/demo/features")
    parser.add_argument("--data", type=Path, default=ROOT / "data/demo")
    parser.add_argument("--trained", default="2025-03-31", help="the model sees cutoffs and outcomes up to this date")
    parser.add_argument("--factor", type=float, default=0.3, help="drifted base: top usage features times this")
    args = parser.parse_args()

    started = time.perf_counter()
    config = Monitoring()
    panel = read_snapshots(args.features)
    panel["cutoff"] = pd.to_datetime(panel["cutoff"], utc=True)
    trained = pd.Timestamp(args.trained, tz="UTC")
    training = censor_at(panel[panel["cutoff"] <= trained], trained)
    model = fit_curve(training, feature_names(training), load_model_config(ROOT / "config").curve)
    reference = training[training["cutoff"] >= training["cutoff"].max() - pd.Timedelta(days=config.reference_days)]
    features = top_features(
        model, reference.sample(min(len(reference), IMPORTANCE_ROWS), random_state=0), config.top_features
    )
    specs = feature_specs()
    usage = [f for f in features if specs[f].family == "usage"]
    reference_scores = model.predict_curve(reference)[:, HORIZONS.index(SCORE_HORIZON)]
    churned_at = churn_times(args.data)
    data_end = pd.Timestamp(panel_summary(args.features).get("data_end") or panel["cutoff"].max())
    print(
        f"model fitted on {training['cutoff'].nunique()} cutoffs up to {trained.date()} in {time.perf_counter() - started:.0f}s; "
        f"top features {features}; drifted: {usage} x {args.factor}",
        file=sys.stderr,
    )

    rows = []
    for cutoff in sorted(panel.loc[panel["cutoff"] > trained, "cutoff"].unique()):
        today = panel[panel["cutoff"] == cutoff]
        drifted = today.assign(**{f: today[f] * args.factor for f in usage})
        scores = model.predict_curve(today)
        runs = {
            h: (pd.Timestamp(cutoff), today.assign(**{f"p_{h}d": scores[:, k]})[["account_id", f"p_{h}d"]])
            for k, h in enumerate(HORIZONS)
            if pd.Timestamp(cutoff) + pd.Timedelta(days=h) <= data_end
        }
        calibrated = calibration(
            runs,
            churned_at,
            data_end,
            first_run=pd.Timestamp(cutoff),
            z_threshold=config.calibration_z,
            tolerance=config.calibration_tolerance,
            min_expected=config.min_expected_churns,
        )
        checks = {"quiet": (today, scores), "drifted": (drifted, model.predict_curve(drifted))}
        row = {"cutoff": str(pd.Timestamp(cutoff).date()), "accounts": len(today)}
        for name, (snapshot, curve) in checks.items():
            drift = feature_drift(reference, snapshot, features, config.drift_psi)
            dist = score_distribution(
                reference_scores, curve[:, HORIZONS.index(SCORE_HORIZON)], config.score_psi, config.score_mean_shift
            )
            row[name] = {
                "drift_state": drift.state,
                "largest_psi": drift.value,
                "worst": max(drift.details["features"], key=lambda r: r["psi"])["feature"],
                "score_state": dist.state,
                "score_psi": dist.value,
                "mean_shift": dist.details["mean_shift"],
            }
        row["calibration"] = {
            "state": calibrated.state,
            "horizons": [
                {k: h[k] for k in ("horizon_days", "state", "observed_churns", "expected_churns", "z") if k in h}
                for h in calibrated.details["horizons"]
                if "run" in h
            ],
        }
        rows.append(row)
        q, d = row["quiet"], row["drifted"]
        print(
            f"{row['cutoff']}: quiet PSI {q['largest_psi']:.3f} ({q['drift_state']}), scores {q['score_psi']:.3f} ({q['score_state']}); "
            f"drifted PSI {d['largest_psi']:.2f} ({d['drift_state']}), scores {d['score_psi']:.2f} ({d['score_state']}); "
            f"calibration {calibrated.state} "
            + " ".join(f"{h['horizon_days']}d z {h.get('z')}" for h in row["calibration"]["horizons"]),
            file=sys.stderr,
        )

    def count(key: str, state: str, field: str) -> int:
        return sum(r[key][field] == state for r in rows)

    summary = {
        "features": str(args.features),
        "trained_through": args.trained,
        "factor": args.factor,
        "top_features": features,
        "drifted_features": usage,
        "cutoffs": len(rows),
        "false_alarms": {
            "feature_drift": count("quiet", "breach", "drift_state"),
            "score_distribution": count("quiet", "breach", "score_state"),
        },
        "detections": {
            "feature_drift": count("drifted", "breach", "drift_state"),
            "score_distribution": count("drifted", "breach", "score_state"),
        },
        "largest_quiet_psi": max(r["quiet"]["largest_psi"] for r in rows),
        "smallest_drifted_psi": min(r["drifted"]["largest_psi"] for r in rows),
        "calibration": {
            s: sum(r["calibration"]["state"] == s for r in rows) for s in ("ok", "breach", "not_enough_data")
        },
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(
        f"{len(rows)} cutoffs after training: false alarms {summary['false_alarms']}, detections "
        f"{summary['detections']}; largest quiet PSI "
        f"{summary['largest_quiet_psi']:.3f}, smallest drifted {summary['smallest_drifted_psi']:.2f}; calibration {summary['calibration']}",
        file=sys.stderr,
    )
    save("monitoring", summary)


if __name__ == "__main__":
    main()
