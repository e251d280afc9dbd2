"""Observable tables that follow from latent health: daily usage, NPS surveys, account events.

Support tickets, their events and messages are in `simulation.support`.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from simulation import textbank as tb
from simulation.latent import LatentBlock
from simulation.render import pick

N_FEATURES = 25


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def day_factors(window_start: dt.date, n_days: int) -> tuple[np.ndarray, np.ndarray]:
    """Per day: activity factor (weekends, holidays, the year-end lull) and a weekday flag."""
    days = pd.date_range(window_start, periods=n_days, freq="D")
    weekday = days.day_of_week.to_numpy() < 5
    factor = np.where(weekday, 1.0, 0.15)
    month, dom = days.month.to_numpy(), days.day.to_numpy()
    fixed = ((month == 1) & (dom == 1)) | ((month == 12) & (dom == 25)) | ((month == 7) & (dom == 4))
    # Thanksgiving: fourth Thursday of November
    thanksgiving = (month == 11) & (days.day_of_week.to_numpy() == 3) & (dom >= 22) & (dom <= 28)
    factor = np.where(fixed | thanksgiving, 0.3, factor)
    factor = np.where((month == 12) & (dom >= 24), factor * 0.5, factor)
    return factor, weekday


def active_mask(latent: LatentBlock) -> np.ndarray:
    """Days with activity possible: contracted and alive, not the churn day itself."""
    mask = latent.alive.copy()
    churned = latent.churn_day >= 0
    mask[np.flatnonzero(churned), latent.churn_day[churned]] = False
    return mask


def make_usage(
    rng: np.random.Generator,
    latent: LatentBlock,
    traits: pd.DataFrame,
    seats: np.ndarray,
    account_id: np.ndarray,
    window_start: dt.date,
    day_factor: np.ndarray,
) -> pd.DataFrame:
    """One row per account and active day; zeros are real zero-activity days."""
    mask = active_mask(latent)
    acc, day = np.nonzero(mask)
    h = latent.health[acc, day].astype(np.float64)
    f = day_factor[day]
    adoption = traits["adoption"].to_numpy()[acc]
    p_active = sigmoid(adoption + 1.3 * h) * f
    active = rng.binomial(seats[acc], np.clip(p_active, 0, 1))
    logins = rng.poisson(active * 1.5)
    engaged = sigmoid(0.3 + 1.1 * h)
    minutes = np.round(active * rng.gamma(2.0, 14.0 * engaged + 2.0), 1)
    breadth = np.where(
        active > 0,
        rng.binomial(N_FEATURES, np.clip(sigmoid(-0.4 + 1.2 * h) * np.minimum(1, 0.3 + active / 5), 0, 1)),
        0,
    )
    key_events = rng.poisson(active * 3.0 * engaged)
    api = rng.poisson(
        traits["api_intensity"].to_numpy()[acc]
        * np.sqrt(seats[acc])
        * sigmoid(1.0 + 1.2 * h)
        * np.where(f > 0.2, 1.0, 0.6)
    )
    dates = np.datetime64(window_start, "D") + day.astype("timedelta64[D]")
    return pd.DataFrame(
        {
            "account_id": account_id[acc],
            "date": pd.to_datetime(dates).tz_localize("UTC").astype("datetime64[us, UTC]"),
            "active_users": active.astype(np.int64),
            "logins": logins.astype(np.int64),
            "session_minutes": minutes.astype(np.float64),
            "key_feature_events": key_events.astype(np.int64),
            "distinct_features_used": breadth.astype(np.int64),
            "api_calls": api.astype(np.int64),
        }
    )


def to_timestamp(window_start: dt.date, day: np.ndarray, seconds: np.ndarray) -> pd.Series:
    """Day index + seconds into the window -> UTC timestamps (microsecond resolution)."""
    base = np.datetime64(window_start, "us")
    stamp = base + (day.astype(np.int64) * 86_400_000_000 + (np.asarray(seconds) * 1e6).astype(np.int64)).astype(
        "timedelta64[us]"
    )
    return pd.Series(pd.to_datetime(stamp).tz_localize("UTC"), dtype="datetime64[us, UTC]")


def make_surveys(
    rng: np.random.Generator, latent: LatentBlock, account_id: np.ndarray, window_start: dt.date
) -> pd.DataFrame:
    """NPS invitations every ~90 days; extreme opinions answer more often (submission bias)."""
    mask = active_mask(latent)
    n, n_days = mask.shape
    offset = rng.integers(0, 90, n)
    invite = ((np.arange(n_days)[None, :] - offset[:, None]) % 90 == 0) & mask
    acc, day = np.nonzero(invite)
    h = latent.health[acc, day].astype(np.float64)
    score = np.clip(np.round(7.2 + 2.0 * h + rng.normal(0, 1.3, len(acc))), 0, 10).astype(np.int64)
    extreme = (score <= 4) | (score >= 9)
    answered = rng.random(len(acc)) < np.where(extreme, 0.45, 0.12)
    acc, day, score = acc[answered], day[answered] + rng.integers(0, 5, answered.sum()), score[answered]
    keep = day < n_days
    if latent.churn_day.size:
        cd = latent.churn_day[acc]
        keep &= (cd < 0) | (day < cd)
    acc, day, score = acc[keep], day[keep], score[keep]
    band = np.where(score >= 9, "positive", np.where(score >= 7, "neutral", np.where(score >= 4, "negative", "angry")))
    comment = np.full(len(acc), None, dtype=object)
    for name, bank in tb.NPS_COMMENTS.items():
        rows = (band == name) & (rng.random(len(acc)) < 0.6)
        comment[rows] = pick(rng, bank, int(rows.sum()))
    comment[comment == ""] = None
    return pd.DataFrame(
        {
            "account_id": account_id[acc],
            "answered_at": to_timestamp(window_start, day, rng.uniform(8 * 3600, 20 * 3600, len(acc))),
            "kind": "nps",
            "score": score,
            "comment": pd.Series(comment, dtype="str"),
        }
    )


def make_account_events(
    rng: np.random.Generator,
    latent: LatentBlock,
    account_id: np.ndarray,
    arr: np.ndarray,
    exec_sponsor: np.ndarray,
    renewal: np.ndarray,
    window_start: dt.date,
) -> pd.DataFrame:
    """Observable risk events: from shocks (disputes, incidents, a sponsor leaving, expansion) and
    from poor health (failed payments on billing days, legal threats, downgrades)."""
    mask = active_mask(latent)
    frames = []
    shocks = latent.shocks
    observed = {
        "billing_dispute": "billing_dispute",
        "security_incident": "security_incident",
        "sponsor_left": "sponsor_left",
        "expansion": "upgrade",
    }
    s = shocks[shocks["kind"].isin(list(observed))]
    if len(s):
        acc, day = s["acc"].to_numpy(), s["day"].to_numpy()
        kind = s["kind"].map(observed).to_numpy(dtype=object)
        value = np.where(kind == "upgrade", np.round(arr[acc] * rng.uniform(0.1, 0.5, len(acc)), -2), np.nan)
        frames.append((acc, day, kind, value))
    h = np.nan_to_num(latent.health.astype(np.float64), nan=5.0)
    # failed payments on billing days (renewals; monthly accounts bill every month)
    p_fail = np.where(renewal[:, : mask.shape[1]] & mask, sigmoid(-3.6 - 1.0 * h), 0.0)
    acc, day = np.nonzero(rng.random(mask.shape) < p_fail)
    frames.append((acc, day, np.full(len(acc), "payment_failed", dtype=object), np.full(len(acc), np.nan)))
    # legal threats and downgrades when health is poor
    p_legal = np.where(mask, 0.0015 * sigmoid(-4.0 * (h + 1.6)), 0.0)
    acc, day = np.nonzero(rng.random(mask.shape) < p_legal)
    frames.append((acc, day, np.full(len(acc), "legal_threat", dtype=object), np.full(len(acc), np.nan)))
    p_down = np.where(mask, 0.0012 * sigmoid(-2.5 * (h + 0.6)), 0.0)
    acc, day = np.nonzero(rng.random(mask.shape) < p_down)
    frames.append(
        (
            acc,
            day,
            np.full(len(acc), "downgrade", dtype=object),
            -np.round(arr[acc] * rng.uniform(0.1, 0.4, len(acc)), -2),
        )
    )
    acc = np.concatenate([f[0] for f in frames])
    day = np.concatenate([f[1] for f in frames])
    kind = np.concatenate([f[2] for f in frames])
    value = np.concatenate([f[3] for f in frames])
    return pd.DataFrame(
        {
            "account_id": account_id[acc],
            "at": to_timestamp(window_start, day, rng.uniform(7 * 3600, 19 * 3600, len(acc))),
            "kind": pd.Series(kind, dtype="str"),
            "value": value.astype(np.float64),
        }
    )
