"""How far a distribution moved: the population stability index (PSI) of numbers and of
categories, for the drift monitors (pipelines/monitor.py) and the report's drift table."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: a bin's (or a level's) share is floored here, so a bin empty on one side gives a large PSI, not infinity
SHARE_FLOOR = 1e-4


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index over the training distribution's deciles (missing values are a
    bin of their own). Rule of thumb: < 0.1 stable, 0.1-0.25 shifting, > 0.25 shifted."""
    expected, actual = np.asarray(expected, dtype=float), np.asarray(actual, dtype=float)
    finite = expected[np.isfinite(expected)]
    if len(finite) == 0 or len(actual) == 0:
        return float("nan")
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))

    def shares(values: np.ndarray) -> np.ndarray:
        missing = ~np.isfinite(values)
        counts = np.bincount(np.searchsorted(edges, values[~missing], side="right"), minlength=len(edges) + 1).astype(
            float
        )
        counts = np.append(counts, missing.sum())
        return np.clip(counts / max(len(values), 1), SHARE_FLOOR, None)

    e, a = shares(expected), shares(actual)
    return float(np.sum((a - e) * np.log(a / e)))


def category_psi(expected: pd.Series, actual: pd.Series) -> float:
    """PSI over a category's levels (missing is a level of its own), shares floored as in psi."""

    def shares(values: pd.Series) -> pd.Series:
        return values.astype("object").where(values.notna(), "(missing)").astype(str).value_counts(normalize=True)

    e, a = shares(expected), shares(actual)
    levels = e.index.union(a.index)
    e, a = (s.reindex(levels, fill_value=0.0).clip(lower=SHARE_FLOOR) for s in (e, a))
    return float(((a - e) * np.log(a / e)).sum())
