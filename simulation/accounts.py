"""Accounts (the observable `accounts` table) and their hidden traits (for the generator only)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from simulation import textbank as tb
from simulation.config import Dynamics, SimulationConfig

SEGMENT_ARR = {"smb": (9_000, 0.7), "mid_market": (55_000, 0.6), "enterprise": (260_000, 0.7)}
SEAT_PRICE = {"smb": 600.0, "mid_market": 480.0, "enterprise": 380.0}
MONTHLY_SHARE = {"smb": 0.55, "mid_market": 0.2, "enterprise": 0.03}
SPONSOR_SHARE = {"smb": 0.15, "mid_market": 0.45, "enterprise": 0.8}
PLANS = {"smb": ("starter", "growth"), "mid_market": ("growth", "business"), "enterprise": ("enterprise",)}
CSMS = {
    "smb": ("digital-cs", "Nora Lind", "Omar Haddad"),
    "mid_market": ("Grace Kim", "Victor Silva", "Ines Moreau", "Paul Becker"),
    "enterprise": ("Laura Chen", "David Osei", "Sara Novak"),
}
CHANNELS = np.array(["email", "chat", "web", "phone"], dtype=object)
CHANNEL_WEIGHTS = np.array([0.4, 0.3, 0.2, 0.1])
CLOUD_REGIONS = {
    "north_america": ("us-east-2", "us-west-2", "ca-central-1"),
    "emea": ("eu-west-1", "eu-central-1"),
    "apac": ("ap-southeast-1",),
    "latam": ("us-east-2",),
}


def _choice(rng: np.random.Generator, options: tuple[str, ...] | np.ndarray, n: int, p=None) -> np.ndarray:
    return np.asarray(options, dtype=object)[rng.choice(len(options), size=n, p=p)]


def make_accounts(
    config: SimulationConfig, dynamics: Dynamics, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (accounts table, hidden traits keyed by account_id).

    Contract starts are staggered: most accounts started up to four years before the window, a
    share starts inside it (and can fail onboarding). Days of month are kept <= 28 so renewals
    on contract anniversaries are always real calendar days.
    """
    n = config.accounts
    segments = np.asarray(list(config.segment_mix), dtype=object)
    segment = segments[rng.choice(len(segments), size=n, p=list(config.segment_mix.values()))]
    median = np.array([SEGMENT_ARR[s][0] for s in segment])
    spread = np.array([SEGMENT_ARR[s][1] for s in segment])
    arr = np.round(median * np.exp(spread * rng.standard_normal(n)), -2).clip(1200)
    price = np.array([SEAT_PRICE[s] for s in segment]) * np.exp(0.2 * rng.standard_normal(n))
    seats = np.maximum(1, np.round(arr / price)).astype(np.int64)
    billing = np.where(rng.random(n) < np.array([MONTHLY_SHARE[s] for s in segment]), "monthly", "annual").astype(
        object
    )
    sponsor = rng.random(n) < np.array([SPONSOR_SHARE[s] for s in segment])

    is_new = rng.random(n) < config.new_account_share
    start_day = np.where(
        is_new,
        rng.integers(0, max(1, config.days - 60), n),
        -rng.integers(30, 4 * 365, n),
    )
    window_start = np.datetime64(config.start, "D")
    start_date = window_start + start_day.astype("timedelta64[D]")
    dom = (start_date - start_date.astype("datetime64[M]")).astype(np.int64) + 1
    start_day = start_day - np.maximum(0, dom - 28)  # keep the day of month <= 28
    start_date = window_start + start_day.astype("timedelta64[D]")

    plan = np.empty(n, dtype=object)
    csm = np.empty(n, dtype=object)
    for s in SEGMENT_ARR:
        rows = segment == s
        plan[rows] = _choice(rng, PLANS[s], int(rows.sum()))
        csm[rows] = _choice(rng, CSMS[s], int(rows.sum()))
    csm[(segment == "smb") & (rng.random(n) < 0.3)] = None  # small accounts often have no named CSM

    region = _choice(rng, tb.REGIONS_ACCOUNT, n, p=[0.5, 0.3, 0.15, 0.05])
    names = _choice(rng, tb.COMPANY_WORDS, n) + " " + _choice(rng, tb.COMPANY_SUFFIXES, n)
    account_id = np.array([f"A{i:06d}" for i in range(1, n + 1)], dtype=object)
    accounts = pd.DataFrame(
        {
            "account_id": account_id,
            "name": names,
            "segment": segment,
            "industry": _choice(rng, tb.INDUSTRIES, n),
            "region": region,
            "plan": plan,
            "seats": seats,
            "arr": arr.astype(np.float64),
            "contract_start": pd.to_datetime(start_date).tz_localize("UTC").astype("datetime64[us, UTC]"),
            "billing": billing,
            "csm_owner": csm,
            "exec_sponsor": sponsor,
        }
    )
    for col in ("account_id", "name", "segment", "industry", "region", "plan", "billing", "csm_owner"):
        accounts[col] = accounts[col].astype("str")

    failed = is_new & (rng.random(n) < dynamics.failed_onboarding_rate)
    mu = rng.normal(dynamics.mu_mean, dynamics.mu_sd, n) + np.where(segment == "enterprise", 0.15, 0.0)
    first = _choice(rng, tb.FIRST_NAMES, n)
    last = _choice(rng, tb.LAST_NAMES, n)
    domain = np.char.replace(np.char.lower(names.astype(str)), " ", "").astype(object) + ".com"
    traits = pd.DataFrame(
        {
            "account_id": account_id,
            "start_day": start_day.astype(np.int64),
            "mu0": mu + np.where(failed, dynamics.failed_onboarding_mu, 0.0),
            "failed_onboarding": failed,
            "adoption": rng.normal(0.4, 0.5, n),
            "api_intensity": np.where(rng.random(n) < 0.45, np.exp(rng.normal(np.log(15), 0.8, n)), 0.0),
            "ticket_propensity": np.exp(rng.normal(0.0, 0.35, n)),
            "support_load": np.exp(rng.normal(0.0, 0.3, n)),
            "preferred_channel": CHANNELS[rng.choice(4, size=n, p=CHANNEL_WEIGHTS)],
            "contact_first": first,
            "contact_last": last,
            "contact_email": np.char.lower((first + "." + last).astype(str)).astype(object) + "@" + domain,
            "cloud_region": np.array([rng.choice(CLOUD_REGIONS[r]) for r in region], dtype=object),
        }
    )
    return accounts, traits


def renewal_days(start_day: np.ndarray, billing: np.ndarray, window_start: dt.date, n_days: int) -> np.ndarray:
    """Boolean [accounts, n_days]: day t is a renewal (contract_start + k terms, k >= 1)."""
    window = np.datetime64(window_start, "D")
    start = window + start_day.astype("timedelta64[D]")
    months = start.astype("datetime64[M]")
    dom = (start - months).astype(np.int64)
    monthly = np.asarray(billing) == "monthly"
    out = np.zeros((len(start_day), n_days), dtype=bool)
    k_max = (n_days - int(start_day.min()) + 400) // 28 + 2
    for k in range(1, k_max):
        step = np.where(monthly, k, 12 * k)
        day = (
            (months + step.astype("timedelta64[M]")).astype("datetime64[D]") + dom.astype("timedelta64[D]") - window
        ).astype(np.int64)
        ok = (day >= 0) & (day < n_days)
        out[np.flatnonzero(ok), day[ok]] = True
    return out
