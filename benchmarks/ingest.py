"""`churn ingest` of a product analytics stream: events -> usage_daily, speed and memory.

Generates (not timed) a Segment-like event export as a Parquet file written in row groups: N events
over 5,000 accounts and 180 days, in time order, with message ids (0.5% re-sent duplicates), about
1% of events without a user id, epoch-millisecond UTC timestamps and a session length on session-end
events; plus a CRM accounts CSV and a mapping file. Then times `run_ingest` end to end (stream,
aggregate, cut to contracts, fill quiet days, validate, write) in a fresh subprocess, so its peak
memory is its own. Goal (issue 15, 2 cores): 20 million events <= 120 s and <= 4 GB.

    python benchmarks/ingest.py                      # 20 million events
    python benchmarks/ingest.py --events 2000000     # a quick run
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and its files would shadow the project's
# packages of the same name (features, models, serving): import the project instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from benchmarks._record import save  # noqa: E402
import argparse
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

CHILD = r"""
import json, sys, time
from ingest.run import run_ingest
t0 = time.perf_counter()
summary = run_ingest(sys.argv[1], sys.argv[2])
print(json.dumps({"wall_s": time.perf_counter() - t0, "summary": summary}))
"""

EVENTS = ["Signed In", "Page Viewed", "Report Created", "Dashboard Shared", "Export Run", "Alert Configured", "Search",
          "API Request", "Session End", "Invite Sent"]
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
    pd.DataFrame({"Id": ids, "Name": [f"Company {i}" for i in range(accounts)], "Type": rng.choice(["smb", "mid_market", "enterprise"], accounts),
                  "Seats__c": users_per * 2, "AnnualRevenue": rng.integers(5_000, 500_000, accounts),
                  "CreatedDate": (START - pd.to_timedelta(rng.integers(0, 700, accounts), unit="D")).strftime("%Y-%m-%d"),
                  "Billing_Term__c": rng.choice(["annual", "monthly"], accounts)}).to_csv(folder / "accounts.csv", index=False)
    user_names = pa.array([f"{a}-u{k:02d}" for a, n in zip(ids, users_per, strict=True) for k in range(n)])
    user_offset = np.concatenate([[0], np.cumsum(users_per)[:-1]])
    account_p = activity / activity.sum()
    names = pa.array(EVENTS)
    schema = pa.schema([("timestamp", pa.int64()), ("group_id", pa.string()), ("user_id", pa.string()), ("event", pa.string()),
                        ("message_id", pa.string()), ("session_seconds", pa.float64())])
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
            table = pa.table({"timestamp": stamp, "group_id": account_array.take(pa.array(account)), "user_id": user_ids,
                              "event": names.take(pa.array(event)), "message_id": message,
                              "session_seconds": pa.array(session, from_pandas=True)}, schema=schema)
            resent = np.flatnonzero(rng.random(n) < 0.005)  # retries: the same message again
            writer.write_table(pa.concat_tables([table, table.take(pa.array(resent))]), row_group_size=chunk + len(resent))
    (folder / "mapping.yaml").write_text(MAPPING)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--accounts", type=int, default=5_000)
    parser.add_argument("--days", type=int, default=180)
    args = parser.parse_args()
    print(f"ingest benchmark on {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    folder = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        started = time.perf_counter()
        generate(folder, args.events, args.accounts, args.days)
        size_mib = (folder / "events.parquet").stat().st_size / 2**20
        print(f"generated {args.events:,} events (+0.5% re-sent) over {args.accounts:,} accounts x {args.days} days: "
              f"{size_mib:,.0f} MiB of Parquet in {time.perf_counter() - started:.0f}s (not timed)", flush=True)
        proc = subprocess.run([sys.executable, "-c", CHILD, str(folder / "mapping.yaml"), str(folder / "out")],
                              capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
        if proc.returncode:
            sys.exit(f"ingest failed:\n{proc.stderr}")
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        summary = child["summary"]
        events_source = next(s for s in summary["sources"] if s["section"] == "events")
        result = {"events": events_source["rows_in"], "accounts": args.accounts, "days": args.days, "wall_s": round(child["wall_s"], 1),
                  "stream_s": events_source["seconds"], "events_per_s": round(events_source["rows_in"] / child["wall_s"]),
                  "peak_rss_gib": round(peak_gib, 2), "usage_rows": summary["tables"]["usage_daily"],
                  "duplicates": events_source["duplicates"], "quiet_days": events_source["quiet_days"]}
        print(f"{result['events']:>12,} events -> {result['usage_rows']:,} usage rows: {result['wall_s']:.1f} s wall end to end "
              f"(stream and aggregate {result['stream_s']:.1f} s), {result['events_per_s']:,} events/s, peak RSS {result['peak_rss_gib']:.2f} GiB; "
              f"{result['duplicates']:,} duplicates dropped, {result['quiet_days']:,} quiet days written as zeros", flush=True)
        save("ingest" if args.events == 20_000_000 else f"ingest_{args.events}", result)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
