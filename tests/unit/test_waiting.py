"""Why a lead is not moving, in the lead's own time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from nurture.runtime.engine import FrequencyCap, start, step
from nurture.runtime.waiting import waiting_reason
from nurture.scenario.compiler import CompiledScenario
from tests.conftest import lead

SCENARIO = """
id: ja
name: JA
send_window: {start: "09:00", end: "18:00", timezone: lead, holidays: [JP]}
steps:
  - id: hello
    type: send_email
    template: hello
    subject: Hi
  - id: await_click
    type: wait_for
    event: click
    timeout: 3d
    on_event: bye
    on_timeout: bye
  - id: bye
    type: exit
"""


def test_a_send_held_by_the_window_says_when_it_opens_in_the_leads_zone(
    compile_text: Callable[..., CompiledScenario],
) -> None:
    compiled = compile_text(SCENARIO)
    tokyo = lead(timezone="Asia/Tokyo")
    friday_night = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)  # 21:00 in Tokyo
    position = step(compiled, start(compiled, friday_night), tokyo, [], friday_night).position
    assert waiting_reason(compiled, position, tokyo, friday_night) == (
        "waiting for the send window at 'hello': outside sending hours 09:00–18:00; opens Mon 2026-03-09 09:00 JST"
    )
    holiday = datetime(2026, 5, 5, 1, 0, tzinfo=UTC)  # こどもの日, 10:00 in Tokyo
    position = step(compiled, start(compiled, holiday), tokyo, [], holiday).position
    assert "public holiday (JP): こどもの日; opens Thu 2026-05-07 09:00 JST" in waiting_reason(
        compiled, position, tokyo, holiday
    )


def test_a_wait_for_says_what_and_until_when(compile_text: Callable[..., CompiledScenario]) -> None:
    compiled = compile_text(SCENARIO)
    tokyo = lead(timezone="Asia/Tokyo")
    monday = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    position = step(compiled, start(compiled, monday), tokyo, [], monday).position
    assert waiting_reason(compiled, position, tokyo, monday) == (
        "waiting for click at 'await_click' until Thu 2026-03-05 10:00 JST, then 'bye'"
    )


def test_a_send_held_by_the_frequency_cap_says_so(compile_text: Callable[..., CompiledScenario]) -> None:
    compiled = compile_text(SCENARIO)
    tokyo = lead(timezone="Asia/Tokyo")
    monday = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    sends = [monday - timedelta(days=1)]
    cap = FrequencyCap(1)
    position = step(compiled, start(compiled, monday), tokyo, [], monday, recent_sends=sends, cap=cap).position
    reason = waiting_reason(compiled, position, tokyo, monday, recent_sends=sends, cap=cap)
    assert reason == "held by the frequency cap at 'hello' (1 emails in the last 7 days) until Sun 2026-03-08 10:00 JST"
