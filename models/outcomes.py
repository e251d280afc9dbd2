"""Predicted CSAT and CES for every ticket, answered or not.

Survey answers are biased: mostly the happiest and the angriest answer. A LightGBM regressor per
score learns, from the tickets that have an answer, how effort and text signals map to the score,
and predicts it for every ticket.

Point in time: a ticket's inputs are what was known at its first resolution (waits, transfers,
messages and their sentiment, critical moments, rephrasings so far), and its prediction is dated
then. The regressors are refitted at the start of every month on the answers received before it,
and a ticket is predicted by the regressor of the month it was resolved in, so no prediction uses
an answer from its future. Months before `min_answers` answers exist get no prediction (NaN).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.config.features import OutcomeParams
from core.vocabulary import CHANNELS, PRIORITIES, SCORED_EVENT_RANGES, TICKET_CATEGORIES
from models import lgb_threads

#: LightGBM threads of the CSAT/CES regressors (small models, fitted once a month of tickets)
THREADS = 1

INPUTS = [
    "first_response_hours",
    "resolution_hours",
    "transfers",
    "customer_messages",
    "agent_messages",
    "sentiment_mean",
    "sentiment_min",
    "sentiment_last",
    "drift_last",
    "critical_moments",
    "rephrasings",
    "awaited_unanswered",
    "category",
    "priority",
    "channel",
]
SCORES = SCORED_EVENT_RANGES


def ticket_outcome_inputs(tickets: pd.DataFrame, ticket_events: pd.DataFrame, signals: pd.DataFrame) -> pd.DataFrame:
    """Per ticket with a resolution: inputs as of its first resolution, and its CSAT/CES answers (with their times)."""
    ev = ticket_events
    resolved = ev[ev["kind"] == "resolved"].groupby("ticket_id", as_index=False)["at"].min()
    t = tickets[["ticket_id", "account_id", "created_at", "category", "priority", "channel"]].merge(
        resolved, on="ticket_id"
    )
    before = ev.merge(t[["ticket_id", "at"]].rename(columns={"at": "resolved_at"}), on="ticket_id")
    before = before[before["at"] <= before["resolved_at"]]
    first = before[before["kind"] == "first_response"].groupby("ticket_id")["at"].min()
    transfers = before[before["kind"] == "transferred"].groupby("ticket_id").size()
    s = signals.merge(t[["ticket_id", "at"]].rename(columns={"at": "resolved_at"}), on="ticket_id")
    s = s[s["sent_at"] <= s["resolved_at"]].sort_values(["ticket_id", "sent_at"], kind="stable")
    cust = s[s["author"] == "customer"]
    g = cust.groupby("ticket_id")
    hours = pd.Timedelta(hours=1)
    out = t.set_index("ticket_id")
    out["first_response_hours"] = (first.reindex(out.index) - out["created_at"]) / hours
    out["resolution_hours"] = (out["at"] - out["created_at"]) / hours
    out["transfers"] = transfers.reindex(out.index).fillna(0)
    out["customer_messages"] = g.size().reindex(out.index).fillna(0)
    out["agent_messages"] = s[s["author"] == "agent"].groupby("ticket_id").size().reindex(out.index).fillna(0)
    out["sentiment_mean"] = g["sentiment"].mean().reindex(out.index)
    out["sentiment_min"] = g["sentiment"].min().reindex(out.index)
    out["sentiment_last"] = g["sentiment"].last().reindex(out.index)
    out["drift_last"] = g["drift"].last().reindex(out.index)
    out["critical_moments"] = g["critical"].count().reindex(out.index).fillna(0)
    out["rephrasings"] = g["rephrase"].sum().reindex(out.index).fillna(0)
    last_author = s.groupby("ticket_id")["author"].last().reindex(out.index)
    out["awaited_unanswered"] = (last_author == "agent").astype(float)
    for score in SCORES:
        # the first answer: a later one must not rewrite what was known when the first arrived
        answers = ev[ev["kind"] == score].sort_values("at", kind="stable").groupby("ticket_id").first()
        out[score] = answers["value"].reindex(out.index)
        out[f"{score}_at"] = answers["at"].reindex(out.index)
    # fixed levels (the contract's), so codes do not depend on which values happen to be present
    for col, levels in (("category", TICKET_CATEGORIES), ("priority", PRIORITIES), ("channel", CHANNELS)):
        out[col] = pd.Categorical(out[col], categories=levels)
    return out.reset_index()


def predict_outcomes(inputs: pd.DataFrame, params: OutcomeParams | None = None) -> pd.DataFrame:
    """ticket_id, account_id, at, predicted_csat, predicted_ces: each from a regressor fitted only on
    answers received before the start of the month the ticket was resolved in."""
    import lightgbm as lgb

    params = params or OutcomeParams()
    out = inputs[["ticket_id", "account_id", "at"]].copy()
    if inputs.empty:
        return out.assign(predicted_csat=np.nan, predicted_ces=np.nan)
    month = inputs["at"].dt.tz_convert(None).dt.to_period("M").dt.start_time.dt.tz_localize("UTC")
    X = inputs[INPUTS]
    for score, (low, high) in SCORES.items():
        pred = np.full(len(inputs), np.nan)
        answered_at = inputs[f"{score}_at"]
        for start in np.sort(month.unique()):
            train = (answered_at < start).to_numpy() & inputs[score].notna().to_numpy()
            if train.sum() < params.min_answers:
                continue
            model = lgb.LGBMRegressor(
                n_estimators=params.n_estimators,
                num_leaves=params.num_leaves,
                learning_rate=params.learning_rate,
                min_child_samples=20,
                subsample=1.0,
                deterministic=True,
                num_threads=THREADS,
                random_state=0,
                verbose=-1,
            )
            rows = (month == start).to_numpy()
            with lgb_threads.threads(THREADS):  # the regressor fits and predicts with THREADS
                model.fit(X[train], inputs.loc[train, score])
                pred[rows] = np.clip(model.predict(X[rows]), low, high)
        out[f"predicted_{score}"] = pred
    return out
