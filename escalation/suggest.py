"""`churn policy suggest`: the risk thresholds that would have filled a CS capacity with the most
precise escalations, on past scored snapshots and their later churn. Pure: frames in, a
`Suggestion` out; nothing is applied (pipelines/outcomes.py prints it as a diff against the live
policy and writes a YAML only when asked).

Definitions (the command's help and the README say the same):
- a **period** is one cutoff of the snapshot panel (the panel's cadence, 30 days by default): the
  capacity N is escalations per cutoff, and a candidate's volume is its mean escalations per cutoff;
- the risk rule fires on a snapshot when P(churn within h) reaches the threshold at any horizon h,
  each threshold multiplied by the account's own factor, as `escalation.decision.decide` applies
  it (high value, renewal near, and the sentiment multiplier with either); `threshold_factor`
  computes that factor for a whole panel and a test holds it equal to the decision's;
- a flagged snapshot is a **hit** when the account churned within the shortest horizon that fired
  (the horizon the rule names); precision counts only snapshots whose outcome at that horizon is
  known (censored ones count in the volume, not in the precision);
- hard triggers and the effort rule are not thresholds: their escalations come on top of N.

The search: a candidate moves some thresholds by one common factor s (keeping their ratios, which
say how the policy weighs the horizons) and leaves the others at their current values. A snapshot
fires at factor s when max over the moving horizons of p_h / (t_h x factor) reaches s, or a fixed
horizon fires, so the volume is a step function of s found by sorting once: the smallest s (the
lowest thresholds) whose volume stays within the capacity is the one that catches most. Candidates:
all the horizons asked for together, and each of them alone; the most precise candidate wins.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NotRequired, TypedDict

import numpy as np
import pandas as pd

from core.vocabulary import HORIZONS
from escalation.policy import EscalationPolicy

#: thresholds are suggested on this grid, rounded up so the volume stays within the capacity
STEP = 0.001


def threshold_factor(panel: pd.DataFrame, policy: EscalationPolicy) -> np.ndarray:
    """Per snapshot, what `decide` multiplies the risk thresholds by: value_factor for a high-value
    account, renewal_factor for a renewal within the window, and the sentiment multiplier when the
    customer is frustrated and either holds. Mirrors escalation/decision.py and
    escalation/signals.py `batch_inputs` (tested against them on a simulated panel)."""
    from core.vocabulary import SEGMENTS

    v, s = policy.value, policy.sentiment
    n = len(panel)

    def column(name: str) -> np.ndarray:
        return panel[name].to_numpy(dtype=float, na_value=np.nan) if name in panel.columns else np.full(n, np.nan)

    arr = column("arr_current")
    average = (
        panel.groupby("cutoff")["arr_current"].transform("mean").to_numpy(dtype=float)
        if "arr_current" in panel
        else np.full(n, np.nan)
    )
    # the batch treats a zero or missing ARR (or average) as no ratio at all
    ratio = np.where((arr > 0) & (average > 0), arr / np.where(average > 0, average, 1.0), 0.0)
    segment = (
        panel["segment"].astype("string").str.lower().fillna("").to_numpy(dtype=object)
        if "segment" in panel
        else np.full(n, "", dtype=object)
    )
    own_tier = np.isin(segment, list(SEGMENTS))
    enterprise = np.where(own_tier, segment == "enterprise", ratio >= v.high_value_ratio)
    high_value = (v.enterprise_is_high_value & enterprise) | ((arr > 0) & (average > 0) & (ratio >= v.high_value_ratio))
    days = column("days_to_renewal")
    renewal = (days >= 0) & (days <= v.renewal_window_days)
    sentiment, drift = column("customer_sentiment_30d"), column("frustration_drift_90d")
    frustrated = (sentiment <= s.frustrated_below) | ((drift <= s.worsening_below) & (sentiment < 0))
    factor = np.where(high_value, v.value_factor, 1.0) * np.where(renewal, v.renewal_factor, 1.0)
    return factor * np.where(frustrated & (high_value | renewal), s.multiplier, 1.0)


@dataclass(frozen=True)
class Outcome:
    """What a set of thresholds would have done: mean escalations per cutoff, hits among the
    flagged snapshots whose outcome is known, precision."""

    thresholds: dict[int, float]
    per_period: float
    flagged: int
    known: int
    hits: int
    precision: float | None
    # the horizon the rule names: flagged, known, hits, precision
    by_horizon: dict[int, dict] = field(default_factory=dict)


class _Candidate(TypedDict):
    """One candidate move: the horizons it moves, and its outcome or why it has none."""

    moving: list[int]
    feasible: bool
    reason: NotRequired[str]
    outcome: NotRequired[Outcome]


@dataclass(frozen=True)
class Suggestion:
    capacity: int
    periods: int
    period_days: int | None
    snapshots: int
    moving: tuple[int, ...]
    current: Outcome
    suggested: Outcome
    candidates: list[dict]
    feasible: bool
    notes: list[str]

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("current", "suggested"):
            out[key]["thresholds"] = {str(h): t for h, t in out[key]["thresholds"].items()}
            out[key]["by_horizon"] = {str(h): v for h, v in out[key]["by_horizon"].items()}
        out["diff"] = diff_lines(self)
        return out


def _fires(curve: np.ndarray, factor: np.ndarray, thresholds: dict[int, float]) -> np.ndarray:
    """Per snapshot, the shortest horizon whose threshold fires, 0 where none does."""
    named = np.zeros(len(curve), dtype=int)
    for h in sorted(thresholds, reverse=True):  # the shortest wins: written last
        named = np.where(curve[:, HORIZONS.index(h)] >= thresholds[h] * factor, h, named)
    return named


def outcome_of(
    curve: np.ndarray, factor: np.ndarray, labels: np.ndarray, periods: int, thresholds: dict[int, float]
) -> Outcome:
    """`labels`: per snapshot and horizon (HORIZONS order) 1/0 churned within it, NaN unknown."""
    named = _fires(curve, factor, thresholds)
    label = np.full(len(curve), np.nan)
    for h in thresholds:
        label = np.where(named == h, labels[:, HORIZONS.index(h)], label)
    flagged, known = named > 0, np.isfinite(label)
    by = {}
    for h in sorted(thresholds):
        mine = named == h
        k, hits = int((mine & known).sum()), int((mine & (label == 1)).sum())
        by[h] = {"flagged": int(mine.sum()), "known": k, "hits": hits, "precision": hits / k if k else None}
    k, hits = int(known.sum()), int((label == 1).sum())
    return Outcome(
        dict(thresholds),
        float(flagged.sum()) / periods if periods else 0.0,
        int(flagged.sum()),
        k,
        hits,
        hits / k if k else None,
        by,
    )


def _scale_for(
    curve: np.ndarray, factor: np.ndarray, current: dict[int, float], moving: tuple[int, ...], allowed: int
) -> float | None:
    """The smallest common factor s on the moving thresholds whose snapshots firing (on top of the
    fixed horizons' ones) stay within `allowed`; None when the fixed horizons alone exceed it."""
    fixed = {h: t for h, t in current.items() if h not in moving}
    fixed_fire = _fires(curve, factor, fixed) > 0 if fixed else np.zeros(len(curve), dtype=bool)
    room = allowed - int(fixed_fire.sum())
    if room < 0:
        return None
    ratio = np.max(np.column_stack([curve[:, HORIZONS.index(h)] / (current[h] * factor) for h in moving]), axis=1)[
        ~fixed_fire
    ]
    ratio = np.sort(ratio[np.isfinite(ratio)])[::-1]
    if room >= len(ratio):
        # every snapshot fits: the lowest thresholds that still mean something
        return float(ratio[-1]) if len(ratio) else 1.0
    return float(np.nextafter(ratio[room], np.inf))  # just above the first snapshot that no longer fits


def _thresholds(current: dict[int, float], moving: tuple[int, ...], scale: float) -> dict[int, float]:
    """Moved thresholds, rounded up to STEP (never more escalations than the scale allows), at most 1."""
    out = dict(current)
    for h in moving:
        out[h] = float(min(1.0, np.ceil(round(current[h] * scale / STEP, 6)) * STEP))
    return out


def suggest_thresholds(
    panel: pd.DataFrame,
    curve: np.ndarray,
    policy: EscalationPolicy,
    *,
    capacity: int,
    horizons: tuple[int, ...] | None = None,
) -> Suggestion:
    """Thresholds for `capacity` risk-rule escalations per cutoff of `panel` (account_id, cutoff,
    churned_within_{h}d labels and the features `threshold_factor` reads), scored by `curve`
    (one column per HORIZONS). `horizons`: which thresholds may move (default: all configured)."""
    from core.errors import InputError

    current = {int(h): float(t) for h, t in policy.risk_thresholds.items()}
    moving = tuple(sorted(horizons)) if horizons else tuple(sorted(current))
    missing = [h for h in moving if h not in current]
    if missing:
        raise InputError(
            f"--horizon {missing[0]}: config/escalation.yaml risk_thresholds has no threshold at {missing[0]} days "
            f"(it has {sorted(current)}); expected one of those"
        )
    if capacity < 1:
        raise InputError(f"--capacity {capacity}: expected at least 1 escalation per period")
    periods = int(panel["cutoff"].nunique())
    if periods == 0:
        raise InputError("the snapshot panel is empty: expected scored snapshots with their later churn")
    labels = np.column_stack([panel[f"churned_within_{h}d"].to_numpy(dtype=float, na_value=np.nan) for h in HORIZONS])
    factor = threshold_factor(panel, policy)
    allowed = capacity * periods
    notes = []
    cutoffs = np.sort(pd.to_datetime(panel["cutoff"].unique()))
    gaps = np.diff(cutoffs).astype("timedelta64[D]").astype(int) if len(cutoffs) > 1 else np.array([], dtype=int)
    period_days = int(np.median(gaps)) if len(gaps) else None
    candidates: list[_Candidate] = []
    for moved in dict.fromkeys([moving, *((h,) for h in moving)]):  # together first, then each alone
        scale = _scale_for(curve, factor, current, moved, allowed)
        if scale is None:
            candidates.append(
                {
                    "moving": list(moved),
                    "feasible": False,
                    "reason": "the thresholds held fixed alone exceed the capacity",
                }
            )
            continue
        result = outcome_of(curve, factor, labels, periods, _thresholds(current, moved, scale))
        candidates.append({"moving": list(moved), "feasible": result.per_period <= capacity + 1e-9, "outcome": result})
    feasible = [c for c in candidates if c["feasible"]]
    now = outcome_of(curve, factor, labels, periods, current)
    if feasible:
        best = max(
            feasible,
            key=lambda c: (
                c["outcome"].precision if c["outcome"].precision is not None else -1.0,
                c["outcome"].flagged,
            ),
        )
        chosen, ok = best["outcome"], True
    else:
        chosen, ok = now, False
        notes.append(
            "no thresholds of the horizons asked for fill the capacity: thresholds held fixed alone escalate more than "
            f"{capacity} per period; ask for more horizons with --horizon"
        )
    if any(t >= 1.0 for h, t in chosen.thresholds.items() if h in moving):
        notes.append("a threshold reached 1.0: even the riskiest snapshots exceed the capacity at that horizon")
    if chosen.known < 30:
        notes.append(f"only {chosen.known} flagged snapshots have a known outcome: the precision is a rough guide")
    rows = [
        {
            **{k: v for k, v in c.items() if k != "outcome"},
            **(
                {
                    "thresholds": {str(h): t for h, t in c["outcome"].thresholds.items()},
                    "per_period": c["outcome"].per_period,
                    "precision": c["outcome"].precision,
                    "known": c["outcome"].known,
                }
                if "outcome" in c
                else {}
            ),
        }
        for c in candidates
    ]
    return Suggestion(capacity, periods, period_days, len(panel), moving, now, chosen, rows, ok, notes)


def diff_lines(s: Suggestion) -> list[str]:
    """`risk_thresholds.90: 0.40 -> 0.33 (precision 0.31 -> 0.42, 12.0 -> 9.8 escalations per period)` per moved horizon."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    out = []
    for h in sorted(s.current.thresholds):
        old, new = s.current.thresholds[h], s.suggested.thresholds[h]
        if abs(old - new) < STEP / 2:
            continue
        a, b = s.current.by_horizon.get(h, {}), s.suggested.by_horizon.get(h, {})
        per = f"{a.get('flagged', 0) / s.periods:.1f} -> {b.get('flagged', 0) / s.periods:.1f} escalations per period"
        out.append(
            f"risk_thresholds.{h}: {_fmt(old)} -> {_fmt(new)} (precision {pct(a.get('precision'))} -> {pct(b.get('precision'))}, {per})"
        )
    return out


def _fmt(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if round(value, 2) != value else f"{value:.2f}"
