"""Does escalating work? An optional holdout of escalations and the estimate of their effect.

A configurable share of the escalations that only crossed a risk threshold (never a hard trigger,
a critical band, a bot handoff or the effort rule) is recorded as held out instead of sent. Which
accounts are held out is decided by a stable hash of the salt and the account id, so an account is
always on the same side (a daily run and the API agree, and a re-run assigns nobody anew), and the
assignment is independent of anything the model or CS knows: the held-out accounts are a random
comparison group for the treated ones.

`estimate_effect` compares churn in the two groups: the effect is the churn rate of the held-out
group minus that of the treated group (churn prevented per escalated account), with Newcombe's
hybrid score interval for a difference of two proportions (method 10 of Newcombe 1998, built from
Wilson intervals), which keeps its coverage with small groups and rates near 0 or 1 where the
normal approximation does not.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from statistics import NormalDist
from typing import Any

import numpy as np

from core.config.escalation import MAX_SHARE  # the largest share that can be held out
from core.errors import InputError

#: fired rules that make an escalation eligible for the holdout: only a risk threshold crossed
ELIGIBLE_RULES = frozenset({"risk"})

_SCALE = float(2**64)
METHOD = "Newcombe hybrid score interval (from Wilson intervals) for a difference of two proportions"


def _uniform(account_id: str, salt: str) -> float:
    """The account's stable draw in [0, 1): the first 8 bytes of sha256(salt|account_id)."""
    digest = hashlib.sha256(f"{salt}|{account_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def _check_share(share: float) -> float:
    share = float(share)
    if not 0.0 <= share <= MAX_SHARE:
        raise InputError(f"holdout.share: expected a share in [0, {MAX_SHARE}], got {share}")
    return share


def in_holdout(account_id: str, share: float, salt: str = "") -> bool:
    """Whether the account falls in the holdout: sha256 of `salt|account_id`, read as a uniform
    number in [0, 1), below `share`. Stable across runs, processes and machines; share 0 holds
    out nobody. A share outside [0, 0.5] is an InputError naming `holdout.share`."""
    share = _check_share(share)
    return share > 0 and _uniform(str(account_id), salt) < share


def holdout_mask(account_ids: Iterable[str], share: float, salt: str = "") -> np.ndarray:
    """`in_holdout` for many accounts at once: a boolean array aligned with `account_ids`."""
    share = _check_share(share)
    ids = [str(a) for a in account_ids]
    if share == 0 or not ids:
        return np.zeros(len(ids), dtype=bool)
    # hashing is per id by nature (about 1 s per million ids); the comparison is one array operation
    return np.fromiter((_uniform(a, salt) for a in ids), dtype=np.float64, count=len(ids)) < share


def eligible(rules: Iterable[str]) -> bool:
    """An escalation whose fired rules are all risk-threshold crossings (and at least one)."""
    fired = set(rules)
    return bool(fired) and fired <= ELIGIBLE_RULES


def _wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _outcomes(values, name: str) -> np.ndarray:
    array = np.asarray(values if isinstance(values, np.ndarray) else list(values), dtype=float).ravel()
    bad = ~np.isin(array, (0.0, 1.0))  # NaN is not in the set either
    if bad.any():
        raise InputError(
            f"{name}: expected churn outcomes 0/1 or False/True with no blanks, got {sorted(set(array[bad].tolist()))[:5]}"
        )
    return array


def estimate_effect(treated_churned, held_out_churned, *, confidence: float = 0.95, min_per_group: int = 30) -> dict:
    """The effect of escalating on churn, from the outcomes (1 = churned within the horizon) of the
    treated (escalated) and the held-out accounts.

    Returns {"treated": n_t, "held_out": n_h, "churned_treated", "churned_held_out" (counts),
    "churn_treated", "churn_held_out" (rates; None for an empty group), "effect": churn_held_out -
    churn_treated (churn prevented per escalated account; negative: the escalated churned more),
    "ci": [lo, hi] (Newcombe's hybrid score interval at `confidence`; "method" names it),
    "accounts": n_t + n_h, "saved": effect x n_t (accounts saved among the escalated), "saved_ci":
    the interval x n_t, "enough": bool, "reason": why not enough, "verdict": a sentence}.

    Not enough ("too few to tell") has exactly two causes, named in "reason":
    - "group_size": a group has fewer than `min_per_group` accounts with a known outcome; no
      estimate is read from it (the numbers are still returned);
    - "interval_spans_zero": both groups are large enough but the interval contains zero, so the
      data cannot tell the effect from no effect at all, whatever the point estimate says.
    `enough` is True only when neither holds: then the verdict states the effect and the accounts
    saved ("about N accounts saved, between a and b")."""
    if not 0 < confidence < 1:
        raise InputError(f"confidence: expected a level in (0, 1), got {confidence}")
    if int(min_per_group) < 1:
        raise InputError(f"min_per_group: expected at least 1, got {min_per_group}")
    treated = _outcomes(treated_churned, "treated_churned")
    held = _outcomes(held_out_churned, "held_out_churned")
    n_t, n_h = int(treated.size), int(held.size)
    c_t, c_h = int(treated.sum()), int(held.sum())
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    out: dict[str, Any] = {
        "treated": n_t,
        "held_out": n_h,
        "churned_treated": c_t,
        "churned_held_out": c_h,
        "churn_treated": c_t / n_t if n_t else None,
        "churn_held_out": c_h / n_h if n_h else None,
        "effect": None,
        "ci": None,
        "confidence": confidence,
        "method": METHOD,
        "accounts": n_t + n_h,
        "saved": None,
        "saved_ci": None,
        "min_per_group": int(min_per_group),
        "enough": False,
        "reason": "group_size",
    }
    if n_t == 0 or n_h == 0:
        out["verdict"] = (
            f"Too few to tell: {n_t} escalated and {n_h} held-out accounts with a known outcome; "
            f"each group needs at least {min_per_group}."
        )
        return out
    p_t, p_h = c_t / n_t, c_h / n_h
    lo_t, hi_t = _wilson(c_t, n_t, z)
    lo_h, hi_h = _wilson(c_h, n_h, z)
    effect = p_h - p_t
    # Newcombe (1998) method 10: each group's Wilson limits bound its own share of the error
    lo = effect - math.sqrt((p_h - lo_h) ** 2 + (hi_t - p_t) ** 2)
    hi = effect + math.sqrt((hi_h - p_h) ** 2 + (p_t - lo_t) ** 2)
    big = n_t >= min_per_group and n_h >= min_per_group
    spans = lo <= 0 <= hi
    out.update(
        effect=effect,
        ci=[lo, hi],
        saved=effect * n_t,
        saved_ci=[lo * n_t, hi * n_t],
        enough=big and not spans,
        reason=None if big and not spans else "group_size" if not big else "interval_spans_zero",
    )
    rates = (
        f"{p_h:.1%} of {n_h} held-out accounts churned against {p_t:.1%} of {n_t} escalated ones "
        f"(difference {effect:+.1%}, {confidence:.0%} interval {lo:+.1%} to {hi:+.1%})"
    )
    if not big:
        out["verdict"] = (
            f"Too few to tell: {rates}; each group needs at least {min_per_group} accounts with a known outcome."
        )
    elif spans:
        out["verdict"] = (
            f"Too few to tell: {rates}; the interval includes zero, so {n_t + n_h} accounts cannot tell an effect from chance."
        )
    elif effect > 0:
        out["verdict"] = (
            f"Escalating lowers churn: {rates}; about {effect * n_t:.0f} of the {n_t} escalated accounts saved, "
            f"between {lo * n_t:.0f} and {hi * n_t:.0f}."
        )
    else:
        out["verdict"] = (
            f"Escalated accounts churned more than held-out ones: {rates}; about {-effect * n_t:.0f} more of the "
            f"{n_t} escalated accounts churned, between {-hi * n_t:.0f} and {-lo * n_t:.0f}."
        )
    return out
