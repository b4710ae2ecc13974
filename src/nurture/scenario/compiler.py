"""Compile a validated scenario into one shared `transitions` state machine.

One machine per scenario *version* serves every lead: a lead's position is plain data
(state, entered_at, due_at), and stepping a lead looks up the transitions the machine holds
for its state and trigger and takes the first whose conditions hold. Building a machine per
lead would cost far more, and so would the library's own dispatch of each trigger (an event
object, a model to move and its callbacks, about 7 µs a step in the daemon).

Triggers: `advance` (leave a step that is done), `event` and `timeout` (leave a
`wait_for`). Branch cases and split variants are conditional transitions that
`transitions` tries in order, so "first matching case wins" is the library's semantics.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from transitions import Machine
from transitions.core import MachineError

from nurture.errors import ExpressionError
from nurture.experiments.plan import Plan
from nurture.scenario.expr import Expression
from nurture.scenario.graph import END
from nurture.scenario.loader import LoadedScenario
from nurture.scenario.model import (
    EXIT_SHORTCUTS,
    Branch,
    Exit,
    Goto,
    NotifySales,
    SendEmail,
    Split,
    Step,
    Variant,
    Wait,
    WaitFor,
)
from nurture.scenario.projectfile import utm_for
from nurture.timeutil import (
    ClosedDays,
    SendWindow,
    WeekdayTime,
    parse_clock_time,
    parse_duration,
    parse_month_day,
    parse_wait,
)


@dataclass
class Turn:
    """Per-call scratch passed to condition callbacks: the expression context and the choice."""

    context: dict[str, Any]
    arm: str = ""  # a split's arm, chosen before the trigger fires
    chosen: str = ""
    errors: list[str] = field(default_factory=list)
    explain: bool = False  # record the cases that did not hold (simulate asks; the daemon does not)
    failed: list[tuple[str, str]] = field(default_factory=list)


class Cursor:
    """The model object the machine itself moves (for triggering it through the library)."""

    state: str

    def __init__(self, initial: str) -> None:
        self.state = initial


@dataclass(frozen=True, slots=True)
class _Route:
    """One of the machine's transitions as stepping takes it: where it goes, the conditions
    that must give their targets (all of them, in order) and what runs once it is taken."""

    dest: str | None  # None: a transition that stays (the library's internal transition)
    conditions: tuple[tuple[Callable[[Turn], Any], bool], ...]
    after: tuple[Callable[[Turn], Any], ...]


def _case(expression: Expression, label: str) -> Callable[[Turn], bool]:
    def condition(turn: Turn) -> bool:
        try:
            result = expression.test(turn.context)
        except ExpressionError as exc:
            turn.errors.append(f"{expression.source!r} could not be evaluated ({exc}); treated as false")
            return False
        if result:
            turn.chosen = label
        elif turn.explain:
            turn.failed.append((label, expression.source))
        return bool(result)

    return condition


def _arm_is(name: str) -> Callable[[Turn], bool]:
    def condition(turn: Turn) -> bool:
        if turn.arm == name:
            turn.chosen = name
            return True
        return False

    return condition


def stable_bucket(*parts: str) -> float:
    """A number in [0, 1) that depends only on `parts`: stable A/B assignment per lead."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True, slots=True)
class Goal:
    """What counts as success in an experiment: `kind` is click, event, became_hot or converted."""

    kind: str
    within: timedelta
    event: str = ""
    where: Expression | None = None


@dataclass(frozen=True, slots=True)
class CompiledSplit:
    """A split's arms with their share of [0, 1), and for an experiment its identity and plan.

    `key` names the experiment: the scenario, the step and a digest of its arms and settings,
    so editing an experiment starts a new one rather than mixing two sets of arms.
    """

    step: str
    arms: tuple[str, ...]
    bounds: tuple[float, ...]  # upper end of each arm's share of [0, 1)
    holdouts: frozenset[str]
    variants: dict[str, Variant]
    key: str | None = None
    plan: Plan | None = None
    goal: Goal | None = None

    def by_weight(self, bucket: float) -> str:
        for name, high in zip(self.arms, self.bounds, strict=True):
            if bucket < high:
                return name
        return self.arms[-1]


def experiment_key(scenario_id: str, step: Split) -> str:
    digest = hashlib.sha256(
        json.dumps(
            {"variants": [v.model_dump() for v in step.variants], "experiment": step.model_dump()["experiment"]},
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()[:8]
    return f"{scenario_id}/{step.id}/{digest}"


def _compile_split(scenario_id: str, step: Split) -> CompiledSplit:
    total = sum(v.weight for v in step.variants)
    names = tuple(step.arm_names())
    bounds, low = [], 0.0
    for index, variant in enumerate(step.variants):
        low = 1.0 if index == len(step.variants) - 1 else low + variant.weight / total
        bounds.append(low)
    experiment = step.experiment
    plan = goal = key = None
    if experiment is not None:
        key = experiment_key(scenario_id, step)
        plan = Plan(
            method=experiment.method,
            alpha=experiment.alpha,
            effect=experiment.effect,
            threshold=experiment.threshold,
            prior=experiment.prior,
            min_per_arm=experiment.min_per_arm,
            max_duration=parse_duration(experiment.max_duration),
        )
        within = parse_duration(experiment.within)
        if isinstance(experiment.goal, str):
            goal = Goal(experiment.goal, within)
        else:
            where = Expression(experiment.goal.where) if experiment.goal.where else None
            goal = Goal("event", within, experiment.goal.event, where)
    return CompiledSplit(
        step.id,
        names,
        tuple(bounds),
        frozenset(n for n, v in zip(names, step.variants, strict=True) if v.holdout),
        dict(zip(names, step.variants, strict=True)),
        key,
        plan,
        goal,
    )


class CompiledScenario:
    """A scenario version ready to step leads through."""

    def __init__(self, loaded: LoadedScenario) -> None:
        self.loaded = loaded
        self.scenario = loaded.scenario
        self.id = loaded.scenario.id
        self.version = loaded.version
        self.steps: dict[str, Step] = {s.id: s for s in self.scenario.steps}
        self.first = self.scenario.steps[0].id
        self.following = self._following()
        # Days and weeks are calendar days in the lead's zone, hours and less absolute.
        self.durations = {s.id: parse_wait(s.timeout) for s in self.scenario.steps if isinstance(s, WaitFor)} | {
            s.id: parse_wait(s.duration) for s in self.scenario.steps if isinstance(s, Wait) and s.duration
        }
        self._untils = {
            s.id: WeekdayTime.parse(s.until) for s in self.scenario.steps if isinstance(s, Wait) and s.until
        }
        self.wait_where = {s.id: Expression(s.where) for s in self.scenario.steps if isinstance(s, WaitFor) and s.where}
        self.exit_conditions = [(item, Expression(EXIT_SHORTCUTS.get(item, item))) for item in self.scenario.exit_when]
        entry = self.scenario.entry.when
        self.entry_condition = Expression(entry) if entry else None
        window = self.scenario.send_window
        project = loaded.project
        blackouts = [*window.blackouts, *(project.blackouts if project else [])]
        closed = ClosedDays(
            tuple(dict.fromkeys(c.upper() for c in [*window.holidays, *(project.holidays if project else [])])),
            tuple((b.name, parse_month_day(b.from_), parse_month_day(b.to)) for b in blackouts),
        )
        self.send_window = SendWindow(
            window.day_numbers(), parse_clock_time(window.start), parse_clock_time(window.end), closed
        )
        self.window_zone = window.timezone
        self.language_field = project.language_field if project else "language"
        self.utm = utm_for(self.id, self.scenario.utm, project.utm if project else {})
        self.default_language = (project.default_language if project else None) or ""
        self._plain = {
            s.template: loaded.templates.exists(s.template)
            for s in self.scenario.steps
            if isinstance(s, SendEmail) and loaded.variants.get(s.template)
        }
        self.fallback_zone = window.fallback_timezone
        self.splits = {s.id: _compile_split(self.id, s) for s in self.scenario.steps if isinstance(s, Split)}
        # A send step right after a split whose arms change its template or subject.
        self.arm_overrides = {
            self.following[s.id]: s.id
            for s in self.scenario.steps
            if isinstance(s, Split) and any(v.overrides for v in s.variants)
        }
        self.experiments = {c.key: c for c in self.splits.values() if c.key is not None}
        self.optimal_send_steps = frozenset(
            s.id for s in self.scenario.steps if isinstance(s, SendEmail) and s.send_time == "optimal"
        )
        self.cursor = Cursor(self.first)
        self.machine = Machine(
            model=None,
            states=[*self.steps, END],
            initial=self.first,
            auto_transitions=False,
            send_event=False,
        )
        self._cases: list[Expression] = []
        for step in self.scenario.steps:
            self._add_transitions(step)
        self.machine.add_model(self.cursor, initial=self.first)
        self._routes = self._table()
        # What a walk can read besides the lead, so that the daemon loads a lead's recent
        # events and sends only for scenarios that look at them. Events: waiting for one,
        # conditions about them, and the activity a sales hand-over reports. Sends: the
        # frequency cap, consulted by send steps.
        expressions = [*self._cases, *self.wait_where.values(), *(e for _, e in self.exit_conditions)]
        self.reads_events = (
            any(isinstance(s, WaitFor | NotifySales) for s in self.scenario.steps)
            or any("events" in e.usage.names for e in expressions)
            or bool(self.optimal_send_steps)
        )
        self.sends_email = any(isinstance(s, SendEmail) for s in self.scenario.steps)

    def _following(self) -> dict[str, str]:
        ordered = self.scenario.steps
        return {s.id: s.next or (ordered[i + 1].id if i + 1 < len(ordered) else END) for i, s in enumerate(ordered)}

    def _add_transitions(self, step: Step) -> None:
        add = self.machine.add_transition
        if isinstance(step, WaitFor):
            add("event", step.id, step.on_event)
            add("timeout", step.id, step.on_timeout)
        elif isinstance(step, Branch):
            for number, case in enumerate(step.cases, start=1):
                label = f"case {number}: {case.if_}"
                expression = Expression(case.if_)
                self._cases.append(expression)
                add("advance", step.id, case.goto, conditions=[_case(expression, label)])
            add("advance", step.id, step.else_, after=[lambda turn: setattr(turn, "chosen", "else")])
        elif isinstance(step, Split):
            for name, variant in zip(step.arm_names(), step.variants, strict=True):
                target = END if variant.holdout else variant.goto or self.following[step.id]
                add("advance", step.id, target, conditions=[_arm_is(name)])
        elif isinstance(step, Goto):
            add("advance", step.id, step.target)
        elif isinstance(step, Exit):
            add("advance", step.id, END)
        else:
            add("advance", step.id, self.following[step.id])

    def _table(self) -> dict[tuple[str, str], tuple[_Route, ...]]:
        """(state, trigger) → the machine's transitions from there, in the order the library
        tries them. The machine has no callbacks but the transitions' own conditions and
        `after` (none on its states, none machine-wide), so taking the first transition whose
        conditions hold is all a trigger does."""
        # Every condition and callback here is one of the callables `_add_transitions` gave.
        return {
            (source, trigger): tuple(
                _Route(
                    t.dest,
                    tuple((cast(Callable[[Turn], Any], c.func), bool(c.target)) for c in t.conditions),
                    tuple(cast(list[Callable[[Turn], Any]], t.after)),
                )
                for t in transitions
            )
            for trigger, event in self.machine.events.items()
            for source, transitions in event.transitions.items()
        }

    def fire(self, state: str, trigger: str, turn: Turn) -> str:
        """Fire `trigger` from `state` and return the state the machine moves to (`state`
        itself when no transition's conditions hold), as triggering the machine would."""
        routes = self._routes.get((state, trigger))
        if routes is None:
            raise MachineError(f"Can't trigger event {trigger} from state {state}!")
        for route in routes:
            for check, target in route.conditions:
                if check(turn) != target:
                    break
            else:
                for callback in route.after:
                    callback(turn)
                return state if route.dest is None else route.dest
        return state

    def until(self, step_id: str) -> WeekdayTime | None:
        return self._untils.get(step_id)

    def localised(self, step: SendEmail, fields: Mapping[str, Any]) -> tuple[str, str, str]:
        """(template, subject, language) of a send for a lead: the variant in the lead's
        language (`welcome.ja`), else the project's default language, else the plain template."""
        variants = self.loaded.variants.get(step.template) or {}
        subjects = step.subject if isinstance(step.subject, dict) else {}
        if not variants and not subjects:
            return step.template, str(step.subject), ""
        wanted = language_of(fields.get(self.language_field))
        candidates = [wanted, wanted.split("-")[0]] if wanted else []
        chosen = next((c for c in candidates if c in variants or c in subjects), self.default_language)
        plain = step.template if self._plain.get(step.template) else None
        template = variants.get(chosen) or plain or next(iter(variants.values()), step.template)
        if subjects:
            subject = subjects.get(chosen) or subjects.get("default") or next(iter(subjects.values()))
        else:
            subject = str(step.subject)
        return template, subject, chosen if chosen in variants or chosen in subjects else ""


_LANGUAGE_NAMES = {"japanese": "ja", "日本語": "ja", "english": "en", "英語": "en", "german": "de", "deutsch": "de"}


def language_of(value: Any) -> str:
    """A lead's language as a lower-case tag: 'ja-JP' → 'ja-jp', 'Japanese' → 'ja'."""
    text = str(value or "").strip().lower().replace("_", "-")
    return _LANGUAGE_NAMES.get(text, text)


_CACHE: dict[tuple[str, str], CompiledScenario] = {}


def compile_scenario(loaded: LoadedScenario) -> CompiledScenario:
    """The compiled machine for this scenario version, built once per process."""
    key = (loaded.id, loaded.version)
    compiled = _CACHE.get(key)
    if compiled is None or compiled.loaded.templates.root != loaded.templates.root:
        compiled = _CACHE[key] = CompiledScenario(loaded)
    return compiled
