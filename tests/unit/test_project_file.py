"""The project file: custom events declared once, lists, and the checks that use them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from nurture.jobs.catalog import check_file
from nurture.runtime.engine import start, step
from nurture.scenario.compiler import compile_scenario
from nurture.scenario.expr import EventRecord
from nurture.scenario.loader import check_scenario, load_scenario
from nurture.scoring.engine import CompiledScoring
from tests.conftest import MONDAY_9_UTC, lead

PROJECT = """\
project:
  events:
    login:
      description: The lead signed in to the trial
    workflow_created:
      properties: {plan: text, steps: number}
  lists:
    webinar_2026: {description: Registered at the spring webinar}
    customers: {suppress: true}
"""

ONBOARDING = """
id: onboarding
name: Onboarding
entry:
  lists: [webinar_2026]
  not_lists: [customers]
steps:
  - id: hello
    type: send_email
    template: hello
    subject: Hi
  - id: await_workflow
    type: wait_for
    event: workflow_created
    where: 'event.steps >= 3'
    timeout: 7d
    on_event: done
    on_timeout: nudge
  - id: nudge
    type: branch
    cases:
      - if: 'events.count("login", within="7d") >= 2'
        goto: done
    else: done
  - id: done
    type: exit
"""


def write_project(project: Callable[..., Path], scenario: str, project_text: str = PROJECT) -> Path:
    path = project(scenario)
    (path.parent / "project.yaml").write_text(project_text, encoding="utf-8")
    return path


def found(path: Path) -> list[str]:
    _, problems = check_file(path)
    return [str(d).replace(str(path), "FILE") for d in problems]


def test_declared_events_and_lists_validate_and_the_project_file_itself_is_valid(
    project: Callable[..., Path],
) -> None:
    path = write_project(project, ONBOARDING)
    assert found(path) == []
    assert found(path.parent / "project.yaml") == []


def test_an_unknown_custom_event_gets_did_you_mean_from_the_declared_ones(project: Callable[..., Path]) -> None:
    path = write_project(project, ONBOARDING.replace("event: workflow_created", "event: workflow_create"))
    assert (
        "FILE:13: step 'await_workflow' waits for unknown event 'workflow_create' — did you mean 'workflow_created'?"
        in found(path)
    )
    path = write_project(project, ONBOARDING.replace('count("login"', 'count("logn"'))
    assert any("counts unknown event 'logn' — did you mean 'login'?" in p for p in found(path))


def test_a_property_the_event_does_not_declare_is_pointed_at(project: Callable[..., Path]) -> None:
    path = write_project(project, ONBOARDING.replace("event.steps >= 3", "event.step >= 3"))
    assert any("event 'workflow_created' has no property 'step' — did you mean 'steps'?" in p for p in found(path))


def test_a_declared_number_property_compared_with_text_is_caught(project: Callable[..., Path]) -> None:
    path = write_project(project, ONBOARDING.replace("event.steps >= 3", 'event.steps >= "3"'))
    assert any("compares event.steps (a number) with the text '3'" in p for p in found(path))


def test_unknown_lists_in_entry_are_errors_with_a_hint(project: Callable[..., Path]) -> None:
    path = write_project(project, ONBOARDING.replace("lists: [webinar_2026]", "lists: [webinar_2025]"))
    assert any("entry uses unknown list 'webinar_2025' — did you mean 'webinar_2026'?" in p for p in found(path))


def test_an_undeclared_event_without_a_project_file_says_where_to_declare_it(project: Callable[..., Path]) -> None:
    path = project(ONBOARDING.replace("lists: [webinar_2026]\n  not_lists: [customers]\n", "source: [web]\n"))
    assert any(
        "waits for unknown event 'workflow_created' — declare your own events under 'events:' in "
        "scenarios/project.yaml" in p
        for p in found(path)
    )


def test_a_custom_event_fires_wait_for_when_sent_as_its_name_or_as_custom_with_a_name(
    project: Callable[..., Path],
) -> None:
    compiled = compile_scenario(load_scenario(write_project(project, ONBOARDING)))
    begin = MONDAY_9_UTC
    waiting = step(compiled, start(compiled, begin), lead(), [], begin).position
    assert waiting.state == "await_workflow"
    for event in (
        EventRecord("workflow_created", begin + timedelta(hours=1), {"steps": 4}),
        EventRecord("custom", begin + timedelta(hours=1), {"name": "workflow_created", "steps": 4}),
    ):
        result = step(compiled, waiting, lead(), [event], begin + timedelta(hours=2))
        assert "done" in result.entered, f"{event} did not end the wait"
    small = EventRecord("workflow_created", begin + timedelta(hours=1), {"steps": 1})
    result = step(compiled, waiting, lead(), [small], begin + timedelta(hours=2))
    assert result.position.state == "await_workflow"


def test_a_bad_project_file_is_reported_with_did_you_mean(project: Callable[..., Path]) -> None:
    path = write_project(project, ONBOARDING, PROJECT.replace("  lists:", "  list:"))
    problems = found(path.parent / "project.yaml")
    assert any("unknown key 'list'" in p and "did you mean 'lists'?" in p for p in problems), problems
    path = write_project(project, ONBOARDING, PROJECT.replace("    login:", "    click:"))
    assert any("event 'click' is built in" in p for p in found(path.parent / "project.yaml"))


def test_scoring_rules_score_declared_events(project: Callable[..., Path]) -> None:
    path = write_project(project, ONBOARDING)
    scoring = path.parent / "scoring.yaml"
    scoring.write_text(
        "scoring:\n  engagement:\n    - {name: logins, event: login, points: 5}\n"
        "  hot: {engagement: {A: 10}}\n  routing:\n    owners: [{name: Max, email: max@acme.example}]\n",
        encoding="utf-8",
    )
    loaded, problems = check_file(scoring)
    assert problems == [] and isinstance(loaded, CompiledScoring)
    result = loaded.evaluate({}, [EventRecord("custom", MONDAY_9_UTC, {"name": "login"})], MONDAY_9_UTC)
    assert result.engagement == 5
    scoring.write_text(scoring.read_text().replace("event: login", "event: logins"), encoding="utf-8")
    _, problems = check_file(scoring)
    assert any("scores unknown event 'logins' — did you mean 'login'?" in str(p) for p in problems)


def test_a_scoring_file_without_its_top_level_key_is_checked_as_a_scoring_file(project: Callable[..., Path]) -> None:
    path = project(ONBOARDING)
    scoring = path.parent / "scoring.yaml"
    scoring.write_text(
        "engagement:\n  - {name: clicks, event: click, points: 5}\n"
        "hot: {engagement: {A: 10}}\nrouting:\n  owners: [{name: Max, email: max@acme.example}]\n",
        encoding="utf-8",
    )
    loaded, problems = check_file(scoring)
    assert problems == [] and isinstance(loaded, CompiledScoring)
    scoring.write_text(scoring.read_text().replace("points: 5", "pointz: 5"), encoding="utf-8")
    _, problems = check_file(scoring)
    assert {p.line for p in problems} == {2}
    assert any("unknown key 'pointz'" in p.message and "did you mean 'points'?" in p.hint for p in problems)


def test_scenarios_load_without_a_project_file(project: Callable[..., Path]) -> None:
    loaded, problems = check_scenario(project("id: x\nname: X\nsteps:\n  - {id: a, type: exit}\n"))
    assert problems == [] and loaded is not None and loaded.project is not None
