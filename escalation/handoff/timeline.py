"""A ticket's story, read from its messages: the dated events (first contact, first reply, each
time the question was asked again, critical moments, fixes tried, promises, the last message) and
the effort figures read from the same messages."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd

from escalation.decision import TicketSignals
from escalation.handoff._format import excerpt, fmt_hours, fmt_time, utc
from escalation.handoff.extract import normalise_messages, promise_rows, specifics_of, tried_rows
from escalation.handoff.form import CriticalMoment, Promise, TicketStory, TimelineEvent, Tried
from escalation.handoff.pii import mask_pii
from features.text.critical import detect_critical

_STOPWORDS = frozenset(
    "the and for you your our are was were have has had this that with from not but can will would could "
    "please when why what how there their they them its it's i'm we've been still again just about".split()
)


def _words(text: str) -> frozenset[str]:
    return frozenset(w for w in re.findall(r"[a-z0-9']{3,}", text.lower()) if w not in _STOPWORDS)


def _rephrasings(customer: pd.DataFrame, asks: int, lookback: int = 8) -> list:
    """Which customer messages asked the question again. The signals pipeline's own flags are used
    when the frame carries them (`rephrase`); otherwise the `asks - 1` later messages closest in
    wording to an earlier message are taken, which is what `asks` counted."""
    if "rephrase" in customer.columns:
        return list(customer.index[customer["rephrase"].fillna(False).astype(bool)])
    repeats = max(int(asks) - 1, 0)
    if repeats == 0 or len(customer) < 2:
        return []
    bags = [_words(b) for b in customer["body"]]
    scores = []
    for k in range(1, len(bags)):
        earlier = bags[max(0, k - lookback) : k]
        best = max((len(bags[k] & e) / len(bags[k] | e) if bags[k] | e else 0.0) for e in earlier)
        scores.append((-best, k))
    chosen = sorted(k for _, k in sorted(scores)[:repeats])
    return [customer.index[k] for k in chosen]


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def read_story(
    messages: pd.DataFrame | None, signals: TicketSignals, now: dt.datetime, ticket_subject: str | None = None
) -> TicketStory:
    """Everything the form takes from the ticket: its masked subject, timeline, specifics, what
    was tried and promised, and the effort figures."""
    msgs = normalise_messages(messages)
    subject = mask_pii(ticket_subject) if ticket_subject else None
    tried, promises = tried_rows(msgs), promise_rows(msgs, now)
    timeline, first_wait, moments = _timeline(msgs, signals, tried, promises)
    waiting = None
    if len(msgs) and msgs["author"].iloc[-1] == "customer":
        # a message stamped after `now` (the support system's clock ahead of ours) has waited no time
        waiting = max(round((utc(now) - msgs["sent_at"].iloc[-1]).total_seconds() / 3600, 1), 0.0)
    return TicketStory(
        subject=subject,
        timeline=tuple(timeline),
        specifics=specifics_of(([subject] if subject else []) + msgs["body"].tolist()),
        tried=tuple(t for _, t in tried),
        promised=tuple(p for _, p in promises),
        customer_messages=int((msgs["author"] == "customer").sum()),
        first_response_wait_hours=first_wait,
        customer_waiting_hours=waiting,
        critical_moments=tuple(moments),
    )


def _timeline(
    messages: pd.DataFrame, signals: TicketSignals, tried: list[tuple[int, Tried]], promises: list[tuple[int, Promise]]
) -> tuple[list[TimelineEvent], float | None, list[CriticalMoment]]:
    """The events worth a line (a message gets one when something happened in it), the hours to
    the first agent reply and the critical moments."""
    first_wait: float | None = None
    moments: list[CriticalMoment] = []
    if not len(messages):
        return [], first_wait, moments
    customer = messages[messages["author"] == "customer"]
    agent = messages[messages["author"] == "agent"]
    labels: dict = {i: [] for i in messages.index}
    if len(customer):
        labels[customer.index[0]].append("first contact")
    if len(agent):
        first_reply = agent[agent["sent_at"] >= customer["sent_at"].iloc[0]] if len(customer) else agent
        if len(first_reply) and len(customer):
            wait = (first_reply["sent_at"].iloc[0] - customer["sent_at"].iloc[0]).total_seconds() / 3600
            first_wait = round(wait, 1)
            labels[first_reply.index[0]].append(f"first agent reply (after {fmt_hours(first_wait)})")
    for n, i in enumerate(_rephrasings(customer, signals.asks), start=2):
        labels[i].append(f"asked again ({_ordinal(n)} time)")
    if len(customer):
        critical = detect_critical(customer["body"])
        for i, row in critical[critical["critical"]].iterrows():
            labels[i].append(f'critical moment ({row["category"]}: "{row["matched"]}")')
            moments.append(
                CriticalMoment(at=fmt_time(messages.at[i, "sent_at"]), category=row["category"], text=row["matched"])
            )
    for row in dict.fromkeys(row for row, _ in tried):
        labels[row].append("fix tried")
    for row, p in promises:
        labels[row].append(f"promise ({p.deadline}" + (f", due {p.due_date})" if p.due_date else ")"))
    labels[messages.index[-1]].append("last message")
    events = [
        TimelineEvent(
            at=fmt_time(messages.at[i, "sent_at"]),
            who=messages.at[i, "author"],
            event="; ".join(labels[i]),
            text=excerpt(messages.at[i, "body"]),
        )
        for i in messages.index
        if labels[i]
    ]
    return events, first_wait, moments
