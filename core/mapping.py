"""Fan-out hook shared by the feature blocks and the backtest folds.

A mapper runs a function over a list of jobs and returns the results in order. The default runs
them here, one after another; the flows pass one that submits a task per job to their Prefect
task runner (threads, or Dask workers when CHURN_DASK_ADDRESS is set)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Mapper = Callable[[Callable[[Any], Any], list], list]


def serial_map(fn: Callable[[Any], Any], jobs: list) -> list:
    return [fn(job) for job in jobs]
