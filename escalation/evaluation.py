"""Learning from outcomes: every escalation joined to what happened next.

What "happened next" means, precisely (the report and `churn evaluate --json` use these words):

- **matured**: the escalation opened at least `horizon_days` before the end of the data, so whether
  the account churned within the horizon is known. Only matured escalations count in precision,
  churn and ARR saved; the others are counted as `immature` and left out (counting them as "did
  not churn" would flatter nothing and punish recent escalations).
- **churned**: the account's churn (the input tables' churn table) falls in (opened_at,
  opened_at + horizon].
- **CS outcome**: the resolution outcome CS recorded (escalations.outcome: saved, churned,
  not_at_risk); where the escalation has none, the latest handoff rating's outcome other than
  'unknown' (feedback.outcome: saved, churned).
- **really at risk** (the numerator of `precision`): churned within the horizon, or CS found the
  account at risk (outcome saved or churned). A save is the point of escalating, so churn alone
  would count every saved account as a false alarm; CS's own 'not_at_risk' with no churn is one.
  An escalation nobody resolved that did not churn counts as not at risk: there is no evidence.
  `churn_rate` (churned alone) is given beside it: it is what the model's probabilities promise.
- **ARR at stake**: the ARR of every escalation in the group (the handoff package's ARR at the time
  of the decision, else the accounts table's); **ARR saved**: matured escalations with outcome
  'saved' whose account did not churn within the horizon (a claimed save confirmed by time).
- **time to acknowledge**: the first status change to 'acknowledged' (the lifecycle's audit trail)
  minus opened_at; **within the window**: acknowledged at or before respond_by. Escalations
  resolved straight from open count as `resolved_unacknowledged`, not in the times.
- **holdout**: treated = matured escalations that only crossed a risk threshold (the holdout's
  eligibility), the first per account, opened at or after the first held-out decision when there
  is one (before it, nobody was held out, and the two groups would come from different times);
  held out = matured decisions recorded as held out (payload `held_out`), the first per account.
  Churn within the horizon after each; escalation/holdout.py `estimate_effect` compares them.

Pure pandas over frames read from the store once (`read_store`), no per-row loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: the horizon outcomes are judged at when nobody says otherwise
DEFAULT_HORIZON_DAYS = 90
#: CS outcomes that say the account really was at risk
AT_RISK_OUTCOMES = ("saved", "churned")
#: group columns of the precision tables and their labels in the JSON
GROUPS = {"rule": "reason", "queue": "queue", "band": "band"}
NO_QUEUE, NO_OWNER = "(none)", "(unassigned)"
#: the whole-number columns of the precision tables
COUNTS = ("escalations", "matured", "immature", "churned", "at_risk", "resolved")

ESCALATION_COLUMNS = [
    "id",
    "account_id",
    "reason",
    "band",
    "queue",
    "owner",
    "status",
    "opened_at",
    "respond_by",
    "outcome",
    "arr",
    "eligible",
]


@dataclass
class StoreTables:
    """What the evaluation reads from the operational store, one frame per table."""

    escalations: pd.DataFrame  # ESCALATION_COLUMNS
    held_out: pd.DataFrame  # account_id, decided_at: decisions recorded as held out
    status_changes: pd.DataFrame  # escalation_id, to_status, at
    feedback: pd.DataFrame  # escalation_id, rating, outcome, created_at
    notes: list[str] = field(default_factory=list)


def read_store(store) -> StoreTables:
    """The store's escalations (with the handoff package's ARR and whether the last decision only
    crossed a risk threshold), held-out decisions, acknowledgements and ratings, by SQLAlchemy
    select on the ORM classes (one query per table; JSON fields extracted by the database)."""
    from sqlalchemy import select

    from escalation.store import (
        DecisionRow,
        EscalationRow,
        FeedbackRow,
        StatusChangeRow,
    )

    arr = EscalationRow.package["customer"]["arr"].as_float().label("arr")
    rules = DecisionRow.payload["rules"].label("rules")
    query = select(
        EscalationRow.id,
        EscalationRow.account_id,
        EscalationRow.reason,
        EscalationRow.band,
        EscalationRow.queue,
        EscalationRow.owner,
        EscalationRow.status,
        EscalationRow.opened_at,
        EscalationRow.respond_by,
        EscalationRow.outcome,
        arr,
        rules,
    ).join(DecisionRow, DecisionRow.id == EscalationRow.last_decision_id)
    held = DecisionRow.payload["held_out"].as_boolean()
    with store.engine.connect() as connection:
        escalations = pd.DataFrame(
            connection.execute(query).mappings().all(), columns=[*ESCALATION_COLUMNS[:-1], "rules"]
        )
        held_out = pd.DataFrame(
            connection.execute(select(DecisionRow.account_id, DecisionRow.decided_at).where(held.is_(True))).all(),
            columns=["account_id", "decided_at"],
        )
        changes = pd.DataFrame(
            connection.execute(
                select(StatusChangeRow.escalation_id, StatusChangeRow.to_status, StatusChangeRow.at)
            ).all(),
            columns=["escalation_id", "to_status", "at"],
        )
        feedback = pd.DataFrame(
            connection.execute(
                select(FeedbackRow.escalation_id, FeedbackRow.rating, FeedbackRow.outcome, FeedbackRow.created_at)
            ).all(),
            columns=["escalation_id", "rating", "outcome", "created_at"],
        )
    from escalation.holdout import eligible

    # the rule names of each escalation's last decision: a short JSON list per escalation
    names = escalations.pop("rules").map(lambda fired: [r.get("rule") for r in fired or []])
    escalations["eligible"] = names.map(eligible).astype(bool) if len(escalations) else pd.Series(dtype=bool)
    for frame, columns in (
        (escalations, ("opened_at", "respond_by")),
        (held_out, ("decided_at",)),
        (changes, ("at",)),
        (feedback, ("created_at",)),
    ):
        for column in columns:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return StoreTables(escalations, held_out, changes, feedback)


def _rate(numerator: pd.Series | float, denominator: pd.Series | float):
    """A share, NaN where the denominator is 0."""
    if isinstance(denominator, pd.Series):
        return (numerator / denominator.where(denominator > 0)).astype(float)
    return float(numerator) / float(denominator) if denominator else float("nan")


def _lookup(keys: pd.Series, values: pd.Series) -> pd.Series:
    """values[key] for each key, NaN/NaT where absent, keeping the values' dtype (an empty datetime
    lookup through Series.map would not)."""
    return values.reindex(keys.to_numpy()).set_axis(keys.index)


def _churned_within(
    account_id: pd.Series, start: pd.Series, churned_at: pd.Series, horizon: pd.Timedelta
) -> np.ndarray:
    """Whether each account churned in (start, start + horizon]."""
    when = pd.to_datetime(_lookup(account_id, churned_at), utc=True)
    return ((when > start) & (when <= start + horizon)).fillna(False).to_numpy(dtype=bool)


def outcome_frame(
    tables: StoreTables,
    churned_at: pd.Series,
    data_end: pd.Timestamp,
    *,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    arr_by_account: pd.Series | None = None,
) -> pd.DataFrame:
    """One row per escalation: its facts and what happened next (the module docstring's words):
    matured, churned, cs_outcome, at_risk, arr, arr_saved, acknowledged_at, ack_minutes, within_window."""
    horizon = pd.Timedelta(days=horizon_days)
    e = tables.escalations.copy()
    e["queue"] = e["queue"].fillna(NO_QUEUE)
    e["owner"] = e["owner"].fillna(NO_OWNER)
    if arr_by_account is not None:
        e["arr"] = e["arr"].astype(float).fillna(_lookup(e["account_id"], arr_by_account.astype(float)))
    feedback = tables.feedback
    rated = feedback[feedback["outcome"].isin(AT_RISK_OUTCOMES)].sort_values(["created_at"], kind="stable")
    latest_rated = rated.groupby("escalation_id")["outcome"].last()
    e["cs_outcome"] = e["outcome"].astype(object).fillna(_lookup(e["id"], latest_rated.astype(object)))
    e["matured"] = (e["opened_at"] + horizon <= data_end).to_numpy(dtype=bool)
    e["churned"] = _churned_within(e["account_id"], e["opened_at"], churned_at, horizon) & e["matured"]
    e["at_risk"] = e["matured"] & (e["churned"] | e["cs_outcome"].isin(AT_RISK_OUTCOMES))
    e["arr_saved"] = np.where(e["matured"] & (e["cs_outcome"] == "saved") & ~e["churned"], e["arr"].fillna(0.0), 0.0)
    changes = tables.status_changes
    acked = changes[changes["to_status"] == "acknowledged"].groupby("escalation_id")["at"].min()
    e["acknowledged_at"] = _lookup(e["id"], acked)
    e["ack_minutes"] = (e["acknowledged_at"] - e["opened_at"]).dt.total_seconds() / 60
    e["window_minutes"] = (e["respond_by"] - e["opened_at"]).dt.total_seconds() / 60
    e["within_window"] = (e["acknowledged_at"] <= e["respond_by"]).where(
        e["acknowledged_at"].notna() & e["respond_by"].notna()
    )
    e["resolved_unacknowledged"] = (e["status"] == "resolved") & e["acknowledged_at"].isna()
    return e


def precision_table(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per value of `by`: escalations, matured, immature, churned, really at risk, precision,
    churn rate, resolved by CS, ARR at stake and ARR saved."""
    g = frame.assign(resolved=frame["cs_outcome"].notna()).groupby(by, sort=True)
    out = g.agg(
        escalations=("id", "size"),
        matured=("matured", "sum"),
        churned=("churned", "sum"),
        at_risk=("at_risk", "sum"),
        resolved=("resolved", "sum"),
        arr_at_stake=("arr", "sum"),
        arr_saved=("arr_saved", "sum"),
    )
    out["immature"] = out["escalations"] - out["matured"]
    out["precision"] = _rate(out["at_risk"], out["matured"])
    out["churn_rate"] = _rate(out["churned"], out["matured"])
    columns = [
        "escalations",
        "matured",
        "immature",
        "churned",
        "at_risk",
        "precision",
        "churn_rate",
        "resolved",
        "arr_at_stake",
        "arr_saved",
    ]
    return out[columns].rename_axis(by).reset_index()


def rating_table(frame: pd.DataFrame, feedback: pd.DataFrame, by: str) -> pd.DataFrame:
    """Handoff ratings (1-5) by the escalation's queue or owner: mean and count."""
    rated = feedback.merge(frame[["id", by]], left_on="escalation_id", right_on="id", how="inner")
    out = rated.groupby(by, sort=True)["rating"].agg(rating_mean="mean", ratings="size")
    return out.rename_axis(by).reset_index()


def acknowledgement_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per queue: escalations, acknowledged, median minutes to acknowledge, the median window, the
    share of acknowledged ones inside their window, and those resolved without an acknowledgement."""
    out = frame.groupby("queue", sort=True).agg(
        escalations=("id", "size"),
        acknowledged=("acknowledged_at", "count"),
        median_ack_minutes=("ack_minutes", "median"),
        median_window_minutes=("window_minutes", "median"),
        within_window=("within_window", lambda s: s.dropna().astype(bool).sum()),
        with_window=("within_window", "count"),
        resolved_unacknowledged=("resolved_unacknowledged", "sum"),
    )
    out["within_window_share"] = _rate(out["within_window"], out["with_window"])
    return out.drop(columns="with_window").rename_axis("queue").reset_index()


def holdout_comparison(
    frame: pd.DataFrame,
    held_out: pd.DataFrame,
    churned_at: pd.Series,
    data_end: pd.Timestamp,
    *,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    confidence: float = 0.95,
    min_per_group: int = 30,
) -> dict:
    """Treated (eligible escalations) against held out, per account, matured only (module docstring)."""
    from escalation.holdout import estimate_effect

    horizon = pd.Timedelta(days=horizon_days)
    held = held_out.sort_values("decided_at", kind="stable").drop_duplicates("account_id")
    treated = frame[frame["eligible"]]
    if len(held):
        treated = treated[treated["opened_at"] >= held["decided_at"].min()]
    treated = treated.sort_values("opened_at", kind="stable").drop_duplicates("account_id")
    held = held[held["decided_at"] + horizon <= data_end]
    immature = int((~treated["matured"]).sum())
    treated = treated[treated["matured"]]
    result = estimate_effect(
        _churned_within(treated["account_id"], treated["opened_at"], churned_at, horizon).astype(int),
        _churned_within(held["account_id"], held["decided_at"], churned_at, horizon).astype(int),
        confidence=confidence,
        min_per_group=min_per_group,
    )
    return {
        **result,
        "horizon_days": horizon_days,
        "treated_immature": immature,
        "held_out_immature": int(len(held_out.drop_duplicates("account_id")) - len(held)),
    }


def _records(table: pd.DataFrame) -> list[dict]:
    """JSON rows: numpy scalars as Python numbers, NaN as None."""
    rows = table.astype(object).where(table.notna(), None).to_dict("records")
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in rows]


def evaluate_escalations(
    tables: StoreTables,
    churned_at: pd.Series,
    data_end: pd.Timestamp,
    *,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
    arr_by_account: pd.Series | None = None,
    confidence: float = 0.95,
    min_per_group: int = 30,
) -> dict:
    """The `escalations` block of `churn evaluate --json` (and the report's section): overall and
    per rule, queue and band precision and ARR; ratings by queue and owner; time to acknowledge per
    queue; the holdout comparison. `available` is False, with a `note`, when there is nothing to judge."""
    data_end = pd.Timestamp(data_end)
    data_end = data_end.tz_localize("UTC") if data_end.tzinfo is None else data_end.tz_convert("UTC")
    base = {"horizon_days": horizon_days, "data_end": data_end.isoformat(), "notes": list(tables.notes)}
    if tables.escalations.empty:
        return {
            **base,
            "available": False,
            "escalations": 0,
            "note": "the store holds no escalations yet: nothing to evaluate",
        }
    frame = outcome_frame(tables, churned_at, data_end, horizon_days=horizon_days, arr_by_account=arr_by_account)
    overall = precision_table(frame.assign(all="all"), "all").drop(columns="all").iloc[0]
    notes = base["notes"]
    immature = int(overall["immature"])
    if immature:
        notes.append(
            f"{immature} of {len(frame)} escalations opened less than {horizon_days} days before the data's end "
            f"({data_end.date()}): their outcome is not known yet and they are left out of precision, churn and ARR saved"
        )
    if not frame["cs_outcome"].notna().any():
        notes.append(
            "no escalation has a CS outcome yet (resolve them with `churn escalations resolve`): precision rests on churn alone"
        )
    if tables.feedback.empty:
        notes.append("no handoff has been rated yet")
    ack = acknowledgement_table(frame)
    acknowledged = frame["acknowledged_at"].notna()
    return {
        **base,
        "available": True,
        "note": None,
        "escalations": len(frame),
        "overall": {k: (int(v) if k in COUNTS else float(v) if np.isfinite(v) else None) for k, v in overall.items()}
        | {
            "ack_median_minutes": float(frame.loc[acknowledged, "ack_minutes"].median())
            if acknowledged.any()
            else None,
            "ack_within_window_share": float(frame["within_window"].dropna().astype(bool).mean())
            if frame["within_window"].notna().any()
            else None,
            "rating_mean": float(tables.feedback["rating"].mean()) if len(tables.feedback) else None,
            "ratings": len(tables.feedback),
        },
        **{
            f"by_{name}": _records(precision_table(frame, column).rename(columns={column: name}))
            for name, column in GROUPS.items()
        },
        "ratings_by_queue": _records(rating_table(frame, tables.feedback, "queue")),
        "ratings_by_owner": _records(rating_table(frame, tables.feedback, "owner")),
        "acknowledgement_by_queue": _records(ack),
        "holdout": holdout_comparison(
            frame,
            tables.held_out,
            churned_at,
            data_end,
            horizon_days=horizon_days,
            confidence=confidence,
            min_per_group=min_per_group,
        ),
        "definitions": DEFINITIONS,
    }


DEFINITIONS = {
    "matured": "opened at least horizon_days before the data's end; only these count in precision, churn and ARR saved",
    "churned": "the account churned within horizon_days after the escalation opened",
    "at_risk": "churned, or CS resolved it as saved or churned (else the latest rating's saved/churned outcome)",
    "precision": "at_risk / matured",
    "churn_rate": "churned / matured",
    "arr_at_stake": "ARR of every escalation in the group (handoff package at decision time, else the accounts table)",
    "arr_saved": "ARR of matured escalations resolved 'saved' whose account did not churn within the horizon",
    "within_window": "first acknowledgement at or before respond_by",
}


def metrics(block: dict) -> dict[str, float]:
    """The block as flat MLflow metrics: escalations.<metric>_<h>d overall and per band."""
    if not block.get("available"):
        return {}
    h = block["horizon_days"]
    overall = block["overall"]
    out = {
        f"escalations.{k}_{h}d": overall[k] for k in ("precision", "churn_rate", "matured", "arr_saved", "arr_at_stake")
    }
    out |= {f"escalations.{k}": overall[k] for k in ("ack_median_minutes", "ack_within_window_share", "rating_mean")}
    out["escalations.count"] = block["escalations"]
    for row in block["by_band"]:
        out[f"escalations.band.{row['band']}.precision_{h}d"] = row["precision"]
    effect = block["holdout"].get("effect")
    out[f"escalations.holdout.effect_{h}d"] = effect
    return {k: float(v) for k, v in out.items() if v is not None and np.isfinite(v)}


def group_table(block: dict) -> pd.DataFrame:
    """The per rule, queue and band rows in one table (the MLflow CSV artifact)."""
    frames = [
        pd.DataFrame(block.get(f"by_{name}", [])).rename(columns={name: "value"}).assign(group=name) for name in GROUPS
    ]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return (
        table[["group", "value", *[c for c in table.columns if c not in ("group", "value")]]] if len(table) else table
    )
