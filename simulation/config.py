"""Simulation parameters: what the user sets (`SimulationConfig`) and the latent dynamics
(`Dynamics`) that both the simulator and the oracle use, so the two can never disagree.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Accounts per generation block. Fixed: each block has its own random stream, so results depend
#: only on the seed and the sizes, and memory stays flat however many accounts are simulated.
BLOCK_SIZE = 2000


class SimulationConfig(BaseModel):
    """What a run of the simulator produces; every field is a CLI flag or a YAML key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    accounts: int = Field(2000, ge=1, le=2_000_000, description="number of accounts")
    days: int = Field(730, ge=60, le=3650, description="length of the observed window in days")
    seed: int = Field(42, ge=0, description="random seed; the same seed gives identical files")
    start: dt.date = Field(dt.date(2024, 1, 1), description="first day of the observed window (UTC)")
    annual_churn_rate: float = Field(0.12, gt=0.01, lt=0.6, description="target yearly churn rate of the base")
    unforeseeable_share: float = Field(
        0.2,
        ge=0.0,
        lt=1.0,
        description="share of churn hazard not driven by account health (budget cuts, acquisitions)",
    )
    new_account_share: float = Field(
        0.3, ge=0.0, le=1.0, description="share of accounts whose contract starts inside the window"
    )
    segment_mix: dict[str, float] = Field(
        default_factory=lambda: {"smb": 0.6, "mid_market": 0.3, "enterprise": 0.1},
        description="share of accounts per segment",
    )

    @model_validator(mode="after")
    def _check_mix(self) -> SimulationConfig:
        allowed = {"smb", "mid_market", "enterprise"}
        if set(self.segment_mix) - allowed or not self.segment_mix:
            raise ValueError(f"segment_mix keys must be among {sorted(allowed)}, got {sorted(self.segment_mix)}")
        if any(v < 0 for v in self.segment_mix.values()) or abs(sum(self.segment_mix.values()) - 1) > 1e-6:
            raise ValueError(f"segment_mix shares must be >= 0 and sum to 1, got {self.segment_mix}")
        return self


class Shock(BaseModel):
    """A random event that moves an account's health: `h` shocks decay, `mu` shocks persist."""

    model_config = ConfigDict(frozen=True)

    daily_rate: float
    target: str  # "h" (transient) or "mu" (permanent change of the account's baseline)
    magnitude: float
    needs_sponsor: bool = False


class Dynamics(BaseModel):
    """The latent health process and the churn hazard (documented in simulation/README.md).

    Health follows an AR(1) around a per-account baseline mu:
        h[t] = mu + phi * (h[t-1] - mu) + sigma * eps[t] + transient shocks
    Churn hazard on day t depends on h[t], the billing term and whether day t is a renewal:
        annual, renewal day:  sigmoid(renewal_logit + offset - renewal_slope * h)
        annual, other days:   off_renewal_factor * monthly daily hazard
        monthly, any day:     exp(monthly_log_rate + offset - monthly_slope * h) / 30.4
    plus an unforeseeable hazard (budget cuts, acquisitions) independent of health.
    `offset` is solved so the base churns at `annual_churn_rate` a year.
    """

    model_config = ConfigDict(frozen=True)

    phi: float = 0.985
    stationary_sd: float = 0.5
    mu_mean: float = 0.3
    mu_sd: float = 0.75
    renewal_logit: float = math.log(0.08 / 0.92)
    renewal_slope: float = 1.8
    monthly_log_rate: float = math.log(0.008)
    monthly_slope: float = 1.5
    off_renewal_factor: float = 0.08
    failed_onboarding_rate: float = 0.2
    failed_onboarding_mu: float = -0.7
    failed_onboarding_h: float = -1.2
    shocks: dict[str, Shock] = Field(
        default_factory=lambda: {
            "product_incident": Shock(daily_rate=1 / 220, target="h", magnitude=-0.8),
            "billing_dispute": Shock(daily_rate=1 / 4000, target="h", magnitude=-0.9),
            "security_incident": Shock(daily_rate=1 / 15000, target="h", magnitude=-1.3),
            "sponsor_left": Shock(daily_rate=1 / 1800, target="mu", magnitude=-0.7, needs_sponsor=True),
            "champion_left": Shock(daily_rate=1 / 2000, target="mu", magnitude=-0.45),
            "expansion": Shock(daily_rate=1 / 1800, target="mu", magnitude=0.35),
        }
    )

    @property
    def sigma(self) -> float:
        return self.stationary_sd * math.sqrt(1 - self.phi**2)

    def monthly_daily_hazard(self, h: np.ndarray, offset: float) -> np.ndarray:
        return np.exp(self.monthly_log_rate + offset - self.monthly_slope * h) / 30.4

    def renewal_probability(self, h: np.ndarray, offset: float) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.renewal_logit + offset - self.renewal_slope * h)))

    def daily_hazard(
        self, h: np.ndarray, annual: np.ndarray, renewal_day: np.ndarray, offset: float, unforeseeable: float
    ) -> np.ndarray:
        """Probability of churning on a day, given alive at its start (health-driven + unforeseeable)."""
        monthly = self.monthly_daily_hazard(h, offset)
        health = np.where(
            annual,
            np.where(renewal_day, self.renewal_probability(h, offset), self.off_renewal_factor * monthly),
            monthly,
        )
        health = np.minimum(health, 1.0)
        return 1.0 - (1.0 - health) * (1.0 - unforeseeable)


def unforeseeable_daily_hazard(config: SimulationConfig) -> float:
    """Daily hazard of churn that no signal announces."""
    yearly = config.annual_churn_rate * config.unforeseeable_share
    return 1.0 - (1.0 - yearly) ** (1 / 365)


def calibrate_offset(config: SimulationConfig, dynamics: Dynamics, annual_share: float) -> float:
    """Solve the hazard offset so the health-driven part churns the target share of the base a year.

    Uses the long-run distribution of health (baseline spread, AR noise, the average depth of
    transient shocks) and the billing mix; `tests` check the realised rate lands in the band.
    """
    rng = np.random.default_rng(12345)  # fixed: calibration must not depend on the run's seed
    n = 40_000
    transient = sum(s.daily_rate * s.magnitude for s in dynamics.shocks.values() if s.target == "h") / (
        1 - dynamics.phi
    )
    mu = rng.normal(dynamics.mu_mean, dynamics.mu_sd, n) + transient
    h = mu + rng.normal(0.0, dynamics.stationary_sd, n)
    annual = rng.random(n) < annual_share
    health_target = 1 - (1 - config.annual_churn_rate) / (1 - config.annual_churn_rate * config.unforeseeable_share)

    def yearly_rate(offset: float) -> float:
        # For monthly billing the hazard integrates over a year of moving health: use the
        # lognormal mean of exp(-slope * h) around mu rather than one draw.
        m_rate = (
            np.exp(
                dynamics.monthly_log_rate
                + offset
                - dynamics.monthly_slope * mu
                + (dynamics.monthly_slope * dynamics.stationary_sd) ** 2 / 2
            )
            / 30.4
        )
        monthly = 1 - np.exp(-365 * m_rate)
        yearly_annual = 1 - (1 - dynamics.renewal_probability(h, offset)) * np.exp(
            -365 * dynamics.off_renewal_factor * m_rate
        )
        return float(np.where(annual, yearly_annual, monthly).mean())

    low, high = -6.0, 6.0
    for _ in range(60):
        mid = (low + high) / 2
        if yearly_rate(mid) < health_target:
            low = mid
        else:
            high = mid
    return (low + high) / 2
