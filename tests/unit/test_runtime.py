"""runtime.step: every step kind, on a fake clock, with no I/O."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from nurture.runtime import effects as fx
from nurture.runtime.engine import COMPLETED, EXITED, FrequencyCap, start, step
from nurture.scenario.compiler import CompiledScenario
from nurture.scenario.expr import EventRecord
from tests.conftest import MONDAY_9_UTC, lead

Build = Callable[..., CompiledScenario]

ALWAYS_OPEN = """
send_window:
  days: [mon, tue, wed, thu, fri, sat, sun]
  start: "00:00"
  end: "23:59"
"""

WAIT_FOR_CLICK = (
    """
id: click_flow
name: Click flow
"""
    + ALWAYS_OPEN
    + """
steps:
  - id: hello
    type: send_email
    template: hello
    subject: Hi
  - id: await_click
    type: wait_for
    event: click
    where: 'event.link == "case-study"'
    timeout: 3d
    on_event: clicked
    on_timeout: nudge
  - id: nudge
    type: send_email
    template: again
    subject: Nudge
    next: done
  - id: clicked
    type: update
    add_tags: [clicked]
    adjust_score: 5
  - id: done
    type: exit
    reason: finished
"""
)


def sends(effects: list[fx.Effect]) -> list[str]:
    return [e.template for e in effects if isinstance(e, fx.SendEmail)]


def test_lead_that_clicks_within_three_days_takes_the_event_branch(compile_text: Build) -> None:
    scenario = compile_text(WAIT_FOR_CLICK)
    first = step(scenario, start(scenario, MONDAY_9_UTC), lead(), [], MONDAY_9_UTC)
    assert sends(first.effects) == ["hello"]
    assert first.position.state == "await_click"
    assert first.position.due_at == MONDAY_9_UTC + timedelta(days=3)

    click = EventRecord("click", MONDAY_9_UTC + timedelta(days=1), {"link": "case-study"})
    later = MONDAY_9_UTC + timedelta(days=1, minutes=5)
    second = step(scenario, first.position, lead(), [click], later)
    assert sends(second.effects) == []
    assert second.position.status == COMPLETED
    update = next(e for e in second.effects if isinstance(e, fx.UpdateLead))
    assert update.add_tags == ("clicked",) and update.score_delta == 5
    assert second.lead.fields["tags"] == ["clicked"]


def test_click_on_another_link_does_not_count(compile_text: Build) -> None:
    scenario = compile_text(WAIT_FOR_CLICK)
    first = step(scenario, start(scenario, MONDAY_9_UTC), lead(), [], MONDAY_9_UTC)
    other = EventRecord("click", MONDAY_9_UTC + timedelta(hours=2), {"link": "pricing"})
    result = step(scenario, first.position, lead(), [other], MONDAY_9_UTC + timedelta(hours=3))
    assert result.position.state == "await_click"


def test_click_before_the_wait_began_does_not_count(compile_text: Build) -> None:
    scenario = compile_text(WAIT_FOR_CLICK)
    early = EventRecord("click", MONDAY_9_UTC - timedelta(hours=1), {"link": "case-study"})
    first = step(scenario, start(scenario, MONDAY_9_UTC), lead(), [early], MONDAY_9_UTC)
    assert first.position.state == "await_click"


def test_no_click_times_out_into_the_nudge(compile_text: Build) -> None:
    scenario = compile_text(WAIT_FOR_CLICK)
    first = step(scenario, start(scenario, MONDAY_9_UTC), lead(), [], MONDAY_9_UTC)
    deadline = first.position.due_at
    assert deadline is not None
    result = step(scenario, first.position, lead(), [], deadline)
    assert sends(result.effects) == ["again"]
    assert result.position.status == COMPLETED
    assert any("timed out" in d.text for d in result.decisions)


def test_step_before_due_changes_nothing(compile_text: Build) -> None:
    scenario = compile_text(WAIT_FOR_CLICK)
    first = step(scenario, start(scenario, MONDAY_9_UTC), lead(), [], MONDAY_9_UTC)
    again = step(scenario, first.position, lead(), [], MONDAY_9_UTC + timedelta(hours=1))
    assert again.position == first.position and again.effects == []


def test_idempotency_keys_are_the_same_when_a_step_is_replayed(compile_text: Build) -> None:
    scenario = compile_text(WAIT_FOR_CLICK)
    begin = start(scenario, MONDAY_9_UTC)
    one = step(scenario, begin, lead(), [], MONDAY_9_UTC, ref="enrolment-1")
    two = step(scenario, begin, lead(), [], MONDAY_9_UTC, ref="enrolment-1")
    other = step(scenario, begin, lead(), [], MONDAY_9_UTC, ref="enrolment-2")
    key = [e.idempotency_key for e in one.effects if isinstance(e, fx.SendEmail)]
    assert key == [e.idempotency_key for e in two.effects if isinstance(e, fx.SendEmail)]
    assert key != [e.idempotency_key for e in other.effects if isinstance(e, fx.SendEmail)]


BRANCHY = (
    """
id: branchy
name: Branchy
"""
    + ALWAYS_OPEN
    + """
steps:
  - id: route
    type: branch
    cases:
      - if: 'lead.company_size >= 100 and lead.industry in ["SaaS", "Manufacturing"]'
        goto: big
      - if: 'events.count("page_view", within="7d") >= 3'
        goto: browsing
    else: small
  - id: big
    type: notify_sales
    message: Big fish
    next: end
  - id: browsing
    type: update
    set: {track: browsing}
    next: end
  - id: small
    type: update
    add_tags: [small]
  - id: end
    type: exit
"""
)


def test_branch_takes_the_first_case_that_holds(compile_text: Build) -> None:
    scenario = compile_text(BRANCHY.replace("name: Branchy", "name: Branchy\nlead_fields: [track]"))
    views = [EventRecord("page_view", MONDAY_9_UTC - timedelta(days=d), {}) for d in (1, 2, 3)]

    def route(**fields: object) -> list[fx.Effect]:
        return step(scenario, start(scenario, MONDAY_9_UTC), lead(**fields), views, MONDAY_9_UTC).effects

    big = route(company_size=500, industry="SaaS")
    assert [type(e).__name__ for e in big] == ["NotifySales", "Finished"]
    browsing = route(company_size=20, industry="SaaS")
    assert isinstance(browsing[0], fx.UpdateLead) and browsing[0].set == {"track": "browsing"}
    empty = step(scenario, start(scenario, MONDAY_9_UTC), lead(company_size=None), [], MONDAY_9_UTC)
    assert isinstance(empty.effects[0], fx.UpdateLead) and empty.effects[0].add_tags == ("small",)


def test_branch_condition_on_missing_field_is_false_and_explained(compile_text: Build) -> None:
    scenario = compile_text(BRANCHY.replace("name: Branchy", "name: Branchy\nlead_fields: [track]"))
    result = step(scenario, start(scenario, MONDAY_9_UTC), lead(), [], MONDAY_9_UTC)
    assert any("treated as false" in d.text for d in result.decisions)
    assert any("took else" in d.text for d in result.decisions)


SPLIT = (
    """
id: ab
name: AB
"""
    + ALWAYS_OPEN
    + """
steps:
  - id: pick
    type: split
    variants:
      - {name: a, weight: 80, goto: send_a}
      - {name: b, weight: 20, goto: send_b}
  - id: send_a
    type: send_email
    template: hello
    subject: A
    next: end
  - id: send_b
    type: send_email
    template: again
    subject: B
  - id: end
    type: exit
"""
)


def test_split_assignment_is_stable_per_lead_and_follows_weights(compile_text: Build) -> None:
    scenario = compile_text(SPLIT)

    def variant(email: str) -> str:
        effects = step(scenario, start(scenario, MONDAY_9_UTC), lead(email), [], MONDAY_9_UTC).effects
        return sends(effects)[0]

    emails = [f"lead{i}@example.com" for i in range(1000)]
    first = [variant(e) for e in emails]
    assert first == [variant(e) for e in emails]
    share_a = first.count("hello") / len(first)
    assert 0.75 < share_a < 0.85


WAITS = """
id: waits
name: Waits
send_window:
  days: [mon, tue, wed, thu, fri]
  start: "09:00"
  end: "17:00"
steps:
  - id: hello
    type: send_email
    template: hello
    subject: Hi
  - id: to_tuesday
    type: wait
    until: tuesday 10:00
  - id: again
    type: send_email
    template: again
    subject: Again
"""


def test_wait_until_weekday_uses_the_leads_time_zone(compile_text: Build) -> None:
    scenario = compile_text(WAITS)
    tokyo = lead(timezone="Asia/Tokyo")
    # Monday 09:00 UTC is 18:00 in Tokyo: after the window, so the first email waits for Tuesday 09:00 JST.
    first = step(scenario, start(scenario, MONDAY_9_UTC), tokyo, [], MONDAY_9_UTC)
    assert sends(first.effects) == []
    assert first.position.due_at == datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
    sent = step(scenario, first.position, tokyo, [], first.position.due_at)
    assert sends(sent.effects) == ["hello"]
    # Tuesday 10:00 JST the same day (01:00 UTC), one hour after the send.
    assert sent.position.due_at == datetime(2026, 3, 3, 1, 0, tzinfo=UTC)


def test_send_outside_window_is_deferred_not_dropped(compile_text: Build) -> None:
    scenario = compile_text(WAITS)
    saturday = datetime(2026, 3, 7, 12, tzinfo=UTC)
    result = step(scenario, start(scenario, saturday), lead(timezone="Europe/Berlin"), [], saturday)
    assert sends(result.effects) == []
    assert result.position.state == "hello"
    assert result.position.due_at == datetime(2026, 3, 9, 8, 0, tzinfo=UTC)  # Monday 09:00 CET


def test_frequency_cap_defers_until_a_slot_frees(compile_text: Build) -> None:
    scenario = compile_text(WAITS)
    earlier = [MONDAY_9_UTC - timedelta(days=d) for d in (1, 2, 3)]
    cap = FrequencyCap(max_sends=3, period=timedelta(days=7))
    result = step(scenario, start(scenario, MONDAY_9_UTC), lead(), [], MONDAY_9_UTC, recent_sends=earlier, cap=cap)
    assert sends(result.effects) == []
    assert result.position.due_at == MONDAY_9_UTC - timedelta(days=3) + timedelta(days=7)


def test_exit_condition_stops_the_lead(compile_text: Build) -> None:
    scenario = compile_text(WAIT_FOR_CLICK)
    first = step(scenario, start(scenario, MONDAY_9_UTC), lead(), [], MONDAY_9_UTC)
    gone = lead(unsubscribed=True)
    result = step(scenario, first.position, gone, [], MONDAY_9_UTC + timedelta(days=3))
    assert result.position.status == EXITED
    assert sends(result.effects) == []
    assert isinstance(result.effects[-1], fx.Finished) and result.effects[-1].reason == "unsubscribed"


def test_became_hot_exit(compile_text: Build) -> None:
    scenario = compile_text(WAIT_FOR_CLICK.replace("steps:", "exit_when: [became_hot]\nsteps:", 1))
    result = step(scenario, start(scenario, MONDAY_9_UTC), lead(lifecycle_stage="hot"), [], MONDAY_9_UTC)
    assert result.position.status == EXITED and sends(result.effects) == []


def test_goto_and_falling_off_the_end_complete(compile_text: Build) -> None:
    scenario = compile_text(
        "id: g\nname: G"
        + ALWAYS_OPEN
        + """
steps:
  - id: jump
    type: goto
    target: pause
  - id: pause
    type: wait
    duration: 1d
  - id: last
    type: send_email
    template: again
    subject: Last
"""
    )
    first = step(scenario, start(scenario, MONDAY_9_UTC), lead(), [], MONDAY_9_UTC)
    assert first.effects == [] and first.position.state == "pause"
    result = step(scenario, first.position, lead(), [], MONDAY_9_UTC + timedelta(days=1))
    assert sends(result.effects) == ["again"]
    assert result.position.status == COMPLETED


def test_the_runtime_knows_every_kind_of_step() -> None:
    from typing import get_args

    from nurture.runtime.engine import _ACTS
    from nurture.scenario.model import Step

    assert set(_ACTS) == set(get_args(get_args(Step)[0]))
