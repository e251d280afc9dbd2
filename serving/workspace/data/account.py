"""The account page: the account's facts and risk curve, its reasons as a waterfall in probability
points (the numbers /explain gives, drivers apart from context), its risk history, usage and support
timelines, and from the operational store its escalations with their status history, follow-ups,
ratings and the latest handoff package."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from core.vocabulary import HORIZONS
from core import clock
from serving.runtime import REASONS_HORIZON, NotFound
from serving.workspace import charts
from serving.workspace.data.history import history_page
from serving.workspace.data.sources import USAGE_MEASURES
from serving.workspace.data.timelines import support_page, usage_page
from serving.workspace.format import OUTCOME_WORDS, minute, money, percent

if TYPE_CHECKING:
    from serving.workspace.data import WorkspaceData

#: steps of the waterfall named one by one (the others are summed into one step per role)
WATERFALL_DRIVERS, WATERFALL_CONTEXT = 6, 3
#: reasons listed in words under the waterfall
LISTED_REASONS = 5


def account_page(data: WorkspaceData, account_id: str) -> dict:
    """Everything the account page shows (NotFound for an id the snapshot does not hold)."""
    i = data.position(account_id)
    view = data.model_view()
    facts = data.row(i, view)
    curve = {h: facts[f"p_{h}d"] for h in HORIZONS}
    notes = list(data.notes)
    reasons = explanation(data.runtime, str(data.ids[i]), notes)
    history = history_page(view, i, curve[REASONS_HORIZON], data.as_of)
    notes += list(view.notes) if not history["points"] or len(history["points"]) < 2 else []
    usage = usage_page(data.usage, i)
    support = support_page(data.support, i)
    notes += data.support.notes
    store = store_page(data.store, str(data.ids[i]), notes)
    return {
        "account": facts,
        "as_of": data.as_of,
        "model_version": view.version,
        "horizons": list(HORIZONS),
        "curve": [{"horizon": h, "p": curve[h], "text": percent(curve[h])} for h in HORIZONS],
        "curve_sentence": (
            f"{percent(curve[30])} chance of churning within 30 days, {percent(curve[90])} within "
            f"90 days and {percent(curve[180])} within 180 days."
        ),
        "expected_arr_lost_90d": money(facts["p_90d"] * facts["arr"]),
        "reasons": reasons,
        "history": history,
        "usage": usage,
        "support": support,
        **store,
        "charts": {
            "curve": charts.risk_curve(curve),
            "history": charts.history_line(
                [dt.date.fromisoformat(p["date"]) for p in history["points"]],
                [p["p"] for p in history["points"]],
                horizon=REASONS_HORIZON,
            ),
            "waterfall": charts.waterfall(reasons["steps"], REASONS_HORIZON) if reasons["available"] else None,
            "usage": {
                m: charts.sparkline(
                    usage["series"][m], USAGE_MEASURES[m].capitalize() + " per week", prefix=f"usage-{m}"
                )
                for m in usage["series"]
            },
        },
        "notes": list(dict.fromkeys(notes)),
    }


def explanation(runtime: Any, account_id: str, notes: list[str]) -> dict:
    """The /explain answer at the reasons' horizon as a waterfall: the base rate, the drivers one
    by one (the largest by size, the others together), the context likewise, what no single
    feature carries, and the account's risk; each step in probability points."""
    from serving import schemas

    try:
        explained = runtime.explain(schemas.ExplainRequest(account_id=account_id, horizon_days=REASONS_HORIZON))
    except NotFound:
        raise
    except Exception as exc:  # noqa: BLE001 - the page stands without its explanation; the reader learns why
        notes.append(f"The explanation could not be computed: {type(exc).__name__}: {exc}")
        return {"available": False, "steps": [], "raising": [], "lowering": [], "context": []}
    specs = runtime.specs
    base = float(explained.base_rate if explained.base_rate is not None else 0.0)
    drivers = sorted(explained.raising + explained.lowering, key=lambda r: -abs(r.points or 0))
    context = sorted(explained.context, key=lambda r: -abs(r.points or 0))
    steps = [
        {"label": "Typical account (the base rate)", "kind": "base", "points": base * 100, "start": 0.0, "end": base}
    ]
    level = base

    def add(label: str, kind: str, pts: float, feature: str | None = None) -> None:
        nonlocal level
        steps.append(
            {"label": label, "kind": kind, "points": pts, "start": level, "end": level + pts / 100, "feature": feature}
        )
        level += pts / 100

    for group, kind, shown in ((drivers, "driver", WATERFALL_DRIVERS), (context, "context", WATERFALL_CONTEXT)):
        for r in group[:shown]:
            label = specs[r.feature].description if r.feature in specs else r.feature
            add(label[:1].upper() + label[1:], kind, float(r.points or 0), r.feature)
        others = group[shown:]
        if others:
            word = "driver" if kind == "driver" else "context signal"
            add(
                f"{len(others)} other {word}{'s' if len(others) > 1 else ''} together",
                kind,
                float(sum(r.points or 0 for r in others)),
            )
    rest = float(explained.rest_points or 0.0)
    if abs(rest) >= 0.005:
        add("Signals acting together (no single one)", "rest", rest)
    steps.append(
        {
            "label": "This account",
            "kind": "total",
            "points": explained.probability * 100,
            "start": 0.0,
            "end": explained.probability,
        }
    )

    def words(rs: list) -> list[dict]:
        return [
            {"feature": r.feature, "sentence": r.sentence, "effect": r.effect, "points": r.points, "family": r.family}
            for r in rs[:LISTED_REASONS]
        ]

    return {
        "available": True,
        "horizon": REASONS_HORIZON,
        "probability": explained.probability,
        "probability_text": percent(explained.probability, 1),
        "base_rate": base,
        "base_rate_text": percent(base, 1),
        "rest_points": rest,
        "steps": steps,
        "raising": words(explained.raising),
        "lowering": words(explained.lowering),
        "context": words(context),
        "model_version": explained.model_version,
    }


def store_page(store: Any, account_id: str, notes: list[str]) -> dict:
    """The account's escalations (newest first) with their status history, follow-ups and
    ratings, the latest handoff package and which escalation the page's forms act on."""
    empty = {
        "escalations": [],
        "handoff": None,
        "ratings": [],
        "actions": {"rate": None, "resolve": None, "acknowledge": None},
    }
    if store is None:
        notes.append("No operational store is configured: escalations and ratings cannot be shown.")
        return empty
    from sqlalchemy.exc import SQLAlchemyError

    from escalation.store import ACTIVE

    try:
        rows, changes, ratings, follow_ups = _store_rows(store, account_id)
    except SQLAlchemyError as exc:
        notes.append(f"The operational store could not be read ({type(exc).__name__}): escalations are not shown.")
        return empty
    now = clock.now()
    by_escalation: dict[int, list] = {}
    for c in changes:
        by_escalation.setdefault(c["escalation_id"], []).append(
            {
                "at": minute(c["at"]),
                "from": c["from_status"],
                "to": c["to_status"],
                "by": c["actor"],
                "outcome": OUTCOME_WORDS.get(c["outcome"]) if c["outcome"] else None,
                "note": c["note"],
            }
        )
    rated: dict[int, list] = {}
    for r in ratings:
        rated.setdefault(r["escalation_id"], []).append(
            {
                "escalation_id": r["escalation_id"],
                "rating": r["rating"],
                "comment": r["comment"],
                "outcome": OUTCOME_WORDS.get(r["outcome"], r["outcome"]),
                "at": minute(r["created_at"]),
            }
        )
    pending: dict[int, Any] = {}
    for f in follow_ups:
        if f["done_at"] is None:
            pending.setdefault(f["escalation_id"], f["due_at"])
    escalations = []
    for r in rows:
        respond_by = r["respond_by"]
        overdue = r["status"] == "open" and respond_by is not None and respond_by <= now
        escalations.append(
            {
                "id": r["id"],
                "reason": str(r["reason"]).replace("_", " "),
                "band": r["band"],
                "queue": r["queue"],
                "owner": r["owner"],
                "status": r["status"],
                "active": r["status"] in ACTIVE,
                "opened": minute(r["opened_at"]),
                "respond_by": minute(respond_by),
                "overdue": overdue,
                "occurrences": r["occurrences"],
                "ticket_id": r["ticket_id"],
                "outcome": OUTCOME_WORDS.get(r["outcome"]) if r["outcome"] else None,
                "follow_up_due": minute(pending.get(r["id"])),
                "history": by_escalation.get(r["id"], []),
                "ratings": rated.get(r["id"], []),
                "has_package": bool(r["package"]),
            }
        )
    latest = next((r for r in rows if r["package"]), None)
    active = next((e for e in escalations if e["active"]), None)
    return {
        "escalations": escalations,
        "handoff": handoff(latest) if latest is not None else None,
        "ratings": [x for r in escalations for x in r["ratings"]],
        "actions": {
            "rate": latest["id"] if latest is not None else (escalations[0]["id"] if escalations else None),
            "resolve": active["id"] if active else None,
            "acknowledge": active["id"] if active and active["status"] == "open" else None,
        },
    }


def _store_rows(store: Any, account_id: str) -> tuple[list, list, list, list]:
    """The account's escalations (newest first), and their status changes, ratings and follow-ups."""
    from sqlalchemy import select

    from escalation.store import EscalationRow, FeedbackRow, FollowUpRow, StatusChangeRow

    with store.engine.connect() as connection:

        def rows(query: Any) -> list:
            return list(connection.execute(query).mappings().all())

        escalations = rows(
            select(EscalationRow.__table__)
            .where(EscalationRow.account_id == account_id)
            .order_by(EscalationRow.opened_at.desc(), EscalationRow.id.desc())
        )
        ids = [r["id"] for r in escalations]
        if not ids:
            return escalations, [], [], []
        changes = rows(
            select(StatusChangeRow.__table__)
            .where(StatusChangeRow.escalation_id.in_(ids))
            .order_by(StatusChangeRow.at, StatusChangeRow.id)
        )
        ratings = rows(
            select(FeedbackRow.__table__)
            .where(FeedbackRow.escalation_id.in_(ids))
            .order_by(FeedbackRow.created_at.desc(), FeedbackRow.id.desc())
        )
        follow_ups = rows(
            select(FollowUpRow.__table__)
            .where(FollowUpRow.escalation_id.in_(ids))
            .order_by(FollowUpRow.due_at, FollowUpRow.id)
        )
    return escalations, changes, ratings, follow_ups


def handoff(row: Any) -> dict:
    """The parts of a stored handoff package CS reads first (escalation/handoff/form.py)."""
    package = row["package"] or {}
    form = package.get("form") or {k: v for k, v in package.items() if k not in ("summary", "warm_handoff", "markdown")}
    issue, needed = form.get("issue") or {}, form.get("what_is_needed") or {}
    state, impact = form.get("customer_state") or {}, form.get("business_impact") or {}
    effort = state.get("effort") or {}
    return {
        "escalation_id": row["id"],
        "opened": minute(row["opened_at"]),
        "summary": package.get("summary"),
        "warm_handoff": package.get("warm_handoff"),
        "ticket": {k: issue.get(k) for k in ("ticket_id", "subject", "category", "priority")},
        "timeline": issue.get("timeline") or [],
        "tried": issue.get("tried") or [],
        "promised": issue.get("promised") or [],
        "specifics": issue.get("technical_specifics") or {},
        "recommended_action": needed.get("recommended_action"),
        "other_actions": needed.get("other_actions") or [],
        "success": needed.get("success") or {},
        "respond_by": needed.get("respond_by"),
        "follow_up_due": needed.get("follow_up_due"),
        "sentiment": state.get("sentiment_label"),
        "drift": state.get("drift_label"),
        "frustrated": state.get("frustrated"),
        "asks": effort.get("asks"),
        "critical_moments": effort.get("critical_categories") or [],
        "top_reasons": impact.get("top_reasons") or [],
        "markdown": package.get("markdown"),
    }
