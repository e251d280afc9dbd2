"""The risk curve's calibration: a shift of each horizon's raw log-odds, fitted on held-out snapshots.

Strictly increasing in the raw risk, so a calibrated curve keeps the raw ranking (why a shift,
not a fitted slope or isotonic steps: docs/models.md). Models saved with the former isotonic steps
load as `IsotonicSteps` and are applied as they were trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

#: Log-odds are taken of probabilities clipped this far from 0 and 1 (far below any churn risk).
EPS = 1e-12
#: Fewest churn events (and fewest survivals) among a horizon's held-out rows for its own calibration.
MIN_CALIBRATION_EVENTS = 20
#: Fewest held-out cutoffs a horizon's calibration pools: one cutoff's churn rate is mostly that
#: month's noise (a backtest fold with nine training cutoffs shifted every horizon by -0.29 from
#: one held-out cutoff's 21 events: docs/models.md).
MIN_CALIBRATION_CUTOFFS = 2


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


@dataclass(frozen=True)
class Calibrator:
    """One horizon's calibration: a shift of the raw risk's log-odds, sigmoid(logit(raw) + shift).

    Strictly increasing in the raw risk, so accounts keep their ranking and share a probability only
    where their raw risks are equal; the shifts never decrease with the horizon (`fit_calibration`),
    so the calibrated curve rises wherever the raw one does. The hazard model is trained on log loss
    and is calibrated on its own period already: what the held-out snapshots correct is the drift
    of the churn rate since then (why not a fitted slope or isotonic steps: docs/models.md)."""

    shift: float = 0.0

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(logit(raw) + self.shift)))

    def to_dict(self) -> dict:
        return {"shift": self.shift}


@dataclass(frozen=True)
class IsotonicSteps:
    """The isotonic step function of models saved before the log-odds shift (np.interp over x, y):
    loaded and applied as they were trained, never fitted any more."""

    x: np.ndarray
    y: np.ndarray

    def predict(self, raw: np.ndarray) -> np.ndarray:
        return np.interp(raw, self.x, self.y)

    def to_dict(self) -> dict:
        return {"x": self.x.tolist(), "y": self.y.tolist()}


def calibrator_from_dict(saved: dict) -> Calibrator | IsotonicSteps:
    return IsotonicSteps(np.array(saved["x"]), np.array(saved["y"])) if "x" in saved else Calibrator(saved["shift"])


def log_odds_shift(raw: np.ndarray, y: np.ndarray) -> float:
    """The shift s that makes sigmoid(logit(raw) + s) fit y best (maximum likelihood, Newton's
    method): at the optimum the mean calibrated risk equals the observed rate."""
    z, shift = logit(raw), 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(z + shift)))
        step = (p - y).sum() / max((p * (1 - p)).sum(), 1e-12)
        shift -= step
        if abs(step) < 1e-10:
            break
    return float(shift)


class CalibrationPool(NamedTuple):
    """One horizon's held-out rows whose outcome is known: raw risk, outcome, and how many cutoffs
    they come from."""

    raw: np.ndarray
    y: np.ndarray
    cutoffs: int

    def enough(self) -> bool:
        """Enough to learn a shift from: MIN_CALIBRATION_EVENTS churn events and as many survivals,
        over MIN_CALIBRATION_CUTOFFS cutoffs or more."""
        events = float(self.y.sum())
        return self.cutoffs >= MIN_CALIBRATION_CUTOFFS and min(events, len(self.y) - events) >= MIN_CALIBRATION_EVENTS


def fit_calibration(pools: list[CalibrationPool]) -> list[Calibrator]:
    """One Calibrator per horizon from its pool. A pool too small to learn from (`enough`) takes
    the shift of the horizon before it (the first horizons: of the first fitted one; none fitted:
    no shift), and a shift below the previous horizon's is raised to it, so the curve stays
    non-decreasing."""
    shifts = pd.Series([log_odds_shift(p.raw, p.y) if p.enough() else np.nan for p in pools], dtype=float)
    return [Calibrator(float(s)) for s in shifts.ffill().bfill().fillna(0.0).cummax()]
