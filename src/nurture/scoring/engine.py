"""Score a lead: fit from attributes, engagement from behaviour, and whether it is hot.

Pure: the caller passes the lead's fields, its events, colleagues' events and `now`.
Every point is traceable to a rule (`Contribution`), and every event that scored
nothing because it looked like a machine is listed (`Discounted`) with the reason.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from nurture.errors import ExpressionError
from nurture.scenario.expr import EventRecord, Expression, Record, event_is
from nurture.scoring.model import Scoring
from nurture.timeutil import parse_duration


@dataclass(frozen=True)
class Contribution:
    rule: str
    kind: str  # fit | engagement | account
    points: float
    raw: int
    events: int = 0
    note: str = ""


@dataclass(frozen=True)
class Discounted:
    type: str
    at: datetime
    reason: str


@dataclass(frozen=True)
class ScoreResult:
    fit: int
    grade: str
    engagement: int
    hot: bool
    warm: bool
    contributions: list[Contribution] = field(default_factory=list)
    discounted: list[Discounted] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.fit + self.engagement


def _as_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


class CompiledScoring:
    def __init__(self, model: Scoring) -> None:
        self.model = model
        self.fit_rules = [(rule, Expression(rule.when)) for rule in model.fit]
        self.half_life = parse_duration(model.half_life)
        self.lookback = parse_duration(model.lookback)

    # -- fit -------------------------------------------------------------------------------

    def fit(self, fields: Mapping[str, Any]) -> tuple[int, str, list[Contribution]]:
        context = {"lead": Record(fields)}
        points = 0
        contributions = []
        for rule, expression in self.fit_rules:
            try:
                matched = expression.test(context)
            except ExpressionError:
                matched = False
            if matched:
                points += rule.points
                contributions.append(Contribution(rule.name, "fit", rule.points, rule.points))
        return points, self.grade(points), contributions

    def grade(self, points: int) -> str:
        for grade in ("A", "B", "C"):
            if grade in self.model.grades and points >= self.model.grades[grade]:
                return grade
        return "D"

    # -- bots ------------------------------------------------------------------------------

    def machine_activity(self, events: Sequence[EventRecord]) -> dict[int, str]:
        """index in `events` → why that event looks like a machine rather than a person."""
        guards = self.model.bots
        flagged: dict[int, str] = {}
        clicks_by_send: dict[Any, list[int]] = defaultdict(list)
        for index, event in enumerate(events):
            agent = str(event.props.get("user_agent") or "")
            if agent and any(fnmatch.fnmatchcase(agent, pattern) for pattern in guards.user_agents):
                flagged[index] = f"known scanner user agent ({agent[:40]})"
                continue
            if (
                event.type == "open"
                and guards.discount_proxy_opens
                and (event.props.get("proxy") or "GoogleImageProxy" in agent)
            ):
                flagged[index] = "opened by a privacy proxy"
                continue
            if event.type == "click":
                delivered = _as_time(event.props.get("sent_at"))
                if delivered is not None and event.at - delivered < timedelta(
                    seconds=guards.min_seconds_after_delivery
                ):
                    flagged[index] = f"clicked {int((event.at - delivered).total_seconds())}s after delivery"
                    continue
                if event.props.get("send") is not None:
                    clicks_by_send[event.props["send"]].append(index)
        window = timedelta(seconds=guards.burst_seconds)
        for indexes in clicks_by_send.values():
            indexes.sort(key=lambda i: events[i].at)
            for start, first in enumerate(indexes):
                burst = [i for i in indexes[start:] if events[i].at - events[first].at <= window]
                links = {events[i].props.get("link") for i in burst}
                if len(links) >= guards.burst_clicks:
                    for i in burst:
                        flagged.setdefault(i, f"{len(links)} links clicked within {guards.burst_seconds}s")
        return flagged

    # -- engagement ------------------------------------------------------------------------

    def engagement(
        self, events: Sequence[EventRecord], now: datetime, *, kind: str = "engagement", weight: float = 1.0
    ) -> tuple[float, list[Contribution], list[Discounted]]:
        recent = sorted((e for e in events if now - self.lookback <= e.at <= now), key=lambda e: e.at)
        flagged = self.machine_activity(recent)
        discounted = [Discounted(recent[i].type, recent[i].at, reason) for i, reason in sorted(flagged.items())]
        per_day: dict[tuple[str, Any], int] = defaultdict(int)
        per_rule_raw: dict[str, int] = defaultdict(int)
        per_rule_points: dict[str, float] = defaultdict(float)
        per_rule_events: dict[str, int] = defaultdict(int)
        capped: dict[str, int] = defaultdict(int)
        for index, event in enumerate(recent):
            if index in flagged:
                continue
            rule = next((r for r in self.model.engagement if self._matches(r, event)), None)
            if rule is None:
                continue
            allowed = rule.points
            if rule.cap_per_day is not None:
                allowed = min(allowed, rule.cap_per_day - per_day[(rule.name, event.at.date())])
            if rule.cap_total is not None:
                allowed = min(allowed, rule.cap_total - per_rule_raw[rule.name])
            allowed = max(allowed, 0)
            if allowed < rule.points:
                capped[rule.name] += rule.points - allowed
            per_day[(rule.name, event.at.date())] += allowed
            per_rule_raw[rule.name] += allowed
            per_rule_events[rule.name] += 1
            age = (now - event.at) / self.half_life
            per_rule_points[rule.name] += allowed * 0.5**age * weight
        contributions = [
            Contribution(
                name,
                kind,
                round(per_rule_points[name], 2),
                per_rule_raw[name],
                per_rule_events[name],
                f"{capped[name]} points over caps" if capped[name] else "",
            )
            for name in per_rule_events
        ]
        return sum(per_rule_points.values()), contributions, discounted

    @staticmethod
    def _matches(rule: Any, event: EventRecord) -> bool:
        if not event_is(event, rule.event):
            return False
        for key, pattern in rule.match.items():
            value = event.props.get(key)
            if value is None or not fnmatch.fnmatchcase(str(value), pattern):
                return False
        return True

    # -- the verdict -----------------------------------------------------------------------

    def evaluate(
        self,
        fields: Mapping[str, Any],
        events: Sequence[EventRecord],
        now: datetime,
        colleague_events: Sequence[EventRecord] = (),
        engagement_since: datetime | None = None,
        adjustment: int = 0,
    ) -> ScoreResult:
        """The whole verdict; `adjustment` is what scenarios added with `adjust_score`."""
        fit_points, grade, fit_parts = self.fit(fields)
        if engagement_since is not None:
            events = [e for e in events if e.at >= engagement_since]
            colleague_events = [e for e in colleague_events if e.at >= engagement_since]
        own, own_parts, discounted = self.engagement(events, now)
        account, account_parts, account_discounted = self.engagement(
            colleague_events, now, kind="account", weight=self.model.account.weight
        )
        engagement = round(own + account) + adjustment
        if adjustment:
            own_parts = [*own_parts, Contribution("scenario_adjustments", "engagement", adjustment, adjustment)]
        needed = self.model.hot.engagement.get(grade)  # type: ignore[call-overload]
        hot = needed is not None and engagement >= needed
        warm = hot or engagement >= self.model.hot.warm_engagement
        missing = []
        if needed is None:
            better = [g for g in ("C", "B", "A") if g in self.model.hot.engagement and g in self.model.grades]
            if better:
                target = better[0]
                missing.append(
                    f"fit grade {grade} can never be hot: needs {self.model.grades[target] - fit_points} more fit "
                    f"points for grade {target}"
                )
        elif not hot:
            missing.append(f"needs {needed - engagement} more engagement points (grade {grade} needs {needed})")
        return ScoreResult(
            fit_points,
            grade,
            engagement,
            hot,
            warm,
            fit_parts + own_parts + account_parts,
            discounted + account_discounted,
            missing,
        )
