"""The dashboard's SVG charts: values land where they should, and say their numbers."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

from nurture.analytics.backtest import BacktestRow
from nurture.analytics.report import ScenarioReport, StepRow
from nurture.web.charts import BarSeries, Frame, Line, Point, Rule, bar_chart, line_chart, nice_ceiling
from nurture.web.figures import backtest_chart, deliverability_chart, funnel_chart, score_chart

SVG = "{http://www.w3.org/2000/svg}"


def parsed(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_frame_maps_the_data_range_onto_the_plot_area_with_y_growing_upwards() -> None:
    frame = Frame(left=50, top=40, width=500, height=200, x0=10, x1=60, y0=0, y1=100)
    assert frame.x(10) == 50 and frame.x(60) == 550 and frame.x(35) == 300
    assert frame.y(0) == 240 and frame.y(100) == 40 and frame.y(25) == 190


def test_axis_tops_are_round_numbers_at_or_above_the_largest_value() -> None:
    assert [nice_ceiling(v) for v in (0, 0.7, 1, 3, 7, 12, 42, 180, 260)] == [1, 1, 1, 5, 10, 20, 50, 200, 500]


def test_a_line_chart_puts_each_point_at_its_value_and_names_it_in_a_tooltip() -> None:
    svg = line_chart(
        "Engagement",
        "time",
        "engagement",
        [Line("engagement", [Point(0, 0, "start: 0"), Point(10, 50, "then: 50")])],
        rules=[Rule("hot from 60", 60)],
    )
    root = parsed(svg)
    assert root.get("role") == "img" and root.find(f"{SVG}title").text == "Engagement"  # type: ignore[union-attr]
    circles = root.findall(f".//{SVG}circle")
    first, second = ((float(c.get("cx", "")), float(c.get("cy", ""))) for c in circles)
    assert second[0] > first[0] and second[1] < first[1], "later is right, more is higher"
    assert [c.find(f"{SVG}title").text for c in circles] == ["start: 0", "then: 50"]  # type: ignore[union-attr]
    rule = root.find(f".//{SVG}g[@class='rule']/{SVG}line")
    assert rule is not None
    # The axis runs 0..100 (60 rounds up to 100): the 60 line sits 60% of the way from the bottom,
    # above the 50 point.
    bottom = first[1]
    top = bottom - (bottom - second[1]) * 2
    assert abs(float(rule.get("y1", "")) - (bottom - 0.6 * (bottom - top))) < 0.2
    labels = {t.text for t in root.iter(f"{SVG}text") if t.get("class") == "axis-label"}
    assert labels == {"time", "engagement"}


def test_a_step_line_holds_each_value_until_the_next() -> None:
    svg = line_chart("s", "x", "y", [Line("s", [Point(0, 10, "a"), Point(1, 20, "b")], steps=True)])
    points = parsed(svg).find(f".//{SVG}polyline").get("points", "").split()  # type: ignore[union-attr]
    assert len(points) == 3 and points[1].split(",")[1] == points[0].split(",")[1]


def test_bars_are_as_tall_as_their_values_side_by_side_or_stacked() -> None:
    svg = bar_chart("f", "step", "n", ["a", "b"], [BarSeries("sent", [10, 5]), BarSeries("opened", [4, 0])])
    rects = parsed(svg).findall(f".//{SVG}rect")
    heights = [float(r.get("height", "")) for r in rects]
    assert heights[0] == 2 * heights[2] and heights[3] == 0  # sent a=10, sent b=5, opened b=0
    assert abs(heights[1] / heights[0] - 0.4) < 0.01
    assert [r.find(f"{SVG}title").text for r in rects][:2] == ["a: sent 10", "a: opened 4"]  # type: ignore[union-attr]
    stacked = parsed(bar_chart("d", "day", "n", ["d1"], [BarSeries("x", [3]), BarSeries("y", [2])], stacked=True))
    low, high = stacked.findall(f".//{SVG}rect")
    assert abs(float(high.get("y", "")) + float(high.get("height", "")) - float(low.get("y", ""))) < 0.2


def test_the_lead_chart_draws_the_hot_line_of_its_grade_and_tells_each_score() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    history = [
        SimpleNamespace(at=start, engagement=10, fit=40, grade="A"),
        SimpleNamespace(at=start + timedelta(days=2), engagement=65, fit=40, grade="A"),
    ]
    svg = score_chart(history, "A", 60, start + timedelta(days=3))
    assert "hot from 60 (grade A)" in svg
    assert "2026-11-03 00:00: engagement 65, fit 40, grade A" in svg
    assert score_chart([], "A", 60, start) == ""


def test_the_funnel_deliverability_and_backtest_charts_say_their_figures() -> None:
    report = ScenarioReport(
        "s", "Welcome", 3, 1, {}, [StepRow("welcome", "send_email", entered=3, sent=3, opened=2)], 0
    )
    assert "welcome: opened 2 (send_email)" in funnel_chart(report)
    days = deliverability_chart([("2026-11-02", 1, 0, 1)], {"2026-11-04": 2}, date(2026, 11, 1))
    titles = re.findall(r"<title>([^<]*)</title>", days)
    assert "11-02: hard bounces 1" in titles and "11-04: unsubscribes 2" in titles
    assert "11-03: complaints 0" in titles, "a quiet day between is shown, not skipped"
    rows = [BacktestRow("A", 40, 10, 5, 8, None), BacktestRow("A", 60, 4, 3, 8, None)]
    chart = backtest_chart(rows)
    assert "A from 40: precision 50% (5 good of 10)" in chart and "A from 60: recall 38% (3 good of 8)" in chart
