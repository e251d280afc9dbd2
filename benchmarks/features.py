"""Snapshot panel speed and memory.

Simulates a base once per size (not timed), then times what `churn features` does (read and
validate the tables, build the panel block by block, write it) over 24 monthly cutoffs in a fresh
subprocess, so peak memory is its own; and, up to --naive-up-to accounts, the naive approach that
rebuilds every family cutoff by cutoff on tables held in memory.
Goals (issue 3, 2 cores): 10k accounts x 730 days x 24 monthly cutoffs <= 60 s;
100k accounts <= 10 min and <= 8 GB.

    python benchmarks/features.py                   # 10k and 100k
    python benchmarks/features.py --sizes 10000     # one size
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
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._record import save

CHILD = r"""
import json, sys, time
from pipelines.features import run_features
from core.contracts import load_tables
from features.panel import build_features, data_range, make_cutoffs, snapshot_keys
data, out, naive = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
start = "2024-01-31"  # 24 monthly cutoffs, 2024-01-31 .. 2025-12-21
t0 = time.perf_counter()
summary = run_features(data, out, start=start, every="30d")  # text off: the default CLI path adds the sentiment model
import resource
result = {  # peak memory before the naive part
    "panel_s": time.perf_counter() - t0,
    "snapshots": summary["snapshots"],
    "cutoffs": len(summary["cutoffs"]),
    "features": summary["features"],
    "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
}
if naive:
    tables = load_tables(data).tables
    first, end = data_range(tables)
    t1 = time.perf_counter()
    for cutoff in make_cutoffs(first, end, start=start, every="30d"):  # rebuild every index for one cutoff at a time
        build_features(tables, snapshot_keys(tables, [cutoff]))
    result["naive_s"] = time.perf_counter() - t1
print(json.dumps(result))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument(
        "--naive-up-to", type=int, default=10_000, help="also time the naive per-cutoff build up to this size"
    )
    args = parser.parse_args()
    from simulation.config import SimulationConfig
    from simulation.simulate import simulate

    print(f"feature panel benchmark on {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    results = []
    for accounts in sorted(args.sizes):
        root = Path(tempfile.mkdtemp(prefix="bench-feat-"))
        try:
            simulate(SimulationConfig(accounts=accounts, days=args.days, seed=42), root / "data")
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    str(root / "data"),
                    str(root / "features"),
                    "1" if accounts <= args.naive_up_to else "0",
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(proc.stdout.strip().splitlines()[-1]) | {"accounts": accounts}
            peak = r["peak_rss_gib"]
            results.append(r)
            line = (
                f"{accounts:>8,} accounts x {args.days} days x {r['cutoffs']} cutoffs: `churn features` {r['panel_s']:6.1f} s "
                f"(reading, validating, building, writing), {r['snapshots']:,} snapshots x {r['features']} features, "
                f"{r['snapshots'] / r['panel_s']:,.0f} snapshots/s, peak RSS {peak:.2f} GiB"
            )
            if "naive_s" in r:
                line += f"; naive per-cutoff rebuild {r['naive_s']:.1f} s ({r['naive_s'] / r['panel_s']:.1f}x slower)"
            print(line, flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    save("features", results)


if __name__ == "__main__":
    main()
