"""Charts for the dashboard, drawn on the server as inline SVG: no script, no build step.

Every chart is an accessible image: `role="img"` with a <title> and <desc>, axis labels in
words, and each mark carries its numbers in a <title> (the browser's tooltip, read aloud by
screen readers). The arithmetic lives in `Frame` (values → coordinates), tested apart.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

COLOURS = ("#2563eb", "#e07b00", "#16a34a", "#9333ea", "#dc2626", "#0891b2")
_ids = itertools.count(1)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above `value` (1 for nothing to show)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power + 1e-9 * power:
            return float(step * power)
    return 10 * power


@dataclass(frozen=True)
class Frame:
    """The plot area (in SVG units) and the data ranges it shows."""

    left: float
    top: float
    width: float
    height: float
    x0: float
    x1: float
    y0: float
    y1: float

    def x(self, value: float) -> float:
        span = self.x1 - self.x0 or 1.0
        return self.left + (value - self.x0) / span * self.width

    def y(self, value: float) -> float:
        span = self.y1 - self.y0 or 1.0
        return self.top + (1 - (value - self.y0) / span) * self.height

    @property
    def bottom(self) -> float:
        return self.top + self.height


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    tip: str  # what the mark's tooltip says, numbers included


@dataclass(frozen=True)
class Line:
    label: str
    points: Sequence[Point]
    colour: str | None = None
    steps: bool = False  # a value holds until the next one (a score), not a slope between
    dashed: bool = False


@dataclass(frozen=True)
class Rule:
    """A horizontal line across the plot, such as the hot threshold."""

    label: str
    y: float
    colour: str = "#dc2626"


@dataclass(frozen=True)
class BarSeries:
    label: str
    values: Sequence[float]
    colour: str | None = None


def _f(v: float) -> str:
    return f"{v:.1f}"


def _open(title: str, summary: str, width: int, height: int) -> list[str]:
    ident = f"chart{next(_ids)}"
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-labelledby="{ident}-t {ident}-d" font-family="system-ui, sans-serif" '
        'font-size="11">',
        f'<title id="{ident}-t">{escape(title)}</title><desc id="{ident}-d">{escape(summary)}</desc>',
        f'<text x="8" y="16" font-size="13" font-weight="600">{escape(title)}</text>',
    ]


def _axes(
    frame: Frame, x_label: str, y_label: str, y_ticks: int, y_format: Callable[[float], str], gap: float = 34
) -> list[str]:
    parts = []
    for i in range(y_ticks + 1):
        value = frame.y0 + (frame.y1 - frame.y0) * i / y_ticks
        y = frame.y(value)
        parts.append(
            f'<line x1="{_f(frame.left)}" x2="{_f(frame.left + frame.width)}" y1="{_f(y)}" y2="{_f(y)}" '
            'stroke="#e3e6eb"/>'
            f'<text x="{_f(frame.left - 6)}" y="{_f(y + 4)}" text-anchor="end">{escape(y_format(value))}</text>'
        )
    middle = frame.top + frame.height / 2
    parts.append(
        f'<line x1="{_f(frame.left)}" x2="{_f(frame.left)}" y1="{_f(frame.top)}" y2="{_f(frame.bottom)}" '
        'stroke="#6b7385"/>'
        f'<line x1="{_f(frame.left)}" x2="{_f(frame.left + frame.width)}" y1="{_f(frame.bottom)}" '
        f'y2="{_f(frame.bottom)}" stroke="#6b7385"/>'
        f'<text class="axis-label" x="{_f(frame.left + frame.width / 2)}" y="{_f(frame.bottom + gap)}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
        f'<text class="axis-label" x="12" y="{_f(middle)}" transform="rotate(-90 12 {_f(middle)})" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    return parts


def _legend(items: Sequence[tuple[str, str, bool]], left: float, right: float) -> tuple[list[str], float]:
    """The legend in rows under the title, and where the plot may start below it."""
    parts = []
    x, y = left, 32.0
    for label, colour, dashed in items:
        size = 30 + 6.5 * len(label)
        if x + size > right and x > left:
            x, y = left, y + 15
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        parts.append(
            f'<line x1="{_f(x)}" x2="{_f(x + 18)}" y1="{_f(y - 4)}" y2="{_f(y - 4)}" stroke="{colour}" '
            f'stroke-width="3"{dash}/><text x="{_f(x + 22)}" y="{_f(y)}">{escape(label)}</text>'
        )
        x += size
    return parts, y + 12


def line_chart(
    title: str,
    x_label: str,
    y_label: str,
    lines: Sequence[Line],
    *,
    x_ticks: Sequence[tuple[float, str]] = (),
    rules: Sequence[Rule] = (),
    y_max: float | None = None,
    y_format: Callable[[float], str] = lambda v: f"{v:g}",
    width: int = 640,
    height: int = 260,
) -> str:
    """Lines over a shared x axis (numbers: thresholds, or seconds since the epoch for time)."""
    points = [p for line in lines for p in line.points]
    xs = [p.x for p in points] + [x for x, _ in x_ticks] or [0.0, 1.0]
    top_value = max([p.y for p in points] + [r.y for r in rules] + [0.0])
    colours = [line.colour or COLOURS[i % len(COLOURS)] for i, line in enumerate(lines)]
    legend, top = _legend(
        [(r.label, r.colour, True) for r in rules]
        + [(line.label, colour, line.dashed) for line, colour in zip(lines, colours, strict=True)],
        52,
        width - 16,
    )
    frame = Frame(
        left=52,
        top=top,
        width=width - 52 - 16,
        height=height - top - 48,
        x0=min(xs),
        x1=max(xs) if max(xs) > min(xs) else min(xs) + 1,
        y0=0.0,
        y1=y_max if y_max is not None else nice_ceiling(top_value),
    )
    summary = "; ".join(
        f"{line.label}: " + ", ".join(p.tip for p in line.points[:12]) + (" …" if len(line.points) > 12 else "")
        for line in lines
    )
    parts = _open(title, summary or "no data", width, height) + legend
    parts += _axes(frame, x_label, y_label, 4, y_format)
    for value, label in x_ticks:
        parts.append(
            f'<text x="{_f(frame.x(value))}" y="{_f(frame.bottom + 16)}" text-anchor="middle">{escape(label)}</text>'
        )
    for rule in rules:
        y = frame.y(rule.y)
        parts.append(
            f'<g class="rule"><line x1="{_f(frame.left)}" x2="{_f(frame.left + frame.width)}" y1="{_f(y)}" '
            f'y2="{_f(y)}" stroke="{rule.colour}" stroke-width="1.5" stroke-dasharray="5 3">'
            f"<title>{escape(rule.label)}</title></line></g>"
        )
    for line, colour in zip(lines, colours, strict=True):
        coords: list[tuple[float, float]] = []
        for previous, point in zip([None, *line.points], line.points, strict=False):
            if line.steps and previous is not None:
                coords.append((frame.x(point.x), frame.y(previous.y)))
            coords.append((frame.x(point.x), frame.y(point.y)))
        if len(coords) > 1:
            path = " ".join(f"{_f(x)},{_f(y)}" for x, y in coords)
            dash = ' stroke-dasharray="6 3"' if line.dashed else ""
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{path}"/>')
        parts.append(f'<g class="series" data-series="{escape(line.label)}">')
        for point in line.points:
            parts.append(
                f'<circle cx="{_f(frame.x(point.x))}" cy="{_f(frame.y(point.y))}" r="3.5" fill="{colour}">'
                f"<title>{escape(point.tip)}</title></circle>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(
    title: str,
    x_label: str,
    y_label: str,
    categories: Sequence[str],
    series: Sequence[BarSeries],
    *,
    stacked: bool = False,
    category_tips: Sequence[str] | None = None,
    width: int | None = None,
    height: int = 300,
) -> str:
    """Bars per category: side by side for each series, or stacked."""
    n = max(len(categories), 1)
    groups = 1 if stacked else max(len(series), 1)
    slot = max(18.0, min(90.0, 14.0 * groups + 10))
    width = width or int(max(420, 52 + 16 + slot * n))
    colours = [s.colour or COLOURS[j % len(COLOURS)] for j, s in enumerate(series)]
    legend, top = _legend([(s.label, c, False) for s, c in zip(series, colours, strict=True)], 52, width - 16)
    totals = [(sum if stacked else max)(s.values[i] for s in series) if series else 0 for i in range(len(categories))]
    # Counts: at least 0..4, so that the four gridlines fall on whole numbers.
    top_value = max(4.0, nice_ceiling(max(totals, default=0)))
    frame = Frame(52, top, width - 52 - 16, height - top - 84, 0, n, 0, top_value)
    summary = "; ".join(
        f"{category}: " + ", ".join(f"{s.label} {s.values[i]:g}" for s in series)
        for i, category in enumerate(categories)
    )
    parts = _open(title, summary or "no data", width, height) + legend
    parts += _axes(frame, x_label, y_label, 4, lambda v: f"{v:g}", gap=78)
    band = frame.width / n
    bar = (band * 0.8) / groups
    for i, category in enumerate(categories):
        start = frame.x(i) + band * 0.1
        base = 0.0
        tip_extra = f" ({category_tips[i]})" if category_tips else ""
        for j, (s, colour) in enumerate(zip(series, colours, strict=True)):
            value = s.values[i]
            x = start if stacked else start + j * bar
            low, high = (base, base + value) if stacked else (0.0, value)
            y_top, y_low = frame.y(high), frame.y(low)
            parts.append(
                f'<rect x="{_f(x)}" y="{_f(y_top)}" width="{_f(bar)}" height="{_f(y_low - y_top)}" fill="{colour}">'
                f"<title>{escape(f'{category}: {s.label} {value:g}{tip_extra}')}</title></rect>"
            )
            if stacked:
                base = high
        label = category if len(category) <= 14 else category[:13] + "…"
        cx = frame.x(i) + band / 2
        parts.append(
            f'<text x="{_f(cx)}" y="{_f(frame.bottom + 14)}" text-anchor="end" '
            f'transform="rotate(-30 {_f(cx)} {_f(frame.bottom + 14)})">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def time_ticks(start: float, end: float, count: int = 5) -> list[float]:
    """`count` evenly spaced instants from start to end (seconds), for labelling a time axis."""
    if end <= start:
        return [start]
    return [start + (end - start) * i / (count - 1) for i in range(count)]
