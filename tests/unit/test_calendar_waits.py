"""Waits in days and weeks keep the lead's local clock time across daylight-saving changes;
waits in hours and minutes are absolute. Moments typed by users parse to UTC."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from nurture.runtime.engine import start, step
from nurture.scenario.compiler import CompiledScenario
from nurture.timeutil import TimeError, parse_instant, parse_wait
from tests.conftest import lead

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")

# Friday 09:00 in Berlin before each change: spring forward on Sunday 29 March 2026,
# fall back on Sunday 25 October 2026.
BEFORE_SPRING = datetime(2026, 3, 27, 9, 0, tzinfo=BERLIN)
BEFORE_AUTUMN = datetime(2026, 10, 23, 9, 0, tzinfo=BERLIN)


@pytest.mark.parametrize("start_at", [BEFORE_SPRING, BEFORE_AUTUMN])
def test_two_days_from_friday_nine_is_sunday_nine_local_across_the_change(start_at: datetime) -> None:
    end = parse_wait("2d").after(start_at.astimezone(UTC), BERLIN)
    assert end.astimezone(BERLIN).replace(tzinfo=None) == datetime(
        start_at.year, start_at.month, start_at.day + 2, 9, 0
    )
    assert end - start_at != timedelta(hours=48)  # the day of the change is 23 or 25 hours long


@pytest.mark.parametrize(("start_at", "hours"), [(BEFORE_SPRING, 47), (BEFORE_AUTUMN, 49)])
def test_one_week_keeps_the_clock_time_and_hours_stay_absolute(start_at: datetime, hours: int) -> None:
    week = parse_wait("1w").after(start_at.astimezone(UTC), BERLIN)
    assert week.astimezone(BERLIN).hour == 9 and (week - start_at).days in (6, 7)
    assert parse_wait("48h").after(start_at.astimezone(UTC), BERLIN) - start_at == timedelta(hours=48)
    assert (parse_wait("2d").after(start_at.astimezone(UTC), BERLIN) - start_at) == timedelta(hours=hours)


def test_days_then_hours_adds_calendar_days_first() -> None:
    end = parse_wait("1d12h").after(BEFORE_SPRING.astimezone(UTC), BERLIN)
    assert end.astimezone(BERLIN).replace(tzinfo=None) == datetime(2026, 3, 28, 21, 0)


def test_a_local_time_skipped_by_the_change_moves_forward_by_the_gap() -> None:
    before = datetime(2026, 3, 7, 2, 30, tzinfo=NEW_YORK)  # US clocks skip 02:00-03:00 on 8 March 2026
    end = parse_wait("1d").after(before.astimezone(UTC), NEW_YORK)
    assert end.astimezone(NEW_YORK).replace(tzinfo=None) == datetime(2026, 3, 8, 3, 30)


WAIT_2D = """
id: dst
name: DST
send_window:
  days: [mon, tue, wed, thu, fri, sat, sun]
  start: "00:00"
  end: "23:59"
steps:
  - id: pause
    type: wait
    duration: 2d
  - id: hello
    type: send_email
    template: hello
    subject: Hi
"""


@pytest.mark.parametrize("start_at", [BEFORE_SPRING, BEFORE_AUTUMN])
def test_a_scenario_wait_of_two_days_lands_at_the_same_local_time(
    compile_text: Callable[..., CompiledScenario], start_at: datetime
) -> None:
    scenario = compile_text(WAIT_2D)
    now = start_at.astimezone(UTC)
    waiting = step(scenario, start(scenario, now), lead(timezone="Europe/Berlin"), [], now)
    assert waiting.position.due_at is not None
    assert waiting.position.due_at.astimezone(BERLIN).strftime("%a %H:%M") == "Sun 09:00"


NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02T10:00:00+09:00", datetime(2026, 3, 2, 1, 0, tzinfo=UTC)),
        ("2026-03-02T10:00:00Z", datetime(2026, 3, 2, 10, 0, tzinfo=UTC)),
        ("2026-03-02 10:00", datetime(2026, 3, 2, 10, 0, tzinfo=UTC)),
        ("+2d3h", NOW + timedelta(days=2, hours=3)),
        ("now", NOW),
    ],
)
def test_a_typed_moment_becomes_utc(text: str, expected: datetime) -> None:
    parsed = parse_instant(text, NOW, "--at")
    assert parsed == expected and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("yesterday-ish", "--at: bad time 'yesterday-ish'"),
        ("2026-13-01T10:00", "--at: bad time '2026-13-01T10:00': month must be in 1..12"),
        ("+99999999d", "--at: time '+99999999d' is out of range"),
        ("9999-12-31T23:00-05:00", "--at: time '9999-12-31T23:00-05:00' is out of range"),
        ("+3x", "--at: bad time '+3x': bad duration"),
    ],
)
def test_a_bad_or_out_of_range_moment_gets_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(TimeError) as caught:
        parse_instant(text, NOW, "--at")
    assert str(caught.value).startswith(message)
