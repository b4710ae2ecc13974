"""Near misses: leads just below the hot line today, and what each one lacks.

A lead is a near miss when its grade can be hot and it needs at most `engagement_gap` more
engagement points, or when it is engaged enough but its fit is at most `fit_gap` points short
of a grade that can be hot. Sales can take such a slice and try a lower line on it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from nurture.analytics.history import Ceilings, History, LeadHistory, chunks, score_at
from nurture.lifecycle import SCORED
from nurture.scoring.engine import CompiledScoring
from nurture.store.reports import HistoryScope


@dataclass(frozen=True)
class NearMiss:
    email: str
    stage: str
    grade: str
    fit: int
    engagement: int
    needed: int | None  # engagement the lead's grade needs; None when the grade is never hot
    engagement_gap: int  # 0 when engaged enough
    fit_gap: int  # 0 when the grade can be hot
    lacks: list[str] = field(default_factory=list)


def near_misses(
    scoring: CompiledScoring,
    history: History | Iterable[History],
    now: datetime,
    engagement_gap: int = 10,
    fit_gap: int = 10,
) -> list[NearMiss]:
    hot = {str(g): n for g, n in scoring.model.hot.engagement.items()}
    grade_floor = {str(g): points for g, points in scoring.model.grades.items()}
    found = []
    for chunk, ceilings, lead in _candidates(history, scoring):
        # The least engagement that makes the lead a near miss, from its fit alone: replay
        # only leads whose engagement can reach it.
        fit, grade = scoring.fit(lead.fields)[:2]
        if grade in hot:
            least = hot[grade] - engagement_gap
        else:
            reachable = sorted((grade_floor[g] - fit, g) for g in hot if g in grade_floor and grade_floor[g] > fit)
            if not reachable or reachable[0][0] > fit_gap:
                continue
            least = hot[reachable[0][1]]
        if ceilings.of(lead) < least:
            continue
        result = score_at(scoring, lead, now, chunk.colleague_events(lead))
        if result.hot:
            continue
        needed = hot.get(result.grade)
        if needed is not None:
            gap = needed - result.engagement
            if gap <= engagement_gap:
                lacks = [f"{gap} more engagement points (grade {result.grade} is hot from {needed})"]
                found.append(
                    NearMiss(lead.email, lead.stage, result.grade, result.fit, result.engagement, needed, gap, 0, lacks)
                )
            continue
        # A grade that is never hot: how far is the nearest grade that is, and is the lead engaged enough for it?
        options = sorted(
            ((grade_floor[g] - result.fit, g) for g in hot if g in grade_floor and grade_floor[g] > result.fit),
        )
        if not options:
            continue
        short, target = options[0]
        if short > fit_gap or result.engagement < hot[target]:
            continue
        matched = {c.rule for c in result.contributions if c.kind == "fit"}
        closers = [
            f"{rule.name} (+{rule.points})"
            for rule in scoring.model.fit
            if rule.name not in matched and rule.points >= short
        ]
        lacks = [f"{short} more fit points for grade {target}" + (f": e.g. {', '.join(closers)}" if closers else "")]
        found.append(
            NearMiss(lead.email, lead.stage, result.grade, result.fit, result.engagement, None, 0, short, lacks)
        )
    return sorted(found, key=lambda m: (m.engagement_gap + m.fit_gap, m.email))


def _candidates(
    history: History | Iterable[History], scoring: CompiledScoring
) -> Iterator[tuple[History, Ceilings, LeadHistory]]:
    """The leads the score still moves (not hot, not with sales) and mail still reaches."""
    for chunk in chunks(history):
        ceilings = Ceilings(scoring, chunk)
        for lead in chunk.leads.values():
            if lead.stage in SCORED and lead.reachable:
                yield chunk, ceilings, lead


def scope() -> HistoryScope:
    """The leads `near_misses` looks at, for reading only those."""
    return HistoryScope(stages=tuple(str(s) for s in SCORED), reachable=True)


def slices(misses: Sequence[NearMiss], steps: Sequence[int] = (5, 10)) -> list[tuple[str, int, int]]:
    """(grade, lowered threshold, leads it would add) for each hot grade and each step down."""
    rows = []
    by_grade: dict[str, list[NearMiss]] = {}
    for miss in misses:
        if miss.needed is not None:
            by_grade.setdefault(miss.grade, []).append(miss)
    for grade, items in sorted(by_grade.items()):
        needed = items[0].needed
        assert needed is not None
        for step in steps:
            rows.append((grade, needed - step, sum(1 for m in items if m.engagement_gap <= step)))
    return rows


def to_csv(misses: Sequence[NearMiss]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["email", "stage", "grade", "fit", "engagement", "hot_from", "engagement_gap", "fit_gap", "lacks"])
    for m in misses:
        writer.writerow(
            [
                m.email,
                m.stage,
                m.grade,
                m.fit,
                m.engagement,
                m.needed or "",
                m.engagement_gap,
                m.fit_gap,
                "; ".join(m.lacks),
            ]
        )
    return out.getvalue()
