"""The dashboard's charts: what each page plots, turned into `charts` calls."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from nurture.analytics.backtest import CURRENT, BacktestRow
from nurture.analytics.report import ScenarioReport
from nurture.web.charts import COLOURS, BarSeries, Line, Point, Rule, bar_chart, line_chart, time_ticks


def _seconds(at: datetime) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def score_chart(history: Sequence[Any], grade: str, needed: int | None, now: datetime) -> str:
    """The lead's engagement over time (a step line: a score holds until it changes), with the
    engagement its grade needs to be hot drawn across."""
    if not history:
        return ""
    points = [
        Point(
            _seconds(h.at),
            float(h.engagement),
            f"{h.at:%Y-%m-%d %H:%M}: engagement {h.engagement}, fit {h.fit}, grade {h.grade}",
        )
        for h in history
    ]
    last = history[-1]
    if _seconds(now) > points[-1].x:
        points.append(
            Point(_seconds(now), float(last.engagement), f"now ({now:%Y-%m-%d %H:%M}): engagement {last.engagement}")
        )
    start, end = points[0].x, points[-1].x
    start = min(start, end - 86400)  # a day at least, so one score is not squeezed onto the axis
    fmt = "%m-%d %H:%M" if end - start < 2 * 86400 else "%Y-%m-%d"
    ticks = [(t, datetime.fromtimestamp(t, UTC).strftime(fmt)) for t in time_ticks(start, end)]
    rules = [Rule(f"hot from {needed} (grade {grade})", float(needed))] if needed is not None else []
    return line_chart(
        "Engagement score over time",
        "time (UTC)",
        "engagement",
        [Line("engagement", points, steps=True)],
        x_ticks=ticks,
        rules=rules,
    )


def funnel_chart(report: ScenarioReport) -> str:
    """Per step: leads that entered it and, for emails, sent, opened and clicked."""
    steps = report.steps
    if not steps:
        return ""
    return bar_chart(
        f"Funnel of {report.name}",
        "step (journey order)",
        "leads / emails",
        [s.step for s in steps],
        [
            BarSeries("entered", [s.entered for s in steps]),
            BarSeries("sent", [s.sent for s in steps]),
            BarSeries("opened", [s.opened for s in steps]),
            BarSeries("clicked", [s.clicked for s in steps]),
        ],
        category_tips=[s.kind for s in steps],
    )


def deliverability_chart(
    feedback: Sequence[tuple[str, int, int, int]], unsubscribes: dict[str, int], since: date
) -> str:
    """Per UTC day since `since` (every day, quiet ones too): hard and soft bounces, complaints,
    unsubscribes, stacked."""
    by_day: dict[str, list[int]] = {}
    for day, hard, soft, complaints in feedback:
        by_day.setdefault(day, [0, 0, 0, 0])[:3] = [hard, soft, complaints]
    for day, n in unsubscribes.items():
        if day >= since.isoformat():
            by_day.setdefault(day, [0, 0, 0, 0])[3] += n
    if not by_day:
        return ""
    first = date.fromisoformat(min(by_day))
    last = date.fromisoformat(max(by_day))
    days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    counts = [by_day.get(d, [0, 0, 0, 0]) for d in days]
    names = ("hard bounces", "soft bounces", "complaints", "unsubscribes")
    colours = ("#dc2626", "#e07b00", "#9333ea", "#0891b2")
    return bar_chart(
        "Deliverability per day",
        "day (UTC)",
        "emails",
        [d[5:] for d in days],
        [BarSeries(name, [c[i] for c in counts], colours[i]) for i, name in enumerate(names)],
        stacked=True,
    )


def backtest_chart(rows: Sequence[BacktestRow]) -> str:
    """Precision (solid) and recall (dashed) per engagement threshold, one colour per grade cut."""
    cuts = list(dict.fromkeys(r.cut for r in rows if r.cut != CURRENT and r.threshold is not None))
    lines = []
    for index, cut in enumerate(cuts):
        mine = [r for r in rows if r.cut == cut and r.threshold is not None]
        colour = COLOURS[index % len(COLOURS)]
        for name, dashed in (("precision", False), ("recall", True)):
            points = []
            for r in mine:
                value = getattr(r, name)
                if value is not None and r.threshold is not None:
                    of = r.promoted if name == "precision" else r.converting
                    tip = f"{cut} from {r.threshold}: {name} {value:.0%} ({r.good} good of {of})"
                    points.append(Point(r.threshold, value, tip))
            lines.append(Line(f"{cut} {name}", points, colour=colour, dashed=dashed))
    if not any(line.points for line in lines):
        return ""
    thresholds = sorted({r.threshold for r in rows if r.threshold is not None})
    return line_chart(
        "Backtest: precision and recall per hot threshold",
        "engagement threshold",
        "share of leads",
        lines,
        x_ticks=[(t, str(t)) for t in thresholds],
        y_max=1.0,
        y_format=lambda v: f"{v:.0%}",
        width=720,
        height=300,
    )
