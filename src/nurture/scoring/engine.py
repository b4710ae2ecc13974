"""Score a lead: fit from attributes, engagement from behaviour, and whether it is hot.

Pure: the caller passes the lead's fields, its events, its account's aggregate and `now`.
Every point is traceable to a rule (`Contribution`), every event that scored nothing because
it looked like a machine is listed (`Discounted`) with its verdict's reasons, and the part
that came from colleagues is separate (`AccountPart`), capped, and names who gave it.

Account engagement is computed once per account (`account_aggregate`): each member's own
engagement, capped per person, summed. A lead's account part is `weight` × what its
colleagues gave (the aggregate minus the lead itself), never more than `account.cap`; so a
run over a 10,000-lead account scores each member's events once, not once per colleague.
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nurture.errors import ExpressionError
from nurture.scenario.expr import EventRecord, Expression, Record, event_is
from nurture.scoring.bots import HUMAN, TRACKED, Classifier, MachineData, Verdict, with_extra_agents
from nurture.scoring.model import EngagementRule, Scoring
from nurture.timeutil import parse_duration

ACCOUNT_CONTRIBUTORS_SHOWN = 5
FIT_CACHE = 65_536  # combinations of fit fields' values kept (a few MiB at most)
FREE_MAIL_DOMAINS = frozenset(
    [
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.co.jp",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "msn.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "aol.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "t-online.de",
        "proton.me",
        "protonmail.com",
        "mail.ru",
        "yandex.ru",
        "qq.com",
        "163.com",
        "126.com",
        "orange.fr",
        "free.fr",
        "laposte.net",
        "libero.it",
        "naver.com",
    ]
)


_AT = operator.attrgetter("at")


def _number(value: float) -> float:
    """`value` to two places, as an int when whole (so "10 before decay" reads as it did)."""
    value = round(value, 2)
    return int(value) if value.is_integer() else value


@dataclass(frozen=True)
class Contribution:
    rule: str
    kind: str  # fit | engagement | account
    points: float
    raw: float
    events: int = 0
    note: str = ""


@dataclass(frozen=True)
class Discounted:
    """An event that scored nothing (machine, or a repeat that counts once) or less (suspect)."""

    type: str
    at: datetime
    reason: str
    verdict: str = "machine"


@dataclass(frozen=True)
class Classified:
    """One tracking event with its verdict, for explanations and timelines."""

    type: str
    at: datetime
    verdict: Verdict
    props: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Member:
    """One person's own engagement as the account counts it."""

    key: Hashable
    label: str
    engagement: float
    counted: float


@dataclass(frozen=True)
class AccountAggregate:
    """An account's engagement, computed once per account per run.

    `members` holds everyone with any engagement, strongest first; `size` counts everyone.
    Looking up one member is O(1), so scoring every member of a big account stays linear.
    """

    key: str
    members: tuple[Member, ...]
    size: int
    total: float
    hot: bool = False
    engaged: tuple[Member, ...] = ()
    missing: str = ""
    _counted: dict[Hashable, float] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._counted.update({m.key: m.counted for m in self.members if m.counted > 0})

    def counted_for(self, key: Hashable) -> float:
        return self._counted.get(key, 0.0)

    def colleagues_of(self, key: Hashable, shown: int = 5) -> tuple[float, int, list[Member]]:
        """What everyone but `key` gave the account, how many gave something, and the
        strongest `shown` of them."""
        mine = self.counted_for(key)
        top = [m for m in self.members[: shown + 1] if m.key != key and m.counted > 0][:shown]
        return self.total - mine, len(self._counted) - (1 if key in self._counted else 0), top


@dataclass(frozen=True)
class AccountPart:
    """The part of a lead's engagement that came from its colleagues."""

    account: str
    points: float
    uncapped: float
    cap: int | None
    colleagues: int
    contributors: tuple[Member, ...] = ()

    @property
    def capped(self) -> bool:
        return self.points < self.uncapped


@dataclass(frozen=True, slots=True)
class Engagement:
    """A person's own engagement from their events (`CompiledScoring.own`): the points, the
    rules that gave them, what was discounted and the classified activity. Computed once per
    lead and run, it serves both the account's aggregate and the lead's own score."""

    points: float
    contributions: list[Contribution]
    discounted: list[Discounted]
    activity: list[Classified]


# An engagement rule with its property patterns compiled: (property, match function).
_Patterns = tuple[tuple[str, Callable[[str], re.Match[str] | None]], ...]


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
    own: int = 0
    account: AccountPart | None = None
    activity: list[Classified] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.fit + self.engagement

    @property
    def machine_events(self) -> int:
        return sum(1 for a in self.activity if a.verdict.kind == "machine")

    @property
    def human_events(self) -> int:
        return sum(1 for a in self.activity if a.verdict.kind != "machine")


class CompiledScoring:
    def __init__(self, model: Scoring, machines: MachineData | None = None) -> None:
        self.model = model
        self.fit_rules = [(rule, Expression(rule.when)) for rule in model.fit]
        # Fit depends on a few fields only (company size, industry, title...), and leads share
        # their values: the result is kept per combination of the values the rules read, when
        # every rule reads the lead only field by field (see `Expression.fields_read`).
        reads = [expression.fields_read("lead") for _, expression in self.fit_rules]
        self._fit_fields = None if None in reads else tuple(sorted(set().union(*reads)))  # type: ignore[arg-type]
        self._fits: dict[tuple[Any, ...], tuple[int, str, list[Contribution]]] = {}
        # Engagement rules by the event type they score, in file order, patterns compiled
        # once (`fnmatch.fnmatchcase` semantics); custom events are matched by `_matches`.
        self._rules_by_type: dict[str, list[tuple[EngagementRule, _Patterns]]] = defaultdict(list)
        for rule in model.engagement:
            patterns = tuple((key, re.compile(fnmatch.translate(p)).match) for key, p in rule.match.items())
            self._rules_by_type[rule.event].append((rule, patterns))
        # An event type whose first rule matches any properties is scored by that rule; one
        # whose every rule gives no points (opens, usually) adds nothing to the sum.
        self._plain_rules = {
            type_: rules[0][0] for type_, rules in self._rules_by_type.items() if type_ != "custom" and not rules[0][1]
        }
        self._pointless = frozenset(
            type_
            for type_, rules in self._rules_by_type.items()
            if type_ != "custom" and all(rule.points <= 0 for rule, _ in rules)
        )
        self.half_life = parse_duration(model.half_life)
        self.lookback = parse_duration(model.lookback)
        self.machines = with_extra_agents(machines or MachineData(), model.bots.user_agents)
        self.classifier = Classifier(model.bots, self.machines)

    # -- fit -------------------------------------------------------------------------------

    def fit(self, fields: Mapping[str, Any]) -> tuple[int, str, list[Contribution]]:
        if self._fit_fields is None:
            return self._fit(fields)
        # Typed values: 1, 1.0 and True are equal keys but can read differently (`~`, `is`).
        key = tuple((type(value), value) for value in map(fields.get, self._fit_fields))
        try:
            known = self._fits.get(key)
        except TypeError:  # a list or mapping among the values: not a key
            return self._fit(fields)
        if known is None:
            if len(self._fits) >= FIT_CACHE:
                self._fits.clear()
            known = self._fits[key] = self._fit(fields)
        points, grade, contributions = known
        return points, grade, list(contributions)

    def _fit(self, fields: Mapping[str, Any]) -> tuple[int, str, list[Contribution]]:
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

    # -- machines --------------------------------------------------------------------------

    def classify(self, events: Sequence[EventRecord]) -> list[Verdict]:
        """A verdict (human / suspect / machine, with reasons) for each event, in order."""
        return self.classifier.classify(events)

    def machine_activity(self, events: Sequence[EventRecord]) -> dict[int, str]:
        """index in `events` → why that event looks like a machine rather than a person."""
        return {i: v.reason for i, v in enumerate(self.classify(events)) if v.kind == "machine"}

    # -- engagement ------------------------------------------------------------------------

    def engagement(
        self, events: Sequence[EventRecord], now: datetime, *, kind: str = "engagement", weight: float = 1.0
    ) -> tuple[float, list[Contribution], list[Discounted]]:
        points, parts, discounted, _ = self._engagement(events, now, kind=kind, weight=weight)
        return points, parts, discounted

    def engagement_ceiling(self, events: Iterable[EventRecord]) -> float:
        """The most `engagement` can make of these events at any moment: each scoring its
        rule's full points (a suspect's at least in full), nothing decayed, capped or left
        out as a machine's. Analyses skip replaying a lead whose ceiling is below the line."""
        factor = max(1.0, self.model.bots.suspect_weight)
        total = 0.0
        for event in events:
            rule = self._rule_for(event)
            if rule is not None and rule.points > 0:
                total += rule.points * factor
        return total

    def _engagement(
        self,
        events: Sequence[EventRecord],
        now: datetime,
        *,
        kind: str = "engagement",
        weight: float = 1.0,
        explain: bool = True,
    ) -> tuple[float, list[Contribution], list[Discounted], list[Classified]]:
        """The points of `events` at `now`, with (when `explain`) the rules that gave them, what
        was discounted and the classified activity; without, only the points (the same sum)."""
        start = now - self.lookback
        recent = [e for e in events if start <= e.at <= now]
        if not recent:
            return 0, [], [], []
        recent.sort(key=_AT)
        verdicts = self.classify(recent)
        suspect_weight = self.model.bots.suspect_weight
        half_life = self.half_life
        rules_by_type = self._rules_by_type
        plain_rules = self._plain_rules
        # A rule's points are never below 0 once allowed, so one that gives none adds 0 to the
        # sum: without the explanation, its events need no look at caps and decay.
        pointless = () if explain else self._pointless
        discounted: list[Discounted] = []
        activity: list[Classified] = []
        per_day: dict[tuple[str, Any], float] = {}
        # rule name → [points allowed before decay, points after decay, events, points over caps]
        totals: dict[str, list[float]] = {}
        for event, verdict in zip(recent, verdicts, strict=True):
            type_ = event.type
            if type_ in pointless:
                continue
            if verdict is HUMAN:  # the common case: a person's event, counted once
                human = True
                if explain and type_ in TRACKED:
                    activity.append(Classified(type_, event.at, verdict, event.props))
            else:
                human = verdict.kind == "human"
                if explain and (not human or verdict.repeat or type_ in TRACKED):
                    activity.append(Classified(type_, event.at, verdict, event.props))
                if verdict.kind == "machine" or verdict.repeat:
                    if explain:
                        label = "repeat" if human else verdict.kind
                        discounted.append(Discounted(type_, event.at, verdict.reason, label))
                    continue
            rule = plain_rules.get(type_)
            if rule is None:
                if type_ == "custom":
                    rule = self._rule_for(event)
                else:
                    candidates = rules_by_type.get(type_)
                    if not candidates:
                        continue
                    rule = self._first_rule(candidates, event.props)
                if rule is None:
                    continue
            base = rule.points * (1.0 if human else suspect_weight)
            if not human and explain:
                discounted.append(
                    Discounted(type_, event.at, f"{verdict.reason} (counts {suspect_weight:g})", "suspect")
                )
            name = rule.name
            total = totals.get(name)
            if total is None:
                total = totals[name] = [0.0, 0.0, 0, 0.0]
            allowed = base
            day = None
            if rule.cap_per_day is not None:
                day = (name, event.at.date())
                allowed = min(allowed, rule.cap_per_day - per_day.get(day, 0.0))
            if rule.cap_total is not None:
                allowed = min(allowed, rule.cap_total - total[0])
            if allowed < 0:
                allowed = 0
            if allowed < base:
                total[3] += base - allowed
            if day is not None:
                per_day[day] = per_day.get(day, 0.0) + allowed
            total[0] += allowed
            total[2] += 1
            total[1] += allowed * 0.5 ** ((now - event.at) / half_life) * weight
        points = sum(total[1] for total in totals.values())
        if not explain:
            return points, [], [], []
        contributions = [
            Contribution(
                name,
                kind,
                round(decayed, 2),
                _number(raw),
                int(count),
                f"{over:g} points over caps" if over else "",
            )
            for name, (raw, decayed, count, over) in totals.items()
        ]
        return points, contributions, discounted, activity

    @staticmethod
    def _first_rule(
        candidates: list[tuple[EngagementRule, _Patterns]], props: Mapping[str, Any]
    ) -> EngagementRule | None:
        """The first of an event type's rules (in file order) whose patterns its properties match."""
        for rule, patterns in candidates:
            for key, match in patterns:
                value = props.get(key)
                if value is None or match(str(value)) is None:
                    break
            else:
                return rule
        return None

    def _rule_for(self, event: EventRecord) -> EngagementRule | None:
        """The first engagement rule (in file order) that scores `event`."""
        if event.type == "custom":
            return next((r for r in self.model.engagement if self._matches(r, event)), None)
        return self._first_rule(self._rules_by_type.get(event.type, []), event.props)

    @staticmethod
    def _matches(rule: Any, event: EventRecord) -> bool:
        if not event_is(event, rule.event):
            return False
        for key, pattern in rule.match.items():
            value = event.props.get(key)
            if value is None or not fnmatch.fnmatchcase(str(value), pattern):
                return False
        return True

    # -- accounts --------------------------------------------------------------------------

    def account_of(self, company: str | None, email: str) -> str | None:
        """The account a lead belongs to (lower-cased company, or email domain), if accounts count.

        Free-mail domains are nobody's account: everyone at gmail.com is not one company.
        """
        account = self.model.account
        if account.weight <= 0 and account.hot is None:
            return None
        if account.by == "company":
            return (company or "").strip().lower() or None
        domain = email.rpartition("@")[2].strip().lower()
        return domain if domain and domain not in FREE_MAIL_DOMAINS else None

    def own_engagement(
        self, events: Sequence[EventRecord], now: datetime, engagement_since: datetime | None = None
    ) -> float:
        """A person's own engagement, as their account counts it (no scenario adjustments)."""
        return self.own(events, now, engagement_since).points

    def own(
        self,
        events: Sequence[EventRecord],
        now: datetime,
        engagement_since: datetime | None = None,
        *,
        explain: bool = True,
    ) -> Engagement:
        """A person's own engagement with its explanation: what `evaluate` scores as the lead's
        own part and `aggregate_of` counts for its account, computed once for both. Without
        `explain`, the points alone (its lists are empty)."""
        if engagement_since is not None:
            events = [e for e in events if e.at >= engagement_since]
        return Engagement(*self._engagement(events, now, explain=explain))

    def account_aggregate(
        self,
        key: str,
        members: Iterable[tuple[Hashable, str, Sequence[EventRecord], datetime | None]],
        now: datetime,
    ) -> AccountAggregate:
        """The account's engagement from each member's (key, label, events, engagement_since)."""
        scored = [(k, label, self.own_engagement(evs, now, since)) for k, label, evs, since in members]
        return self.aggregate_of(key, scored)

    def aggregate_of(self, key: str, members: Iterable[tuple[Hashable, str, float]]) -> AccountAggregate:
        """The account's engagement from members' own engagement already computed (key, label, points)."""
        account = self.model.account
        size = 0
        found: list[Member] = []
        for member_key, label, points in members:
            size += 1
            if points <= 0:
                continue
            counted = min(points, account.person_cap) if account.person_cap is not None else points
            found.append(Member(member_key, label, points, counted))
        found.sort(key=lambda m: (-m.counted, str(m.label)))
        total = sum(m.counted for m in found)
        line = account.hot
        if line is None:
            return AccountAggregate(key, tuple(found), size, total)
        engaged = tuple(m for m in found if m.engagement >= line.person_engagement)
        hot = total >= line.engagement and len(engaged) >= line.min_people
        missing = ""
        if not hot:
            needs = []
            if total < line.engagement:
                needs.append(f"{line.engagement - total:.0f} more account engagement (line {line.engagement})")
            if len(engaged) < line.min_people:
                needs.append(
                    f"{line.min_people - len(engaged)} more engaged people "
                    f"(own engagement ≥ {line.person_engagement}; has {len(engaged)})"
                )
            missing = "needs " + " and ".join(needs)
        return AccountAggregate(key, tuple(found), size, total, hot, engaged, missing)

    def account_part(self, aggregate: AccountAggregate, member: Hashable) -> AccountPart:
        """What `member` gets from its colleagues: weight × their engagement, capped."""
        _, count, shown = aggregate.colleagues_of(member, ACCOUNT_CONTRIBUTORS_SHOWN)
        points, uncapped = self._account_points(aggregate, member)
        return AccountPart(aggregate.key, points, uncapped, self.model.account.cap, count, tuple(shown))

    def _account_points(self, aggregate: AccountAggregate, member: Hashable) -> tuple[float, float]:
        """(points, before the cap) that `member` gets from what its colleagues gave."""
        account = self.model.account
        uncapped = max(aggregate.total - aggregate.counted_for(member), 0.0) * account.weight
        return (min(uncapped, account.cap) if account.cap is not None else uncapped), uncapped

    # -- the verdict -----------------------------------------------------------------------

    def evaluate(
        self,
        fields: Mapping[str, Any],
        events: Sequence[EventRecord],
        now: datetime,
        colleague_events: Sequence[EventRecord] = (),
        engagement_since: datetime | None = None,
        adjustment: int = 0,
        *,
        account: AccountAggregate | None = None,
        member: Hashable = None,
        own: Engagement | None = None,
        explain: bool = True,
    ) -> ScoreResult:
        """The whole verdict; `adjustment` is what scenarios added with `adjust_score`.

        Pass the account's precomputed `account` aggregate and the lead's key in it as
        `member`; `colleague_events` (colleagues' events as one stream) is the simpler form
        for a single lead and is aggregated here as one colleague. `own` is the lead's
        `self.own(events, now, engagement_since)` when the caller has it already.
        Without `explain`, only the numbers and the verdict (fit, grade, engagement, own,
        hot, warm): no contributions, discounts, activity, account part or what is missing.
        """
        if own is None:
            own = self.own(events, now, engagement_since, explain=explain)
        if not explain and not colleague_events:
            return self._verdict(fields, own.points, adjustment, account, member)
        fit_points, grade, fit_parts = self.fit(fields)
        own_points, own_parts, discounted, activity = own.points, own.contributions, own.discounted, own.activity
        if account is None and colleague_events:
            if engagement_since is not None:
                colleague_events = [e for e in colleague_events if e.at >= engagement_since]
            together = self.engagement(colleague_events, now)[0]
            account = self.aggregate_of("colleagues", [("colleagues", "colleagues", together)])
        part = self.account_part(account, member) if account is not None and self.model.account.weight > 0 else None
        account_points = part.points if part is not None else 0.0
        account_parts = []
        if part is not None and part.points > 0:
            note = f"capped at {part.cap} from {part.uncapped:.1f}" if part.capped else ""
            account_parts.append(
                Contribution(
                    f"account {part.account}",
                    "account",
                    round(part.points, 2),
                    round(part.uncapped, 2),
                    part.colleagues,
                    note,
                )
            )
        own_total = round(own_points) + adjustment
        engagement = round(own_points + account_points) + adjustment
        if adjustment:
            own_parts = [*own_parts, Contribution("scenario_adjustments", "engagement", adjustment, adjustment)]
        hot_rule = self.model.hot
        needed = hot_rule.engagement.get(grade)  # type: ignore[call-overload]
        own_enough = own_total >= hot_rule.min_own_engagement
        hot = needed is not None and engagement >= needed and own_enough
        warm = hot or engagement >= hot_rule.warm_engagement
        missing = []
        if needed is None:
            better = [g for g in ("C", "B", "A") if g in hot_rule.engagement and g in self.model.grades]
            if better:
                target = better[0]
                missing.append(
                    f"fit grade {grade} can never be hot: needs {self.model.grades[target] - fit_points} more fit "
                    f"points for grade {target}"
                )
        else:
            if engagement < needed:
                missing.append(f"needs {needed - engagement} more engagement points (grade {grade} needs {needed})")
            if not own_enough:
                missing.append(
                    f"needs {hot_rule.min_own_engagement - own_total} more of its own engagement points "
                    f"(hot needs {hot_rule.min_own_engagement} of the lead's own, whatever its account gives)"
                )
        return ScoreResult(
            fit_points,
            grade,
            engagement,
            hot,
            warm,
            fit_parts + own_parts + account_parts,
            discounted,
            missing,
            own_total,
            part,
            activity,
        )

    def _verdict(
        self,
        fields: Mapping[str, Any],
        own_points: float,
        adjustment: int,
        account: AccountAggregate | None,
        member: Hashable,
    ) -> ScoreResult:
        """`evaluate`'s numbers and verdict alone, by the same arithmetic."""
        fit_points, grade, _ = self.fit(fields)
        account_points = 0.0
        if account is not None and self.model.account.weight > 0:
            account_points = self._account_points(account, member)[0]
        own_total = round(own_points) + adjustment
        engagement = round(own_points + account_points) + adjustment
        hot_rule = self.model.hot
        needed = hot_rule.engagement.get(grade)  # type: ignore[call-overload]
        hot = needed is not None and engagement >= needed and own_total >= hot_rule.min_own_engagement
        warm = hot or engagement >= hot_rule.warm_engagement
        return ScoreResult(fit_points, grade, engagement, hot, warm, own=own_total)


@dataclass(frozen=True)
class AccountHandoff:
    """One hand-off for an account that became hot: to its owner, listing the engaged people."""

    account: str
    engagement: float
    people: tuple[Member, ...]
    size: int


def account_handoff(aggregate: AccountAggregate, was_hot: bool) -> AccountHandoff | None:
    """The hand-off an account's new aggregate asks for: one when it crosses its line, else none.

    An account that stays hot gets no second hand-off; one that cools and crosses again does.
    """
    if not aggregate.hot or was_hot:
        return None
    return AccountHandoff(aggregate.key, aggregate.total, aggregate.engaged, aggregate.size)
