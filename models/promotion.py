"""When a challenger may replace the champion: the rule, with its reasons, and no MLflow in sight.

The challenger wins when, on the same backtest (same snapshots, same test cutoffs), its score on
the chosen metric at every horizon is no worse than the champion's minus a tolerance, and its
expected calibration error stays within the bound at every horizon. Without a champion the
challenger is held to the rules baseline of its own backtest instead (the warning signs counted:
what CS would work from without a model), by the same tolerance: a first model that ranks
churners worse than counting warning signs is not put in front of CS unless forced. The decision
lists every reason, so a refusal says what to fix.

A short history leaves some horizons without a backtest figure (models/backtest.py), a test set
of one class leaves a metric undefined, and one with fewer than MIN_INTERVAL_CHURNERS churned
accounts cannot tell two models apart: those horizons are compared on what both sides have, and
the notes say which were left out and why. Only when no horizon at all can be judged is that a
reason to refuse.
"""

from __future__ import annotations

from core.config.model import PromotionPolicy
from models.metrics import MIN_INTERVAL_CHURNERS

#: model-version tags of the champion alias' history (models/registry.py writes them when the alias
#: moves): the champion a version replaced, and since when it is the champion
CHAMPION_PREVIOUS, CHAMPION_SINCE = "champion.previous", "champion.since"
#: what a challenger is compared with when there is no champion (policy.first_against): its own
#: backtest's rows of this model
FIRST_REFERENCE = "rules"


def metric_key(metric: str, horizon: int, model: str = "lightgbm") -> str:
    """The MLflow metric name of a backtest figure, e.g. backtest.lightgbm.roc_auc_90d."""
    return f"backtest.{model}.{metric}_{horizon}d"


def _missing(side: str, metric: str, h: int) -> str:
    return (
        f"{h} days: not compared: {side} has no {metric} at this horizon (not evaluated, or undefined on its test set)"
    )


def decide(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    policy: PromotionPolicy,
    *,
    challenger_model: str = "lightgbm",
    champion_model: str = "lightgbm",
) -> dict:
    """{"promote": bool, "reasons": [...], "notes": [...], "comparison": [...], "against": ...} from
    two runs' backtest metrics. Horizons the challenger's backtest did not evaluate are left out with a
    note; the metric is compared on the horizons both sides have. Each side is read as the model
    it is (`*_model`: its rows in the backtest, 'lightgbm' for the curve, 'logistic' for a served
    logistic baseline). Without a champion the other side is the challenger's own backtest rows
    of FIRST_REFERENCE (unless `policy.first_against` is 'none'), given in each comparison row
    under that name (`champion` stays null); a run that logged none is judged on calibration
    alone, and a note says so."""
    reasons: list[str] = []
    notes: list[str] = []
    comparison = []
    # the other side: its metrics, its rows in them, what the messages call it, its key in `comparison`
    if champion is not None:
        other, other_model, name, key = champion, champion_model, "the champion", "champion"
    elif policy.first_against == "none":
        other, other_model, name, key = None, champion_model, "", "champion"
    elif any(k.startswith(f"backtest.{FIRST_REFERENCE}.") for k in challenger):
        other, other_model, key = challenger, FIRST_REFERENCE, FIRST_REFERENCE
        name = f"the {FIRST_REFERENCE} baseline of the same backtest"
    else:
        other, other_model, name, key = None, champion_model, "", "champion"
        notes.append(
            f"no champion, and the challenger's run logged no {FIRST_REFERENCE} baseline: judged on calibration alone"
        )
    for h in policy.horizons:
        ece = challenger.get(metric_key("ece", h, challenger_model))
        new = challenger.get(metric_key(policy.metric, h, challenger_model))
        if ece is None and new is None:
            notes.append(
                f"{h} days: not evaluated by the challenger's backtest (its test cutoffs have no known {h}-day outcomes)"
            )
            continue
        if ece is None:
            notes.append(_missing("the challenger's backtest", "ECE", h))
        elif ece > policy.max_ece:
            reasons.append(f"challenger's {h}-day ECE {ece:.4f} exceeds the calibration bound {policy.max_ece}")
        old = other.get(metric_key(policy.metric, h, other_model)) if other is not None else None
        churners = challenger.get(metric_key("churned_accounts", h, challenger_model))  # absent in older runs
        row = {"horizon_days": h, "metric": policy.metric, "challenger": new, "champion": None, key: old}
        comparison.append({**row, "challenger_ece": ece, "compared": False})
        if other is None:
            continue
        if new is None or old is None:
            notes.append(_missing("the challenger's backtest" if new is None else name, policy.metric, h))
        elif churners is not None and churners < MIN_INTERVAL_CHURNERS:
            notes.append(
                f"{h} days: not compared: the challenger's backtest has {churners:.0f} churned account(s) at this "
                f"horizon, too few to tell two models apart (at least {MIN_INTERVAL_CHURNERS})"
            )
        else:
            comparison[-1]["compared"] = True
            if new < old - policy.tolerance:
                reasons.append(
                    f"challenger's {h}-day {policy.metric} {new:.4f} is below {name}'s {old:.4f} by more "
                    f"than the tolerance {policy.tolerance}"
                )
    compared = [c["horizon_days"] for c in comparison if c["compared"]]
    if not comparison:
        reasons.append(
            "the challenger's backtest has no figures at any horizon of the policy "
            f"({', '.join(map(str, policy.horizons))} days): nothing to judge it on"
        )
    elif other is not None and not compared:
        reasons.append(f"no horizon could be compared with {name} (the notes say why for each): nothing to judge it on")
    elif other is not None and len(compared) < len(policy.horizons):
        notes.append(
            f"{policy.metric} compared with {name} at {', '.join(map(str, compared))} days only (the horizons both have)"
        )
    return {
        "promote": not reasons,
        "reasons": reasons,
        "notes": notes,
        "comparison": comparison,
        "against": name or None,  # what the metric was held to (None: calibration alone)
    }


def rollback_target(current: str, versions: dict[str, dict[str, str]]) -> tuple[str | None, str]:
    """The version `churn rollback` returns the champion to, and why that one: the champion the
    current one replaced (its `champion.previous` tag, written at promotion), else the highest
    version below it (a champion promoted before the history was kept). `versions`: every
    registered version's tags by version number. (None, why) when there is none."""
    previous = versions.get(current, {}).get(CHAMPION_PREVIOUS)
    if previous is not None and previous in versions and previous != current:
        return previous, f"the champion before version {current} (recorded when {current} was promoted)"
    below = [int(v) for v in versions if v.isdigit() and int(v) < int(current)]
    if not below:
        return None, f"version {current} replaced no recorded champion and no lower version exists"
    return str(max(below)), f"the highest version below {current} (no earlier champion recorded on it)"
