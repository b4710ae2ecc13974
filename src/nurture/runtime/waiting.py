"""Why an enrolled lead is not moving: what its current step waits for, in the lead's time.

`nurture status` and `leads show` print it ("waiting for the send window: opens Tue 09:00
JST"), so a marketer who sees no email going out can tell a closed window, a holiday, the
frequency cap and an ordinary wait apart without reading logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from nurture.runtime.engine import FrequencyCap, LeadView, Position
from nurture.scenario import model as m
from nurture.scenario.compiler import CompiledScenario
from nurture.timeutil import local_text, zone


def lead_zone(compiled: CompiledScenario, lead: LeadView) -> str:
    """The zone a scenario's times are read in for this lead."""
    if compiled.window_zone == "lead":
        return lead.timezone or compiled.fallback_zone
    return compiled.window_zone


def waiting_reason(
    compiled: CompiledScenario,
    position: Position,
    lead: LeadView,
    now: datetime,
    *,
    recent_sends: Sequence[datetime] = (),
    cap: FrequencyCap | None = None,
) -> str:
    """One line: what the lead waits for at its current step, with times in its zone."""
    if not position.active:
        return f"{position.status}: not waiting"
    step = compiled.steps.get(position.state)
    tz_name = lead_zone(compiled, lead)
    tz = zone(tz_name)
    due = position.due_at
    if step is None:
        return "at the end"
    if due is None or due <= now:
        return f"due now at '{step.id}' (the next advance takes it)"
    when = local_text(due, tz)
    if isinstance(step, m.SendEmail):
        if not compiled.send_window.contains(now, tz):
            why = compiled.send_window.why_closed(now, tz)
            return f"waiting for the send window at '{step.id}': {why}; opens {when}"
        if cap is not None:
            recent = [t for t in recent_sends if now - cap.period < t <= now]
            if len(recent) >= cap.max_sends:
                return (
                    f"held by the frequency cap at '{step.id}' ({len(recent)} emails in the last "
                    f"{cap.period.days} days) until {when}"
                )
        return f"email '{step.id}' due {when}"
    if isinstance(step, m.WaitFor):
        return f"waiting for {step.event} at '{step.id}' until {when}, then '{step.on_timeout}'"
    if isinstance(step, m.Wait):
        return f"waiting at '{step.id}' until {when}"
    return f"at '{step.id}', due {when}"
