"""The Dask path against the default one on the same data: `build-features` with its blocks on a
local Dask cluster versus on threads, and one booster grown with lightgbm's Dask estimator versus
lightgbm.train. Prints wall times and checks the panels are equal.

    python benchmarks/dask_path.py [--data DIR] [--accounts 4000] [--workers 2] [--block 1000]

On one machine a cluster adds work (processes, shipping data) rather than cores; the figures show
that overhead, which a cluster of several machines pays back.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import os
import tempfile
import time

from benchmarks._record import save


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=None, help="input tables [default: simulate --accounts]")
    parser.add_argument("--accounts", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--block", type=int, default=1000, help="accounts per block (account_block)")
    parser.add_argument("--text", action="store_true", help="text signals too (each worker loads the sentiment model)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-dask-"))
    os.environ.update(
        {
            "PREFECT_HOME": str(root / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
    )
    config = root / "config"
    config.mkdir()
    (config / "features.yaml").write_text(f"account_block: {args.block}\n")
    os.environ["CHURN_CONFIG_DIR"] = str(config)
    os.environ["CHURN_TEXT_CACHE"] = str(root / "cache.sqlite")
    data = args.data
    if data is None:
        from simulation.config import SimulationConfig
        from simulation.simulate import simulate

        data = root / "data"
        simulate(SimulationConfig(accounts=args.accounts, days=730, seed=3), data)
    import distributed
    import pandas as pd
    from prefect.testing.utilities import prefect_test_harness

    from pipelines.features import read_snapshots
    from pipelines.flows import build_features, task_runner

    with prefect_test_harness(server_startup_timeout=120):
        from core.settings import load_settings

        t = time.perf_counter()
        build_features.with_options(task_runner=task_runner(load_settings()))(
            str(data), str(root / "threads"), "30d", args.text
        )
        threads = time.perf_counter() - t
        t = time.perf_counter()
        with distributed.LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            started = time.perf_counter() - t
            os.environ["CHURN_DASK_ADDRESS"] = cluster.scheduler_address
            t = time.perf_counter()
            summary = build_features.with_options(task_runner=task_runner(load_settings()))(
                str(data), str(root / "dask"), "30d", args.text
            )
            on_dask = time.perf_counter() - t
            equal = read_snapshots(root / "threads").equals(read_snapshots(root / "dask"))
            results = {
                "accounts": summary["accounts"],
                "snapshots": summary["snapshots"],
                "blocks": summary["blocks"],
                "text": args.text,
                "features_threads_s": round(threads, 1),
                "features_dask_s": round(on_dask, 1),
                "cluster_start_s": round(started, 1),
                "panels_identical": equal,
                "fit": {},
            }
            print(
                f"features, {summary['accounts']:,} accounts, {summary['snapshots']:,} snapshots, "
                f"{summary['blocks']} blocks, text {args.text}: "
                f"threads ({load_settings().workers}) {threads:.1f} s; Dask, {args.workers} workers {on_dask:.1f} s "
                f"(+{started:.1f} s to start the cluster); panels identical: {equal}",
                flush=True,
            )

            from models.curve import CurveParams, LocalTrainer, fit_curve
            from models.dask_training import DaskTrainer
            from pipelines.models import feature_names

            panel = read_snapshots(root / "dask")
            names = feature_names(panel)
            params = CurveParams()
            with distributed.Client(cluster.scheduler_address) as client:
                for label, trainer in (("lightgbm.train", LocalTrainer()), ("lightgbm.dask", DaskTrainer(client))):
                    t = time.perf_counter()
                    model = fit_curve(panel, names, params, trainer)
                    seconds = time.perf_counter() - t
                    latest = panel[panel["cutoff"] == panel["cutoff"].max()]
                    p90 = pd.Series(model.predict_curve(latest)[:, 2])
                    results["fit"][label] = {
                        "seconds": round(seconds, 1),
                        "trees": model.info["best_iteration"][0],
                        "mean_p90d": round(float(p90.mean()), 4),
                    }
                    print(
                        f"fit on {len(panel):,} snapshots with {label}: {seconds:.1f} s, kept {model.info['best_iteration'][0]} trees, "
                        f"mean 90-day risk at the last cutoff {p90.mean():.4f}",
                        flush=True,
                    )

    save("dask_path", results)


if __name__ == "__main__":
    main()
