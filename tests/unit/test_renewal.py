"""Renewal dates for every contract term, anchored on the contract start or on a renewal date given."""

from __future__ import annotations

import pandas as pd
import pytest

from features.families.business import next_renewal


def _next(start: str, billing: str, cutoff: str, renewal: str | None = None) -> str:
    s = pd.Series(pd.to_datetime([start], utc=True))
    r = None if renewal is None else pd.Series(pd.to_datetime([renewal], utc=True))
    got = next_renewal(s, pd.Series([billing]), pd.Series(pd.to_datetime([cutoff], utc=True)), r)
    return str(got[0].astype("datetime64[D]"))


@pytest.mark.parametrize(
    ("start", "billing", "cutoff", "renewal", "expected"),
    [
        ("2024-01-31", "monthly", "2024-02-15", None, "2024-02-29"),  # the day of month clipped to the month's end
        ("2024-01-15", "quarterly", "2024-04-16", None, "2024-07-15"),
        ("2024-01-15", "semiannual", "2024-01-16", None, "2024-07-15"),
        ("2023-03-01", "biennial", "2024-06-01", None, "2025-03-01"),
        ("2022-03-01", "triennial", "2025-03-01", None, "2025-03-01"),  # a renewal on the cutoff is the next one
        # a renewal date agreed in the contract sets the phase, before and after it
        ("2023-05-10", "annual", "2024-02-01", "2024-09-30", "2024-09-30"),
        ("2023-05-10", "annual", "2026-01-01", "2024-09-30", "2026-09-30"),
        ("2023-05-10", "quarterly", "2023-06-01", "2024-09-30", "2023-06-30"),
        ("2023-05-10", "annual", "2023-06-01", "2023-05-10", "2024-05-10"),  # the start itself is not a renewal
    ],
)
def test_next_renewal(start, billing, cutoff, renewal, expected):
    assert _next(start, billing, cutoff, renewal) == expected
