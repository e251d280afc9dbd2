"""What a handoff is about, in order of importance (security, legal, billing, cancel, effort,
risk, watch, support), and for each theme the next action, how it reads to the customer, how the
owner is introduced and what success looks like at 30 and 60 days."""

from __future__ import annotations

from dataclasses import dataclass

from escalation.decision import Decision, TicketSignals


@dataclass(frozen=True)
class Theme:
    action: str  # what the CS owner does next (internal)
    for_customer: str  # the same, as the customer reads it in the warm handoff
    expertise: str  # how the owner is introduced
    success_30: str
    success_60: str
    #: the action where the account has no executive sponsor, when the action calls on one
    without_sponsor: str | None = None

    def action_for(self, exec_sponsor: bool | None) -> str:
        """The next action for an account with (True), without (False) or not known to have an executive sponsor."""
        return self.without_sponsor if exec_sponsor is False and self.without_sponsor else self.action


THEMES = {
    "security": Theme(
        "Open a security incident with one named incident lead and send the customer a written acknowledgement",
        "coordinate our security response and keep you updated in writing",
        "who works with our security response team",
        "incident closed with a written root-cause report the customer has accepted",
        "no repeat incident, and any security questionnaire from the customer answered",
    ),
    "legal": Theme(
        "Loop in legal before any written reply, then call the executive sponsor",
        "work with our legal team and yours to settle the contract question",
        "who works with our legal team on contract matters",
        "legal position agreed with the customer, no formal notice outstanding",
        "the contract question settled in writing",
        "Loop in legal before any written reply, then call the customer's most senior contact (no executive sponsor)",
    ),
    "billing": Theme(
        "Call the billing contact with a credit proposal",
        "go through the invoice with your billing contact and propose a correction",
        "who handles billing and contract questions for accounts like yours",
        "disputed amount settled and the corrected invoice accepted",
        "next invoice paid on time, no new billing ticket",
    ),
    "cancel": Theme(
        "Call the decision maker today with a save plan: acknowledge the problem, fix it, offer a renewal review",
        "talk through what has gone wrong and agree a plan with you",
        "who looks after your account",
        "save plan agreed and the cancellation request withdrawn",
        "usage back to its 90-day baseline",
    ),
    "effort": Theme(
        "Take the ticket over: one owner, no more transfers",
        "own your ticket from here to resolution, so you do not have to repeat yourself",
        "who will coordinate our support and engineering teams on this issue",
        "issue resolved and confirmed by the customer, with no further repeat contact",
        "no new ticket on the same issue and customer sentiment neutral or better",
    ),
    "risk": Theme(
        "Schedule an executive business review",
        "set up a business review with your team to make sure the platform delivers what you need",
        "who looks after your account",
        "executive business review held and a success plan agreed",
        "usage back to its 90-day baseline",
    ),
    "watch": Theme(
        "Review the account at the next CS check-in; no customer interruption yet",
        "check in with you on how things are going",
        "who looks after your account",
        "risk drivers reviewed at a CS check-in",
        "usage at or above its 90-day baseline",
    ),
    "support": Theme(
        "Support keeps the ticket; CS is kept informed",
        "keep an eye on your ticket with our support team",
        "who looks after your account",
        "issue resolved and confirmed by the customer",
        "no new ticket on the same issue",
    ),
}
_RULE_THEME = {
    "security": "security",
    "privacy": "security",
    "fraud": "security",
    "legal_threat": "legal",
    "billing_dispute_high_value": "billing",
    "effort_frustration_value": "effort",
    "bot_handoff": "effort",
    "risk": "risk",
    "watch": "watch",
}
_CRITICAL_THEME = {
    "legal": "legal",
    "chargeback": "billing",
    "cancel": "cancel",
    "supervisor": "effort",
    "disappointed": "effort",
}
_CATEGORY_THEME = {"billing": "billing", "security": "security", "legal": "legal"}


def themes_of(decision: Decision, signals: TicketSignals) -> list[str]:
    """Themes in order of importance: the primary reason's, then effort (frustration, repeated
    asks), then the other fired rules, then the ticket's category."""

    def theme_of(rule: str) -> str:
        if rule == "critical_moment":
            cats = [c for c in signals.critical if c in _CRITICAL_THEME]
            return _CRITICAL_THEME[cats[0]] if cats else "effort"
        return _RULE_THEME.get(rule, "support")

    ordered = [theme_of(decision.primary_reason)] if decision.primary_reason else []
    if decision.frustrated or signals.asks >= 3 or any(r.rule == "effort_frustration_value" for r in decision.rules):
        ordered.append("effort")  # a live, frustrated customer comes before slower account work
    ordered += [theme_of(r.rule) for r in decision.rules]
    ordered.append(_CATEGORY_THEME.get((signals.category or "").lower(), "support"))
    out: list[str] = []
    for t in ordered:
        if t not in out and not (t == "support" and out):
            out.append(t)
    return out
