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
