"""Japan-ready send windows: public holidays and company blackout periods keep emails back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from nurture.runtime.engine import start, step
from nurture.scenario.compiler import CompiledScenario, compile_scenario
from nurture.scenario.loader import check_scenario, load_scenario
from tests.conftest import lead

TOKYO = ZoneInfo("Asia/Tokyo")
SCENARIO = """
id: seminar
name: Seminar follow-up
send_window:
  start: "09:00"
  end: "18:00"
  timezone: Asia/Tokyo
  holidays: [JP]
  blackouts:
    - {name: お盆, from: "08-13", to: "08-16"}
    - {name: 年末年始, from: "12-28", to: "01-04"}
steps:
  - id: thanks
    type: send_email
    template: hello
    subject: ありがとうございました
"""


def first_send(compiled: CompiledScenario, at: datetime) -> datetime:
    """When the first email goes out for a lead enrolled at `at` (stepping when it is due)."""
    position = start(compiled, at)
    now = at
    for _ in range(5):
        result = step(compiled, position, lead(), [], now)
        if result.effects:
            return result.effects[0].at
        assert result.position.due_at is not None
        position, now = result.position, result.position.due_at
    raise AssertionError("never sent")


def local(year: int, month: int, day: int, hour: int = 10) -> datetime:
    return datetime(year, month, day, hour, tzinfo=TOKYO).astimezone(UTC)


def test_a_japanese_public_holiday_defers_to_the_next_working_day(
    compile_text: Callable[..., CompiledScenario],
) -> None:
    compiled = compile_text(SCENARIO)
    # 2026-05-04 to 05-06 are holidays (みどりの日, こどもの日, 振替休日); Thursday 05-07 is the next working day.
    assert first_send(compiled, local(2026, 5, 4)) == local(2026, 5, 7, 9)
    # Coming of Age Day, Monday 2026-01-12.
    assert first_send(compiled, local(2026, 1, 12)) == local(2026, 1, 13, 9)


def test_blackouts_span_the_new_year(compile_text: Callable[..., CompiledScenario]) -> None:
    compiled = compile_text(SCENARIO)
    assert first_send(compiled, local(2026, 12, 28)) == local(2027, 1, 5, 9)
    assert first_send(compiled, local(2026, 8, 14)) == local(2026, 8, 17, 9)


def test_simulate_explains_a_holiday_deferral(compile_text: Callable[..., CompiledScenario]) -> None:
    compiled = compile_text(SCENARIO)
    result = step(compiled, start(compiled, local(2026, 5, 4)), lead(), [], local(2026, 5, 4))
    assert any("public holiday (JP): みどりの日" in d.text for d in result.decisions), result.decisions


def test_project_wide_blackouts_apply_to_every_scenario(project: Callable[..., Path]) -> None:
    path = project(SCENARIO.replace('    - {name: お盆, from: "08-13", to: "08-16"}\n', ""))
    (path.parent / "project.yaml").write_text(
        'project:\n  blackouts:\n    - {name: Golden Week, from: "04-29", to: "05-06"}\n', encoding="utf-8"
    )
    compiled = compile_scenario(load_scenario(path))
    assert first_send(compiled, local(2026, 4, 30)) == local(2026, 5, 7, 9)


def test_bad_blackout_days_and_unknown_holiday_countries_are_reported(project: Callable[..., Path]) -> None:
    path = project(SCENARIO.replace('from: "08-13"', 'from: "13-08"'))
    _, found = check_scenario(path)
    assert any("bad day '13-08'" in str(d) for d in found), found
    path = project(SCENARIO)
    (path.parent / "project.yaml").write_text("project:\n  holidays: [XX]\n", encoding="utf-8")
    _, found = check_scenario(path.parent / "project.yaml")
    assert any("no holiday calendar for 'XX'" in str(d) for d in found), found
