"""Vectorised point-in-time lookups for many (account, cutoff) pairs at once.

Every query answers "what was known strictly before the cutoff": events are compared on whole
seconds (cutoffs are midnights, so `floor(t) < cutoff` is exactly `t < cutoff`), and a usage day
counts only once it is complete (`date + 1 day <= cutoff`).

`EventIndex` sorts one table's events by (account, time) under a single int64 key, so window
counts, sums and "last value before" for any number of snapshots are a couple of `searchsorted`
calls, without a per-account loop. `DailyGrid` lays daily usage on a dense accounts x days matrix
whose cumulative sums answer any window in O(1).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

#: Time zero for integer keys; seconds since 1900 fit 34 bits until the 2400s.
ORIGIN = pd.Timestamp("1900-01-01", tz="UTC")
_SHIFT = np.int64(34)
DAY = 86_400


def to_seconds(values: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """UTC timestamps -> int64 seconds since 1900 (floored); NaT -> int64 min."""
    values = pd.Series(values)
    out = ((values - ORIGIN) // pd.Timedelta(seconds=1)).to_numpy(dtype="float64", na_value=np.nan)
    return np.where(np.isnan(out), np.iinfo(np.int64).min, out).astype(np.int64)


class EventIndex:
    """Events of many accounts, sorted by (account, time), for window queries over snapshots."""

    def __init__(self, account: np.ndarray, seconds: np.ndarray, values: Mapping[str, np.ndarray] | None = None):
        account = np.asarray(account, dtype=np.int64)
        seconds = np.asarray(seconds, dtype=np.int64)
        keep = seconds != np.iinfo(np.int64).min
        key = (account[keep] << _SHIFT) | seconds[keep]
        order = np.argsort(key, kind="stable")
        self.key = key[order]
        self.account = account[keep][order]
        self.seconds = seconds[keep][order]
        self.values: dict[str, np.ndarray] = {}
        self._cum: dict[str, np.ndarray] = {}
        for name, v in (values or {}).items():
            v = np.asarray(v, dtype=np.float64)[keep][order]
            self.values[name] = v
            self._cum[name] = np.concatenate([[0.0], np.cumsum(np.nan_to_num(v))])
            self._cum[f"{name}#n"] = np.concatenate([[0], np.cumsum(~np.isnan(v))])

    def __len__(self) -> int:
        return len(self.key)

    def position(self, account: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        """Number of events sorted before (account, seconds): the account's events at t < seconds."""
        return np.searchsorted(
            self.key, (np.asarray(account, dtype=np.int64) << _SHIFT) | np.asarray(seconds, dtype=np.int64), side="left"
        )

    def count(self, account: np.ndarray, end: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
        """Events with start <= t < end (start None: since the beginning)."""
        lo = self.position(account, np.zeros_like(end) if start is None else np.maximum(start, 0))
        return self.position(account, end) - lo

    def total(
        self, name: str, account: np.ndarray, end: np.ndarray, start: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(sum, number of non-null values) of `name` over events with start <= t < end."""
        lo = self.position(account, np.zeros_like(end) if start is None else np.maximum(start, 0))
        hi = self.position(account, end)
        return self._cum[name][hi] - self._cum[name][lo], self._cum[f"{name}#n"][hi] - self._cum[f"{name}#n"][lo]

    def mean(self, name: str, account: np.ndarray, end: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
        """Mean of non-null `name` over the window; NaN when there is none."""
        total, n = self.total(name, account, end, start)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, total / np.maximum(n, 1), np.nan)

    def last(self, account: np.ndarray, end: np.ndarray, name: str | None = None, nth: int = 1) -> np.ndarray:
        """Time (or value of `name`) of the nth-last event before `end`; NaN when there is none."""
        idx = self.position(account, end) - nth
        ok = idx >= 0
        safe = np.where(ok, idx, 0)
        ok &= self.account[safe] == account if len(self) else np.zeros(len(idx), dtype=bool)
        if not len(self):
            return np.full(len(idx), np.nan)
        source = self.seconds.astype(np.float64) if name is None else self.values[name]
        return np.where(ok, source[safe], np.nan)


def open_at(starts: EventIndex, ends: EventIndex, account: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Intervals open at `end`: begun before it minus finished before it (never below zero)."""
    return np.maximum(starts.count(account, end) - ends.count(account, end), 0)


class DailyGrid:
    """Daily usage of a block of accounts on a dense [account, day] grid with cumulative sums.

    Missing days are NaN (unknown), not zero: sums skip them and `observed` counts the days that
    have a row, so means are over observed days.
    """

    def __init__(self, usage: pd.DataFrame, n_accounts: int, first_day: int, n_days: int, columns: list[str]):
        self.first_day = first_day
        self.n_days = n_days
        acc = usage["_acc"].to_numpy()
        day = usage["_day"].to_numpy() - first_day
        shape = (n_accounts, n_days)
        present = np.zeros(shape, dtype=bool)
        present[acc, day] = True
        self.present = present
        self.cum: dict[str, np.ndarray] = {"observed": self._cumsum(present.astype(np.float64))}
        self.raw: dict[str, np.ndarray] = {}
        for col in columns:
            grid = np.zeros(shape, dtype=np.float64)
            grid[acc, day] = usage[col].to_numpy(dtype=np.float64)
            self.raw[col] = grid
            self.cum[col] = self._cumsum(grid)

    @staticmethod
    def _cumsum(grid: np.ndarray) -> np.ndarray:
        out = np.zeros((grid.shape[0], grid.shape[1] + 1), dtype=np.float64)
        np.cumsum(grid, axis=1, out=out[:, 1:])
        return out

    def add(self, name: str, grid: np.ndarray, keep: bool = True) -> None:
        """A derived grid; `keep=False` keeps only its cumulative sums (enough for window sums)."""
        if keep:
            self.raw[name] = grid
        self.cum[name] = self._cumsum(grid)

    def values(self, name: str) -> np.ndarray:
        """The [account, day] grid of `name` ("observed": 1 where a day has a row)."""
        return self.present.astype(np.float64) if name == "observed" else self.raw[name]

    def trailing_sum(self, name: str, length: int) -> np.ndarray:
        """Per account and day, the sum of `name` over the `length` days ending on that day (included)."""
        hi = np.arange(1, self.n_days + 1)
        c = self.cum[name]
        return c[:, hi] - c[:, np.maximum(hi - length, 0)]

    def _clip(self, day: np.ndarray) -> np.ndarray:
        return np.clip(day - self.first_day, 0, self.n_days)

    def window_sum(self, name: str, acc: np.ndarray, end_day: np.ndarray, length: int, offset: int = 0) -> np.ndarray:
        """Sum over days [end - offset - length, end - offset) (days before the cutoff day `end`)."""
        hi = self._clip(end_day - offset)
        lo = self._clip(end_day - offset - length)
        c = self.cum[name]
        return c[acc, hi] - c[acc, lo]

    def window_mean(self, name: str, acc: np.ndarray, end_day: np.ndarray, length: int, offset: int = 0) -> np.ndarray:
        n = self.window_sum("observed", acc, end_day, length, offset)
        s = self.window_sum(name, acc, end_day, length, offset)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(n > 0, s / np.maximum(n, 1), np.nan)

    def last_day_where(self, name: str, acc: np.ndarray, end_day: np.ndarray) -> np.ndarray:
        """Last day index (absolute) before `end_day` whose `name` grid is non-zero; NaN if none."""
        key = f"last:{name}"
        if key not in self.raw:
            flag = self.raw[name] > 0
            idx = np.where(flag, np.arange(self.n_days)[None, :], -1)
            self.raw[key] = np.maximum.accumulate(idx, axis=1)
        hi = self._clip(end_day) - 1
        ok = hi >= 0
        last = self.raw[key][acc, np.maximum(hi, 0)]
        return np.where(ok & (last >= 0), last + self.first_day, np.nan)

    def first_observed(self, acc: np.ndarray) -> np.ndarray:
        """First day index (absolute) with a usage row; NaN if none."""
        key = "first:observed"
        if key not in self.raw:
            any_row = self.present.any(axis=1)
            self.raw[key] = np.where(any_row, self.present.argmax(axis=1) + self.first_day, np.nan)
        return self.raw[key][acc]
