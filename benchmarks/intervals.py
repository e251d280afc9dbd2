"""What the ROC-AUC interval of `churn evaluate` costs (models.metrics `roc_auc_interval`: 200
bootstrap samples of the accounts), for one model and horizon, on backtest-shaped rows: each
account scored at several cutoffs, with a churn rate and a score that carries some signal.

    python benchmarks/intervals.py                   # 1,572, 10,000 and 100,000 accounts
    python benchmarks/intervals.py --accounts 5000

A backtest scores 16 of them (4 models x 4 horizons); `benchmarks/quality.py` prints their share
of a real backtest's time.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import time

import numpy as np

from benchmarks._record import save

#: the demo's backtest (1,572 accounts, 11,004 rows), a 10,000-account one and ten times that
DEFAULT_ACCOUNTS = (1572, 10_000, 100_000)
#: backtest rows per account (the demo's: 11,004 / 1,572)
ROWS_PER_ACCOUNT = 7
#: share of rows that churn within the horizon (the simulator's 90-day rate is about 3.4%)
CHURN_RATE = 0.035


def rows(accounts: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outcomes, scores and account ids: an account's rows share its risk, as a backtest's do."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(accounts), ROWS_PER_ACCOUNT)
    risk = rng.normal(size=accounts)[ids]
    y = (rng.random(len(ids)) < CHURN_RATE * np.exp(risk - 0.5)).astype(float)
    return y, risk + rng.normal(size=len(ids)), ids


def main() -> None:
    from models.metrics import INTERVAL_RESAMPLES, roc_auc_interval

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, nargs="*", default=list(DEFAULT_ACCOUNTS))
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs [default: 3]")
    args = parser.parse_args()
    results = []
    for accounts in args.accounts:
        y, p, ids = rows(accounts)
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            low, high = roc_auc_interval(y, p, ids)
            times.append(time.perf_counter() - started)
        row = {
            "accounts": accounts,
            "rows": len(y),
            "resamples": INTERVAL_RESAMPLES,
            "best_s": round(min(times), 3),
            "interval": [round(low, 4), round(high, 4)],
        }
        results.append(row)
        print(
            f"{accounts:>7,} accounts ({len(y):>9,} rows): {row['best_s']:.3f} s per model and horizon "
            f"(best of {args.repeat}; interval {low:.4f} to {high:.4f})",
            flush=True,
        )
    save("intervals", results)


if __name__ == "__main__":
    main()
