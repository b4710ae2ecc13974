"""Whether a lead in an experiment reached its goal, and when: pure.

A goal counts only inside `within` after the lead was assigned, and only from activity a
person did: the caller passes the events the scoring model did not flag as machine activity
(`human_events`), so a link scanner's clicks never make an arm look better.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from nurture.errors import ExpressionError
from nurture.scenario.compiler import Goal
from nurture.scenario.expr import EventRecord
from nurture.scoring.engine import CompiledScoring

HOT_STAGES = ("hot", "accepted")
CONVERTED_STAGES = ("customer",)


def human_events(scoring: CompiledScoring | None, events: Sequence[EventRecord]) -> list[EventRecord]:
    """`events` without those whose verdict from the scoring model is `machine` (scanners,
    privacy proxies, clicks too soon after delivery, bursts); `suspect` ones still count."""
    if scoring is None:
        return list(events)
    verdicts = scoring.classify(events)
    return [event for event, verdict in zip(events, verdicts, strict=True) if verdict.kind != "machine"]


def goal_reached(
    goal: Goal,
    scenario_id: str,
    assigned_at: datetime,
    events: Sequence[EventRecord],
    stages: Sequence[tuple[str, datetime]] = (),
    context: Mapping[str, Any] | None = None,
) -> datetime | None:
    """When the lead first reached `goal` after `assigned_at` (within the goal's window), or None.

    `events` are the lead's bot-free events; `stages` its lifecycle changes (stage, at);
    `context` is the expression context for an event goal's `where` (lead, score, …).
    """
    deadline = assigned_at + goal.within
    if goal.kind in ("became_hot", "converted"):
        wanted = HOT_STAGES if goal.kind == "became_hot" else CONVERTED_STAGES
        times = [at for stage, at in stages if stage in wanted and assigned_at <= at <= deadline]
        return min(times, default=None)
    for event in sorted(events, key=lambda e: e.at):
        if not assigned_at <= event.at <= deadline:
            continue
        if goal.kind == "click":
            if event.type == "click" and event.props.get("scenario") == scenario_id:
                return event.at
            continue
        if event.type != goal.event:
            continue
        if goal.where is not None:
            try:
                if not goal.where.test({**(context or {}), "event": event.as_record()}):
                    continue
            except ExpressionError:
                continue
        return event.at
    return None
