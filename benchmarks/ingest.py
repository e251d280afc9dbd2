"""`churn ingest` of a product analytics stream: events -> usage_daily, speed and memory.

Generates (not timed) a Segment-like event export as a Parquet file written in row groups: N events
over 5,000 accounts and 180 days, in time order, with message ids (0.5% re-sent duplicates), about
1% of events without a user id, epoch-millisecond UTC timestamps and a session length on session-end
events; plus a CRM accounts CSV and a mapping file. Then times `run_ingest` end to end (stream,
aggregate, cut to contracts, fill quiet days, validate, write) in a fresh subprocess, so its peak
memory is its own. Goal (issue 15, 2 cores): 20 million events <= 120 s and <= 4 GB.

Users' machines often lack AVX-512. On a CPU that has it, the same ingest then runs a second time
in another subprocess with numpy's AVX-512 code paths disabled (NPY_DISABLE_CPU_FEATURES) and
pyarrow held to AVX2 (ARROW_USER_SIMD_LEVEL=AVX2), and both times, their ratio and each run's peak
RSS are printed: what a user's AVX2-only machine of the same clock would see.

    python benchmarks/ingest.py                      # 20 million events (and the AVX2-only run)
    python benchmarks/ingest.py --events 2000000     # a quick run
    python benchmarks/ingest.py --no-avx2            # as is only
    python benchmarks/ingest.py --rounds 3           # pairs in alternating order, medians compared
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
import statistics
import subprocess
import tempfile
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks._record import save

CHILD = r"""
import json, resource, sys, time
import numpy, pyarrow
from ingest.run import run_ingest
t0 = time.perf_counter()
summary = run_ingest(sys.argv[1], sys.argv[2])
wall_s = time.perf_counter() - t0
# the SIMD levels in force, read back: proof that the environment of an AVX2-only run took effect
print(json.dumps({"wall_s": wall_s, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "summary": summary,
                  "numpy_simd": numpy.show_config(mode="dicts")["SIMD Extensions"]["found"],
                  "arrow_simd": pyarrow.runtime_info().simd_level}))
"""
ROOT = Path(__file__).resolve().parent.parent

EVENTS = [
    "Signed In",
    "Page Viewed",
    "Report Created",
    "Dashboard Shared",
    "Export Run",
    "Alert Configured",
    "Search",
    "API Request",
    "Session End",
    "Invite Sent",
]
WEIGHTS = np.array([6, 40, 8, 3, 4, 1, 15, 15, 6, 2], dtype="float64")
START = pd.Timestamp("2025-01-01", tz="UTC")
MAPPING = """
tables:
  accounts:
    source: accounts.csv
    columns: {account_id: Id, name: Name, segment: Type, seats: Seats__c, arr: AnnualRevenue, contract_start: CreatedDate,
              billing: Billing_Term__c}
    constants: {industry: software, region: emea, plan: growth, csm_owner: null, exec_sponsor: false}
events:
  source: events.parquet
  columns: {timestamp: timestamp, account_id: group_id, user_id: user_id, event: event, event_id: message_id,
            duration: session_seconds}
  logins: [Signed In]
  key_features: [Report Created, Dashboard Shared, Export Run, Alert Configured]
  api: [API Request]
"""


def generate(folder: Path, events: int, accounts: int, days: int, seed: int = 7, chunk: int = 1_000_000) -> None:
    """The accounts CSV, the events Parquet file (time-ordered, one row group per chunk), the mapping."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"acc_{i:05d}" for i in range(accounts)])
    users_per = rng.integers(3, 60, accounts)
    activity = rng.lognormal(0, 1, accounts)
    pd.DataFrame(
        {
            "Id": ids,
            "Name": [f"Company {i}" for i in range(accounts)],
            "Type": rng.choice(["smb", "mid_market", "enterprise"], accounts),
            "Seats__c": users_per * 2,
            "AnnualRevenue": rng.integers(5_000, 500_000, accounts),
            "CreatedDate": (START - pd.to_timedelta(rng.integers(0, 700, accounts), unit="D")).strftime("%Y-%m-%d"),
            "Billing_Term__c": rng.choice(["annual", "monthly"], accounts),
        }
    ).to_csv(folder / "accounts.csv", index=False)
    user_names = pa.array([f"{a}-u{k:02d}" for a, n in zip(ids, users_per, strict=True) for k in range(n)])
    user_offset = np.concatenate([[0], np.cumsum(users_per)[:-1]])
    account_p = activity / activity.sum()
    names = pa.array(EVENTS)
    schema = pa.schema(
        [
            ("timestamp", pa.int64()),
            ("group_id", pa.string()),
            ("user_id", pa.string()),
            ("event", pa.string()),
            ("message_id", pa.string()),
            ("session_seconds", pa.float64()),
        ]
    )
    account_array = pa.array(ids)
    with pq.ParquetWriter(folder / "events.parquet", schema) as writer:
        for first in range(0, events, chunk):
            n = min(chunk, events - first)
            # time order: this chunk covers its share of the window
            lo, hi = first / events * days * 86_400_000, (first + n) / events * days * 86_400_000
            stamp = np.sort(rng.uniform(lo, hi, n)).astype("int64") + START.value // 1_000_000
            account = rng.choice(accounts, n, p=account_p)
            user = user_offset[account] + (rng.random(n) * users_per[account]).astype("int64")
            event = rng.choice(len(EVENTS), n, p=WEIGHTS / WEIGHTS.sum())
            message = pc.cast(pa.array(np.arange(first, first + n)), pa.string())
            user_ids = user_names.take(pa.array(user))
            user_ids = pc.if_else(pa.array(rng.random(n) < 0.01), pa.scalar(None, pa.string()), user_ids)
            session = np.where(event == EVENTS.index("Session End"), rng.exponential(900, n), np.nan)
            table = pa.table(
                {
                    "timestamp": stamp,
                    "group_id": account_array.take(pa.array(account)),
                    "user_id": user_ids,
                    "event": names.take(pa.array(event)),
                    "message_id": message,
                    "session_seconds": pa.array(session, from_pandas=True),
                },
                schema=schema,
            )
            resent = np.flatnonzero(rng.random(n) < 0.005)  # retries: the same message again
            writer.write_table(
                pa.concat_tables([table, table.take(pa.array(resent))]), row_group_size=chunk + len(resent)
            )
    (folder / "mapping.yaml").write_text(MAPPING)


def avx512_targets() -> list[str]:
    """The AVX-512 code paths numpy found on this CPU, as NPY_DISABLE_CPU_FEATURES names them.

    Only dispatched targets can be disabled (numpy 2.4: X86_V4, AVX512_ICL, AVX512_SPR; older
    numpy: AVX512F, AVX512_SKX, ...), so they are read from show_config's "found", not from the
    CPU's flags (AVX512F, AVX512BW, ... stay true in `__cpu_features__` whatever is disabled).
    """
    found = np.show_config(mode="dicts")["SIMD Extensions"]["found"]
    return [target for target in found if target.startswith("AVX512") or target == "X86_V4"]


def run_child(folder: Path, out: str, env: dict[str, str], args: argparse.Namespace) -> dict:
    """`run_ingest` in a fresh subprocess with `env` added; its figures."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder / "mapping.yaml"), str(folder / out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
    )
    if proc.returncode:
        sys.exit(f"ingest failed ({out}):\n{proc.stderr}")
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    summary = child["summary"]
    events_source = next(s for s in summary["sources"] if s["section"] == "events")
    return {
        "events": events_source["rows_in"],
        "accounts": args.accounts,
        "days": args.days,
        "wall_s": round(child["wall_s"], 1),
        "stream_s": events_source["seconds"],
        "events_per_s": round(events_source["rows_in"] / child["wall_s"]),
        "peak_rss_gib": round(child["peak_rss_kib"] / 2**20, 2),
        "usage_rows": summary["tables"]["usage_daily"],
        "duplicates": events_source["duplicates"],
        "quiet_days": events_source["quiet_days"],
        "tables": summary["tables"],
        "numpy_simd": child["numpy_simd"],
        "arrow_simd": child["arrow_simd"],
    }


def describe_run(label: str, result: dict) -> str:
    """One run's figures as one line, with the SIMD levels it ran at."""
    return (
        f"{label}: {result['events']:>12,} events -> {result['usage_rows']:,} usage rows: {result['wall_s']:.1f} s wall end to end "
        f"(stream and aggregate {result['stream_s']:.1f} s), {result['events_per_s']:,} events/s, "
        f"peak RSS {result['peak_rss_gib']:.2f} GiB; {result['duplicates']:,} duplicates dropped, "
        f"{result['quiet_days']:,} quiet days written as zeros "
        f"[numpy {'/'.join(result['numpy_simd']) or 'baseline'}, pyarrow {result['arrow_simd']}]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--accounts", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument(
        "--no-avx2",
        dest="avx2",
        action="store_false",
        help="skip the second, AVX2-only run (it runs by default when the CPU has AVX-512)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="pairs of runs in alternating order (as is first, then AVX2 first, ...), compared by their "
        "median time: more rounds tame the noise of a busy machine",
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: expected 1 or more")
    avx512 = avx512_targets()
    print(
        f"ingest benchmark on {os.cpu_count()} cores, Python {sys.version.split()[0]}, numpy {np.__version__} "
        f"(AVX-512 targets: {', '.join(avx512) or 'none'}), pyarrow {pa.__version__} (SIMD {pa.runtime_info().simd_level})"
    )
    name = "ingest" if args.events == 20_000_000 else f"ingest_{args.events}"
    folder = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        started = time.perf_counter()
        generate(folder, args.events, args.accounts, args.days)
        size_mib = (folder / "events.parquet").stat().st_size / 2**20
        print(
            f"generated {args.events:,} events (+0.5% re-sent) over {args.accounts:,} accounts x {args.days} days: "
            f"{size_mib:,.0f} MiB of Parquet in {time.perf_counter() - started:.0f}s (not timed)",
            flush=True,
        )
        if not (args.avx2 and avx512):
            as_is = run_child(folder, "out", {}, args)
            print(describe_run("as is", as_is), flush=True)
            save(name, as_is)
            return
        env = {"NPY_DISABLE_CPU_FEATURES": ",".join(avx512), "ARROW_USER_SIMD_LEVEL": "AVX2"}
        modes = {"as is": {}, "AVX2 only": env}
        runs: dict[str, list[dict]] = {mode: [] for mode in modes}
        for round_ in range(args.rounds):
            # alternate which mode goes first: a warmer page cache or a quieter neighbour favours neither
            for mode in list(modes)[:: 1 if round_ % 2 == 0 else -1]:
                result = run_child(folder, f"out-{round_}-{'avx2' if modes[mode] else 'as-is'}", modes[mode], args)
                runs[mode].append(result)
                print(
                    describe_run(mode if args.rounds == 1 else f"{mode} (round {round_ + 1})", result)
                    + f", load average "
                    f"{os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        tables = {json.dumps(r["tables"], sort_keys=True) for results in runs.values() for r in results}
        if len(tables) > 1:
            sys.exit(f"the runs wrote different tables: {' against '.join(sorted(tables))}")
        wall = {mode: statistics.median(r["wall_s"] for r in results) for mode, results in runs.items()}
        peak = {mode: max(r["peak_rss_gib"] for r in results) for mode, results in runs.items()}
        ratio = wall["AVX2 only"] / wall["as is"]
        print(
            f"AVX2 only ({' '.join(f'{k}={v}' for k, v in env.items())}) against as is"
            f"{f', medians of {args.rounds} rounds' if args.rounds > 1 else ''}: {wall['AVX2 only']:.1f} s vs {wall['as is']:.1f} s "
            f"wall, ratio {ratio:.2f}x; peak RSS {peak['AVX2 only']:.2f} GiB vs {peak['as is']:.2f} GiB",
            flush=True,
        )
        save(name, runs["as is"][0])
        save(
            f"{name}_avx2",
            {
                "env": env,
                "rounds": args.rounds,
                "as_is": runs["as is"],
                "avx2_only": runs["AVX2 only"],
                "ratio_of_medians": round(ratio, 3),
                "peak_rss_gib": peak,
            },
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
