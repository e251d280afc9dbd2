"""The queue page's data: a CSM's active escalations and pending follow-ups (a lead's: everyone's,
with an owner and a queue filter), most urgent first, a page of PAGE_SIZE at a time.

The whole queue is read and ordered from the store's rows alone (no per-row lookup), so its counts
and order are the whole queue's; only the rows of the page asked for become cards, with the
account's name, 90-day risk and top reason from the served model and their times in words."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from core import clock
from serving.workspace.auth import User
from serving.workspace.format import minute, percent, span
from serving.workspace.web import Workspace

#: escalation cards, and follow-up rows, on one page of the queue
PAGE_SIZE = 25
NEVER = dt.datetime.max.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Paging:
    """Which page of `total` rows is shown: rows [start, stop) of page `number` of `pages`; `note`
    says why it is not the page asked for (one past the end, or not a page number)."""

    number: int
    pages: int
    total: int
    start: int
    stop: int
    note: str | None


def paging(total: int, asked: str | None, field: str, what: str, size: int = PAGE_SIZE) -> Paging:
    """The page `asked` (the query parameter `field`, 1 when absent) of `total` rows of `what`; a
    page past the end shows the last one, a bad number the first, each with a note naming it."""
    pages = max(1, math.ceil(total / size))
    number, note = 1, None
    if asked not in (None, ""):
        try:
            number = int(str(asked))
        except ValueError:
            number = 0
        if number < 1:
            note = f"{field} {asked!r}: expected a page number from 1 to {pages}; showing page 1."
            number = 1
        elif number > pages:
            note = (
                f"There is no page {number} of {what}: there {'is' if pages == 1 else 'are'} {pages} "
                f"page{'' if pages == 1 else 's'} of {total}; showing the last."
            )
            number = pages
    start = (number - 1) * size
    return Paging(number, pages, total, start, min(start + size, total), note)


def queue_page(
    made: Workspace,
    user: User,
    owner: str | None,
    queue: str | None,
    page: str | None = None,
    follow_up_page: str | None = None,
    now: dt.datetime | None = None,
) -> dict:
    """The queue for `user`: their active escalations (a lead's: everyone's, or `owner`'s) and their
    pending follow-ups, most urgent first: open ones past their response window, then open ones by
    the time left, then acknowledged ones by their follow-up; page `page` of the escalations and
    page `follow_up_page` of the follow-ups."""
    now = now or clock.now()
    # the rows serving/lifecycle.py's list_escalations and follow_ups answer with, as the store keeps them
    listed = made.store.list_escalations(owner=None if user.is_lead else user.name, now=now)
    owners = sorted({e["owner"] for e in listed if e["owner"]})
    queues = sorted({e["queue"] for e in listed if e["queue"]})
    if user.is_lead:
        listed = [
            e for e in listed if (owner is None or e["owner"] == owner) and (queue is None or e["queue"] == queue)
        ]
    elif queue is not None:
        listed = [e for e in listed if e["queue"] == queue]
    ids = {e["id"] for e in listed}
    ordered = sorted(listed, key=_urgency)
    pending = [f for f in made.store.follow_ups() if f["escalation_id"] in ids]  # oldest due first
    shown = paging(len(ordered), page, "page", "escalations")
    shown_follow_ups = paging(len(pending), follow_up_page, "follow_up_page", "follow-ups")
    filters = {"owner": owner, "queue": queue}

    def query(escalations: int, follow_ups: int) -> dict:
        """The query string of a page of each list (a first page's number left out)."""
        return {
            **filters,
            "page": escalations if escalations > 1 else None,
            "follow_up_page": follow_ups if follow_ups > 1 else None,
        }

    def pager(p: Paging, move: Any) -> dict:
        """`move(n)`: the query of page n of this list, the other list's page kept."""
        return {
            "number": p.number,
            "pages": p.pages,
            "first": p.start + 1,
            "last": p.stop,
            "note": p.note,
            "previous": move(p.number - 1) if p.number > 1 else None,
            "next": move(p.number + 1) if p.number < p.pages else None,
        }

    return {
        "escalations": [_card(made, row, now) for row in ordered[shown.start : shown.stop]],
        "follow_ups": [_follow_up(made, row, now) for row in pending[shown_follow_ups.start : shown_follow_ups.stop]],
        "total": len(ordered),
        "follow_ups_total": len(pending),
        "paging": pager(shown, lambda n: query(n, shown_follow_ups.number)),
        "follow_ups_paging": pager(shown_follow_ups, lambda n: query(shown.number, n)),
        "overdue": sum(bool(e["overdue"]) for e in ordered),
        "follow_ups_due": sum(f["due_at"] <= now for f in pending),
        "everyone": user.is_lead,
        "owner": owner,
        "queue": queue,
        "owners": owners,
        "queues": queues,
        "now": minute(now),
    }


def _urgency(row: dict) -> tuple:
    """Past the window first, then open by the time left, then acknowledged by their follow-up;
    then the most severe, then the oldest id."""
    rank = 0 if row["overdue"] else 1 if row["status"] == "open" else 2
    clock = row["respond_by"] if rank < 2 else row["follow_up_due"]
    return rank, clock or NEVER, -row["severity"], row["id"]


def _card(made: Workspace, row: dict, now: dt.datetime) -> dict:
    respond_by, follow_up = row["respond_by"], row["follow_up_due"]
    facts = made.account_facts(row["account_id"])
    if row["status"] == "acknowledged":
        left, late = "acknowledged: no response window running", False
    elif respond_by is None:
        left, late = "no response window", False
    else:
        late = bool(row["overdue"])
        seconds = (respond_by - now).total_seconds()
        left = f"overdue by {span(seconds)}" if late else f"{span(seconds)} left to respond"
    return {
        "id": row["id"],
        "account_id": row["account_id"],
        "account_name": facts["name"] or row["account_id"],
        "p_90d": None if facts["p_90d"] is None else percent(facts["p_90d"]),
        "top_reason": facts["reason"],
        "band": row["band"],
        "queue": row["queue"],
        "owner": row["owner"],
        "status": row["status"],
        "reason": (row["reason"] or "").replace("_", " "),
        "occurrences": row["occurrences"],
        "opened": f"{span((now - row['opened_at']).total_seconds())} ago",
        "respond_by": minute(respond_by),
        "time_left": left,
        "overdue": late,
        "follow_up_due": minute(follow_up),
    }


def _follow_up(made: Workspace, row: dict, now: dt.datetime) -> dict[str, Any]:
    seconds = (row["due_at"] - now).total_seconds()
    return {
        "escalation_id": row["escalation_id"],
        "account_id": row["account_id"],
        "account_name": made.account_facts(row["account_id"])["name"] or row["account_id"],
        "band": row["band"],
        "queue": row["queue"],
        "owner": row["owner"],
        "due_at": minute(row["due_at"]),
        "due": seconds <= 0,
        "when": f"due {span(seconds)} ago" if seconds <= 0 else f"due in {span(seconds)}",
    }
