"""The daily run: apply the policy to a scored panel and write the queue; and the policy's own
evaluation at a fixed CS capacity.

The per-account decision (escalation/decision.py) runs only on the candidate rows that whole-column
arithmetic finds (`signals.candidates`: a superset of what can fire), so a book of 100k accounts
costs a few thousand decisions, not 100k.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import pandas as pd

from core.vocabulary import BANDS, HORIZONS
from escalation.decision import Decision, decide
from escalation.policy import EscalationPolicy
from escalation.signals import batch_inputs, candidates

QUEUE_COLUMNS = [
    "account_id",
    "cutoff",
    "escalate",
    "band",
    "queue",
    "priority",
    "owner",
    "primary_reason",
    "severity",
    "rules",
    "response_window_minutes",
    "follow_up_due",
    *[f"p_{h}d" for h in HORIZONS],
    "policy_version",
    "model_version",
    "held_out",
]


def apply_policy(
    panel: pd.DataFrame,
    curve: np.ndarray,
    policy: EscalationPolicy,
    now: dt.datetime,
    *,
    model_version: str | None = None,
    owners: pd.Series | None = None,
    names: pd.Series | None = None,
    reasons: Callable[[pd.DataFrame], list[tuple[dict, ...]]] | None = None,
    inputs: dict | None = None,
) -> tuple[list[Decision], pd.DataFrame]:
    """Decisions for every candidate row (band watch or above) and the queue as a table.
    `owners` / `names`: CSM owner and account name by account_id; `reasons(rows)` gives the top
    reasons of the escalated and held-out rows (computed only for them); `inputs`, when given,
    receives each kept decision's (facts, risk, signals) by account_id (for handoff packages).
    Held-out rows (the policy's holdout) are in the table with `held_out` true and escalate false,
    after every other row, so a queue read from the top never reaches them."""
    panel = panel.reset_index(drop=True)
    rows = np.flatnonzero(candidates(panel, curve, policy))
    average = (
        panel.groupby("cutoff")["arr_current"].transform("mean").to_numpy()
        if "arr_current" in panel
        else np.full(len(panel), np.nan)
    )
    records = panel.iloc[rows].to_dict("records")
    decisions: list[Decision] = []
    kept: list[int] = []
    for i, record in zip(rows, records, strict=True):
        account = record["account_id"]
        facts, risk, signals = batch_inputs(
            record,
            curve[i],
            (),
            policy,
            average_arr=float(average[i]),
            model_version=model_version,
            csm_owner=None if owners is None else owners.get(account),
            name=None if names is None else names.get(account),
        )
        decision = decide(facts, risk, signals, policy, now)
        if decision.band != "none":
            decisions.append(decision)
            kept.append(int(i))
            if inputs is not None:
                inputs[account] = (facts, risk, signals)
    if reasons is not None and decisions:
        escalated = [j for j, d in enumerate(decisions) if d.escalate or d.held_out]
        if escalated:
            found = reasons(panel.iloc[[kept[j] for j in escalated]])
            for j, top in zip(escalated, found, strict=True):
                decisions[j].reasons = list(top)
    queue = pd.DataFrame(
        [_row(d, panel.loc[i, "cutoff"], curve[i]) for d, i in zip(decisions, kept, strict=True)], columns=QUEUE_COLUMNS
    )
    order = queue["band"].map({b: k for k, b in enumerate(BANDS)})
    queue = queue.assign(_order=order, _sent=~queue["held_out"].astype(bool))
    queue = queue.sort_values(["_sent", "_order", "severity", "p_90d"], ascending=False, kind="stable").drop(
        columns=["_order", "_sent"]
    )
    return decisions, queue.reset_index(drop=True)


def _row(d: Decision, cutoff, curve: np.ndarray) -> dict:
    return {
        "account_id": d.account_id,
        "cutoff": cutoff,
        "escalate": d.escalate,
        "held_out": d.held_out,
        "band": d.band,
        "queue": d.queue,
        "priority": d.priority,
        "owner": d.owner,
        "primary_reason": d.primary_reason,
        "severity": d.severity,
        "rules": "; ".join(r.detail for r in d.rules),
        "response_window_minutes": d.response_window_minutes,
        "follow_up_due": d.follow_up_due,
        **{f"p_{h}d": float(curve[k]) for k, h in enumerate(HORIZONS)},
        "policy_version": d.policy_version,
        "model_version": d.model_version,
    }


def evaluate_at_capacity(
    panel: pd.DataFrame,
    curve: np.ndarray,
    policy: EscalationPolicy,
    *,
    capacity: float,
    churned_at: pd.Series,
    horizon_days: int = 90,
) -> dict:
    """At each cutoff CS can work `capacity` x accounts. `escalations`: the policy's escalations
    (most severe, then riskiest, first), capped at that; `capacity_filled`: the escalations, then
    the riskiest remaining accounts until the capacity is used. For each: precision and recall
    against churn within `horizon_days` and the median lead time from an account's first flag to
    its churn. Rows with an unknown outcome are left out."""
    label = f"churned_within_{horizon_days}d"
    known = panel[label].notna().to_numpy()
    panel, curve = panel[known].reset_index(drop=True), curve[known]
    flagged = np.zeros(len(panel), dtype=bool)  # the policy's escalations, capped at capacity
    worked = np.zeros(len(panel), dtype=bool)  # capacity filled: escalations first, then the riskiest accounts
    p90 = curve[:, HORIZONS.index(horizon_days)]
    for cutoff, index in panel.groupby("cutoff").indices.items():
        now = pd.Timestamp(cutoff).to_pydatetime()
        _, queue = apply_policy(panel.iloc[index], curve[index], policy, now)
        budget = int(np.floor(capacity * len(index)))
        escalated = queue.loc[queue["escalate"].astype(bool), "account_id"].head(budget)
        position = pd.Series(np.arange(len(index)), index=panel["account_id"].iloc[index].to_numpy())
        chosen = position[escalated.to_numpy()].to_numpy()
        flagged[index[chosen]] = True
        # held-out accounts are never worked: filling the capacity with them would treat the comparison group
        held = position[queue.loc[queue["held_out"].astype(bool), "account_id"].to_numpy()].to_numpy()
        rest = np.setdiff1d(np.arange(len(index)), np.concatenate([chosen, held]).astype(int))
        rest = rest[np.argsort(-p90[index[rest]], kind="stable")][: budget - len(chosen)]
        worked[index[np.concatenate([chosen, rest]).astype(int)]] = True
    y = panel[label].to_numpy(dtype=float) == 1

    def scores(mask: np.ndarray) -> dict:
        caught = mask & y
        first = panel.loc[caught, ["account_id", "cutoff"]].groupby("account_id")["cutoff"].min()
        lead = (churned_at.reindex(first.index) - first).dt.total_seconds() / 86400
        return {
            "accounts": int(mask.sum()),
            "caught": int(caught.sum()),
            "precision": float(caught.sum() / mask.sum()) if mask.any() else float("nan"),
            "recall": float(caught.sum() / y.sum()) if y.any() else float("nan"),
            "median_lead_days": float(lead.median()) if len(lead) else float("nan"),
        }

    return {
        "horizon_days": horizon_days,
        "capacity": capacity,
        "snapshots": int(len(panel)),
        "cutoffs": int(panel["cutoff"].nunique()),
        "churners": int(y.sum()),
        "escalations": scores(flagged),
        "capacity_filled": scores(worked),
    }
