"""The workspace's inline SVG charts (serving/workspace/charts.py): each parses as XML, says its
numbers in words for a screen reader, and never leans on colour alone."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest

from serving.workspace import charts

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup) -> ET.Element:
    svg = ET.fromstring(str(markup))
    assert svg.tag == f"{SVG}svg" and svg.get("role") == "img"
    title, desc = svg.find(f"{SVG}title"), svg.find(f"{SVG}desc")
    assert title is not None and desc is not None and title.text and desc.text
    # the label points at the title and the description, which exist under those ids
    assert svg.get("aria-labelledby").split() == [title.get("id"), desc.get("id")]
    return svg


def _texts(svg: ET.Element) -> list[str]:
    return [t.text or "" for t in svg.iter(f"{SVG}text")]


def test_risk_curve_names_every_horizon_in_words():
    svg = _parse(charts.risk_curve({30: 0.04, 60: 0.081, 90: 0.123, 180: 0.2}))
    desc = svg.find(f"{SVG}desc").text
    assert "30 days: 4%" in desc and "90 days: 12%" in desc and "180 days: 20%" in desc
    assert {"4%", "8%", "12%", "20%"} <= set(_texts(svg))
    assert len(list(svg.iter(f"{SVG}circle"))) == 4


def test_waterfall_labels_drivers_and_context_apart():
    base, p = 0.05, 0.12
    steps = [
        {"label": "Typical account", "kind": "base", "points": 5.0, "start": 0.0, "end": base},
        {"label": "Logins down", "kind": "driver", "points": 8.0, "start": base, "end": base + 0.08},
        {"label": "Fast support", "kind": "driver", "points": -2.0, "start": 0.13, "end": 0.11},
        {"label": "Monthly billing <contract>", "kind": "context", "points": 1.0, "start": 0.11, "end": p},
        {"label": "This account", "kind": "total", "points": 12.0, "start": 0.0, "end": p},
    ]
    svg = _parse(charts.waterfall(steps, 90))
    texts = _texts(svg)
    assert "Drivers: behaviour that can change" in texts and "Context: who the account is" in texts
    assert texts.index("Drivers: behaviour that can change") < texts.index("Logins down")
    assert texts.index("Context: who the account is") < texts.index(
        "Monthly billing <contract>"
    )  # escaped, parsed back
    assert "+8.0 points" in texts and "-2.0 points" in texts and "12.0%" in texts
    fills = {r.get("fill") for r in svg.iter(f"{SVG}rect")}
    assert {charts.COLOURS["up"], charts.COLOURS["down"], charts.COLOURS["context"]} <= fills
    desc = svg.find(f"{SVG}desc").text
    assert "Logins down: +8.0 points" in desc and "This account: 12.0%" in desc
    # a bar starts where the one before it ended: the lowering driver's bar spans 0.11..0.13
    rects = list(svg.iter(f"{SVG}rect"))
    assert float(rects[2].get("x")) < float(rects[1].get("x")) + float(rects[1].get("width"))


def test_history_sparkline_and_bars_parse_and_say_their_numbers():
    days = [dt.date(2025, 1, 1) + dt.timedelta(days=30 * k) for k in range(4)]
    history = _parse(charts.history_line(days, [0.05, 0.2, 0.1, 0.15]))
    assert "from 5% to 15%, highest 20% on 2025-01-31" in history.find(f"{SVG}desc").text
    assert "now 15%" in _texts(history)
    spark = _parse(charts.sparkline([3.0, None, 5.0, 4.0], "Logins per week", prefix="spark-logins"))
    assert "latest week 4, lowest 3, highest 5" in spark.find(f"{SVG}desc").text
    bars = _parse(charts.bars([("enterprise", 300.0, "$300"), ("smb", 100.0, "$100")], "ARR at risk"))
    assert "enterprise: $300; smb: $100." == bars.find(f"{SVG}desc").text
    widths = [float(r.get("width")) for r in bars.iter(f"{SVG}rect")]
    assert widths[0] == pytest.approx(3 * widths[1])


@pytest.mark.parametrize(
    "markup",
    [
        charts.risk_curve({}),
        charts.history_line([], []),
        charts.waterfall([]),
        charts.sparkline([None, None], "Logins"),
        charts.bars([], "Nothing"),
    ],
)
def test_empty_charts_say_so(markup):
    svg = _parse(markup)
    assert svg.find(f"{SVG}desc").text.strip()


def test_numbers_in_words():
    assert charts.money(1_234_567) == "$1.2M" and charts.money(48_200) == "$48k" and charts.money(None) == "-"
    assert charts.percent(0.123) == "12%" and charts.percent(0.004) == "0.4%" and charts.percent(float("nan")) == "-"
    assert charts.points(3.21) == "+3.2 points" and charts.points(-0.04) == "-0.04 points"
