"""What people read: the summary (about 200 words of plain prose, shortened by importance), the
warm handoff message to the customer and the one-page Markdown, all from the typed form."""

from __future__ import annotations

import datetime as dt

from escalation.decision import AccountFacts, Decision
from escalation.handoff._format import clause, fmt_hours, fmt_minutes, fmt_money
from escalation.handoff._format import excerpt as _cap
from escalation.handoff.extract import tried_clause
from escalation.handoff.form import Effort, HandoffForm, Promise
from escalation.handoff.themes import Theme


def _fit(sentences: list[tuple[int, list[str]]], max_words: int) -> str:
    """Sentences are (priority, variants from longest to shortest), in reading order. While the
    text is too long, the least important sentence (highest priority number, latest first) is
    shortened, then dropped; priority-0 sentences are only shortened. A last resort cuts the text
    at `max_words` words with an ellipsis."""
    chosen = [0] * len(sentences)
    alive = [True] * len(sentences)

    def text() -> str:
        return " ".join(v[chosen[i]] for i, (_, v) in enumerate(sentences) if alive[i] and v[chosen[i]])

    while len(text().split()) > max_words:
        cands = [i for i, (p, v) in enumerate(sentences) if alive[i] and (p > 0 or chosen[i] < len(v) - 1)]
        if not cands:
            break
        i = max(cands, key=lambda k: (sentences[k][0], k))
        if chosen[i] < len(sentences[i][1]) - 1:
            chosen[i] += 1
        else:
            alive[i] = False
    words = text().split()
    if len(words) > max_words:
        words = words[: max(max_words, 1)] if max_words >= 1 else []
        if words:
            words[-1] = words[-1].rstrip(".,;:") + "..."
    return " ".join(words)


def _clause(text: str, words: int) -> str:
    """A sentence cut to `words` words to sit inside another sentence: its own full stop goes,
    an ellipsis shows a cut."""
    cut = clause(text, words)
    return cut if cut.endswith("...") else cut.rstrip(".!?;, ")


def _end(text: str) -> str:
    return text if text.endswith((".", "!", "?")) else text + "."


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def _promise_when(p: Promise) -> str:
    """'due Friday 2024-03-15, in 2 days' from a promise of the form."""
    if not p.due_date:
        return p.deadline
    day = dt.date.fromisoformat(p.due_date)
    status = p.status.removeprefix("due ")
    return f"due {day.strftime('%A')} {p.due_date}, {status}"


def summary(form: HandoffForm, max_words: int) -> str:
    """About 200 words of plain prose in reading order (who, what, story, specifics, tried,
    promised, state, impact, next, owner, success); `_fit` enforces the budget by importance."""
    c, issue, state, impact, need, dec = (
        form.customer,
        form.issue,
        form.customer_state,
        form.business_impact,
        form.what_is_needed,
        form.decision,
    )
    effort = state.effort
    name = _cap(c.name or c.account_id, 8)
    who_id = f"{name} ({_cap(c.account_id, 3)})" if c.name else name
    money = fmt_money(c.arr)
    maybe_bits = [
        c.segment.replace("_", "-") if c.segment else None,
        (f"{money} ARR" + (f" ({c.arr_vs_average}x average)" if c.arr_vs_average else "")) if money else None,
        (f"renews {c.renewal_date}" + (f" ({c.days_to_renewal} days)" if c.days_to_renewal is not None else ""))
        if c.renewal_date
        else f"renewal in {c.days_to_renewal} days"
        if c.days_to_renewal is not None
        else None,
    ]
    sponsor: dict[bool | None, str] = {True: "executive sponsor in place", False: "no executive sponsor"}
    maybe_people = [
        f"technical lead {_cap(c.technical_lead, 6)}" if c.technical_lead else None,
        sponsor.get(c.executive_sponsor),
    ]
    bits, people = [b for b in maybe_bits if b], [p for p in maybe_people if p]
    who_full = f"{who_id}: {', '.join(bits) or 'account'}" + (f"; {', '.join(people)}." if people else ".")
    who_short = f"{who_id}" + (f", {money} ARR." if money else ".")

    ticket = f"Ticket {_cap(issue.ticket_id, 3)}" if issue.ticket_id else "No ticket"
    tags = ", ".join(t for t in (issue.category, issue.priority) if t)
    what = ticket + (f" ({tags})" if tags else "") + (f' "{_cap(issue.subject, 12)}"' if issue.subject else "")
    if dec.escalate:
        others = len(dec.rules) - 1
        primary = next((r.detail for r in dec.rules if r.rule == dec.primary_reason), dec.primary_reason)
        what_full = f"{what} escalated as {dec.band} to {_cap(dec.queue, 3)}: {_cap(primary, 12)}" + (
            f" (+{others} more rule{'s' if others > 1 else ''})." if others > 0 else "."
        )
        what_short = f"{what} escalated as {dec.band}."
    else:
        what_full = what_short = f"{what}, not escalated (band {dec.band})."

    timeline, story = issue.timeline, []
    if timeline:
        first = next((e for e in timeline if "first contact" in e.event), timeline[0])
        story.append(f"First contact {first.at}")
        if effort.asks > 1:
            story.append(f"asked {effort.asks} times")
        waiting = (
            f", unanswered for {fmt_hours(effort.customer_waiting_hours)}"
            if effort.customer_waiting_hours is not None
            else ""
        )
        story.append(f"{timeline[-1].who} last wrote {timeline[-1].at}{waiting}")
    happened = ["; ".join(story) + "."] if story else [""]

    spec = issue.technical_specifics
    spec_values = [_cap(v, 3) for values in (spec.error_codes, spec.versions, spec.regions) for v in values[:3]]
    specifics = [f"Specifics: {', '.join(spec_values)}."] if spec_values else [""]

    tried = [_clause(tried_clause(t.text), 12) for t in issue.tried]
    tried_v = (
        [
            _end(f"Tried: {'; '.join(_lower_first(t) for t in dict.fromkeys(tried[:1] + tried[-1:]))}"),
            _end(f"Tried: {_lower_first(tried[-1])}"),
        ]
        if tried
        else [""]
    )
    promised = issue.promised
    promised_v = (
        [
            f'Promised: "{_cap(promised[-1].text, 15)}" ({_promise_when(promised[-1])}).',
            f"Promised: {_promise_when(promised[-1])}.",
        ]
        if promised
        else [""]
    )

    mood = []
    if state.sentiment is not None:
        mood.append(
            f"Sentiment {state.sentiment_label} ({state.sentiment:+.2f})"
            + (f", {state.drift_label} ({state.drift:+.2f} since the first message)" if state.drift is not None else "")
        )
    if state.frustrated:
        mood.append("frustrated")
    crit = list(dict.fromkeys([m.category for m in effort.critical_moments] + list(effort.critical_categories)))
    effort_bits = [f"critical moments: {', '.join(crit[:4])}"] if crit else []
    state_full = "; ".join(mood + effort_bits)
    state_v = [
        state_full[:1].upper() + state_full[1:] + "." if state_full else "",
        ("; ".join(mood) + ".") if mood else "",
    ]

    curve = impact.risk_curve_pct
    impact_v = [""]
    if curve:
        risk_text = f"Churn risk {'/'.join(f'{p:g}' for p in curve.values())}% at {'/'.join(curve)} days"
        # a reason whole, with its reference and its points, or the risk alone
        reasons = [_clause(r, 24) for r in impact.top_reasons[:2]]
        impact_v = (
            [
                _end(f"{risk_text}; top reasons: {'; '.join(reasons)}"),
                _end(f"{risk_text}; top reason: {reasons[0]}"),
                f"{risk_text}.",
            ]
            if reasons
            else [f"{risk_text}."]
        )

    actions = [_lower_first(_clause(a, 16)) for a in [need.recommended_action, *need.other_actions[:1]]]
    action_v = [_end(f"Next: {'; '.join(actions)}"), _end(f"Next: {actions[0]}")]
    owner = _cap(need.owner or "unassigned", 6)
    window = fmt_minutes(need.response_window_minutes)
    owner_full = (
        f"Owner: {owner}"
        + (f" ({_cap(need.queue, 3)})" if need.queue else "")
        + (f", respond within {window}" if window else "")
        + (f", follow-up due {need.follow_up_due}" if need.follow_up_due else "")
        + "."
    )
    owner_short = f"Owner: {owner}" + (f", respond within {window}." if window else ".")
    s = need.success
    success_v = [
        f"Success: 30 days, {s.days_30}; 60 days, {s.days_60}; 90 days, {s.days_90}.",
        f"Success at 30 days: {s.days_30}.",
    ]
    return _fit(
        [
            (0, [who_full, who_short]),
            (1, [what_full, what_short]),
            (4, happened),
            (5, specifics),
            (6, tried_v),
            (2, promised_v),
            (3, state_v),
            (4, impact_v),
            (1, action_v),
            (0, [owner_full, owner_short]),
            (3, success_v),
        ],
        max_words,
    )


def person(decision: Decision, facts: AccountFacts) -> str | None:
    """The named person who owns the handoff: a queue's on-call is not a name to give a customer."""
    owner = decision.owner if decision.owner and not decision.owner.endswith(" on-call") else None
    return owner or facts.csm_owner or None


def warm_handoff(form: HandoffForm, facts: AccountFacts, owner: str | None, theme: Theme) -> str:
    """To the customer, from support: who takes over (`owner`, a person's name or None), why
    them, what happens next and when. A silent transfer makes the experience far worse, so this
    is never skipped."""
    issue, state, need = form.issue, form.customer_state, form.what_is_needed
    has_ticket = bool(issue.ticket_id or issue.subject or issue.timeline)
    greeting = f"Hello {facts.name} team," if facts.name else "Hello,"
    lines = []
    if has_ticket:
        ticket = f" (ticket {issue.ticket_id})" if issue.ticket_id else ""
        about = f'"{_cap(issue.subject, 12)}"{ticket}' if issue.subject else f"your request{ticket}"
        lines.append(f"Thank you for your patience with {about}.")
        if state.effort.asks > 1 or state.frustrated:
            lines.append("I am sorry you have had to follow up more than once.")
    contact = (
        (
            " From now on {who} your single point of contact for this, with the full history in hand, so you will not need to "
            "explain anything again."
        )
        if has_ticket
        else ""
    )
    if owner:
        role = "your Customer Success Manager" if owner == facts.csm_owner else "from our Customer Success team"
        doer = owner.split()[0]
        lines.append(f"I'd like to introduce {owner}, {role}, {theme.expertise}." + contact.format(who=f"{doer} is"))
    else:
        doer = "our team"
        lines.append("A senior member of our Customer Success team is taking this on." + contact.format(who="they are"))
    window = fmt_minutes(need.response_window_minutes)
    when = f"will contact you within {window}" if window else "will be in touch with you shortly"
    follow_up = f"; you will hear from us again no later than {need.follow_up_due}." if need.follow_up_due else "."
    lines.append(f"{doer[:1].upper() + doer[1:]} will {theme.for_customer}, and {when}{follow_up}")
    if issue.promised:
        p = issue.promised[-1]
        quote = f'"{_cap(p.text, 25)}"'
        if p.status == "overdue":
            made = f" on {p.at[:10]}" if p.at else ""  # a message without a time can still name an ISO date
            lines.append(f"We have not yet kept the promise we made{made} ({quote}); {doer} will put that right first.")
        else:
            lines.append(f"Our earlier promise still stands, and {doer} will make sure it is kept: {quote}")
    return "\n\n".join([greeting, " ".join(lines), "Kind regards,\nCustomer Support"])


def _cell(value) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _effort(effort: Effort) -> str:
    """ "asked 3 times; 4 customer messages on this ticket (2 negative); first reply after 0.5 h"."""
    scope = f"in the last {effort.messages_window_days} days" if effort.messages_window_days else "on this ticket"
    n = effort.customer_messages
    text = f"asked {effort.asks} time{'s' if effort.asks != 1 else ''}; {n} customer message{'s' if n != 1 else ''} "
    text += f"{scope} ({effort.negative_messages} negative); first reply after "
    text += fmt_hours(effort.first_response_wait_hours) if effort.first_response_wait_hours is not None else "-"
    if effort.customer_waiting_hours is not None:
        text += f"; customer waiting {fmt_hours(effort.customer_waiting_hours)}"
    return text


def markdown(form: HandoffForm, summary: str, warm: str, max_rows: int = 12) -> str:
    """One page: the headline, the summary, then the form section by section."""
    c, issue, state, impact, need, dec = (
        form.customer,
        form.issue,
        form.customer_state,
        form.business_impact,
        form.what_is_needed,
        form.decision,
    )
    effort = state.effort
    title = f"# Handoff: {_cell(c.name or c.account_id)} ({_cell(c.account_id)})" + (
        f", ticket {_cell(issue.ticket_id)}" if issue.ticket_id else ""
    )
    window = fmt_minutes(need.response_window_minutes)
    head = [f"**{dec.band.upper()}**", f"queue {_cell(dec.queue)}", f"owner **{_cell(need.owner)}**"]
    head += [f"respond within {window} (by {need.respond_by})"] if window else []
    head += [f"follow-up due {need.follow_up_due}"] if need.follow_up_due else []
    out = [title, "", " | ".join(head), "", "## Summary", "", summary, ""]

    arr = fmt_money(c.arr)
    arr_text = (arr + (f" ({c.arr_vs_average}x the average account)" if c.arr_vs_average else "")) if arr else None
    renewal = (
        f"{c.renewal_date} (in {c.days_to_renewal} days)"
        if c.renewal_date and c.days_to_renewal is not None
        else c.renewal_date
    )
    out += ["## Customer", "", "| | |", "| --- | --- |"]
    out += [
        f"| {k} | {_cell(v)} |"
        for k, v in (
            ("Account", f"{c.name} ({c.account_id})" if c.name else c.account_id),
            ("Segment", c.segment),
            ("ARR", arr_text),
            ("Renewal", renewal),
            ("Owner (CSM)", c.owner),
            ("Technical lead", c.technical_lead),
            ("Executive sponsor", c.executive_sponsor),
        )
    ]
    out += [
        "",
        "## Issue",
        "",
        f"Ticket {_cell(issue.ticket_id)} | category {_cell(issue.category)} | priority {_cell(issue.priority)}"
        + (f' | subject "{_cell(issue.subject)}"' if issue.subject else ""),
        "",
        "### Timeline",
        "",
    ]
    timeline = issue.timeline
    if timeline:
        shown = timeline if len(timeline) <= max_rows else timeline[: max_rows // 2] + timeline[-(max_rows // 2) :]
        out += ["| when | who | event | excerpt |", "| --- | --- | --- | --- |"]
        for n, e in enumerate(shown):
            if len(shown) < len(timeline) and n == max_rows // 2:
                out.append(f"| ... | | {len(timeline) - len(shown)} more events in the form | |")
            out.append(f"| {e.at} | {e.who} | {_cell(e.event)} | {_cell(e.text)} |")
    else:
        out.append("No messages.")
    spec = issue.technical_specifics
    out += ["", "### Technical specifics", ""]
    out += [
        f"- {label}: {_cell(', '.join(values)) if values else 'none found'}"
        for values, label in ((spec.error_codes, "Error codes"), (spec.versions, "Versions"), (spec.regions, "Regions"))
    ]
    out += ["", "### Already tried", ""] + (
        _bullets([f'{t.at}: "{_cell(t.text)}"' for t in issue.tried]) or ["Nothing recorded."]
    )
    out += ["", "### Promised", ""] + (
        _bullets(
            [
                f'{p.at}: "{_cell(p.text)}" ({_cell(p.deadline)}' + (f"; {_promise_when(p)})" if p.due_date else ")")
                for p in issue.promised
            ]
        )
        or ["No promises with a deadline."]
    )

    sentiment = f"{state.sentiment_label} ({state.sentiment:+.2f})" if state.sentiment is not None else "unknown"
    drift = (
        f"{state.drift_label} ({state.drift:+.2f} since the first message)" if state.drift is not None else "unknown"
    )
    crit = (
        ", ".join(f'{m.category} ({m.at}: "{_cell(m.text)}")' for m in effort.critical_moments[:5])
        or ", ".join(effort.critical_categories)
        or "none"
    )
    out += [
        "",
        "## Customer state",
        "",
        f"- Sentiment: {sentiment}; trend: {drift}; frustrated: {_cell(state.frustrated)}",
        f"- Effort: {_effort(effort)}",
        f"- Critical moments: {crit}",
    ]

    curve = ", ".join(f"{h} days {p:g}%" for h, p in impact.risk_curve_pct.items()) or "no model"
    out += [
        "",
        "## Business impact",
        "",
        f"- ARR: {_cell(arr)}; high value: {_cell(impact.high_value)}; expected ARR loss within 90 days: "
        f"{_cell(fmt_money(impact.expected_arr_loss_90d))}",
        f"- Renewal: {_cell(renewal)}; renewal near: {_cell(impact.renewal_near)}",
        f"- Churn risk: {curve} (model {_cell(impact.model_version)})",
    ]
    out += _bullets([f"Reason: {_cell(r)}" for r in impact.top_reasons])

    s = need.success
    out += ["", "## What is needed", "", f"- **Next action:** {_cell(need.recommended_action)}"]
    out += _bullets([f"Also: {_cell(a)}" for a in need.other_actions])
    out += [
        f"- Owner: **{_cell(need.owner)}** (queue {_cell(need.queue)}); respond within {_cell(window)}"
        + (f" (by {need.respond_by})" if need.respond_by else "")
        + f"; follow-up due {_cell(need.follow_up_due)}",
        f"- Success at 30 days: {s.days_30}",
        f"- Success at 60 days: {s.days_60}",
        f"- Success at 90 days: {s.days_90}",
    ]

    out += [
        "",
        "## Decision",
        "",
        f"- Escalate: {_cell(dec.escalate)}; band {dec.band}; priority {_cell(dec.priority)}; "
        f"primary reason {_cell(dec.primary_reason)}; bot action {_cell(dec.bot_action)}",
    ]
    out += _bullets([f"Rule `{r.rule}`: {_cell(r.detail)}" for r in dec.rules])
    out += [f"- Policy {_cell(dec.policy_version)}; model {_cell(dec.model_version)}; decided {_cell(dec.decided_at)}"]
    out += ["", "## Warm handoff (to send to the customer)", ""] + [
        "> " + line if line else ">" for line in warm.split("\n")
    ]
    return "\n".join(out) + "\n"


def _bullets(items: list[str], limit: int = 8) -> list[str]:
    lines = [f"- {i}" for i in items[:limit]]
    return lines + ([f"- ... and {len(items) - limit} more in the form"] if len(items) > limit else [])
