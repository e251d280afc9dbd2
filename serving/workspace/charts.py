"""Small inline SVG charts for the workspace's pages: no script, no library, readable at a phone's
width (labels sit above their bars, so a narrow screen scales the chart down without cropping it).

Every chart is an `<svg role="img">` whose `<title>` names it and whose `<desc>` says its numbers in
words, so a screen reader hears what a sighted reader sees; colour never carries meaning alone (each
bar has its value and role in text, each group a heading). The functions take plain numbers and
return `Markup`, so a template prints them as they are.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from html import escape

from markupsafe import Markup

# numbers in words as every page writes them (money is re-exported: a chart's caller formats its values with it)
from serving.workspace.format import money as money
from serving.workspace.format import percent, points

WIDTH = 400
#: colours of the waterfall's steps (each step also says what it is in words)
COLOURS = {
    "up": "#b3261e",  # a driver raising the risk
    "down": "#1b6e3a",  # a driver lowering it
    "context": "#6b6f76",  # who the account is: neither raises nor lowers by choice
    "rest": "#9a7b00",
    "base": "#2f5597",
    "total": "#2f5597",
}
LINE = "#2f5597"
MUTED = "#6b6f76"


def _svg(prefix: str, title: str, desc: str, height: float, body: str) -> Markup:
    t, d = f"{prefix}-title", f"{prefix}-desc"
    return Markup(
        f'<svg class="chart" role="img" aria-labelledby="{t} {d}" viewBox="0 0 {WIDTH} {height:.0f}" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMinYMin meet">'
        f'<title id="{t}">{escape(title)}</title><desc id="{d}">{escape(desc)}</desc>{body}</svg>'
    )


def _text(
    x: float, y: float, text: str, *, anchor: str = "start", size: int = 12, fill: str = "#222", bold=False
) -> str:
    weight = ' font-weight="600"' if bold else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}"{weight}>'
        f"{escape(text)}</text>"
    )


def _clip(text: str, size: int) -> str:
    """`text` cut at a word to at most `size` characters, with an ellipsis when cut."""
    if len(text) <= size:
        return text
    cut = text[: size - 1].rsplit(" ", 1)[0].rstrip(",;:( ")
    return cut + "…"


def _empty(prefix: str, title: str, message: str) -> Markup:
    return _svg(prefix, title, message, 30, _text(0, 20, message, fill=MUTED))


def risk_curve(curve: dict[int, float], prefix: str = "curve") -> Markup:
    """The risk curve: P(churn within h days) at each horizon, a line through four labelled dots."""
    horizons = sorted(curve)
    if not horizons:
        return _empty(prefix, "Churn risk by horizon", "No risk curve.")
    top = max(max(curve.values()), 0.05)
    left, right, y0, y1 = 26, WIDTH - 30, 130, 24

    def x(h: int) -> float:
        return left + (right - left) * (h - horizons[0]) / max(horizons[-1] - horizons[0], 1)

    def y(p: float) -> float:
        return y0 - (y0 - y1) * p / top

    path = " ".join(f"{x(h):.1f},{y(curve[h]):.1f}" for h in horizons)
    body = [f'<line x1="{left}" y1="{y0}" x2="{right}" y2="{y0}" stroke="#ccc"/>']
    body.append(f'<polyline points="{path}" fill="none" stroke="{LINE}" stroke-width="2"/>')
    for h in horizons:
        body.append(f'<circle cx="{x(h):.1f}" cy="{y(curve[h]):.1f}" r="4" fill="{LINE}"/>')
        body.append(_text(x(h), y(curve[h]) - 9, percent(curve[h]), anchor="middle", bold=True))
        body.append(_text(x(h), y0 + 18, f"{h} days", anchor="middle", fill=MUTED))
    desc = "Chance of churning within " + ", ".join(f"{h} days: {percent(curve[h])}" for h in horizons) + "."
    return _svg(prefix, "Churn risk by horizon", desc, 160, "".join(body))


def history_line(
    dates: Sequence[dt.date], values: Sequence[float], *, horizon: int = 90, prefix: str = "history"
) -> Markup:
    """The risk at one horizon over past cutoffs, oldest left; the last point (now) stands out."""
    title = f"{horizon}-day risk over time"
    if not len(values):
        return _empty(prefix, title, "No earlier scores are kept for this account.")
    top = max(max(values), 0.05)
    left, right, y0, y1 = 8, WIDTH - 12, 110, 28
    first, last = dates[0].toordinal(), dates[-1].toordinal()

    def x(d: dt.date) -> float:
        return left + (right - left) * ((d.toordinal() - first) / (last - first) if last > first else 1.0)

    def y(p: float) -> float:
        return y0 - (y0 - y1) * p / top

    pts = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in zip(dates, values, strict=True))
    body = [f'<line x1="{left}" y1="{y0}" x2="{right}" y2="{y0}" stroke="#ccc"/>']
    if len(values) > 1:
        body.append(f'<polyline points="{pts}" fill="none" stroke="{LINE}" stroke-width="2"/>')
    for d, v in zip(dates[:-1], values[:-1], strict=True):
        body.append(f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="2.5" fill="{LINE}"/>')
    body.append(f'<circle cx="{x(dates[-1]):.1f}" cy="{y(values[-1]):.1f}" r="5" fill="{COLOURS["up"]}"/>')
    body.append(_text(x(dates[-1]), y(values[-1]) - 10, f"now {percent(values[-1])}", anchor="end", bold=True))
    peak = max(range(len(values)), key=values.__getitem__)
    if peak != len(values) - 1:
        body.append(_text(x(dates[peak]), y(values[peak]) - 8, f"high {percent(values[peak])}", anchor="middle"))
    body.append(_text(left, y0 + 18, str(dates[0]), fill=MUTED))
    body.append(_text(right, y0 + 18, str(dates[-1]), anchor="end", fill=MUTED))
    desc = (
        f"{len(values)} scores from {dates[0]} to {dates[-1]}: the {horizon}-day risk went from "
        f"{percent(values[0])} to {percent(values[-1])}, highest {percent(values[peak])} on {dates[peak]}."
    )
    return _svg(prefix, title, desc, 140, "".join(body))


def waterfall(steps: Sequence[dict], horizon: int = 90, prefix: str = "waterfall") -> Markup:
    """From the base rate to the account's risk, one row per step: `steps` are dicts with `label`,
    `kind` (base, driver, context, rest, total), `points` (percentage points; the base's and the
    total's are their level) and `start`/`end` (probabilities). Drivers and context get a heading of
    their own; each bar says its points in words beside it."""
    if not steps:
        return _empty(prefix, f"Why the {horizon}-day risk is what it is", "No explanation available.")
    top = max(max(max(s["start"], s["end"]) for s in steps), 1e-6)
    left, right = 4, WIDTH - 96
    scale = (right - left) / top
    rows, y, heading = [], 4.0, None
    for step in steps:
        kind = step["kind"]
        group = {"driver": "Drivers: behaviour that can change", "context": "Context: who the account is"}.get(kind)
        if group and group != heading:
            rows.append(_text(left, y + 14, group, size=13, bold=True, fill=MUTED))
            y += 22
        heading = group or heading
        lo, hi = sorted((step["start"], step["end"]))
        if kind in ("base", "total"):
            lo, hi = 0.0, step["end"]
            colour, value = COLOURS[kind], percent(step["end"], 1)
        else:
            colour = COLOURS["context" if kind == "context" else "rest" if kind == "rest" else "up"]
            if kind == "driver" and step["points"] < 0:
                colour = COLOURS["down"]
            value = points(step["points"])
        rows.append(_text(left, y + 13, _clip(step["label"], 52), size=13))
        width = max((hi - lo) * scale, 1.5)
        rows.append(
            f'<rect x="{left + lo * scale:.1f}" y="{y + 19:.1f}" width="{width:.1f}" height="13" fill="{colour}"/>'
        )
        rows.append(_text(min(left + hi * scale + 6, right + 6), y + 30.5, value, size=13, bold=kind == "total"))
        y += 40
    said = "; ".join(
        f"{s['label']}: {percent(s['end'], 1)}"
        if s["kind"] in ("base", "total")
        else f"{s['label']}: {points(s['points'])}"
        for s in steps
    )
    title = f"Why the {horizon}-day risk is what it is, in percentage points from the typical account"
    return _svg(prefix, title, said + ".", y + 4, "".join(rows))


def sparkline(values: Sequence[float | None], label: str, *, unit: str = "", prefix: str = "spark") -> Markup:
    """A week-by-week line, oldest left, with the latest value and the range written beside it."""
    known = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    if not known:
        return _empty(prefix, label, f"{label}: no data.")
    lo, hi = min(v for _, v in known), max(v for _, v in known)
    left, right, y0, y1 = 4, WIDTH - 120, 44, 6
    n = max(len(values) - 1, 1)

    def y(v: float) -> float:
        return y0 - (y0 - y1) * ((v - lo) / (hi - lo) if hi > lo else 0.5)

    pts = " ".join(f"{left + (right - left) * i / n:.1f},{y(v):.1f}" for i, v in known)
    last_i, last = known[-1]
    body = [
        f'<polyline points="{pts}" fill="none" stroke="{LINE}" stroke-width="2"/>',
        f'<circle cx="{left + (right - left) * last_i / n:.1f}" cy="{y(last):.1f}" r="3.5" fill="{LINE}"/>',
        _text(right + 10, 20, f"latest {last:,.0f}{unit}", bold=True),
        _text(right + 10, 38, f"range {lo:,.0f}-{hi:,.0f}", fill=MUTED),
    ]
    desc = (
        f"{label} over {len(values)} weeks: latest week {last:,.0f}{unit}, lowest {lo:,.0f}, highest {hi:,.0f}, "
        f"first week {known[0][1]:,.0f}."
    )
    return _svg(prefix, label, desc, 52, "".join(body))


def bars(rows: Sequence[tuple[str, float, str]], title: str, prefix: str = "bars") -> Markup:
    """Horizontal bars, one per (label, value, value in words), longest first as given."""
    if not rows:
        return _empty(prefix, title, "Nothing to show.")
    top = max(max(v for _, v, _ in rows), 1e-9)
    left, right = 4, WIDTH - 90
    body, y = [], 2.0
    for label, value, text in rows:
        body.append(_text(left, y + 12, _clip(label, 60)))
        width = max((right - left) * value / top, 1.5 if value > 0 else 0)
        body.append(f'<rect x="{left}" y="{y + 17:.1f}" width="{width:.1f}" height="11" fill="{LINE}"/>')
        body.append(_text(left + width + 6, y + 27, text))
        y += 34
    desc = "; ".join(f"{label}: {text}" for label, _, text in rows) + "."
    return _svg(prefix, title, desc, y + 2, "".join(body))
