"""The account page's usage and support timelines. Built once per snapshot for every account (weekly
usage as a dense [accounts, weeks] matrix; support events and open tickets sorted by account with
offsets), so a page is a slice."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from serving.workspace.data.sources import USAGE_MEASURES, USAGE_WEEKS, naive, one_of, positions

#: days of support history on the account page
SUPPORT_DAYS = 180
#: support events listed on the account page (newest first)
SUPPORT_EVENTS = 40
#: ticket events the support timeline shows, in its words
EVENT_WORDS = {
    "resolved": "ticket resolved",
    "csat": "CSAT answer",
    "ces": "effort score (CES)",
    "reopened": "ticket reopened",
}


@dataclass
class Usage:
    """Weekly usage of every account: a [accounts, weeks] matrix per measure, oldest week first."""

    series: dict[str, np.ndarray]
    week_ends: list[str]


@dataclass
class Support:
    """Support events and open tickets of every account, sorted by account position."""

    events: pd.DataFrame  # position, at, what, detail
    event_bounds: np.ndarray  # [accounts + 1] offsets into events
    open_tickets: pd.DataFrame  # position, ticket_id, created_at, priority, category, channel, age_days
    open_bounds: np.ndarray
    notes: list[str] = field(default_factory=list)


def usage(table: pd.DataFrame | None, index: pd.Index, cutoff: pd.Timestamp, has_data: bool, notes: list[str]) -> Usage:
    """Weekly usage of every account over the USAGE_WEEKS weeks before the cutoff (active users as
    the week's daily average, logins as its sum); NaN for a week without any row."""
    if table is None:
        if has_data:
            notes.append("No usage table in the data folder: the usage timeline is empty.")
        return Usage({}, [])
    n = len(index)
    start = cutoff - pd.Timedelta(weeks=USAGE_WEEKS)
    rows = table[(table["date"] >= start) & (table["date"] < cutoff)]
    # weeks before the cutoff: 0 is the last 7 days (cutoff - 7 days up to the day before the cutoff)
    ago = (np.ceil((cutoff - rows["date"]).dt.total_seconds().to_numpy() / 86_400) - 1) // 7
    position = positions(index, rows["account_id"])
    keep = (position >= 0) & (ago < USAGE_WEEKS)
    rows, position = rows[keep], position[keep]
    week = USAGE_WEEKS - 1 - ago[keep].astype(np.int64)
    cell = position * USAGE_WEEKS + week
    size = n * USAGE_WEEKS
    days = np.bincount(cell, minlength=size).reshape(n, USAGE_WEEKS).astype(float)
    out = {}
    for measure in USAGE_MEASURES:
        if measure not in rows:
            continue
        values = pd.to_numeric(rows[measure], errors="coerce").fillna(0).to_numpy(dtype=float)
        total = np.bincount(cell, weights=values, minlength=size).reshape(n, USAGE_WEEKS)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[measure] = np.where(days > 0, total / days if measure == "active_users" else total, np.nan)
    if not out:
        notes.append("The usage table has neither active users nor logins: the usage timeline is empty.")
    ends = [str((cutoff - pd.Timedelta(weeks=USAGE_WEEKS - 1 - k, days=1)).date()) for k in range(USAGE_WEEKS)]
    return Usage(out, ends)


def support(tables: dict[str, pd.DataFrame], index: pd.Index, cutoff: pd.Timestamp) -> Support:
    """Every account's tickets, resolutions, CSAT/CES and NPS answers of the last SUPPORT_DAYS
    before the cutoff as dated events, and its tickets still open at the cutoff."""
    n = len(index)
    start = cutoff - pd.Timedelta(days=SUPPORT_DAYS)
    parts, notes = [], []
    tickets, events = tables.get("tickets"), tables.get("ticket_events")
    open_tickets = pd.DataFrame(
        columns=["position", "ticket_id", "created_at", "priority", "category", "channel", "age_days"]
    )
    if tickets is None:
        notes.append("No support data (no tickets table): the support timeline and open tickets are empty.")
    else:
        tickets = tickets[tickets["created_at"] < cutoff].assign(position=lambda t: positions(index, t["account_id"]))
        tickets = tickets[tickets["position"] >= 0]
        recent = tickets[tickets["created_at"] >= start]
        parts.append(
            pd.DataFrame(
                {
                    "position": recent["position"].to_numpy(),
                    "at": naive(recent["created_at"]),
                    "what": "ticket opened",
                    "detail": (
                        recent["ticket_id"].astype(str)
                        + ": "
                        + recent["category"].astype(str).str.replace("_", " ")
                        + ", "
                        + recent["priority"].astype(str)
                        + " priority, by "
                        + recent["channel"].astype(str)
                    ).to_numpy(),
                }
            )
        )
        if events is None:
            notes.append("No ticket events table: resolutions and CSAT/CES are not known, every ticket looks open.")
            events = pd.DataFrame(
                {"ticket_id": [], "at": pd.Series(dtype=tickets["created_at"].dtype), "kind": [], "value": []}
            )
        events = events[events["at"] < cutoff]
        owner = tickets.drop_duplicates("ticket_id")
        found = pd.Index(owner["ticket_id"].astype(str)).get_indexer(events["ticket_id"].astype(str))
        events = events[found >= 0].assign(position=owner["position"].to_numpy()[found[found >= 0]])
        kind = events["kind"]
        shown = events[(events["at"] >= start) & one_of(kind, tuple(EVENT_WORDS))]
        value = shown["value"].round().astype("Int64").astype(str).replace("<NA>", "?")
        detail = np.select(
            [shown["kind"] == "csat", shown["kind"] == "ces"],
            [
                shown["ticket_id"].astype(str) + ": satisfaction " + value + " of 5",
                shown["ticket_id"].astype(str) + ": effort " + value + " of 7 (7 = hardest)",
            ],
            default=shown["ticket_id"].astype(str),
        )
        parts.append(
            pd.DataFrame(
                {
                    "position": shown["position"].to_numpy(),
                    "at": naive(shown["at"]),
                    "what": shown["kind"].map(EVENT_WORDS).to_numpy(),
                    "detail": detail,
                }
            )
        )
        # open at the cutoff: never resolved before it, or reopened after its last resolution
        last = events[one_of(kind, ("resolved", "reopened"))].sort_values("at", kind="stable")
        state = last.groupby("ticket_id")["kind"].last()
        resolved = pd.Index(state[state == "resolved"].index.astype(str))
        still = tickets[resolved.get_indexer(tickets["ticket_id"].astype(str)) < 0]
        open_tickets = still.assign(age_days=(cutoff - still["created_at"]).dt.days)[open_tickets.columns]
    surveys = tables.get("surveys")
    if surveys is None:
        notes.append("No survey table: NPS answers are not shown.")
    else:
        answered = surveys[(surveys["answered_at"] < cutoff) & (surveys["answered_at"] >= start)]
        answered = answered.assign(position=positions(index, answered["account_id"]))
        answered = answered[answered["position"] >= 0]
        parts.append(
            pd.DataFrame(
                {
                    "position": answered["position"].to_numpy(),
                    "at": naive(answered["answered_at"]),
                    "what": "NPS answer",
                    "detail": ("would recommend us " + answered["score"].astype(str) + " of 10").to_numpy(),
                }
            )
        )
    frames = [p for p in parts if len(p)]
    events_all = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame({"position": np.zeros(0, dtype=np.int64), "at": [], "what": [], "detail": []})
    )
    events_all = events_all.sort_values(["position", "at"], ascending=[True, False], kind="stable")
    open_tickets = open_tickets.sort_values(["position", "created_at"], kind="stable")
    bounds = np.searchsorted(events_all["position"].to_numpy(dtype=np.int64), np.arange(n + 1))
    open_bounds = np.searchsorted(open_tickets["position"].to_numpy(dtype=np.int64), np.arange(n + 1))
    return Support(events_all.reset_index(drop=True), bounds, open_tickets.reset_index(drop=True), open_bounds, notes)


def usage_page(weekly: Usage, i: int) -> dict:
    """Account i's usage by week, newest first, and its series for the sparklines."""
    series = {m: [None if not np.isfinite(v) else float(v) for v in matrix[i]] for m, matrix in weekly.series.items()}
    has = {m: s for m, s in series.items() if any(v is not None for v in s)}
    weeks = [
        {"week_ending": end, **{m: (None if s[k] is None else round(s[k], 1)) for m, s in has.items()}}
        for k, end in enumerate(weekly.week_ends)
    ]
    return {
        "available": bool(has),
        "series": has,
        "labels": {m: USAGE_MEASURES[m] for m in has},
        "weeks": weeks[::-1],
        "note": None if has else f"No usage recorded for this account in the last {USAGE_WEEKS} weeks.",
    }


def support_page(s: Support, i: int) -> dict:
    """Account i's support events (newest first, the first SUPPORT_EVENTS) and open tickets."""
    events = s.events.iloc[s.event_bounds[i] : s.event_bounds[i + 1]]
    tickets = s.open_tickets.iloc[s.open_bounds[i] : s.open_bounds[i + 1]]
    csat = events[events["what"] == "CSAT answer"]
    opened = int((events["what"] == "ticket opened").sum())
    return {
        "available": not s.notes or len(events) > 0,
        "events": [
            {"at": _day(at), "what": what, "detail": detail}
            for at, what, detail in zip(
                events["at"].head(SUPPORT_EVENTS),
                events["what"].head(SUPPORT_EVENTS),
                events["detail"].head(SUPPORT_EVENTS),
                strict=True,
            )
        ],
        "more": max(len(events) - SUPPORT_EVENTS, 0),
        "tickets_opened": opened,
        "csat_answers": len(csat),
        "days": SUPPORT_DAYS,
        "open_tickets": [
            {
                "ticket_id": str(t.ticket_id),
                "opened": _day(t.created_at),
                "age_days": int(t.age_days),
                "priority": str(t.priority),
                "category": str(t.category).replace("_", " "),
                "channel": str(t.channel),
            }
            for t in tickets.itertuples(index=False)
        ],
    }


def _day(value: Any) -> str | None:
    """An ISO day (YYYY-MM-DD) or None."""
    if value is None or pd.isna(value):
        return None
    return str(pd.Timestamp(value).date())
