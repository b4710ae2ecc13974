"""`step()`: advance one lead through its compiled scenario as far as it can go now.

Pure: it reads its inputs (position, lead, events, recent sends, `now`) and returns the
new position, the effects to carry out and the decisions taken. The daemon and the
simulator are both thin loops around it, which is why a simulated timeline is what a
real lead would live.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from nurture.errors import ExpressionError, NurtureError
from nurture.runtime.arms import NO_EXPERIMENTS, ExperimentView, choose_arm
from nurture.runtime.effects import AssignArm, Decision, Effect, Finished, NotifySales, SendEmail, UpdateLead
from nurture.runtime.sendtime import SendTimeView, choose_send_time
from nurture.scenario import model as m
from nurture.scenario.compiler import CompiledScenario, CompiledSplit, Turn, stable_bucket
from nurture.scenario.expr import EventRecord, EventsView, Record, event_is, explain_false
from nurture.scenario.graph import END
from nurture.timeutil import zone

MAX_MOVES = 200

ACTIVE, COMPLETED, EXITED = "active", "completed", "exited"

# Position, LeadView and StepResult are values: never changed after they are made. They
# are plain slotted dataclasses rather than frozen ones because the daemon makes several
# per lead per step, and a frozen dataclass costs several times as much to build.


@dataclass(slots=True)
class Position:
    """Where a lead stands in a scenario: plain data, stored as columns of its enrolment."""

    state: str
    entered_at: datetime
    due_at: datetime | None
    seq: int = 0
    status: str = ACTIVE

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    def due(self, when: datetime | None) -> Position:
        """The same place, due at `when`."""
        return Position(self.state, self.entered_at, when, self.seq, self.status)


@dataclass(slots=True)
class LeadView:
    """What the runtime may know of a lead."""

    key: str
    fields: Mapping[str, Any]
    score: Mapping[str, Any] = field(default_factory=lambda: {"fit": 0, "engagement": 0, "total": 0, "grade": "D"})

    @property
    def lifecycle(self) -> str:
        return str(self.fields.get("lifecycle_stage") or "cold")

    @property
    def timezone(self) -> str | None:
        value = self.fields.get("timezone")
        return str(value) if value else None


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most `max_sends` emails to one lead in any `period`, across all scenarios."""

    max_sends: int = 3
    period: timedelta = timedelta(days=7)


@dataclass(slots=True)
class StepResult:
    position: Position
    effects: list[Effect]
    decisions: list[Decision]
    lead: LeadView
    log: list[Decision | Effect] = field(default_factory=list)
    entered: list[str] = field(default_factory=list)  # the steps moved into, in order


def send_zone(compiled: CompiledScenario, lead: LeadView) -> str:
    """The zone a scenario's send window (and a lead's best send hour) is read in."""
    if compiled.window_zone == "lead":
        return lead.timezone or compiled.fallback_zone
    return compiled.window_zone


def start(compiled: CompiledScenario, now: datetime) -> Position:
    """The position of a lead that enrols now: at the first step, due at once."""
    return Position(compiled.first, now, now)


def step(
    compiled: CompiledScenario,
    position: Position,
    lead: LeadView,
    events: Sequence[EventRecord],
    now: datetime,
    *,
    recent_sends: Sequence[datetime] = (),
    cap: FrequencyCap | None = None,
    ref: str = "",
    explain: bool = False,
    experiments: ExperimentView = NO_EXPERIMENTS,
    send_times: SendTimeView | None = None,
) -> StepResult:
    """Move the lead through every step that can complete at `now`; stop at the first that waits.

    `recent_sends` are this lead's send times (all scenarios) for the frequency cap;
    `ref` identifies the enrolment and goes into idempotency keys; `explain` adds, for each
    branch, why the cases before the one taken did not hold (for `simulate`); `experiments`
    says which experiments are over and which arms this lead already has; `send_times` holds
    the engagement-by-hour profiles that `send_time: optimal` learns from.
    """
    walk = _Walk(compiled, lead, events, now, list(recent_sends), cap, ref or lead.key)
    walk.explain = explain
    walk.experiments = experiments
    walk.arms = dict(experiments.arms)
    walk.send_times = send_times or SendTimeView()
    return walk.run(position)


class _Walk:
    def __init__(
        self,
        compiled: CompiledScenario,
        lead: LeadView,
        events: Sequence[EventRecord],
        now: datetime,
        sends: list[datetime],
        cap: FrequencyCap | None,
        ref: str,
    ) -> None:
        self.c = compiled
        self.lead = lead
        self.events = events
        self.now = now
        self.sends = sends
        self.cap = cap
        self.ref = ref
        self.effects: list[Effect] = []
        self.decisions: list[Decision] = []
        self.log: list[Decision | Effect] = []
        self.entered: list[str] = []
        self._context: dict[str, Any] | None = None
        self.experiments = NO_EXPERIMENTS
        self.arms: dict[str, str] = {}
        self.send_times = SendTimeView()
        # Exit conditions read the lead; they are checked on entry and after each update.
        self._lead_changed = True
        self.explain = False

    # -- helpers ---------------------------------------------------------------------------

    def context(self) -> dict[str, Any]:
        """The expression context; built once, and again only after the lead changes."""
        if self._context is None:
            self._context = {
                "lead": Record(self.lead.fields),
                "score": Record(self.lead.score),
                "events": EventsView(self.events, self.now),
                "lifecycle": self.lead.lifecycle,
                "now": self.now,
            }
        return self._context

    def note(self, at: datetime, step: str, text: str) -> None:
        decision = Decision(at, step, text)
        self.decisions.append(decision)
        self.log.append(decision)

    def emit(self, effect: Effect) -> None:
        self.effects.append(effect)
        self.log.append(effect)

    def key(self, kind: str, state: str, seq: int) -> str:
        raw = f"{self.ref}|{self.c.id}|{self.c.version}|{state}|{seq}|{kind}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def zone_name(self) -> str:
        return send_zone(self.c, self.lead)

    def finish(self, position: Position, status: str, reason: str, at: datetime) -> Position:
        self.emit(Finished(status, reason, at))
        return replace(position, due_at=None, status=status)

    def exit_reason(self) -> str | None:
        context = self.context()
        for label, condition in self.c.exit_conditions:
            try:
                if condition.test(context):
                    return label
            except ExpressionError:
                continue
        return None

    def move(self, position: Position, trigger: str, at: datetime, turn: Turn | None = None) -> Position:
        turn = turn or Turn(self.context(), explain=self.explain)
        target = self.c.fire(position.state, trigger, turn)
        for error in turn.errors:
            self.note(at, position.state, error)
        for label, source in turn.failed:
            self.note(at, position.state, f"{label} did not hold: {'; '.join(explain_false(source, self.context()))}")
        if turn.chosen:
            self.note(at, position.state, f"took {turn.chosen} → {target}")
        self.entered.append(target)
        return Position(target, at, at, position.seq + 1)

    # -- the walk --------------------------------------------------------------------------

    def run(self, position: Position) -> StepResult:
        if not position.active:
            return StepResult(position, [], [], self.lead, [])
        for _ in range(MAX_MOVES):
            if position.state == END:
                position = self.finish(position, COMPLETED, "reached the end", position.entered_at)
                break
            reason = self.exit_reason() if self._lead_changed else None
            self._lead_changed = False
            if reason is not None:
                position = self.finish(
                    position,
                    EXITED,
                    reason,
                    max(position.entered_at, min(self.now, position.due_at or self.now)),
                )
                break
            position, waiting = self.act(position)
            if waiting or not position.active:
                break
        else:
            raise NurtureError(f"scenario '{self.c.id}' moved {MAX_MOVES} times without waiting")
        return StepResult(position, self.effects, self.decisions, self.lead, self.log, self.entered)

    def act(self, position: Position) -> tuple[Position, bool]:
        """Complete the current step and move on, or (position with due_at, True) to wait."""
        step = self.c.steps[position.state]
        return _ACTS[type(step)](self, position, step)

    def follow(self, position: Position, step: m.Branch | m.Goto) -> tuple[Position, bool]:
        """A branch or a goto: the machine picks the next step."""
        return self.move(position, "advance", position.entered_at), False

    def apply(self, position: Position, step: m.Update) -> tuple[Position, bool]:
        self.update(step, position.entered_at)
        return self.move(position, "advance", position.entered_at), False

    def notify(self, position: Position, step: m.NotifySales) -> tuple[Position, bool]:
        at = position.entered_at
        self.emit(NotifySales(step.id, step.message, self.key("notify", step.id, position.seq), at))
        return self.move(position, "advance", at), False

    def split(self, position: Position, step: m.Split) -> tuple[Position, bool]:
        at = position.entered_at
        split = self.c.splits[step.id]
        choice = choose_arm(split, self.c.id, self.lead.key, self.experiments)
        if split.key is not None:
            self.note(at, step.id, f"experiment: arm {choice.why}")
            self.arms[split.key] = choice.arm
            if choice.new:
                self.emit(AssignArm(step.id, split.key, choice.arm, choice.randomised, at))
        moved = self.move(position, "advance", at, Turn(self.context(), arm=choice.arm))
        if choice.arm in split.holdouts:
            return self.finish(moved, COMPLETED, f"holdout of '{step.id}': gets nothing", at), False
        return moved, False

    def arm_of(self, split: CompiledSplit) -> str:
        """This lead's arm of a split it has passed (for the email right after it)."""
        if split.key is not None and split.key in self.arms:
            return self.arms[split.key]
        return choose_arm(split, self.c.id, self.lead.key, self.experiments).arm

    def leave(self, position: Position, step: m.Exit) -> tuple[Position, bool]:
        at = position.entered_at
        moved = self.move(position, "advance", at)
        return self.finish(moved, COMPLETED, step.reason, at), False

    def wait(self, position: Position, step: m.Wait) -> tuple[Position, bool]:
        until = self.c.until(step.id)
        if until is not None:
            target = until.next_after(position.entered_at, zone(self.zone_name()))
        else:
            target = self.c.durations[step.id].after(position.entered_at, zone(self.zone_name()))
        if self.now < target:
            return position.due(target), True
        return self.move(position, "advance", target), False

    def wait_for(self, position: Position, step: m.WaitFor) -> tuple[Position, bool]:
        deadline = self.c.durations[step.id].after(position.entered_at, zone(self.zone_name()))
        horizon = min(self.now, deadline)
        where = self.c.wait_where.get(step.id)
        for event in sorted(self.events, key=lambda e: e.at):
            if not event_is(event, step.event) or not position.entered_at <= event.at <= horizon:
                continue
            if where is not None:
                context = self.context() | {"event": event.as_record()}
                try:
                    if not where.test(context):
                        continue
                except ExpressionError:
                    continue
            self.note(event.at, step.id, f"{step.event} arrived at {event.at:%Y-%m-%d %H:%M} UTC")
            return self.move(position, "event", event.at), False
        if self.now >= deadline:
            self.note(deadline, step.id, f"no {step.event} within {step.timeout}: timed out")
            return self.move(position, "timeout", deadline), False
        return position.due(deadline), True

    def send(self, position: Position, step: m.SendEmail) -> tuple[Position, bool]:
        tz = zone(self.zone_name())
        timing = "window"
        if step.id in self.c.optimal_send_steps:
            if stable_bucket(self.lead.key, self.c.id, step.id, "send_time") < step.send_time_control:
                timing = "control"
                if self.now == position.entered_at:
                    self.note(self.now, step.id, "send time: as the window allows (the comparison group)")
            else:
                timing = "optimal"
                chosen = choose_send_time(position.entered_at, self.c.send_window, tz, self.send_times)
                if chosen.at > self.now:
                    self.note(self.now, step.id, f"send time {chosen.at:%Y-%m-%d %H:%M} UTC: {chosen.why}")
                    return position.due(chosen.at), True
        opening = self.c.send_window.next_open(self.now, tz)
        if opening > self.now:
            if timing == "optimal":  # the window closed meanwhile: the best hour of its next opening
                opening = choose_send_time(self.now, self.c.send_window, tz, self.send_times).at
            why = self.c.send_window.why_closed(self.now, tz)
            self.note(
                self.now,
                step.id,
                f"outside send window; deferred to {opening:%Y-%m-%d %H:%M} UTC "
                f"({opening.astimezone(tz):%a %H:%M} {tz.key}): {why}",
            )
            return position.due(opening), True
        if self.cap is not None:
            window_start = self.now - self.cap.period
            recent = sorted(t for t in self.sends if window_start < t <= self.now)
            if len(recent) >= self.cap.max_sends:
                free_at = recent[len(recent) - self.cap.max_sends] + self.cap.period
                if timing == "optimal":  # not just any time after the cap frees up: the best hour
                    free_at = choose_send_time(free_at, self.c.send_window, tz, self.send_times).at
                self.note(
                    self.now,
                    step.id,
                    f"frequency cap reached ({len(recent)} emails in the last {_days(self.cap.period)}, at most "
                    f"{self.cap.max_sends}); deferred to {free_at:%Y-%m-%d %H:%M} UTC",
                )
                return position.due(free_at), True
        template, subject, _ = self.c.localised(step, self.lead.fields)
        split_id = self.c.arm_overrides.get(step.id)
        if split_id is not None:
            split = self.c.splits[split_id]
            arm = self.arm_of(split)
            variant = split.variants[arm]
            template, subject = variant.template or template, variant.subject or subject
            if variant.overrides:
                self.note(self.now, step.id, f"arm '{arm}' of '{split_id}': template '{template}'")
        self.emit(
            SendEmail(
                step.id,
                template,
                subject,
                step.from_ or self.c.scenario.from_,
                step.reply_to,
                self.key("email", step.id, position.seq),
                self.now,
                timing,
            )
        )
        self.sends.append(self.now)
        return self.move(position, "advance", self.now), False

    def update(self, step: m.Update, at: datetime) -> None:
        fields = dict(self.lead.fields)
        fields.update(step.set)
        tags = [t for t in fields.get("tags") or [] if t not in step.remove_tags]
        tags += [t for t in step.add_tags if t not in tags]
        fields["tags"] = tags
        score = dict(self.lead.score)
        if step.adjust_score:
            score["engagement"] = score.get("engagement", 0) + step.adjust_score
            score["total"] = score.get("total", 0) + step.adjust_score
        self.lead = replace(self.lead, fields=fields, score=score)
        self._context = None
        self._lead_changed = True
        self.emit(
            UpdateLead(step.id, dict(step.set), tuple(step.add_tags), tuple(step.remove_tags), step.adjust_score, at)
        )


def _days(period: timedelta) -> str:
    days = period.total_seconds() / 86400
    return f"{days:g} day{'s' if days != 1 else ''}"


# What completing a step means, by its type: looked up once per step.
_ACTS: dict[type, Callable[[_Walk, Position, Any], tuple[Position, bool]]] = {
    m.Wait: _Walk.wait,
    m.WaitFor: _Walk.wait_for,
    m.SendEmail: _Walk.send,
    m.Update: _Walk.apply,
    m.NotifySales: _Walk.notify,
    m.Split: _Walk.split,
    m.Exit: _Walk.leave,
    m.Branch: _Walk.follow,
    m.Goto: _Walk.follow,
}
