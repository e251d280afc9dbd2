"""What an API worker costs before its first request: the text model alone (the cascade, ready to
score a sentence), then a whole worker's runtime (the champion, every stored account's answer,
the store, the text model), each in a fresh process as BentoML starts one. Prints seconds, peak
resident memory, and whether PyTorch was imported (it need not be once the encoder's ONNX export
exists: it costs seconds and about 190 MB per worker).

    python benchmarks/worker_start.py [--rounds 3]

Serves what `churn serve` would: the settings (CHURN_*), else the last `make demo`'s scores and
model. The encoder's export and static table must exist (any earlier text run made them); the
first round is not timed differently, so a missing export shows as one slow round.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import os
import subprocess

from benchmarks._record import save

ROOT = Path(__file__).resolve().parent.parent

#: what each measured process runs: its imports and its load, timed from its start
TEXT = """
from core.settings import load_settings
from features.text.sentiment import score_texts
from text.loading import load_sentiment_model
score_texts(["warming up the sentiment model."], load_sentiment_model(load_settings(), threads=1))
"""
WORKER = """
from core.settings import load_settings
from serving import launch
from serving.runtime import ServingRuntime
ServingRuntime(launch.resolve(load_settings(), say=lambda message: None), text_threads=1)
"""
#: around either: the seconds, the peak resident memory and whether PyTorch was imported, as JSON
BEFORE = "import json, resource, sys, time\nstarted = time.perf_counter()\n"
AFTER = """
print(json.dumps({"seconds": time.perf_counter() - started, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "torch": "torch" in sys.modules}))
"""


def run(script: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", BEFORE + script + AFTER],
        cwd=ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"the measured process failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = []
    for r in range(args.rounds):
        text, worker = run(TEXT), run(WORKER)
        rounds.append({"text_model": text, "worker": worker})
        print(
            f"round {r + 1}: text model ready in {text['seconds']:.1f} s, peak {text['peak_mb']:.0f} MB"
            f"{' (imported PyTorch)' if text['torch'] else ''}; API worker's runtime ready in {worker['seconds']:.1f} s, "
            f"peak {worker['peak_mb']:.0f} MB{' (imported PyTorch)' if worker['torch'] else ''}"
        )
    save("worker_start", {"rounds": rounds})


if __name__ == "__main__":
    main()
