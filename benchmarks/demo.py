"""`churn demo` as a new user runs it, stage by stage, with the seconds the transformer takes, and
what an AVX2-only machine would take (issue 17: at most 5 minutes there).

The demo runs in a fresh temporary folder with an empty encoder cache (so the ONNX export and the
static table are made in the run, as on a first run); the local Prefect server is whatever the
machine has (`churn prefect stop` first to time its start too). The transformer's time is measured
in the demo's own process: every forward pass (`TextEncoder.hidden`: the distillation of the static
table, the cascade's uncertain sentences, the scoring step's new messages) and the export.

The estimate for the AVX2-only 2-core machine of issue 17 scales each kind of work by how much
slower that machine ran it. Those ratios were measured with the same code on both machines: the
commit the issue was filed against (15d0cb0), run here as the issue ran it (`churn demo`, quiet,
fresh clone and caches), stage by stage against the issue's own figures from its machine: the
features' text step (then the transformer on every sentence) 200.6 s here and 300.9 s there (1.50),
train 78.6 s and 64 s (0.81), evaluate 68.3 s and 53 s (0.78), score 31.6 s and 56 s (1.77), the
whole demo 422.8 s and 534 s (1.26). So: the transformer's seconds x 1.50, train's x 0.81, and the
rest x 1.77, the largest ratio of any stage (a central reading takes the rest at 1.38, the ratio
of what was left of the old demo outside its text, train, evaluate and score).

    python benchmarks/demo.py [--accounts 2000]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import re
import subprocess
import tempfile
import time

from benchmarks._record import save

#: how many times slower issue 17's AVX2-only machine ran each kind of work (see above)
RATIOS = {"transformer": 1.50, "train": 0.81, "rest": 1.77}
CENTRAL_REST = 1.38


def child(out: Path, accounts: int, record: Path) -> None:
    """In the demo's process: time the transformer's passes and its export, run the demo, write the totals."""
    import threading

    from pipelines.cli import main
    from text.encoder import TextEncoder

    totals = {"forward_s": 0.0, "forward_calls": 0, "export_s": 0.0}
    lock = threading.Lock()

    def timed(name: str, counter: str):
        original = getattr(TextEncoder, name)

        def wrapper(self, *args, **kwargs):
            if name == "hidden":
                self._load()  # the first pass loads (and may export) the model: that is timed as the export
            started = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                with lock:
                    totals[counter] += time.perf_counter() - started
                    totals["forward_calls"] += name == "hidden"

        setattr(TextEncoder, name, wrapper)

    timed("hidden", "forward_s")
    timed("_export", "export_s")
    code = main(["demo", "--out", str(out), "--accounts", str(accounts)])
    record.write_text(json.dumps({**totals, "exit_code": code}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=2000)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--record", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.accounts, args.record)

    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "CHURN_ENCODER_CACHE": str(root / "encoders")}
        for name in ("CHURN_DATA_DIR", "CHURN_SCORES_DIR", "CHURN_MLFLOW_TRACKING_URI", "CHURN_STORE_URL"):
            env.pop(name, None)  # the demo's defaults, under the temporary folder
        record = root / "record.json"
        started = time.perf_counter()
        run = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(root / "data"),
                "--record",
                str(record),
                "--accounts",
                str(args.accounts),
            ],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - started
        if run.returncode != 0 or not record.is_file():
            sys.exit(f"churn demo failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
        totals = json.loads(record.read_text())
    said = run.stderr
    stages = {m[0]: float(m[1]) for m in re.findall(r"(\w+(?: flow)?) took ([\d.]+)s", said)}
    stages.pop("flow", None)
    stages.pop("retrain flow", None)  # the sum of the four stages after it
    demo_s = float(re.search(r"demo finished in ([\d.]+)s", said)[1])
    transformer = totals["forward_s"] + totals["export_s"]
    result = {
        "accounts": args.accounts,
        "wall_s": round(wall, 1),
        "demo_s": demo_s,
        "stages_s": stages,
        "transformer_s": {
            "forward": round(totals["forward_s"], 1),
            "forward_calls": totals["forward_calls"],
            "export": round(totals["export_s"], 1),
        },
        "avx2_estimate_s": {
            "conservative": round(estimate(demo_s, transformer, stages["train"], RATIOS["rest"]), 1),
            "central": round(estimate(demo_s, transformer, stages["train"], CENTRAL_REST), 1),
        },
        "ratios": RATIOS,
    }
    save("demo", result)
    print(
        f"churn demo, {args.accounts:,} accounts, fresh folder and encoder cache: {demo_s:.1f} s ({wall:.1f} s with start-up)"
    )
    print("  " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in stages.items()))
    print(
        f"  the transformer: {totals['forward_s']:.1f} s in {totals['forward_calls']:,} forward passes, "
        f"{totals['export_s']:.1f} s exporting it"
    )
    print(
        f"  on issue 17's AVX2-only machine: about {result['avx2_estimate_s']['conservative']:.0f} s "
        f"(the transformer x {RATIOS['transformer']}, train x {RATIOS['train']}, the rest x {RATIOS['rest']}; "
        f"{result['avx2_estimate_s']['central']:.0f} s with the rest x {CENTRAL_REST})"
    )


def estimate(demo_s: float, transformer_s: float, train_s: float, rest_ratio: float) -> float:
    """The demo's seconds on issue 17's machine, each kind of work scaled by its measured ratio."""
    rest = demo_s - transformer_s - train_s
    return transformer_s * RATIOS["transformer"] + train_s * RATIOS["train"] + rest * rest_ratio


if __name__ == "__main__":
    main()
