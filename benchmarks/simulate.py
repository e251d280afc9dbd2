"""Simulator speed and memory: wall time and peak resident memory per size.

Each size runs in a fresh subprocess so its peak memory is its own. Goals (issue 2, 2 cores):
10k accounts x 730 days <= 60 s; 100k accounts x 730 days <= 10 min and <= 8 GB.

    python benchmarks/simulate.py                 # 10k and 100k
    python benchmarks/simulate.py --sizes 10000   # just one size
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and its files would shadow the project's
# packages of the same name (features, models, serving): import the project instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._record import save

CHILD = """
import json, sys, time
from simulation.config import SimulationConfig
from simulation.simulate import simulate
accounts, days, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
summary = simulate(SimulationConfig(accounts=accounts, days=days, seed=42), out)
print(json.dumps(summary.to_dict()))
"""


def run(accounts: int, days: int) -> dict:
    out = Path(tempfile.mkdtemp(prefix="bench-sim-"))
    try:
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(accounts), str(days), str(out / "data")],
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - started
        # ru_maxrss of children is the largest peak among finished children (KiB on Linux);
        # sizes run in increasing order, so it is this run's peak.
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        disk_mib = sum(p.stat().st_size for p in (out / "data").rglob("*") if p.is_file()) / 2**20
        return {
            "accounts": accounts,
            "days": days,
            "wall_s": round(wall, 1),
            "peak_rss_gib": round(peak_gib, 2),
            "disk_mib": round(disk_mib),
            "rows": summary["rows"],
            "yearly_churn_rate": summary["annual_churn_rate"],
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="account counts to run")
    parser.add_argument("--days", type=int, default=730)
    args = parser.parse_args()
    print(f"simulator benchmark on {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    results = []
    for accounts in sorted(args.sizes):
        r = run(accounts, args.days)
        results.append(r)
        rows = sum(r["rows"].values())
        print(
            f"{accounts:>8,} accounts x {args.days} days: {r['wall_s']:>7.1f} s wall, peak RSS {r['peak_rss_gib']:.2f} GiB, "
            f"{rows:,} rows ({r['rows']['usage_daily']:,} usage, {r['rows']['ticket_messages']:,} messages), "
            f"{r['disk_mib']:,} MiB on disk, yearly churn {r['yearly_churn_rate']:.1%}",
            flush=True,
        )
    save("simulate", results)


if __name__ == "__main__":
    main()
