"""Experiments in scenario files: validation, schema, graph, and the arm each lead takes."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from nurture.errors import ValidationFailed
from nurture.experiments.goals import goal_reached, human_events
from nurture.runtime import effects as fx
from nurture.runtime.arms import ExperimentView
from nurture.runtime.engine import COMPLETED, start, step
from nurture.scenario import graph
from nurture.scenario.compiler import CompiledScenario
from nurture.scenario.expr import EventRecord
from nurture.scenario.loader import load_scenario
from nurture.scenario.model import Scenario
from nurture.scoring.loader import load_scoring
from nurture.simulate import format_timeline, simulate
from tests.conftest import MONDAY_9_UTC, ROOT, lead

Build = Callable[..., CompiledScenario]
Write = Callable[..., Path]

TEMPLATES = {
    "hello": '<p>Hello {{ lead.first_name }}</p><a href="{{ unsubscribe_url }}">unsubscribe</a>',
    "again": "<p>Again, {{ lead.first_name }}</p>",
    "short": "<p>Short one, {{ lead.first_name }}</p>",
}

EXPERIMENT = """
id: trial
name: Trial
send_window:
  days: [mon, tue, wed, thu, fri, sat, sun]
  start: "00:00"
  end: "23:59"
steps:
  - id: subject_test
    type: split
    experiment:
      goal: click
      within: 7d
      method: msprt
      alpha: 0.05
      min_per_arm: 200
      max_duration: 30d
    variants:
      - name: plain
        weight: 1
      - name: short
        weight: 1
        template: short
        subject: "Quick question, {{ lead.first_name }}"
  - id: hello
    type: send_email
    template: hello
    subject: Hello
  - id: pause
    type: wait
    duration: 3d
  - id: done
    type: exit
"""

HOLDOUT = """
id: lift
name: Lift
send_window:
  days: [mon, tue, wed, thu, fri, sat, sun]
  start: "00:00"
  end: "23:59"
steps:
  - id: measure
    type: split
    experiment:
      goal: converted
      within: 30d
      method: bayesian
      threshold: 0.9
      max_duration: 60d
    variants:
      - {name: nurture, weight: 9, goto: hello}
      - {name: holdout, weight: 1, holdout: true}
      - {name: direct, weight: 2, goto: handoff}
  - id: hello
    type: send_email
    template: hello
    subject: Hello
    next: done
  - id: handoff
    type: notify_sales
  - id: done
    type: exit
"""


def problems(project: Write, text: str) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        load_scenario(project(text, TEMPLATES))
    return [str(d) for d in caught.value.diagnostics]


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.strip("\n").splitlines(), 1) if needle in line)


# -- validation --------------------------------------------------------------------------------


def test_a_valid_experiment_loads(compile_text: Build) -> None:
    compiled = compile_text(EXPERIMENT, TEMPLATES)
    split = compiled.splits["subject_test"]
    assert split.arms == ("plain", "short")
    assert split.key is not None and split.key.startswith("trial/subject_test/")
    assert split.plan is not None and split.plan.min_per_arm == 200
    assert split.goal is not None and split.goal.kind == "click" and split.goal.within == timedelta(days=7)
    assert compiled.arm_overrides == {"hello": "subject_test"}


def test_an_unknown_goal_is_reported_on_its_line_with_a_suggestion(project: Write) -> None:
    text = EXPERIMENT.replace("goal: click", "goal: clik")
    (found,) = problems(project, text)
    assert f":{line_of(text, 'goal: clik')}: experiment of step 'subject_test' has unknown goal 'clik'" in found
    assert "did you mean 'click'?" in found


def test_an_event_goal_names_a_known_event_and_a_valid_condition(project: Write) -> None:
    text = EXPERIMENT.replace(
        "goal: click", "goal:\n        event: page_viw\n        where: 'event.url == \"/pricing\" and lead.budgett > 0'"
    )
    found = problems(project, text)
    assert any(
        f":{line_of(text, 'event: page_viw')}: experiment of step 'subject_test' counts unknown event 'page_viw'" in p
        and "did you mean 'page_view'?" in p
        for p in found
    ), found
    assert any(f":{line_of(text, 'where:')}: expression uses lead.budgett" in p for p in found), found


def test_clicks_cannot_measure_a_holdout(project: Write) -> None:
    text = HOLDOUT.replace("goal: converted", "goal: click")
    (found,) = problems(project, text)
    assert f":{line_of(text, 'goal: click')}:" in found
    assert "holdout arm gets no email" in found


def test_settings_of_the_other_method_are_refused(project: Write) -> None:
    text = EXPERIMENT.replace("alpha: 0.05", "threshold: 0.95")
    (found,) = problems(project, text)
    assert "'threshold' and 'prior' belong to method: bayesian" in found
    assert f":{line_of(text, 'experiment:')}:" in found


def test_an_unknown_experiment_key_gets_a_suggestion(project: Write) -> None:
    text = EXPERIMENT.replace("min_per_arm: 200", "min_per_arms: 200")
    (found,) = problems(project, text)
    assert f":{line_of(text, 'min_per_arms')}: unknown key 'min_per_arms'" in found
    assert "did you mean 'min_per_arm'?" in found


def test_experiment_arms_need_names_and_the_window_must_fit_the_duration(project: Write) -> None:
    unnamed = EXPERIMENT.replace("      - name: plain\n        weight: 1\n", "      - weight: 1\n")
    assert any("every arm of an experiment needs a name" in p for p in problems(project, unnamed))
    short = EXPERIMENT.replace("max_duration: 30d", "max_duration: 5d")
    assert any("max_duration must be longer than 'within'" in p for p in problems(project, short))


def test_an_arm_that_changes_the_next_email_needs_an_email_after_the_split(project: Write) -> None:
    text = EXPERIMENT.replace(
        "  - id: hello\n    type: send_email",
        "  - id: first\n    type: wait\n    duration: 1d\n  - id: hello\n    type: send_email",
    )
    (found,) = problems(project, text)
    assert f":{line_of(text, '- name: short')}: arm 'short' of step 'subject_test' changes the next email" in found


def test_an_arm_template_must_exist(project: Write) -> None:
    text = EXPERIMENT.replace("template: short", "template: shrt")
    (found,) = problems(project, text)
    assert f":{line_of(text, 'template: shrt')}: step 'subject_test' uses missing template 'shrt'" in found
    assert "did you mean 'short'?" in found


def test_an_arm_is_a_path_or_a_change_or_a_holdout_not_two(project: Write) -> None:
    text = HOLDOUT.replace(
        "{name: holdout, weight: 1, holdout: true}", "{name: holdout, weight: 1, holdout: true, goto: hello}"
    )
    assert any("a holdout arm gets nothing" in p for p in problems(project, text))


def test_the_json_schema_describes_experiments_and_send_times() -> None:
    schema = json.dumps(Scenario.model_json_schema(by_alias=True))
    for word in ("experiment", "msprt", "bayesian", "min_per_arm", "max_duration", "holdout", "send_time", "optimal"):
        assert f'"{word}"' in schema, word


def test_the_graph_shows_the_experiment_and_every_arm(compile_text: Build) -> None:
    steps = compile_text(HOLDOUT, TEMPLATES).scenario.steps
    mermaid = graph.to_mermaid(steps)
    assert "experiment: converted within 30d, Bayesian P(best)≥0.9, ≥100/arm, ≤60d" in mermaid
    assert '-->|"nurture 75%"| s_hello' in mermaid
    assert '-->|"holdout 8% holdout"| s__end' in mermaid
    assert '-->|"direct 17%"| s_handoff' in mermaid
    dot = graph.to_dot(compile_text(EXPERIMENT, TEMPLATES).scenario.steps)
    assert '"subject_test" -> "hello" [label="short 50% (template short, subject)"]' in dot
    assert "mSPRT α=0.05" in dot


def test_the_sample_scenarios_still_load() -> None:
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        if path.stem != "scoring":
            load_scenario(path)


# -- the runtime --------------------------------------------------------------------------------


def first_walk(compiled: CompiledScenario, email: str, view: ExperimentView | None = None) -> list[fx.Effect]:
    kwargs = {"experiments": view} if view is not None else {}
    return step(compiled, start(compiled, MONDAY_9_UTC), lead(email), [], MONDAY_9_UTC, **kwargs).effects  # type: ignore[arg-type]


def assignment(effects: list[fx.Effect]) -> fx.AssignArm:
    (assigned,) = [e for e in effects if isinstance(e, fx.AssignArm)]
    return assigned


def test_leads_are_assigned_by_weight_and_always_to_the_same_arm(compile_text: Build) -> None:
    compiled = compile_text(HOLDOUT, TEMPLATES)
    emails = [f"lead{i}@example.com" for i in range(2000)]
    arms = [assignment(first_walk(compiled, e)).arm for e in emails]
    assert arms == [assignment(first_walk(compiled, e)).arm for e in emails]
    shares = {arm: arms.count(arm) / len(arms) for arm in ("nurture", "holdout", "direct")}
    assert shares["nurture"] == pytest.approx(9 / 12, abs=0.03)
    assert shares["holdout"] == pytest.approx(1 / 12, abs=0.02)
    assert shares["direct"] == pytest.approx(2 / 12, abs=0.025)
    assert all(assignment(first_walk(compiled, e)).randomised for e in emails[:50])


def test_a_holdout_lead_gets_nothing_and_leaves(compile_text: Build) -> None:
    compiled = compile_text(HOLDOUT, TEMPLATES)
    email = next(
        f"h{i}@example.com"
        for i in range(500)
        if assignment(first_walk(compiled, f"h{i}@example.com")).arm == "holdout"
    )
    result = step(compiled, start(compiled, MONDAY_9_UTC), lead(email), [], MONDAY_9_UTC)
    assert not [e for e in result.effects if isinstance(e, fx.SendEmail | fx.NotifySales)]
    assert result.position.status == COMPLETED
    (finished,) = [e for e in result.effects if isinstance(e, fx.Finished)]
    assert "holdout" in finished.reason


def test_arms_change_the_template_and_subject_of_the_email_after_the_split(compile_text: Build) -> None:
    compiled = compile_text(EXPERIMENT, TEMPLATES)
    seen = {}
    for i in range(40):
        effects = first_walk(compiled, f"x{i}@example.com")
        (sent,) = [e for e in effects if isinstance(e, fx.SendEmail)]
        seen[assignment(effects).arm] = (sent.template, sent.subject)
    assert seen == {"plain": ("hello", "Hello"), "short": ("short", "Quick question, {{ lead.first_name }}")}


def test_once_decided_new_leads_take_the_winner_and_are_not_counted(compile_text: Build) -> None:
    compiled = compile_text(EXPERIMENT, TEMPLATES)
    key = compiled.splits["subject_test"].key
    assert key is not None
    view = ExperimentView(routes={key: "short"})
    for i in range(30):
        effects = first_walk(compiled, f"new{i}@example.com", view)
        assigned = assignment(effects)
        assert (assigned.arm, assigned.randomised) == ("short", False)
        assert [e.template for e in effects if isinstance(e, fx.SendEmail)] == ["short"]


def test_a_lead_already_in_an_arm_continues_on_it_after_the_decision(compile_text: Build) -> None:
    """A lead assigned 'plain' whose email waited for the send window still gets the plain
    email after 'short' won, and is not assigned again."""
    text = EXPERIMENT.replace('start: "00:00"\n  end: "23:59"', 'start: "10:00"\n  end: "16:00"')
    compiled = compile_text(text, TEMPLATES)
    key = compiled.splits["subject_test"].key
    assert key is not None
    email = next(
        f"p{i}@example.com" for i in range(100) if assignment(first_walk(compiled, f"p{i}@example.com")).arm == "plain"
    )
    waiting = step(compiled, start(compiled, MONDAY_9_UTC), lead(email), [], MONDAY_9_UTC)
    assert waiting.position.state == "hello" and not [e for e in waiting.effects if isinstance(e, fx.SendEmail)]
    later = MONDAY_9_UTC + timedelta(hours=2)
    view = ExperimentView(routes={key: "short"}, arms={key: "plain"})
    resumed = step(compiled, waiting.position, lead(email), [], later, experiments=view)
    assert [e.template for e in resumed.effects if isinstance(e, fx.SendEmail)] == ["hello"]
    assert not [e for e in resumed.effects if isinstance(e, fx.AssignArm)]


def test_a_lead_that_enters_again_lands_in_the_arm_it_had(compile_text: Build) -> None:
    compiled = compile_text(HOLDOUT, TEMPLATES)
    key = compiled.splits["measure"].key
    assert key is not None
    view = ExperimentView(routes={key: "direct"}, arms={key: "nurture"})
    effects = first_walk(compiled, "again@example.com", view)
    assert [e.template for e in effects if isinstance(e, fx.SendEmail)] == ["hello"]
    assert not [e for e in effects if isinstance(e, fx.AssignArm)]


def test_editing_an_experiment_makes_it_a_new_one(compile_text: Build) -> None:
    before = compile_text(EXPERIMENT, TEMPLATES).splits["subject_test"].key
    after = compile_text(EXPERIMENT.replace("alpha: 0.05", "alpha: 0.01"), TEMPLATES).splits["subject_test"].key
    assert before != after


def test_simulate_reports_the_arm_a_lead_would_get(compile_text: Build) -> None:
    compiled = compile_text(HOLDOUT, TEMPLATES)
    timeline = simulate(compiled, lead("sim@example.com"), [], MONDAY_9_UTC, timedelta(days=3))
    text = format_timeline(timeline, compiled)
    arm = assignment(first_walk(compiled, "sim@example.com")).arm
    assert f"experiment: arm '{arm}' by weight (experiment running)" in text
    key = compiled.splits["measure"].key
    assert key is not None
    decided = simulate(
        compiled,
        lead("sim@example.com"),
        [],
        MONDAY_9_UTC,
        timedelta(days=3),
        experiments=ExperimentView(routes={key: "direct"}),
    )
    assert "arm 'direct': the experiment is over and new leads take it" in format_timeline(decided, compiled)


# -- goals ---------------------------------------------------------------------------------------


def test_only_a_persons_click_on_this_journeys_email_within_the_window_reaches_the_goal(compile_text: Build) -> None:
    compiled = compile_text(EXPERIMENT, TEMPLATES)
    goal = compiled.splits["subject_test"].goal
    assert goal is not None
    sent_at = MONDAY_9_UTC
    scanner = EventRecord(
        "click",
        sent_at + timedelta(seconds=2),
        {"scenario": "trial", "send": 1, "sent_at": sent_at.isoformat(), "link": "a"},
    )
    other_journey = EventRecord("click", sent_at + timedelta(hours=1), {"scenario": "welcome", "send": 2})
    late = EventRecord("click", sent_at + timedelta(days=8), {"scenario": "trial", "send": 1})
    person = EventRecord("click", sent_at + timedelta(hours=3), {"scenario": "trial", "send": 1, "link": "a"})
    scoring = load_scoring(ROOT / "scenarios" / "scoring.yaml")
    bots_only = human_events(scoring, [scanner, other_journey, late])
    assert goal_reached(goal, "trial", sent_at, bots_only) is None
    assert goal_reached(goal, "trial", sent_at, human_events(scoring, [scanner, person])) == person.at


def test_event_and_lifecycle_goals(compile_text: Build) -> None:
    text = EXPERIMENT.replace("goal: click", "goal: {event: page_view, where: 'event.url == \"/pricing\"'}")
    goal = compile_text(text, TEMPLATES).splits["subject_test"].goal
    assert goal is not None
    events = [
        EventRecord("page_view", MONDAY_9_UTC + timedelta(hours=1), {"url": "/blog"}),
        EventRecord("page_view", MONDAY_9_UTC + timedelta(hours=2), {"url": "/pricing"}),
    ]
    assert goal_reached(goal, "trial", MONDAY_9_UTC, events) == events[1].at
    converted = compile_text(HOLDOUT, TEMPLATES).splits["measure"].goal
    assert converted is not None
    stages = [("hot", MONDAY_9_UTC + timedelta(days=3)), ("customer", MONDAY_9_UTC + timedelta(days=20))]
    assert goal_reached(converted, "lift", MONDAY_9_UTC, [], stages) == stages[1][1]
    assert goal_reached(converted, "lift", MONDAY_9_UTC, [], [("customer", MONDAY_9_UTC + timedelta(days=31))]) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("alpha: 0.05", "alpha: 0.7"), "alpha: Input should be less than 0.5"),
        (("min_per_arm: 200", "min_per_arm: 3"), "min_per_arm: Input should be greater than or equal to 10"),
        (("max_duration: 30d", "max_duration: soon"), "bad duration 'soon'"),
        (("method: msprt", "method: frequentist"), "method: Input should be 'msprt' or 'bayesian'"),
        (
            ("weight: 1\n      - name: short", "weight: -1\n      - name: short"),
            "weight: Input should be greater than 0",
        ),
    ],
)
def test_hostile_experiment_settings_are_refused_with_the_field_named(
    project: Write, change: tuple[str, str], message: str
) -> None:
    text = EXPERIMENT.replace(*change)
    assert text != EXPERIMENT
    found = problems(project, text)
    assert any(message in p for p in found), found


def test_a_bayesian_prior_must_be_two_positive_numbers(project: Write) -> None:
    text = HOLDOUT.replace("threshold: 0.9", "threshold: 0.9\n      prior: [0, 5]")
    assert any("a Beta prior needs two positive numbers" in p for p in problems(project, text))


def test_an_owner_must_be_an_email_address(project: Write) -> None:
    text = EXPERIMENT.replace("name: Trial\n", "name: Trial\nowner: marketing team\n")
    assert any("owner" in p for p in problems(project, text))
