"""Support, effort and communication: ticket volume and backlog, repeated issues, waits, breaches,
resolution times, reopens, transfers, channel switches, CES, and conversations the customer has
stopped answering. From `tickets`, `ticket_events` and `ticket_messages`.

Ticket state is rebuilt from events as of each cutoff: a ticket is open from its creation (or a
reopen) until a `resolved` event, so a ticket resolved after the cutoff is open at the cutoff.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.vocabulary import TICKET_CATEGORIES
from features.context import FeatureContext
from features.registry import Family, spec
from features.timeline import DAY, EventIndex, open_at

NONE_90 = "no such event in the last 90 days"
SUPPORT = [
    spec(
        "tickets_30d",
        "support",
        "count",
        "tickets opened in the last 30 days",
        "{n} tickets opened in the last 30 days",
    ),
    spec(
        "tickets_90d",
        "support",
        "count",
        "tickets opened in the last 90 days",
        "{n} tickets opened in the last 90 days",
    ),
    spec("open_tickets", "support", "count", "tickets open at the cutoff", "{n} tickets still open"),
    spec(
        "open_ticket_age_days",
        "support",
        "days",
        "mean age of the tickets open at the cutoff",
        "open tickets have waited {n} days on average",
        "no open ticket",
    ),
    spec(
        "high_priority_tickets_30d",
        "support",
        "count",
        "high or urgent tickets opened in the last 30 days",
        "{n} high-priority tickets in the last 30 days",
    ),
    spec(
        "repeat_tickets_90d",
        "support",
        "count",
        "tickets in the last 90 days on a category already raised in the 30 days before",
        "the same issue came back {n} times in 90 days",
    ),
    spec(
        "same_issue_contacts_max_30d",
        "support",
        "count",
        "most tickets on one category in the last 30 days (3 = first-contact-resolution failure)",
        "{n} contacts about the same issue in 30 days",
    ),
] + [
    spec(
        f"tickets_{c}_90d",
        "support",
        "count",
        f"{c.replace('_', ' ')} tickets in the last 90 days",
        f"{{n}} {c.replace('_', ' ')} tickets in the last 90 days",
    )
    for c in TICKET_CATEGORIES
]
EFFORT = [
    spec(
        "awaiting_first_response",
        "effort",
        "count",
        "tickets still waiting for a first response at the cutoff",
        "{n} tickets still waiting for a first response",
    ),
    spec(
        "first_response_hours_90d",
        "effort",
        "hours",
        "mean hours to first response, responses in the last 90 days",
        "first responses took {n} hours on average",
        NONE_90,
    ),
    spec(
        "response_breaches_90d",
        "effort",
        "count",
        "first responses slower than the target, breached in the last 90 days",
        "{n} first-response targets missed in 90 days",
    ),
    spec(
        "resolution_hours_90d",
        "effort",
        "hours",
        "mean hours from creation to resolution, resolutions in the last 90 days",
        "tickets took {n} hours to resolve on average",
        NONE_90,
    ),
    spec("reopens_90d", "effort", "count", "tickets reopened in the last 90 days", "{n} tickets reopened in 90 days"),
    spec("transfers_90d", "effort", "count", "ticket transfers in the last 90 days", "{n} ticket transfers in 90 days"),
    spec(
        "channel_switches_90d",
        "effort",
        "count",
        "tickets in the last 90 days on another channel than the previous ticket",
        "switched support channel {n} times in 90 days",
    ),
    spec(
        "ces_mean_180d",
        "effort",
        "score",
        "mean customer effort score answered in the last 180 days (1-7, 7 = most effort)",
        "customer effort score {value} of 7",
        "no CES answer in the last 180 days",
    ),
    spec("ces_answers_180d", "effort", "count", "CES answers in the last 180 days", "{n} CES answers in 180 days"),
]
COMMUNICATION = [
    spec(
        "unanswered_agent_messages",
        "communication",
        "count",
        "agent messages on open tickets the customer has not answered for 48 hours or more",
        "{n} agent messages left unanswered by the customer",
    ),
    spec(
        "customer_messages_30d",
        "communication",
        "count",
        "messages from the customer in the last 30 days",
        "{n} customer messages in 30 days",
    ),
    spec(
        "days_since_customer_message",
        "communication",
        "days",
        "days since the customer last wrote to support",
        "last wrote to support {n} days ago",
        "the customer never wrote",
    ),
]


def _window(ctx: FeatureContext, days: int) -> np.ndarray:
    return ctx.cut_s - days * DAY


def _ticket_facts(ctx: FeatureContext) -> pd.DataFrame:
    """Per ticket: facts fixed when it is created (repeat, channel switch) and its first response."""
    t = ctx.tickets().copy()
    window = ctx.params.repeat_window_days * DAY
    prev_same = t.groupby(["acc", "category"], sort=False)["created_s"].shift(1)
    t["repeat"] = (t["created_s"] - prev_same) <= window
    prev_channel = t.groupby("acc", sort=False)["channel"].shift(1)
    t["switch"] = prev_channel.notna() & (t["channel"] != prev_channel)
    t["high"] = t["priority"].isin(["high", "urgent"])
    ev = ctx.ticket_events()
    fr = ev[ev["kind"] == "first_response"].groupby("ticket_id")["at_s"].min()
    t["fr_s"] = t["ticket_id"].map(fr).astype("float64")
    return t


def build_support(ctx: FeatureContext) -> pd.DataFrame:
    t = ctx.cached("ticket_facts", lambda: _ticket_facts(ctx))
    ev = ctx.ticket_events()
    a, c = ctx.acc, ctx.cut_s
    created = EventIndex(
        t["acc"],
        t["created_s"],
        {"created": t["created_s"], "repeat": t["repeat"], "switch": t["switch"], "high": t["high"]},
    )
    reopen = ev[ev["kind"] == "reopened"]
    resolved = ev[ev["kind"] == "resolved"]
    # open intervals: start at creation or reopen, end at resolution; each carries its ticket's creation time
    starts = EventIndex(
        np.concatenate([t["acc"], reopen["acc"]]),
        np.concatenate([t["created_s"], reopen["at_s"]]),
        {"created": np.concatenate([t["created_s"], reopen["created_s"]])},
    )
    ends = EventIndex(resolved["acc"], resolved["at_s"], {"created": resolved["created_s"]})
    open_n = open_at(starts, ends, a, c)
    created_sum = starts.total("created", a, c)[0] - ends.total("created", a, c)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        age = np.where(open_n > 0, (c - created_sum / np.maximum(open_n, 1)) / DAY, np.nan)

    cat_code = pd.Categorical(t["category"], categories=TICKET_CATEGORIES).codes.astype(np.int64)
    by_cat = EventIndex(t["acc"].to_numpy() * len(TICKET_CATEGORIES) + cat_code, t["created_s"])
    per_cat_30 = np.column_stack(
        [by_cat.count(a * len(TICKET_CATEGORIES) + k, c, _window(ctx, 30)) for k in range(len(TICKET_CATEGORIES))]
    )
    out = {
        "tickets_30d": created.count(a, c, _window(ctx, 30)),
        "tickets_90d": created.count(a, c, _window(ctx, 90)),
        "open_tickets": open_n,
        "open_ticket_age_days": age,
        "high_priority_tickets_30d": created.total("high", a, c, _window(ctx, 30))[0],
        "repeat_tickets_90d": created.total("repeat", a, c, _window(ctx, 90))[0],
        "same_issue_contacts_max_30d": per_cat_30.max(axis=1) if len(ctx) else np.zeros(0),
    }
    for k, cat in enumerate(TICKET_CATEGORIES):
        out[f"tickets_{cat}_90d"] = by_cat.count(a * len(TICKET_CATEGORIES) + k, c, _window(ctx, 90))
    return pd.DataFrame(out).astype("float64")


def build_effort(ctx: FeatureContext) -> pd.DataFrame:
    t = ctx.cached("ticket_facts", lambda: _ticket_facts(ctx))
    ev = ctx.ticket_events()
    a, c, w90 = ctx.acc, ctx.cut_s, _window(ctx, 90)
    target = ctx.params.response_target_hours * 3600
    responded = t[t["fr_s"].notna()]
    waiting = open_at(
        EventIndex(t["acc"], t["created_s"]), EventIndex(responded["acc"], responded["fr_s"].astype(np.int64)), a, c
    )
    first = EventIndex(
        responded["acc"],
        responded["fr_s"].astype(np.int64),
        {"hours": (responded["fr_s"] - responded["created_s"]) / 3600},
    )
    # a breach is known once the target passes without a response: it is dated at created + target
    breached = t[t["fr_s"].isna() | (t["fr_s"] > t["created_s"] + target)]
    breaches = EventIndex(breached["acc"], (breached["created_s"] + target).astype(np.int64))
    resolved = ev[ev["kind"] == "resolved"]
    resolutions = EventIndex(
        resolved["acc"], resolved["at_s"], {"hours": (resolved["at_s"] - resolved["created_s"]) / 3600}
    )
    kinds = {k: ev[ev["kind"] == k] for k in ("reopened", "transferred", "ces")}
    ces = EventIndex(kinds["ces"]["acc"], kinds["ces"]["at_s"], {"value": kinds["ces"]["value"]})
    switches = EventIndex(t["acc"], t["created_s"], {"switch": t["switch"]})
    out = {
        "awaiting_first_response": waiting,
        "first_response_hours_90d": first.mean("hours", a, c, w90),
        "response_breaches_90d": breaches.count(a, c, w90),
        "resolution_hours_90d": resolutions.mean("hours", a, c, w90),
        "reopens_90d": EventIndex(kinds["reopened"]["acc"], kinds["reopened"]["at_s"]).count(a, c, w90),
        "transfers_90d": EventIndex(kinds["transferred"]["acc"], kinds["transferred"]["at_s"]).count(a, c, w90),
        "channel_switches_90d": switches.total("switch", a, c, w90)[0],
        "ces_mean_180d": ces.mean("value", a, c, _window(ctx, 180)),
        "ces_answers_180d": ces.count(a, c, _window(ctx, 180)),
    }
    return pd.DataFrame(out).astype("float64")


def _unanswered_intervals(ctx: FeatureContext) -> tuple[EventIndex, EventIndex]:
    """An agent message is unanswered from `unanswered_after` hours after it was sent until the
    customer's next message on the ticket or the ticket's next resolution, whichever comes first."""
    m = ctx.messages().sort_values("sent_s", kind="stable")
    ev = ctx.ticket_events()
    agent = m[m["author"] == "agent"][["ticket_id", "acc", "sent_s"]]
    customer = m[m["author"] == "customer"][["ticket_id", "sent_s"]].rename(columns={"sent_s": "reply_s"})
    resolved = (
        ev[ev["kind"] == "resolved"][["ticket_id", "at_s"]]
        .sort_values("at_s", kind="stable")
        .rename(columns={"at_s": "closed_s"})
    )
    # messages sent on a ticket that is closed at the time (after its last resolution) wait for nothing
    state = ev[ev["kind"].isin(["resolved", "reopened"])][["ticket_id", "at_s", "kind"]].sort_values(
        "at_s", kind="stable"
    )
    agent = pd.merge_asof(
        agent,
        state.rename(columns={"at_s": "state_s"}),
        left_on="sent_s",
        right_on="state_s",
        by="ticket_id",
        direction="backward",
    )
    agent = agent[agent["kind"].ne("resolved") | agent["state_s"].isna()].drop(columns=["kind", "state_s"])
    agent = pd.merge_asof(
        agent,
        customer,
        left_on="sent_s",
        right_on="reply_s",
        by="ticket_id",
        direction="forward",
        allow_exact_matches=False,
    )
    agent = pd.merge_asof(
        agent,
        resolved,
        left_on="sent_s",
        right_on="closed_s",
        by="ticket_id",
        direction="forward",
        allow_exact_matches=True,
    )
    start = agent["sent_s"] + int(ctx.params.unanswered_after_hours * 3600)
    end = agent[["reply_s", "closed_s"]].min(axis=1)
    live = end.isna() | (end > start)
    agent, start, end = agent[live], start[live], end[live]
    stopped = end.notna()
    return EventIndex(agent["acc"], start), EventIndex(agent["acc"][stopped], end[stopped].astype(np.int64))


def build_communication(ctx: FeatureContext) -> pd.DataFrame:
    a, c = ctx.acc, ctx.cut_s
    starts, ends = ctx.cached("unanswered", lambda: _unanswered_intervals(ctx))
    m = ctx.messages()
    customer = m[m["author"] == "customer"]
    sent = EventIndex(customer["acc"], customer["sent_s"])
    out = {
        "unanswered_agent_messages": open_at(starts, ends, a, c),
        "customer_messages_30d": sent.count(a, c, _window(ctx, 30)),
        "days_since_customer_message": (c - sent.last(a, c)) / DAY,
    }
    return pd.DataFrame(out).astype("float64")


FAMILIES = (
    Family("support", "ticket volume, backlog and repeated issues", build_support, SUPPORT, ("tickets",)),
    Family(
        "effort",
        "customer effort: waits, breaches, reopens, transfers, channel switches, CES",
        build_effort,
        EFFORT,
        ("ticket_events",),
    ),
    Family(
        "communication",
        "conversations with support, and the customer going quiet",
        build_communication,
        COMMUNICATION,
        ("ticket_messages",),
    ),
)
