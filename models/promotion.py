"""When a challenger may replace the champion: the rule, with its reasons, and no MLflow in sight.

The challenger wins when, on the same backtest (same snapshots, same test cutoffs), its score on
the chosen metric at every horizon is no worse than the champion's minus a tolerance, and its
expected calibration error stays within the bound at every horizon. Without a champion only the
calibration bound applies. The decision lists every reason, so a refusal says what to fix.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from models.curve import HORIZONS


class PromotionPolicy(BaseModel):
    """config/model.yaml `promotion:`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field("roc_auc", description="backtest metric compared (higher is better)")
    horizons: tuple[int, ...] = HORIZONS
    tolerance: float = Field(0.005, ge=0, description="how much worse than the champion the challenger may be")
    max_ece: float = Field(0.02, gt=0, description="calibration bound at every horizon")


def metric_key(metric: str, horizon: int, model: str = "lightgbm") -> str:
    """The MLflow metric name of a backtest figure, e.g. backtest.lightgbm.roc_auc_90d."""
    return f"backtest.{model}.{metric}_{horizon}d"


def decide(challenger: dict[str, float], champion: dict[str, float] | None, policy: PromotionPolicy) -> dict:
    """{"promote": bool, "reasons": [...], "comparison": [...]} from two runs' backtest metrics."""
    reasons: list[str] = []
    notes: list[str] = []
    comparison = []
    for h in policy.horizons:
        ece = challenger.get(metric_key("ece", h))
        if ece is None and (champion is None or metric_key(policy.metric, h) not in champion):
            notes.append(f"{h} days: not evaluated (the backtest's test cutoffs have no known {h}-day outcomes)")
            continue
        if ece is None:
            reasons.append(f"challenger has no backtest ECE at {h} days")
        elif ece > policy.max_ece:
            reasons.append(f"challenger's {h}-day ECE {ece:.4f} exceeds the calibration bound {policy.max_ece}")
        new = challenger.get(metric_key(policy.metric, h))
        old = champion.get(metric_key(policy.metric, h)) if champion else None
        comparison.append({"horizon_days": h, "metric": policy.metric, "challenger": new, "champion": old, "challenger_ece": ece})
        if champion is None:
            continue
        if new is None or old is None:
            reasons.append(f"{policy.metric} at {h} days is missing for the {'challenger' if new is None else 'champion'}")
        elif new < old - policy.tolerance:
            reasons.append(f"challenger's {h}-day {policy.metric} {new:.4f} is below the champion's {old:.4f} by more than the tolerance {policy.tolerance}")
    return {"promote": not reasons, "reasons": reasons, "notes": notes, "comparison": comparison}
