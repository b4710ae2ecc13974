"""Send-time optimisation: each lead's best hour, learned from people's opens and clicks, inside the window."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from nurture.runtime import effects as fx
from nurture.runtime.engine import FrequencyCap, start, step
from nurture.runtime.sendtime import (
    HourProfile,
    SendTimeView,
    best_hour,
    choose_send_time,
    hour_profile,
)
from nurture.scenario import graph
from nurture.scenario.compiler import CompiledScenario
from nurture.scenario.expr import EventRecord
from nurture.scoring.loader import load_scoring
from nurture.simulate import format_timeline, simulate
from nurture.timeutil import SendWindow
from tests.conftest import MONDAY_9_UTC, ROOT, lead

Build = Callable[..., CompiledScenario]

BERLIN = ZoneInfo("Europe/Berlin")
WORKDAYS = SendWindow(frozenset(range(5)), time(9, 0), time(17, 0))

SCENARIO = """
id: sto
name: Send time
send_window:
  days: [mon, tue, wed, thu, fri]
  start: "09:00"
  end: "17:00"
steps:
  - id: hello
    type: send_email
    template: hello
    subject: Hello
    send_time: optimal
    send_time_control: 0
  - id: done
    type: exit
"""


def opens_at(*local_hours: int, zone: ZoneInfo = BERLIN, kind: str = "open") -> list[EventRecord]:
    """One open on each of the past days at the given local hours (Feb 2026, before the sends)."""
    return [
        EventRecord(kind, datetime(2026, 2, 2 + i, hour, 15, tzinfo=zone).astimezone(UTC), {})
        for i, hour in enumerate(local_hours)
    ]


def profile(*hours: int, source: str = "") -> HourProfile:
    return hour_profile(opens_at(*hours), BERLIN, source)


def test_the_lead_gets_its_own_best_hour_on_the_first_window_day() -> None:
    arrived = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)  # Monday 08:00 in Berlin
    chosen = choose_send_time(arrived, WORKDAYS, BERLIN, SendTimeView(own=profile(14, 14, 15, 14)))
    assert chosen.hour == 14
    assert chosen.at == datetime(2026, 3, 2, 14, 0, tzinfo=BERLIN)
    assert "best hour 14:00 Europe/Berlin from the lead's own 4 opens and clicks" in chosen.why


def test_a_lead_that_arrives_during_its_best_hour_is_sent_to_at_once() -> None:
    arrived = datetime(2026, 3, 2, 14, 20, tzinfo=BERLIN)
    chosen = choose_send_time(arrived, WORKDAYS, BERLIN, SendTimeView(own=profile(14, 14, 14)))
    assert chosen.at == arrived


def test_a_lead_that_arrives_after_its_best_hour_waits_for_the_next_window_day() -> None:
    friday_evening = datetime(2026, 3, 6, 15, 0, tzinfo=BERLIN)
    chosen = choose_send_time(friday_evening, WORKDAYS, BERLIN, SendTimeView(own=profile(10, 10, 10)))
    assert chosen.at == datetime(2026, 3, 9, 10, 0, tzinfo=BERLIN)  # Monday


def test_a_best_hour_outside_the_window_becomes_the_nearest_busy_hour_inside_it() -> None:
    # Reads mail at 21:00 and, less, at 16:00: the window (9–17) allows 16:00, never 21:00.
    chosen = choose_send_time(
        datetime(2026, 3, 2, 8, 0, tzinfo=BERLIN), WORKDAYS, BERLIN, SendTimeView(own=profile(21, 21, 21, 21, 16))
    )
    assert chosen.hour == 16
    assert WORKDAYS.contains(chosen.at, BERLIN)


def test_without_enough_own_history_the_account_then_the_audience_decides() -> None:
    arrived = datetime(2026, 3, 2, 8, 0, tzinfo=BERLIN)
    account = profile(11, 11, 11, 11, 12, source="acme.example")
    audience = HourProfile(tuple(30.0 if h == 13 else 1.0 for h in range(24)), "")
    by_account = choose_send_time(arrived, WORKDAYS, BERLIN, SendTimeView(own=profile(16), account=account))
    assert by_account.hour == 11 and "its account's 5 opens and clicks (acme.example)" in by_account.why
    by_audience = choose_send_time(arrived, WORKDAYS, BERLIN, SendTimeView(own=profile(16), audience=audience))
    assert by_audience.hour == 13 and "the scenario audience's" in by_audience.why
    nothing = choose_send_time(arrived, WORKDAYS, BERLIN, SendTimeView(own=profile(16)))
    assert nothing.hour is None
    assert nothing.at == datetime(2026, 3, 2, 9, 0, tzinfo=BERLIN)
    assert "too little history (the lead has 1 opens and clicks; needs 3)" in nothing.why


def test_one_stray_hour_does_not_beat_a_busy_pair_of_neighbouring_hours() -> None:
    counts = [0.0] * 24
    counts[9], counts[14], counts[15] = 4, 3, 3
    assert best_hour(HourProfile(tuple(counts)), list(range(9, 17))) in (14, 15)


def test_hours_are_counted_in_the_zone_the_window_is_read_in() -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    events = opens_at(10, 10, 10, zone=tokyo)
    assert hour_profile(events, tokyo, "").counts[10] == 3
    assert hour_profile(events, BERLIN, "").counts[2] == 3  # 10:00 in Tokyo is 02:00 in Berlin (winter)


def test_the_runtime_defers_the_email_to_the_best_hour_and_sends_it_then(compile_text: Build) -> None:
    compiled = compile_text(SCENARIO)
    person = lead(timezone="Europe/Berlin")
    view = SendTimeView(own=profile(15, 15, 15))
    arrived = datetime(2026, 3, 2, 9, 30, tzinfo=BERLIN)
    first = step(compiled, start(compiled, arrived), person, [], arrived, send_times=view)
    assert not [e for e in first.effects if isinstance(e, fx.SendEmail)]
    assert first.position.due_at == datetime(2026, 3, 2, 15, 0, tzinfo=BERLIN)
    assert any("best hour 15:00" in d.text for d in first.decisions)
    due = first.position.due_at
    assert due is not None
    second = step(compiled, first.position, person, [], due, send_times=view)
    (sent,) = [e for e in second.effects if isinstance(e, fx.SendEmail)]
    assert sent.at == due


def test_the_graph_marks_the_step_and_the_schema_field_exists(compile_text: Build) -> None:
    compiled = compile_text(SCENARIO)
    assert "at each lead's best hour" in graph.to_mermaid(compiled.scenario.steps)
    assert compiled.reads_events


def test_simulate_shows_the_chosen_time_and_why_from_bot_free_history(compile_text: Build) -> None:
    compiled = compile_text(SCENARIO)
    begin = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    history = opens_at(11, 11, 11, 11)
    # A scanner opening everything at 09:00 would pull the hour to 9 if it counted.
    scanner = [
        EventRecord("open", datetime(2026, 2, 10 + i, 9, 0, tzinfo=BERLIN).astimezone(UTC), {"user_agent": "Barracuda"})
        for i in range(8)
    ]
    scoring = load_scoring(ROOT / "scenarios" / "scoring.yaml")
    assert scoring.classify(scanner[:1])[0].kind == "machine"
    timeline = simulate(
        compiled, lead(timezone="Europe/Berlin"), history + scanner, begin, timedelta(days=2), scoring=scoring
    )
    text = format_timeline(timeline, compiled)
    assert "send time 2026-03-02 10:00 UTC: best hour 11:00 Europe/Berlin from the lead's own 4 opens" in text
    assert "✉ email 'hello'" in text
    assert timeline.sent == 1
    sent_at = next(e.at for e in timeline.entries if e.text.startswith("✉"))
    assert sent_at == datetime(2026, 3, 2, 11, 0, tzinfo=BERLIN)
    assert MONDAY_9_UTC.date() == sent_at.date()


def test_a_stable_share_of_leads_is_sent_as_the_window_allows_to_measure_the_lift(compile_text: Build) -> None:
    compiled = compile_text(SCENARIO.replace("send_time_control: 0", "send_time_control: 0.3"))
    view = SendTimeView(own=profile(15, 15, 15))
    arrived = datetime(2026, 3, 2, 9, 30, tzinfo=BERLIN)
    timings = {}
    for i in range(1000):
        person = lead(f"l{i}@example.com", timezone="Europe/Berlin")
        result = step(compiled, start(compiled, arrived), person, [], arrived, send_times=view)
        sent = [e for e in result.effects if isinstance(e, fx.SendEmail)]
        timings[person.key] = sent[0].timing if sent else "waiting"
        again = step(compiled, start(compiled, arrived), person, [], arrived, send_times=view)
        assert bool([e for e in again.effects if isinstance(e, fx.SendEmail)]) == bool(sent)
    control = sum(1 for t in timings.values() if t == "control")
    assert set(timings.values()) == {"control", "waiting"}
    assert 250 <= control <= 350


def test_a_send_held_back_by_the_frequency_cap_goes_at_the_best_hour_once_the_cap_frees(compile_text: Build) -> None:
    compiled = compile_text(SCENARIO)
    person = lead(timezone="Europe/Berlin")
    view = SendTimeView(own=profile(15, 15, 15))
    arrived = datetime(2026, 3, 2, 15, 10, tzinfo=BERLIN)  # Monday, in the best hour
    # Three emails on Friday morning: the cap (3 a week) frees up next Friday at 09:00.
    earlier = [datetime(2026, 2, 27, 9, 0, tzinfo=BERLIN)] * 3
    result = step(
        compiled,
        start(compiled, arrived),
        person,
        [],
        arrived,
        recent_sends=earlier,
        cap=FrequencyCap(),
        send_times=view,
    )
    assert not [e for e in result.effects if isinstance(e, fx.SendEmail)]
    assert result.position.due_at == datetime(2026, 3, 6, 15, 0, tzinfo=BERLIN)  # Friday at 15:00, not 09:00
