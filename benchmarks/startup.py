"""What a command costs before it does any work: `churn --help`, `churn validate`, and the fixed
overhead of a pipeline command (Prefect) on its first and later runs, against the same work run
without Prefect. Goals on 2 cores: --help and validate under 3 s; a later pipeline command's
overhead under 3 s.

    python benchmarks/startup.py [--accounts 300] [--rounds 3]

Each command runs as its own process (as a user runs it), in a fresh Prefect state folder, so the
first pipeline command starts the local Prefect server and the later ones reuse it; the server is
stopped at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import os
import subprocess
import tempfile
import time

from benchmarks._record import save

ROOT = Path(__file__).resolve().parent.parent
CHURN = [sys.executable, "-m", "pipelines.cli"]
#: the work of `churn features --no-text` without Prefect: the floor the overhead is measured against
FLOOR = """
import sys
from pathlib import Path
from core.settings import load_settings
from pipelines import features as feat
settings = load_settings()
feat.run_features(Path(sys.argv[1]), Path(sys.argv[2]), every="30d", params=feat.load_feature_params(settings.config_dir), text=None)
"""


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {
            **os.environ,
            "CHURN_SETTINGS_FILE": "/nonexistent",
            "CHURN_PREFECT_DIR": str(tmp / "prefect"),
            "CHURN_MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
            "CHURN_STORE_URL": f"sqlite:///{tmp}/store.db",
        }
        env.pop("PREFECT_API_URL", None)
        timed(
            [
                *CHURN,
                "simulate",
                "--accounts",
                str(args.accounts),
                "--days",
                "400",
                "--seed",
                "3",
                "--out",
                str(tmp / "sim"),
            ],
            env,
        )
        results = {
            "accounts": args.accounts,
            "help": timed([*CHURN, "--help"], env),
            "validate": timed([*CHURN, "validate", "--data", str(tmp / "sim")], env),
        }
        print(
            f"churn --help {results['help']:.2f} s; churn validate ({args.accounts} accounts x 400 days) {results['validate']:.2f} s"
        )
        rounds = []
        try:
            for r in range(args.rounds):
                floor = timed([sys.executable, "-c", FLOOR, str(tmp / "sim"), str(tmp / f"floor{r}")], env)
                command = timed(
                    [*CHURN, "features", "--data", str(tmp / "sim"), "--out", str(tmp / f"features{r}"), "--no-text"],
                    env,
                )
                rounds.append(
                    {
                        "work_without_prefect": round(floor, 2),
                        "command": round(command, 2),
                        "overhead": round(command - floor, 2),
                    }
                )
                print(
                    f"round {r + 1}{' (starts the local Prefect server)' if r == 0 else ''}: churn features --no-text {command:.1f} s, "
                    f"the same work without Prefect {floor:.1f} s: overhead {command - floor:.1f} s"
                )
        finally:
            subprocess.run(
                [*CHURN, "prefect", "stop"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
        results["features_rounds"] = rounds
    save("startup", results)


if __name__ == "__main__":
    main()
