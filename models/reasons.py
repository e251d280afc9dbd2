"""What CS reads about an account's risk: the drivers apart from the context, each with the account's
own number against a reference and its effect in probability points on the horizon shown.

Points. TreeSHAP gives each feature's contribution to the model's log-odds (models/explain.py).
Log-odds have no unit a CS leader can use, so the contributions are measured from the base (the
accounts scored at the same cutoff) and scaled into probability:

    centred_i = contribution_i - mean contribution_i over the base
    points_i  = centred_i * (risk - base rate) / sum_i centred_i

where the base rate is the risk of the base's average account on the log-odds scale (`base_rate`).
The points of every feature plus the base rate add up to the account's risk exactly. Where the log-odds and the risk disagree in
direction (the risk is a calibrated curve of several interval hazards, not one sigmoid) or the
account sits on the base's average, the scale is the logistic slope risk x (1 - risk) and what it
leaves is reported as `rest` (the points no single feature carries), so the sum still holds.

References. A driver's value is read against the account's own past where its feature dictionary
entry names a `baseline` (the change against the prior 90 days), and against the typical account of
its segment at the same cutoff (the median; the whole base where the segment has fewer than
`MIN_PEERS` accounts). Everything here is numpy over whole matrices, so the API's precomputed path
and the batch run share it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import SupportsFloat

import numpy as np
import pandas as pd

from features.registry import FeatureSpec

#: accounts a segment needs before its median stands for "a typical account like this one"
MIN_PEERS = 20
#: the smallest effect worth a sentence (a hundredth of a point, the precision points are given in)
MIN_POINTS = 1e-4
#: no unit a typical-account comparison makes sense for
_NO_TYPICAL = frozenset({"flag", "category"})
#: a change against the prior 90 days smaller than this (a share, or points of a score) reads as none
STEADY_CHANGE = 0.05
#: units a reference figure names, as in "(typical enterprise account: 20 minutes)"
_TIME_UNITS = frozenset({"days", "hours", "minutes"})


@dataclass(frozen=True)
class Reference:
    """What one horizon's points and "typical account" figures are measured against."""

    horizon_days: int
    base_rate: float
    #: [features] mean log-odds contribution of each feature over the base
    mean_contribution: np.ndarray
    #: medians by segment (index; "" = the whole base) and feature (columns); numeric drivers only
    typical: pd.DataFrame

    @classmethod
    def of(
        cls,
        horizon_days: int,
        risk: np.ndarray,
        contrib: np.ndarray,
        frame: pd.DataFrame,
        features: Sequence[str],
        specs: Mapping[str, FeatureSpec],
    ) -> Reference:
        """The base's reference from its risks [n], contributions [n, features] and values (`frame`)."""
        numeric = [
            f
            for f in features
            if f in frame.columns
            and (s := specs.get(f)) is not None
            and s.role == "driver"
            and s.unit not in _NO_TYPICAL
            and s.kind == "numeric"
        ]
        values = frame[numeric].apply(pd.to_numeric, errors="coerce").astype("float64")
        typical = values.median().to_frame("").T
        if "segment" in frame.columns and len(frame):
            segment = frame["segment"].astype("str")
            sizes = segment.value_counts()
            big = sizes.index[sizes >= MIN_PEERS]
            if len(big):
                typical = pd.concat(
                    [
                        typical,
                        values[segment.isin(big).to_numpy()].groupby(segment[segment.isin(big)].to_numpy()).median(),
                    ]
                )
        rate = base_rate(risk)
        mean = contrib.mean(axis=0) if len(contrib) else np.zeros(len(features))
        return cls(horizon_days, rate, mean, typical)

    def typical_value(self, feature: str, segment: object) -> float | None:
        if feature not in self.typical.columns:
            return None
        key = str(segment) if segment is not None and str(segment) in self.typical.index else ""
        value = self.typical.at[key, feature]
        return None if pd.isna(value) else float(value)


def base_rate(risk: np.ndarray) -> float:
    """The risk of the base's average account on the log-odds scale, where the model adds up its
    signals: sigmoid(mean(logit(risk))). Measured from there, an account above the average in
    log-odds is above the base rate in risk; measured from the plain mean (pulled up by the riskiest
    few) a slightly-above-average account would sit below it and its points would not add up."""
    if not len(risk):
        return float("nan")
    p = np.clip(np.asarray(risk, dtype=float), 1e-9, 1 - 1e-9)
    return float(1.0 / (1.0 + np.exp(-np.mean(np.log(p) - np.log1p(-p)))))


def points(contrib: np.ndarray, risk: np.ndarray, reference: Reference) -> tuple[np.ndarray, np.ndarray]:
    """(points [n, features], rest [n]) in probability (0.12 = 12 points): reference.base_rate +
    points.sum(1) + rest == risk for every row."""
    centred = contrib - reference.mean_contribution
    total = centred.sum(axis=1)
    gap = risk - reference.base_rate
    agree = (total * gap > 0) & (np.abs(total) > 1e-9)
    scale = np.where(agree, gap / np.where(agree, total, 1.0), risk * (1.0 - risk))
    pts = centred * scale[:, None]
    return pts, gap - pts.sum(axis=1)


# -- words ----------------------------------------------------------------------------------------


def _number(value: float, spec: FeatureSpec) -> str:
    """A value as the feature's own sentence writes it (a share as a percentage, a change with its direction)."""
    if spec.unit == "usd":
        return f"${value:,.0f}"
    if spec.unit in ("pct_change", "pct_per_week"):
        return f"{'up' if value >= 0 else 'down'} {abs(value) * 100:.0f}%" + (
            " a week" if spec.unit == "pct_per_week" else ""
        )
    if "{pct}%" in spec.template:
        return f"{value * 100:.0f}%"
    text = spec.figure(value)
    if spec.unit in _TIME_UNITS:  # the template names the unit beside the account's value only
        return f"{text} {spec.unit.removesuffix('s') if text == '1' else spec.unit}"
    return text


def point_size(points: float) -> str:
    """The size of an effect in percentage points: whole from one point up, else one decimal (0.4;
    0.96 reads 1, not 1.0)."""
    return f"{abs(points):.0f}" if abs(points) >= 0.95 else f"{abs(points):.1f}"


def effect(pts: float, horizon_days: int) -> str:
    """ "adds 12 points to the 90-day risk" (one decimal below a point)."""
    size = point_size(pts * 100)
    noun = "point" if size == "1" else "points"
    return f"{'adds' if pts >= 0 else 'takes'} {size} {noun} {'to' if pts >= 0 else 'off'} the {horizon_days}-day risk"


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def sentence(
    name: str,
    value: SupportsFloat | str | None,
    values: Mapping,
    specs: Mapping[str, FeatureSpec],
    reference: Reference | None,
) -> str:
    """The reason in words: the account's value, what it was before (where a baseline exists) and
    what the typical account of its segment shows."""
    spec = specs.get(name)
    if spec is None:
        return f"{name} = {value}"
    if value is None or _missing(value):
        return spec.sentence(None)
    text = spec.sentence(value)
    change = values.get(spec.baseline) if spec.baseline else None
    if change is not None and not _missing(change):
        v, c = float(value), float(change)
        before = v - c if spec.unit == "score" else v / (1.0 + c) if c > -1 else None
        if before is not None and np.isfinite(before):
            if abs(c) < STEADY_CHANGE or _number(before, spec) == _number(v, spec):
                text += ", as in the prior 90 days"
            else:
                text += f", {'down' if v < before else 'up'} from {_number(before, spec)} in the prior 90 days"
    if reference is not None and spec.role == "driver":
        segment = values.get("segment")
        typical = reference.typical_value(name, segment)
        if typical is not None:
            known = segment is not None and str(segment) in reference.typical.index
            who = f"typical {str(segment).replace('_', ' ')} account" if known else "typical account"
            text += f" ({who}: {_number(typical, spec)})"
    return text


def describe(
    name: str, contribution: float, pts: float, values: Mapping, specs: Mapping[str, FeatureSpec], reference: Reference
) -> dict:
    spec = specs.get(name)
    value = values.get(name)
    return {
        "feature": name,
        "family": spec.family if spec else "other",
        "role": spec.role if spec else "driver",
        "value": None if _missing(value) else value,
        "contribution": round(float(contribution), 4),
        "points": _points(pts),
        "sentence": sentence(name, value, values, specs, reference),
        "effect": effect(float(pts), reference.horizon_days),
    }


def is_driver(features: Sequence[str], specs: Mapping[str, FeatureSpec]) -> np.ndarray:
    return np.array([(s := specs.get(f)) is None or s.role == "driver" for f in features], dtype=bool)


def account_reasons(
    contrib: np.ndarray,
    pts: np.ndarray,
    rest: float,
    features: Sequence[str],
    values: Mapping,
    specs: Mapping[str, FeatureSpec],
    reference: Reference,
    n: int = 3,
) -> dict:
    """One account: drivers raising and lowering its risk (by points), the context, the base rate
    and the rest, so that base_rate + every feature's points + rest = the risk."""
    driver = is_driver(features, specs)
    order = np.argsort(-pts)
    raising = [i for i in order if driver[i] and pts[i] >= MIN_POINTS][:n]
    lowering = [i for i in order[::-1] if driver[i] and pts[i] <= -MIN_POINTS][:n]
    context = [i for i in np.argsort(-np.abs(pts)) if not driver[i] and abs(pts[i]) >= MIN_POINTS][:n]

    def word(picked: list[int]) -> list[dict]:
        return [describe(features[i], contrib[i], pts[i], values, specs, reference) for i in picked]

    return {
        "raising": word(raising),
        "lowering": word(lowering),
        "context": word(context),
        "base_rate": round(reference.base_rate, 6),
        "rest_points": _points(rest),
        "points_by_family": _by_family(pts, features, specs),
    }


def _by_family(pts: np.ndarray, features: Sequence[str], specs: Mapping[str, FeatureSpec]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, p in zip(features, pts, strict=True):
        family = specs[name].family if name in specs else "other"
        out[family] = out.get(family, 0.0) + float(p) * 100
    return {f: round(v, 2) for f, v in sorted(out.items(), key=lambda kv: -abs(kv[1]))}


def top_reasons(
    contrib: np.ndarray,
    risk: np.ndarray,
    features: Sequence[str],
    records: Sequence[Mapping],
    specs: Mapping[str, FeatureSpec],
    reference: Reference,
    n: int = 3,
) -> list[dict]:
    """For every row of a contribution matrix [rows, features]: its top `n` drivers raising the
    risk and top `n` context features, with points. The ranking is one argsort over the matrix;
    only the chosen features become sentences."""
    pts, rest = points(contrib, risk, reference)
    driver = is_driver(features, specs)
    ranked_drivers = np.argsort(-np.where(driver, pts, -np.inf), axis=1)[:, :n]
    ranked_context = np.argsort(-np.where(driver, -np.inf, np.abs(pts)), axis=1)[:, :n]
    out = []
    for i, record in enumerate(records):
        raising = [j for j in ranked_drivers[i] if driver[j] and pts[i, j] >= MIN_POINTS]
        context = [j for j in ranked_context[i] if not driver[j] and abs(pts[i, j]) >= MIN_POINTS]
        out.append(
            {
                "raising": tuple(
                    describe(features[j], contrib[i, j], pts[i, j], record, specs, reference) for j in raising
                ),
                "context": tuple(
                    describe(features[j], contrib[i, j], pts[i, j], record, specs, reference) for j in context
                ),
                "base_rate": reference.base_rate,
                "rest_points": _points(rest[i]),
            }
        )
    return out


def base_points(
    model, frame: pd.DataFrame, specs: Mapping[str, FeatureSpec], horizon_days: int = 90
) -> tuple[np.ndarray, Reference]:
    """Every account's points [n, features] at a horizon, measured against `frame` itself (a base
    scored at one cutoff), and that reference."""
    from core.vocabulary import HORIZONS

    X = model.encode(frame)
    risk = model.curve_matrix(X)[:, HORIZONS.index(horizon_days)]
    contrib = model.contributions_matrix(X, horizon_days)[:, :-1]
    reference = Reference.of(horizon_days, risk, contrib, frame, model.features, specs)
    return points(contrib, risk, reference)[0], reference


def feature_importance(pts: np.ndarray, features: Sequence[str], specs: Mapping[str, FeatureSpec]) -> pd.DataFrame:
    """Mean |points| per feature over a base (percentage points, either way), with its family, role
    and description, largest first."""
    found = [specs.get(f) for f in features]
    table = pd.DataFrame(
        {
            "feature": list(features),
            "family": [s.family if s else "other" for s in found],
            "role": [s.role if s else "driver" for s in found],
            "description": [s.description if s else f for s, f in zip(found, features, strict=True)],
            "mean_abs_points": np.abs(pts).mean(axis=0) * 100 if len(pts) else np.zeros(len(features)),
        }
    )
    return table.sort_values("mean_abs_points", ascending=False, ignore_index=True)


def family_importance(pts: np.ndarray, features: Sequence[str], specs: Mapping[str, FeatureSpec]) -> pd.Series:
    """Mean |points| per driver family, and for all context together ("context"), over a base: a
    family's features are summed per account first, so signals that cancel out do not add up."""
    groups = pd.Series(
        [("context" if s.role == "context" else s.family) if (s := specs.get(f)) else "other" for f in features]
    )
    summed = pd.DataFrame(pts * 100).T.groupby(groups.to_numpy()).sum().T
    return summed.abs().mean().sort_values(ascending=False)


def _points(share: float) -> float:
    """A share of probability in percentage points, to two decimals; never -0.0 (JSON showed "-0.0")."""
    return round(float(share) * 100, 2) + 0.0
