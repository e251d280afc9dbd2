"""The hidden health of each account, day by day, and the churn it causes.

Vectorised across the accounts of a block; the only loop is over days, because today's health
depends on yesterday's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from simulation.config import Dynamics

SHOCK_ORDER = ("product_incident", "billing_dispute", "security_incident", "sponsor_left", "champion_left", "expansion")


@dataclass
class LatentBlock:
    """Latent paths of one block of accounts over the window (NaN outside contract or after churn)."""

    health: np.ndarray  # float32 [n, T]
    baseline: np.ndarray  # float32 [n, T]
    hazard: np.ndarray  # float32 [n, T]
    alive: np.ndarray  # bool [n, T]: contracted and not yet churned at the start of the day
    churn_day: np.ndarray  # int [n], -1 if no churn inside the window
    unforeseeable: np.ndarray  # bool [n]: the churn came from the health-independent hazard
    shocks: pd.DataFrame  # acc (block index), day, kind


def simulate_latent(
    *,
    rng: np.random.Generator,
    dynamics: Dynamics,
    start_day: np.ndarray,
    mu0: np.ndarray,
    failed_onboarding: np.ndarray,
    exec_sponsor: np.ndarray,
    annual: np.ndarray,
    renewal: np.ndarray,
    n_days: int,
    offset: float,
    unforeseeable: float,
) -> LatentBlock:
    n = len(start_day)
    phi, sigma = dynamics.phi, dynamics.sigma
    health = np.full((n, n_days), np.nan, dtype=np.float32)
    baseline = np.full((n, n_days), np.nan, dtype=np.float32)
    hazard = np.full((n, n_days), np.nan, dtype=np.float32)
    alive_m = np.zeros((n, n_days), dtype=bool)

    # Accounts that started before the window begin in their long-run state.
    mu = mu0.copy()
    h = mu + rng.normal(0.0, dynamics.stationary_sd, n)
    has_sponsor = exec_sponsor.copy()
    alive = start_day < 0
    churn_day = np.full(n, -1, dtype=np.int64)
    unforeseen = np.zeros(n, dtype=bool)
    shocks_acc: list[np.ndarray] = []
    shocks_day: list[np.ndarray] = []
    shocks_kind: list[np.ndarray] = []
    rates = np.array([dynamics.shocks[k].daily_rate for k in SHOCK_ORDER])
    targets_mu = np.array([dynamics.shocks[k].target == "mu" for k in SHOCK_ORDER])
    magnitudes = np.array([dynamics.shocks[k].magnitude for k in SHOCK_ORDER])
    needs_sponsor = np.array([dynamics.shocks[k].needs_sponsor for k in SHOCK_ORDER])

    for t in range(n_days):
        starting = start_day == t
        if starting.any():
            h[starting] = mu[starting] + np.where(
                failed_onboarding[starting], dynamics.failed_onboarding_h, rng.normal(0.0, 0.3, int(starting.sum()))
            )
            alive |= starting
        # shocks of the day (a shock that needs a sponsor only hits accounts that still have one)
        hit = rng.random((n, len(SHOCK_ORDER))) < rates
        hit &= alive[:, None]
        hit[:, needs_sponsor] &= has_sponsor[:, None]
        h = mu + phi * (h - mu) + sigma * rng.standard_normal(n)
        if hit.any():
            h = h + (hit[:, ~targets_mu] * magnitudes[~targets_mu]).sum(axis=1)
            mu_change = (hit[:, targets_mu] * magnitudes[targets_mu]).sum(axis=1)
            mu = mu + mu_change
            h = h + mu_change  # a permanent change is felt at once
            has_sponsor &= ~hit[:, needs_sponsor].any(axis=1)
            acc, kind = np.nonzero(hit)
            shocks_acc.append(acc)
            shocks_day.append(np.full(len(acc), t))
            shocks_kind.append(kind)
        lam = dynamics.daily_hazard(h, annual, renewal[:, t], offset, unforeseeable)
        health[alive, t] = h[alive]
        baseline[alive, t] = mu[alive]
        hazard[alive, t] = lam[alive]
        alive_m[:, t] = alive
        u = rng.random(n)
        churns = alive & (u < lam)
        if churns.any():
            churn_day[churns] = t
            # which hazard fired: the unforeseeable one with its share of the total
            unforeseen[churns] = u[churns] < unforeseeable
            alive &= ~churns

    shocks = pd.DataFrame(
        {
            "acc": np.concatenate(shocks_acc) if shocks_acc else np.zeros(0, dtype=np.int64),
            "day": np.concatenate(shocks_day) if shocks_day else np.zeros(0, dtype=np.int64),
            "kind": np.asarray(SHOCK_ORDER, dtype=object)[np.concatenate(shocks_kind)]
            if shocks_kind
            else np.zeros(0, dtype=object),
        }
    )
    return LatentBlock(health, baseline, hazard, alive_m, churn_day, unforeseen, shocks)
