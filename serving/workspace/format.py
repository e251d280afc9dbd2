"""Numbers, times and outcomes in the words every workspace page uses (the charts, the account page,
the book view and the queue): one definition each. Standard library only, so the application can
import it without the data side's libraries."""

from __future__ import annotations

import datetime as dt
import math

#: what CS records when it resolves an escalation, in the pages' words
RESOLUTION_LABELS = {
    "saved": "saved: the customer stays",
    "churned": "churned: the customer left",
    "not_at_risk": "not at risk: a false alarm",
}
#: a resolution's or a handoff rating's outcome (a rating may also say it is not known yet)
OUTCOME_WORDS = {**RESOLUTION_LABELS, "unknown": "outcome not known yet"}


def money(value: float | None) -> str:
    """$1.2M, $48k, $900; '-' for a missing value."""
    if value is None or not math.isfinite(value):
        return "-"
    size = abs(value)
    if size >= 1e6:
        return f"${value / 1e6:,.1f}M"
    if size >= 1e3:
        return f"${value / 1e3:,.0f}k"
    return f"${value:,.0f}"


def thousands(n: int) -> str:
    """1,566: a count as the report writes it (the templates' `thousands` filter)."""
    return f"{n:,}"


def days(n: int) -> str:
    """ "1 day", "12 days" (the templates' `days` filter: a ticket open one day read "1 days")."""
    return f"{n:,} day" if n in (1, -1) else f"{n:,} days"


def percent(p: float | None, digits: int = 0) -> str:
    """0.123 -> '12%' (one decimal under 1% so a small risk is not shown as 0%)."""
    if p is None or not math.isfinite(p):
        return "-"
    if digits == 0 and 0 < abs(p) < 0.01:
        digits = 1
    return f"{p * 100:.{digits}f}%"


def points(value: float) -> str:
    """Percentage points with their sign: +3.2 points, -0.4 points, +0.04 points (a small effect is
    not rounded to nothing)."""
    return f"{value:+.1f} points" if abs(value) >= 0.1 or value == 0 else f"{value:+.2f} points"


def span(seconds: float | None) -> str:
    """A duration as a person says it: 40 min, 3 h 20 min, 2 days 4 h; '-' for a missing one."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    minutes = int(abs(seconds) // 60)
    if minutes < 60:
        return f"{max(minutes, 1)} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h" + (f" {minutes} min" if minutes and hours < 10 else "")
    days, hours = divmod(hours, 24)
    return f"{days} days" + (f" {hours} h" if hours else "")


def minute(value: dt.datetime | None) -> str | None:
    """A time in UTC to the minute, as the handoff package writes it (a naive time is UTC already);
    None for a missing one (None or NaT)."""
    if value is None or value != value:  # NaT is not equal to itself
        return None
    value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")


def share(part: float | None, whole: float | None) -> str:
    """'12 of 40 (30%)'; '-' without a whole."""
    return "-" if not whole or part is None else f"{part:.0f} of {whole:.0f} ({part / whole:.0%})"


#: the templates' filters, registered by the workspace (serving/workspace/web.py) and its tests
FILTERS = {"thousands": thousands, "days": days}
