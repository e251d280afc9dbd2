"""Small formatting helpers every part of the handoff shares: times in UTC, money, minutes,
JSON-ready numbers and cut text."""

from __future__ import annotations

import math

import pandas as pd


def utc(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def fmt_time(value) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    ts = pd.Timestamp(value)
    if pd.isna(ts):
        return None
    return utc(ts).strftime("%Y-%m-%d %H:%M UTC")


def fmt_money(value: float | None) -> str | None:
    return None if value is None else f"${value:,.0f}"


def fmt_minutes(minutes: int | None) -> str | None:
    if minutes is None:
        return None
    if minutes % 60 or minutes < 60:
        return f"{minutes} minutes"
    return f"{minutes // 60} hour{'s' if minutes >= 120 else ''}"


def fmt_hours(hours: float) -> str:
    """A wait as a person says it: "2.3 h" up to two days, then "9.2 days" (not "220.8 h")."""
    return f"{hours:g} h" if hours < 48 else f"{hours / 24:.1f} days"


def number(value) -> float | None:
    """JSON-ready: NaN and missing become None."""
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


def excerpt(text: str | None, words: int = 40) -> str:
    """The first `words` words; an ellipsis shows a cut."""
    parts = (text or "").split()
    return " ".join(parts[:words]) + ("..." if len(parts) > words else "")


def clause(text: str | None, words: int) -> str:
    """At most `words` words of `text`, cut where a reader can stop: at the last comma, semicolon
    or colon, or before a bracket, that keeps at least half of them, and never inside brackets or
    quotes ("(typical...;" reads as a typo). An ellipsis shows a cut, but for a dropped aside in
    brackets; a text that fits is whole."""
    parts = (text or "").split()
    if len(parts) <= words:
        return " ".join(parts)
    balanced, pauses = [], []  # prefixes of k words that close every bracket and quote they open
    depth = quotes = 0
    for k, word in enumerate(parts[:words], 1):
        depth += word.count("(") - word.count(")")
        quotes += word.count('"')
        if depth == 0 and quotes % 2 == 0:
            balanced.append(k)
            if word.endswith((",", ";", ":")) or (k < len(parts) and parts[k].startswith("(")):
                pauses.append(k)
    good = [k for k in pauses if k >= words / 2] or balanced or [words]
    kept = " ".join(parts[: good[-1]])
    # what stops before a bracket is whole: the aside goes, and no ellipsis says something was cut
    return kept if parts[good[-1]].startswith("(") else kept.rstrip(",;: ") + "..."
