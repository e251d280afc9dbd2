"""LightGBM's thread count belongs to the whole process: calls that overlap must agree on it.

LightGBM keeps one process-wide thread count (`LGBM_DEFAULT_NUM_THREADS` in its C++ code). Every
call that takes parameters (a dataset, a training, a prediction) sets it from its own
`num_threads`; a call sizes its per-thread buffers by it when it starts and splits its loops by it
later. If another thread changes it in between, the loop runs more threads than there are buffers
and the process dies with a segmentation fault. That is what happens when backtest folds train side
by side with `num_threads: 1` while another fold predicts with LightGBM's default (lightgbm 4.7.0:
a thread training with one thread beside one predicting with the default crashed every run within
2 to 17 seconds; with equal counts every run was clean).

So every LightGBM call in the project runs inside `threads(n)`: calls with the same count overlap
freely, and a call with another count waits until they are done (and holds back newcomers until it
has run, so it cannot be starved).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

import numpy as np


class _Gate:
    """Admits any number of holders of one thread count at a time."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count: int | None = None  # the thread count of the calls running now
        self._running = 0
        self._waiting = 0  # calls waiting for another count

    @contextmanager
    def use(self, count: int) -> Iterator[None]:
        with self._cond:
            if self._running and self._count != count:
                self._waiting += 1
                self._cond.wait_for(lambda: not self._running)
                self._waiting -= 1
            elif self._waiting:
                # someone wants another count: let them go first
                self._cond.wait_for(lambda: not self._waiting and (not self._running or self._count == count))
            self._count = count
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                if not self._running:
                    self._cond.notify_all()


_GATE = _Gate()


def _count(num_threads: int | None) -> int:
    """0 for LightGBM's default (0, None or negative), else the count."""
    return max(int(num_threads or 0), 0)


def threads(num_threads: int | None) -> AbstractContextManager[None]:
    """Where a LightGBM call with `num_threads` (0 or None: LightGBM's default, every core) runs."""
    return _GATE.use(_count(num_threads))


def predict(booster, X: np.ndarray, num_threads: int | None = 0, **kwargs) -> np.ndarray:
    """`booster.predict` with `num_threads` (0: LightGBM's default), inside `threads`."""
    n = _count(num_threads)
    with _GATE.use(n):
        return booster.predict(X, **({"num_threads": n} if n else {}), **kwargs)
