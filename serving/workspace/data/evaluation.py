"""What the book view shows of the store and the model's quality: the escalation funnel of the
filtered accounts, the store's outcomes and held-out comparison (escalation/evaluation.py, called
directly as `churn evaluate` does, without the pipelines layer), the handoff ratings by queue and
owner, and model health (the backtest metrics the served model logged, drift from `churn monitor`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.vocabulary import HORIZONS
from core import clock
from escalation.evaluation import NO_OWNER
from serving.workspace.data.history import ModelView
from serving.workspace.data.sources import naive, positions
from serving.workspace.format import OUTCOME_WORDS, RESOLUTION_LABELS, money, percent, share, span

#: the monitors' states in words
DRIFT_WORDS = {
    "ok": "stable",
    "breach": "needs attention",
    "not_enough_data": "not enough data yet",
    "unavailable": "not measured",
}


@dataclass(frozen=True)
class StoreView:
    """The store as the book reads it, at one state of the store (`signature`)."""

    signature: tuple
    position: np.ndarray  # [escalations] account position in the snapshot, -1 if not in it
    account_ids: np.ndarray
    status: np.ndarray
    outcome: np.ndarray  # "" when not resolved
    acknowledged: np.ndarray  # bool: ever acknowledged
    respond_by: np.ndarray  # naive UTC datetime64, NaT without a window
    block: dict  # escalation/evaluation.py's block for the whole store
    ratings: dict


class StoreViews:
    """What the book reads from the store, rebuilt only when the store changed since the last
    request: each escalation's account, status, outcome and whether it was acknowledged (for the
    funnel of any filter), and the whole store's evaluation, held-out comparison and ratings."""

    def __init__(self, store: Any, index: pd.Index, outcomes: tuple[pd.Series | None, pd.Timestamp | None, Any]):
        self.store = store
        self.index = index
        self.churned_at, self.data_end, self.arr_by_account = outcomes
        self._cached: StoreView | None = None

    def current(self, notes: list[str]) -> StoreView | None:
        from sqlalchemy.exc import SQLAlchemyError

        from escalation.evaluation import NO_QUEUE, evaluate_escalations, rating_table, read_store

        if self.store is None:
            notes.append("No operational store is configured: there is no escalation funnel or outcome to show.")
            return None
        try:
            signature = self._signature()
            cached = self._cached
            if cached is not None and cached.signature == signature:
                return cached
            tables = read_store(self.store)
        except SQLAlchemyError as exc:
            notes.append(f"The operational store could not be read ({type(exc).__name__}): no funnel or outcomes.")
            return None
        if self.churned_at is None or self.data_end is None:
            block = {
                "available": False,
                "note": "the data folder the scores came from is not there: what happened after each escalation is unknown",
            }
        else:
            block = evaluate_escalations(tables, self.churned_at, self.data_end, arr_by_account=self.arr_by_account)
        e = tables.escalations
        changes = tables.status_changes
        acknowledged = pd.Index(changes.loc[changes["to_status"] == "acknowledged", "escalation_id"].unique())
        base = e.assign(queue=e["queue"].fillna(NO_QUEUE), owner=e["owner"].fillna(NO_OWNER))
        ratings = {
            by: [
                {
                    by: str(r[by]),
                    "rating_mean": float(r["rating_mean"]),
                    "rating_text": f"{r['rating_mean']:.1f} of 5",
                    "ratings": int(r["ratings"]),
                }
                for r in rating_table(base, tables.feedback, by).to_dict("records")
            ]
            for by in ("queue", "owner")
        }
        view = StoreView(
            signature=signature,
            position=positions(self.index, e["account_id"]) if len(e) else np.zeros(0, dtype=np.int64),
            account_ids=e["account_id"].astype(str).to_numpy(dtype=object),
            status=e["status"].astype(str).to_numpy(dtype=object),
            outcome=e["outcome"].astype(object).where(e["outcome"].notna(), "").to_numpy(dtype=object),
            acknowledged=acknowledged.get_indexer(e["id"]) >= 0 if len(e) else np.zeros(0, dtype=bool),
            respond_by=naive(e["respond_by"]) if len(e) else np.zeros(0, dtype="datetime64[ns]"),
            block=block,
            ratings=ratings,
        )
        self._cached = view
        return view

    def _signature(self) -> tuple:
        """A cheap fingerprint of what the evaluation reads: it changes with every write that matters."""
        from sqlalchemy import func, select

        from escalation.store import DecisionRow, EscalationRow, FeedbackRow, StatusChangeRow

        query = select(
            select(func.count()).select_from(EscalationRow).scalar_subquery(),
            select(func.max(EscalationRow.updated_at)).scalar_subquery(),
            select(func.count()).select_from(StatusChangeRow).scalar_subquery(),
            select(func.count()).select_from(FeedbackRow).scalar_subquery(),
            select(func.count()).select_from(DecisionRow).scalar_subquery(),
        )
        with self.store.engine.connect() as connection:
            return tuple(str(v) for v in connection.execute(query).one())


def evaluation_view(views: StoreViews, mask: np.ndarray, view: ModelView, notes: list[str]) -> dict:
    """The escalation funnel of the filtered accounts, and the whole store's outcomes, held-out
    comparison and ratings by queue and owner."""
    from escalation.store import ACTIVE

    store = views.current(notes)
    if store is None:
        return {"funnel": None, "outcomes": None, "holdout": None, "ratings": None}
    keep = np.ones(len(store.position), dtype=bool)
    if not mask.all():
        keep = (store.position >= 0) & mask[np.maximum(store.position, 0)]
    status, outcome = store.status[keep], store.outcome[keep]
    now = np.datetime64(clock.now().replace(tzinfo=None), "ns")
    funnel = {
        "flagged": int((view.tiers[mask] != "none").sum()),
        "escalated": int(keep.sum()),
        "accounts_escalated": len(np.unique(store.account_ids[keep])),
        "acknowledged": int(store.acknowledged[keep].sum()),
        "resolved": int((status == "resolved").sum()),
        "expired": int((status == "expired").sum()),
        "active": int(np.isin(status, ACTIVE).sum()),
        "overdue": int(((status == "open") & (store.respond_by[keep] <= now)).sum()),
        "outcomes": [{"outcome": OUTCOME_WORDS[o], "count": int((outcome == o).sum())} for o in RESOLUTION_LABELS],
    }
    block = store.block
    overall = block.get("overall") if block.get("available") else None
    holdout = block.get("holdout") if block.get("available") else None
    outcome_lines = None
    if overall:
        ack = overall.get("ack_median_minutes")
        outcome_lines = {
            "horizon": block["horizon_days"],
            "escalations": block["escalations"],
            "matured": overall["matured"],
            "really_at_risk": share(overall["at_risk"], overall["matured"]),
            "churned": share(overall["churned"], overall["matured"]),
            "arr_saved_text": money(overall["arr_saved"]),
            "arr_at_stake_text": money(overall["arr_at_stake"]),
            "ack_median": span(None if ack is None else ack * 60),
            "ack_in_time": percent(overall.get("ack_within_window_share")),
            "data_end": str(block.get("data_end", ""))[:10],
            "notes": block.get("notes", []),
        }
    elif block.get("note"):
        notes.append(f"Escalation outcomes: {block['note']}.")
    return {
        "funnel": funnel,
        "outcomes": outcome_lines,
        "holdout": None
        if holdout is None
        else {
            "verdict": holdout.get("verdict"),
            "enough": bool(holdout.get("enough")),
            "treated": holdout.get("treated"),
            "held_out": holdout.get("held_out"),
            "churn_treated": percent(holdout.get("churn_treated")),
            "churn_held_out": percent(holdout.get("churn_held_out")),
            "horizon": holdout.get("horizon_days"),
        },
        "ratings": store.ratings,
    }


def health(runtime: Any, monitoring: dict, scores_dir: Path) -> dict:
    """Backtest ROC-AUC and calibration error per horizon from the served model's logged metrics
    (a promoted logistic baseline's own rows, as /model gives them: the book showed the LightGBM
    curve's beside it), and drift from the latest monitoring run."""
    metrics = runtime.state.metrics or {}
    served = runtime.state.model.kind

    def metric(model: str, name: str, h: int) -> float | None:
        try:
            value = float(metrics.get(f"backtest.{model}.{name}_{h}d"))
        except (TypeError, ValueError):
            return None
        return value if np.isfinite(value) else None

    def text(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    rows = []
    for h in HORIZONS:
        auc, rules, ece = metric(served, "roc_auc", h), metric("rules", "roc_auc", h), metric(served, "ece", h)
        rows.append(
            {
                "horizon": h,
                "roc_auc": auc,
                "roc_auc_text": text(auc, 2),
                "rules_roc_auc_text": text(rules, 2),
                "ece": ece,
                "ece_text": text(ece, 3),
            }
        )
    monitors = monitoring.get("monitors") if monitoring else None
    drift = (
        {
            "as_of": monitoring.get("as_of"),
            "model_version": monitoring.get("model_version"),
            "monitors": [
                {
                    "monitor": str(m.get("monitor", "")).replace("_", " "),
                    "state": m.get("state"),
                    "state_text": DRIFT_WORDS.get(m.get("state"), m.get("state")),
                    "summary": m.get("summary"),
                }
                for m in monitors
            ],
        }
        if monitors
        else None
    )
    return {
        "model_version": str(runtime.state.version),
        "backtest": rows,
        "has_backtest": any(r["roc_auc"] is not None or r["ece"] is not None for r in rows),
        "drift": drift,
        "drift_note": None
        if drift
        else f"No monitoring run was found beside the scores ({scores_dir / 'monitoring.json'}): drift is not measured.",
    }
