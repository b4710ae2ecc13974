"""Walk one lead through a scenario on a simulated clock, sending nothing.

The simulator uses the same `runtime.step` as the daemon; it only decides *when* to call
it: at the lead's next due time or when the next event happens, whichever comes first.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

from nurture.errors import Diagnostic, NurtureError, ValidationFailed
from nurture.hints import did_you_mean
from nurture.lifecycle import route_owner, scored_stage
from nurture.mail.footer import SenderIdentity
from nurture.mail.names import full_name
from nurture.runtime import effects as fx
from nurture.runtime.arms import NO_EXPERIMENTS, ExperimentView
from nurture.runtime.engine import FrequencyCap, LeadView, Position, send_zone, start, step
from nurture.runtime.sendtime import SendTimeView, hour_profile
from nurture.scenario.compiler import CompiledScenario
from nurture.scenario.expr import EventRecord, EventsView, Record
from nurture.scenario.programs import EntryVerdict, entry_verdict
from nurture.scoring.engine import CompiledScoring
from nurture.timeutil import parse_instant, zone
from nurture.vocabulary import EVENT_TYPES, Stage


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    step: str
    text: str


@dataclass(frozen=True)
class Timeline:
    entries: list[TimelineEntry]
    final: Position
    lead: LeadView
    sent: int
    verdict: EntryVerdict | None = None


NOT_ENROLLED = "not enrolled"


def simulate(
    compiled: CompiledScenario,
    lead: LeadView,
    events: Sequence[EventRecord],
    begin: datetime,
    until: timedelta,
    cap: FrequencyCap | None = None,
    scoring: CompiledScoring | None = None,
    experiments: ExperimentView = NO_EXPERIMENTS,
    send_times: SendTimeView | None = None,
    *,
    lists: Collection[str] = (),
    check_entry: bool = True,
    show_email: bool = False,
    sender: SenderIdentity | None = None,
) -> Timeline:
    """The timeline of one lead. With `scoring`, the lead's score and stage follow its
    events as the daemon's qualify job would make them; without, the lead file's score holds.

    With `check_entry`, a lead that the entry criteria (source, lists, `entry.when`) keep
    out gets a timeline that says why, and nothing more. Branches explain why the cases
    before the one taken did not hold; hand-offs name the owner; `show_email` adds each
    email's rendered text. `experiments` says which experiments are over (else arms are
    drawn by weight); `send_times` gives the account and audience profiles for
    `send_time: optimal` (the lead's own comes from its events, without machine activity
    when `scoring` is given)."""
    end = begin + until
    cap = cap or FrequencyCap()
    pending = sorted(events, key=lambda e: e.at)
    position = start(compiled, begin)
    now = begin
    verdict = None
    if check_entry:
        visible = [e for e in pending if e.at <= begin]
        if scoring is not None:
            lead = _rescore(scoring, lead, visible, begin, 0, [])
        verdict = entry_verdict(
            compiled.scenario,
            lead.fields,
            _context(lead, visible, begin),
            lists=lists or [str(name) for name in lead.fields.get("lists") or []],
            suppression=_suppression(compiled),
        )
        if not verdict.enters:
            refused = [TimelineEntry(begin, "", f"✗ would not enter: {reason}") for reason in verdict.reasons]
            return Timeline(refused, replace(position, due_at=None, status=NOT_ENROLLED), lead, 0, verdict)
    show = _Show(compiled, scoring, show_email, sender)
    entries: list[TimelineEntry] = [TimelineEntry(begin, compiled.first, "enrolled")]
    sends: list[datetime] = []
    adjustment = 0
    while position.active and now <= end:
        lead = _apply_lifecycle_events(lead, [e for e in pending if e.at <= now])
        visible = [e for e in pending if e.at <= now]
        if scoring is not None:
            lead = _rescore(scoring, lead, visible, now, adjustment, entries)
        profiles = _with_own_profile(compiled, lead, visible, send_times, scoring)
        result = step(
            compiled,
            position,
            lead,
            visible,
            now,
            recent_sends=sends,
            cap=cap,
            explain=True,
            experiments=experiments,
            send_times=profiles,
        )
        adjustment += sum(e.score_delta for e in result.effects if isinstance(e, fx.UpdateLead))
        lead = result.lead
        for item in result.log:
            if isinstance(item, fx.Decision):
                entries.append(TimelineEntry(item.at, item.step, item.text))
            else:
                entries += show.describe(item, lead)
            if isinstance(item, fx.SendEmail):
                sends.append(item.at)
        position = result.position
        upcoming = [e.at for e in pending if e.at > now]
        candidates = [t for t in (position.due_at, upcoming[0] if upcoming else None) if t is not None]
        if not position.active or not candidates:
            break
        now = max(min(candidates), now)
    entries = [e for e in entries if e.at <= end]
    if position.active:
        entries.append(TimelineEntry(end, position.state, f"still at '{position.state}' when the simulation ends"))
    return Timeline(entries, position, lead, len(sends), verdict)


def _with_own_profile(
    compiled: CompiledScenario,
    lead: LeadView,
    events: Sequence[EventRecord],
    given: SendTimeView | None,
    scoring: CompiledScoring | None,
) -> SendTimeView | None:
    if not compiled.optimal_send_steps:
        return given
    flagged = scoring.machine_activity(events) if scoring is not None else {}
    human = [e for i, e in enumerate(events) if i not in flagged]
    own = hour_profile(human, zone(send_zone(compiled, lead)), "")
    return replace(given or SendTimeView(), own=own)


def _rescore(
    scoring: CompiledScoring,
    lead: LeadView,
    events: Sequence[EventRecord],
    now: datetime,
    adjustment: int,
    entries: list[TimelineEntry],
) -> LeadView:
    result = scoring.evaluate(lead.fields, events, now, adjustment=adjustment)
    score = {"fit": result.fit, "engagement": result.engagement, "total": result.total, "grade": result.grade}
    stage = scored_stage(lead.lifecycle, result) or lead.lifecycle
    if stage != lead.lifecycle:
        entries.append(
            TimelineEntry(now, "", f"★ became {stage}: grade {result.grade}, engagement {result.engagement}")
        )
    return LeadView(lead.key, {**lead.fields, "lifecycle_stage": stage}, score)


def _apply_lifecycle_events(lead: LeadView, seen: Sequence[EventRecord]) -> LeadView:
    flags = {"unsubscribe": "unsubscribed", "bounce": "bounced"}
    updates = {flags[e.type]: True for e in seen if e.type in flags}
    if not updates or all(lead.fields.get(k) for k in updates):
        return lead
    return LeadView(lead.key, {**lead.fields, **updates}, lead.score)


def _context(lead: LeadView, events: Sequence[EventRecord], now: datetime) -> dict[str, Any]:
    return {
        "lead": Record(lead.fields),
        "score": Record(lead.score),
        "events": EventsView(events, now),
        "lifecycle": lead.lifecycle,
        "now": now,
    }


def _suppression(compiled: CompiledScenario) -> frozenset[str]:
    project = compiled.loaded.project
    return project.suppression_lists if project is not None else frozenset()


@dataclass
class _Show:
    """How effects read in a timeline."""

    compiled: CompiledScenario
    scoring: CompiledScoring | None
    show_email: bool
    sender: SenderIdentity | None = None

    def describe(self, effect: fx.Effect, lead: LeadView) -> list[TimelineEntry]:
        if isinstance(effect, fx.SendEmail):
            return self._email(effect, lead)
        if isinstance(effect, fx.NotifySales):
            owner = hand_off_owner(self.compiled, self.scoring, lead)
            return [TimelineEntry(effect.at, effect.step, f"☎ notify sales: {effect.message} → {owner}")]
        return _describe(effect, self.compiled, lead)

    def _email(self, effect: fx.SendEmail, lead: LeadView) -> list[TimelineEntry]:
        templates = self.compiled.loaded.templates
        project = self.compiled.loaded.project
        order = project.name_order if project is not None else "auto"
        context = {
            "lead": Record(lead.fields),
            "score": Record(lead.score),
            "scenario": self.compiled.scenario.name,
            "unsubscribe_url": "https://example.invalid/unsubscribe",
            "link": lambda _name, url: url,
            "full_name": full_name(lead.fields, order),
            "sender": (self.sender or SenderIdentity("", "")).as_context(),
            "now": effect.at,
        }
        try:
            subject = templates.render_string(effect.subject, context)
        except Exception as exc:  # shown to the author, never raised: nothing is sent here
            subject = f"<subject does not render: {exc}>"
        entries = [TimelineEntry(effect.at, effect.step, f"✉ email '{effect.template}' — subject: {subject}")]
        if self.show_email:
            try:
                body = templates.render(effect.template, effect.subject, context).text
            except Exception as exc:  # the author's template error, shown in place of the body
                body = f"<email does not render: {exc}>"
            text = "\n".join(f"      │ {line}" for line in body.rstrip().splitlines())
            entries.append(TimelineEntry(effect.at, effect.step, "text of the email:\n" + text))
        return entries


def hand_off_owner(compiled: CompiledScenario, scoring: CompiledScoring | None, lead: LeadView) -> str:
    """Who a hand-off of `lead` would go to, as the daemon routes it, or why nobody."""
    project = compiled.loaded.project
    default = project.default_owner if project is not None else None
    if scoring is not None:
        owners = scoring.model.routing.owners
        own = next((o for o in owners if o.email == lead.fields.get("owner")), None)
        if own is not None:
            return f"{own.name} <{own.email}> (the lead's owner)"
        row = SimpleNamespace(country=lead.fields.get("country"), industry=lead.fields.get("industry"))
        owner, rotated = route_owner(scoring, row, 0)
        how = "next in the round-robin" if rotated else "territory match"
        return f"{owner.name} <{owner.email}> ({how})"
    if default is not None:
        return f"{default.name} <{default.email}> (default_owner: no scoring file routes hand-offs)"
    return "nobody: no scoring file with routing and no default_owner, so the hand-off would be dropped"


def _describe(effect: fx.Effect, compiled: CompiledScenario, lead: LeadView) -> list[TimelineEntry]:
    if isinstance(effect, fx.NotifySales):
        return [TimelineEntry(effect.at, effect.step, f"☎ notify sales: {effect.message}")]
    if isinstance(effect, fx.UpdateLead):
        parts = [f"{k}={v!r}" for k, v in effect.set.items()]
        parts += [f"+tag {t}" for t in effect.add_tags] + [f"-tag {t}" for t in effect.remove_tags]
        if effect.score_delta:
            parts.append(f"score {effect.score_delta:+d}")
        return [TimelineEntry(effect.at, effect.step, "update " + ", ".join(parts))]
    if isinstance(effect, fx.Finished):
        return [TimelineEntry(effect.at, "", f"■ {effect.status}: {effect.reason}")]
    return []


def format_timeline(timeline: Timeline, compiled: CompiledScenario) -> str:
    tz = zone(timeline.lead.timezone)
    lines = []
    for entry in sorted(timeline.entries, key=lambda e: e.at):
        local = entry.at.astimezone(tz)
        lines.append(f"{entry.at:%Y-%m-%d %H:%M} UTC  ({local:%a %H:%M} local)  {entry.step:<22} {entry.text}")
    final = timeline.final
    if final.status == NOT_ENROLLED:
        lines.append("-- not enrolled: the entry criteria keep this lead out")
    else:
        lines.append(f"-- {timeline.sent} email(s); final: {final.status} at '{final.state}'")
    return "\n".join(lines)


# -- input files -------------------------------------------------------------------------------


def parse_when(value: Any, begin: datetime, where: str) -> datetime:
    """'+2d3h' (after the simulation start) or an ISO 8601 instant (UTC when no zone)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return parse_instant(str(value), begin, where)


def load_lead_file(path: Path) -> tuple[LeadView, bool]:
    """The lead, and whether its file fixes the score (else scoring computes it)."""
    data = _read_yaml(path)
    if not isinstance(data, dict) or "email" not in data:
        raise ValidationFailed([Diagnostic(str(path), 1, "a lead file is a mapping with at least 'email'")])
    score: dict[str, Any] = {"fit": 0, "engagement": 0, "total": 0, "grade": "D"}
    given = data.pop("score", None)
    score.update(given or {})
    score.setdefault("total", score["fit"] + score["engagement"])
    fields: dict[str, Any] = {"tags": [], "unsubscribed": False, "bounced": False, "lifecycle_stage": Stage.COLD}
    fields.update(data)
    return LeadView(str(data["email"]), fields, score), given is not None


def load_events_file(path: Path, begin: datetime, known: Collection[str] = EVENT_TYPES) -> list[EventRecord]:
    """The events of a simulate file; `known` are the event types it may use (the built-in
    ones and the project's custom events)."""
    data = _read_yaml(path) or []
    if not isinstance(data, list):
        raise ValidationFailed([Diagnostic(str(path), 1, "an events file is a list of events")])
    events = []
    for number, item in enumerate(data, start=1):
        where = f"{path}: event #{number}"
        if not isinstance(item, dict) or "type" not in item or "at" not in item:
            raise NurtureError(f"{where}: each event needs 'type' and 'at'")
        props = {k: v for k, v in item.items() if k not in ("type", "at")}
        if item["type"] not in known:
            raise NurtureError(
                f"{where}: unknown event type {item['type']!r} — {did_you_mean(str(item['type']), known)}"
            )
        events.append(EventRecord(str(item["type"]), parse_when(item["at"], begin, where), props, f"sim-{number}"))
    return events


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NurtureError(f"{path}: no such file") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise NurtureError(f"{path}:{mark.line + 1 if mark else 1}: YAML syntax error") from exc
