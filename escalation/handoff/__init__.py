"""The handoff (the "context package"): what support hands to Customer Success when a ticket
escalates, so the CS owner starts with the whole story instead of a meeting, and the customer
never has to repeat it.

A pure function of the decision and its inputs: no I/O, no clock (`now` is passed in), no
randomness, so the same inputs always give the same package and it can be replayed in an audit.

    pii       masking of emails, card and phone numbers in every quoted text
    extract   technical specifics, what was tried, what was promised
    timeline  the ticket's story: dated events and effort figures
    themes    what the handoff is about, the next action and success for each theme
    form      the typed form (`HandoffForm`) and its JSON (`to_dict()`)
    render    the summary, the warm handoff message and the Markdown page
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

import pandas as pd

from escalation.decision import AccountFacts, Decision, RiskView, TicketSignals
from escalation.handoff import render
from escalation.handoff.extract import extract_promises, extract_specifics, extract_tried
from escalation.handoff.form import HandoffForm, build_form
from escalation.handoff.pii import mask_pii, mask_series
from escalation.handoff.themes import THEMES, themes_of
from escalation.handoff.timeline import read_story

__all__ = [
    "HandoffForm",
    "HandoffPackage",
    "build_handoff",
    "extract_promises",
    "extract_specifics",
    "extract_tried",
    "mask_pii",
    "mask_series",
]


@dataclass(frozen=True)
class HandoffPackage:
    """The typed form and what is rendered from it; `form` is its JSON, as stored and served."""

    handoff_form: HandoffForm
    markdown: str
    summary: str
    warm_handoff: str

    @cached_property
    def form(self) -> dict:
        return self.handoff_form.to_dict()

    def to_dict(self) -> dict:
        return {
            "form": self.form,
            "summary": self.summary,
            "warm_handoff": self.warm_handoff,
            "markdown": self.markdown,
        }


def build_handoff(
    decision: Decision,
    facts: AccountFacts,
    risk: RiskView | None,
    signals: TicketSignals | None,
    messages: pd.DataFrame,
    now: dt.datetime,
    *,
    ticket_subject: str | None = None,
    max_words: int = 200,
) -> HandoffPackage:
    """The context package for one decision: form, summary (at most `max_words` words), warm
    handoff message and a one-page Markdown rendering."""
    signals = signals or TicketSignals()
    story = read_story(messages, signals, now, ticket_subject)
    themes = themes_of(decision, signals)
    form = build_form(decision, facts, risk, signals, story, themes, now)
    summary = render.summary(form, max_words)
    warm = render.warm_handoff(form, facts, render.person(decision, facts), THEMES[themes[0]])
    return HandoffPackage(
        handoff_form=form, markdown=render.markdown(form, summary, warm), summary=summary, warm_handoff=warm
    )
