"""Backtesting the hot line: replay stored events with the scoring model and ask, for each
engagement threshold and grade cut, who would have been promoted and how that went.

- population: leads with at least one event in the window;
- promoted: grade within the cut and engagement at or above the threshold at some instant
  of the window (engagement is replayed at each event, with caps, decay, bot discounting
  and account roll-up as the model defines them);
- good: promoted leads that sales accepted or that became customers (any time);
- precision = good / promoted; recall = good / every converting lead of the population;
- time to promotion: from the lead's first engagement in the window (its own, or a
  colleague's with account roll-up) to the crossing.
"""

from __future__ import annotations

import csv
import io
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from nurture.analytics.history import Ceilings, History, chunks, deciding_series, first_at_or_above
from nurture.errors import NurtureError
from nurture.scoring.engine import CompiledScoring
from nurture.store.reports import HistoryScope

CURRENT = "current"


@dataclass(frozen=True)
class Cut:
    """The grades a threshold applies to; leads of other grades are never promoted."""

    grades: tuple[str, ...]

    @property
    def label(self) -> str:
        return "+".join(self.grades)


@dataclass(frozen=True)
class BacktestRow:
    cut: str
    threshold: int | None  # None for the model's own per-grade definition
    promoted: int
    good: int
    converting: int
    median_days: float | None

    @property
    def precision(self) -> float | None:
        return self.good / self.promoted if self.promoted else None

    @property
    def recall(self) -> float | None:
        return self.good / self.converting if self.converting else None

    @property
    def missed(self) -> int:
        return self.converting - self.good


def parse_thresholds(text: str) -> list[int]:
    """`40:90:10` → 40, 50, …, 90; `40,55,70` → those; `60` → one."""
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) != 3 or parts[2] <= 0 or parts[0] > parts[1]:
                raise ValueError
            return list(range(parts[0], parts[1] + 1, parts[2]))
        return sorted({int(p) for p in text.split(",")})
    except ValueError:
        raise NurtureError(f"bad --threshold {text!r}: use START:STOP:STEP (e.g. 40:90:10) or a list (40,60)") from None


def parse_cuts(text: str | None, scoring: CompiledScoring) -> list[Cut]:
    """`A,AB,ABC` → three cuts; default: A, then A+B, then A+B+C (the grades the model has)."""
    if text is None:
        known = [g for g in ("A", "B", "C") if g in scoring.model.grades]
        return [Cut(tuple(known[: n + 1])) for n in range(len(known))]
    cuts = []
    for item in text.split(","):
        grades = tuple(dict.fromkeys(item.strip().upper().replace("+", "")))
        if not grades or any(g not in "ABCD" for g in grades):
            raise NurtureError(f"bad grade cut {item!r}: use grades such as A, AB or ABC")
        cuts.append(Cut(grades))
    return cuts


def scope(since: datetime, until: datetime) -> HistoryScope:
    """The leads `backtest` looks at (with an event in the window), for reading only those."""
    return HistoryScope(events_from=since, events_until=until)


def backtest(
    scoring: CompiledScoring,
    history: History | Iterable[History],
    since: datetime,
    until: datetime,
    thresholds: Sequence[int],
    cuts: Sequence[Cut],
) -> list[BacktestRow]:
    """The table, folded over the history a chunk at a time: per row, counts and the waits
    (days) of its promotions; per lead, nothing kept."""
    if until <= since:
        raise NurtureError("--to must be after --from")
    needed = {str(g): n for g, n in scoring.model.hot.engagement.items()}
    rules: list[tuple[str, int | None, dict[str, int]]] = [(CURRENT, None, needed)]
    for cut in cuts:
        for threshold in thresholds:
            rules.append((cut.label, threshold, dict.fromkeys(cut.grades, threshold)))
    promoted = [0] * len(rules)
    good = [0] * len(rules)
    waits = [array("d") for _ in rules]
    converting = 0
    for chunk in chunks(history):
        ceilings = Ceilings(scoring, chunk)
        for lead in chunk.leads.values():
            if not any(since <= e.at <= until for e in lead.events):
                continue  # not in the population
            converted = lead.converted
            converting += converted
            grade = scoring.fit(lead.fields)[1]
            lines = [rule[grade] for _cut, _threshold, rule in rules if grade in rule]
            if not lines or ceilings.of(lead) < min(lines):
                continue  # never promoted, whatever the replay
            # Time to promotion counts from the first engagement in the window, the lead's own
            # or (with account roll-up) a colleague's.
            first, series = deciding_series(scoring, chunk, lead, since, until, min(lines), max(lines))
            for index, (_cut, _threshold, rule) in enumerate(rules):
                if grade not in rule:
                    continue
                crossed = first_at_or_above(series, rule[grade])
                if crossed is None:
                    continue
                promoted[index] += 1
                good[index] += converted
                waits[index].append((crossed - first).total_seconds() / 86400)
    return [
        BacktestRow(cut, threshold, promoted[i], good[i], converting, _median_days(waits[i]))
        for i, (cut, threshold, _rule) in enumerate(rules)
    ]


def _median_days(waits: Sequence[float]) -> float | None:
    if not waits:
        return None
    ordered = sorted(waits)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def to_csv(rows: Sequence[BacktestRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["grades", "threshold", "promoted", "good", "missed", "precision", "recall", "median_days"])
    for r in rows:
        writer.writerow(
            [
                r.cut,
                "" if r.threshold is None else r.threshold,
                r.promoted,
                r.good,
                r.missed,
                "" if r.precision is None else f"{r.precision:.4f}",
                "" if r.recall is None else f"{r.recall:.4f}",
                "" if r.median_days is None else f"{r.median_days:.2f}",
            ]
        )
    return out.getvalue()
