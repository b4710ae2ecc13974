"""Cumulative conversion per arm over the life of an experiment, with its interval bands (SVG).

Rendered on the server (no JavaScript): one line per arm, each inside a shaded band at the
plan's level (always-valid for mSPRT, so the bands may be read at any time), a dashed line
where the decision fell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from xml.sax.saxutils import escape

from nurture.experiments.decide import bands
from nurture.experiments.plan import ArmTally, Plan

PALETTE = ("#1a73e8", "#d93025", "#188038", "#9334e6", "#e37400", "#5f6368")


@dataclass(frozen=True, slots=True)
class Look:
    """The counts of one arm at one evaluation."""

    at: datetime
    arm: str
    assigned: int
    converted: int


def conversion_chart(
    plan: Plan,
    arms: Sequence[str],
    looks: Sequence[Look],
    *,
    title: str = "",
    decided_at: datetime | None = None,
    width: int = 640,
    height: int = 300,
) -> str:
    """An SVG document: x is days since the first look, y the cumulative goal rate."""
    left, right, top, bottom = 56, 130, 34, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    series: dict[str, list[tuple[float, float, float, float]]] = {arm: [] for arm in arms}
    start = min((look.at for look in looks), default=None)
    for look in sorted(looks, key=lambda item: item.at):
        if look.arm not in series or start is None:
            continue
        band = bands(plan, [ArmTally(look.arm, look.assigned, look.converted)])[look.arm]
        rate = look.converted / look.assigned if look.assigned else 0.0
        series[look.arm].append(((look.at - start).total_seconds() / 86400, rate, band.low, band.high))
    points = [p for values in series.values() for p in values]
    x_max = max((p[0] for p in points), default=1.0) or 1.0
    y_max = min(1.0, max((p[3] for p in points), default=0.1) * 1.1) or 0.1

    def px(x: float) -> float:
        return left + x / x_max * plot_w

    def py(y: float) -> float:
        return top + (1 - y / y_max) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        f'font-size="12" role="img" aria-label="{escape(title or "experiment")}">',
        f'<text x="{left}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    for tick in range(5):
        y = y_max * tick / 4
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#e8eaed"/>')
        parts.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.1%}</text>')
    parts.append(
        f'<text x="{left}" y="{height - 8}">day 0</text>'
        f'<text x="{left + plot_w}" y="{height - 8}" text-anchor="end">day {x_max:.0f}</text>'
    )
    for index, arm in enumerate(arms):
        colour = PALETTE[index % len(PALETTE)]
        values = series[arm]
        if values:
            upper = " ".join(f"{px(x):.1f},{py(high):.1f}" for x, _, _, high in values)
            lower = " ".join(f"{px(x):.1f},{py(low):.1f}" for x, _, low, _ in reversed(values))
            line = " ".join(f"{px(x):.1f},{py(rate):.1f}" for x, rate, _, _ in values)
            parts.append(f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.13" stroke="none"/>')
            parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
        legend_y = top + 8 + 18 * index
        last = f" {values[-1][1]:.1%}" if values else ""
        parts.append(
            f'<rect x="{width - right + 12}" y="{legend_y - 8}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{width - right + 30}" y="{legend_y + 2}">{escape(arm)}{last}</text>'
        )
    if decided_at is not None and start is not None:
        x = px(min(max((decided_at - start).total_seconds() / 86400, 0.0), x_max))
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + plot_h}" stroke="#202124" stroke-dasharray="4 3"/>'
            f'<text x="{x + 4:.1f}" y="{top + 12}">decided</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
