"""From the assignments of an experiment to per-arm counts, now and over time: pure.

A lead counts once the goal's window (`within` after its assignment) has closed, as a success
when it reached the goal inside the window. Counting leads whose window is still open as
failures would bias every arm toward zero, and counting early successes before early
failures would bias it the other way; with one fixed delay for every lead, each look is a
plain sample of independent, final results. Leads routed to an
arm after the decision (`randomised` False) were not randomised and never count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from nurture.experiments.chart import Look
from nurture.experiments.plan import ArmTally


@dataclass(frozen=True, slots=True)
class Assignment:
    arm: str
    assigned_at: datetime
    randomised: bool = True
    reached_at: datetime | None = None  # when the lead reached the goal, if it did


def _final(assignment: Assignment, within: timedelta, at: datetime) -> bool | None:
    """True (reached) / False (not reached) once the window has closed by `at`, else None."""
    closes = assignment.assigned_at + within
    if closes > at:
        return None
    return assignment.reached_at is not None and assignment.reached_at <= closes


def tally(
    arms: Sequence[str], holdouts: frozenset[str], assignments: Sequence[Assignment], within: timedelta, at: datetime
) -> list[ArmTally]:
    counts = {arm: [0, 0] for arm in arms}
    for assignment in assignments:
        if not assignment.randomised or assignment.arm not in counts:
            continue
        outcome = _final(assignment, within, at)
        if outcome is None:
            continue
        counts[assignment.arm][0] += 1
        counts[assignment.arm][1] += int(outcome)
    return [ArmTally(arm, n, x, arm in holdouts) for arm, (n, x) in counts.items()]


def pending(assignments: Sequence[Assignment], within: timedelta, at: datetime) -> int:
    """Randomised leads whose outcome is not known yet."""
    return sum(1 for a in assignments if a.randomised and _final(a, within, at) is None)


def history(
    arms: Sequence[str],
    assignments: Sequence[Assignment],
    within: timedelta,
    until: datetime,
    points: int = 40,
) -> list[Look]:
    """Per-arm counts at `points` evenly spaced instants from the first closed window to `until`."""
    randomised = [a for a in assignments if a.randomised]
    if not randomised:
        return []
    first = min(a.assigned_at for a in randomised) + within
    if first > until:
        return []
    step = (until - first) / max(points - 1, 1)
    looks = []
    for index in range(points):
        at = first + step * index
        for arm_tally in tally(arms, frozenset(), randomised, within, at):
            if arm_tally.assigned:
                looks.append(Look(at, arm_tally.name, arm_tally.assigned, arm_tally.converted))
        if step == timedelta(0):
            break
    return looks
