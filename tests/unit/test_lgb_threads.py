"""LightGBM calls on parallel threads: equal thread counts overlap, another count waits its turn,
and a thread training with one thread beside one predicting with LightGBM's default survives (it
died with a segmentation fault before models/lgb_threads.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from models.lgb_threads import threads

ROOT = Path(__file__).resolve().parents[2]


def hold(count: int, inside: threading.Event, release: threading.Event, log: list[str], name: str) -> threading.Thread:
    """A thread that enters threads(count), says so, and stays until `release`."""

    def run() -> None:
        with threads(count):
            log.append(name)
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_calls_with_the_same_count_overlap():
    both = threading.Barrier(2, timeout=10)  # broken (an error) unless both are inside at once

    def run() -> None:
        with threads(1):
            both.wait()

    workers = [threading.Thread(target=run) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(15)
    assert not both.broken and not any(w.is_alive() for w in workers)


def test_another_count_waits_and_is_not_overtaken():
    log: list[str] = []
    a_in, a_out, b_in, b_out, c_in, c_out = (threading.Event() for _ in range(6))
    a = hold(1, a_in, a_out, log, "a: 1 thread")
    assert a_in.wait(10)
    b = hold(0, b_in, b_out, log, "b: default")
    time.sleep(0.3)
    assert not b_in.is_set()  # b waits while a call with another count runs
    c = hold(1, c_in, c_out, log, "c: 1 thread")
    time.sleep(0.3)
    assert not c_in.is_set()  # c has a's count, but b asked first
    a_out.set()
    assert b_in.wait(10)
    time.sleep(0.3)
    assert not c_in.is_set()  # and now b runs with another count
    b_out.set()
    assert c_in.wait(10)
    c_out.set()
    for thread in (a, b, c):
        thread.join(10)
    assert log == ["a: 1 thread", "b: default", "c: 1 thread"]


def test_training_with_one_thread_beside_predictions_with_the_default_does_not_crash():
    """In a child process, so a crash is this test's failure rather than the worker's death."""
    script = textwrap.dedent(
        """
        import threading, time
        import numpy as np
        from models import lgb_threads
        from models.curve import LocalTrainer

        rng = np.random.default_rng(0)
        X = rng.normal(size=(20000, 40))
        y = (X[:, 0] + rng.normal(size=20000) > 0).astype(float)
        params = {"objective": "binary", "num_threads": 1, "verbose": -1}
        names = [f"f{i}" for i in range(40)]
        booster, _ = LocalTrainer()(params, (X, y), (X[:1000], y[:1000]), names, [], 10, 0)
        stop = time.monotonic() + 6
        done = {"trained": 0, "predicted": 0}

        def train():
            while time.monotonic() < stop:
                LocalTrainer()(params, (X, y), (X[:1000], y[:1000]), names, [], 30, 0)
                done["trained"] += 1

        def predict():
            while time.monotonic() < stop:
                lgb_threads.predict(booster, X[:2000], 0)
                done["predicted"] += 1

        workers = [threading.Thread(target=train), threading.Thread(target=predict)]
        [w.start() for w in workers]
        [w.join() for w in workers]
        print(done["trained"], done["predicted"])
        """
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, f"exit {run.returncode} (-11: a segmentation fault)\n{run.stderr[-2000:]}"
    trained, predicted = map(int, run.stdout.split())
    assert trained > 1 and predicted > 1
