"""Snapshot keys and labels on a base where nobody has churned yet (an empty churn table)."""

from __future__ import annotations

import pandas as pd

from features.panel import make_labels, snapshot_keys

UTC = "datetime64[us, UTC]"


def _accounts() -> pd.DataFrame:
    return pd.DataFrame(
        {"account_id": ["a", "b"], "contract_start": pd.to_datetime(["2024-01-01", "2024-02-01"], utc=True).astype(UTC)}
    )


def test_a_base_without_churn_has_live_accounts_and_zero_labels():
    churn = pd.DataFrame({"account_id": pd.Series([], dtype="str"), "churned_at": pd.Series([], dtype=UTC)})
    keys = snapshot_keys({"accounts": _accounts(), "churn": churn}, [pd.Timestamp("2024-06-01", tz="UTC")])
    assert keys["account_id"].tolist() == ["a", "b"]
    labels = make_labels(keys, churn, pd.Timestamp("2024-12-31", tz="UTC"))
    assert labels.to_numpy().sum() == 0 and labels.notna().all().all()


def test_labels_count_a_churn_inside_the_horizon_only():
    churn = pd.DataFrame({"account_id": ["a"], "churned_at": pd.to_datetime(["2024-07-20"], utc=True).astype(UTC)})
    keys = snapshot_keys({"accounts": _accounts(), "churn": churn}, [pd.Timestamp("2024-06-01", tz="UTC")])
    labels = make_labels(keys, churn, pd.Timestamp("2024-12-31", tz="UTC"))
    assert labels.loc[0].tolist() == [0, 1, 1, 1] and labels.loc[1].tolist() == [0, 0, 0, 0]


def test_too_short_for_the_default_start_says_the_default_and_the_fix():
    """75 days of data, no --start: the default first cutoff (warm-up days in) is past the end; the
    message must not blame a --start the user never gave."""
    import pytest

    from core.errors import InputError
    from features.panel import DEFAULT_WARMUP_DAYS, make_cutoffs

    begin, end = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-03-16", tz="UTC")
    with pytest.raises(InputError, match=rf"--start not given: the default first cutoff, {DEFAULT_WARMUP_DAYS} days"):
        make_cutoffs(begin, end)
    with pytest.raises(InputError, match="pass an earlier --start"):
        make_cutoffs(begin, end, every="7d")
    assert make_cutoffs(begin, end, start="2024-02-01", every="7d")[0] == pd.Timestamp("2024-02-01", tz="UTC")
    with pytest.raises(InputError, match="--start 2024-03-10 is after --end 2024-03-01"):
        make_cutoffs(begin, end, start="2024-03-10", end="2024-03-01")
    # day and month in another order are refused, not guessed (01/02 was read as 2 January)
    with pytest.raises(InputError, match=r"^--start '01/02/2024': expected a date as YYYY-MM-DD$"):
        make_cutoffs(begin, end, start="01/02/2024")
    with pytest.raises(InputError, match=r"^--end 'March 1': expected a date as YYYY-MM-DD$"):
        make_cutoffs(begin, end, start="2024-02-01", end="March 1")
