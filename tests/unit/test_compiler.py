"""The compiler: one shared transitions machine per scenario version, and its diagrams."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from transitions.core import MachineError

from nurture.scenario.compiler import CompiledScenario, Turn, compile_scenario
from nurture.scenario.expr import EventRecord, EventsView, Record
from nurture.scenario.graph import END, edges, to_dot, to_mermaid
from nurture.scenario.loader import load_scenario
from tests.conftest import MONDAY_9_UTC
from tests.unit.test_runtime import BRANCHY, SPLIT, WAIT_FOR_CLICK

ROOT = Path(__file__).resolve().parents[2]


def transitions_of(compiled: CompiledScenario) -> set[tuple[str, str, str]]:
    found = set()
    for name, event in compiled.machine.events.items():
        for source, transitions in event.transitions.items():
            for transition in transitions:
                found.add((source, name, transition.dest))
    return found


def test_wait_for_compiles_to_event_and_timeout_transitions(
    compile_text: Callable[..., CompiledScenario],
) -> None:
    compiled = compile_text(WAIT_FOR_CLICK)
    assert set(compiled.machine.states) == {"hello", "await_click", "nudge", "clicked", "done", END}
    assert transitions_of(compiled) == {
        ("hello", "advance", "await_click"),
        ("await_click", "event", "clicked"),
        ("await_click", "timeout", "nudge"),
        ("nudge", "advance", "done"),
        ("clicked", "advance", "done"),
        ("done", "advance", END),
    }


def test_branch_cases_become_ordered_conditional_transitions(
    compile_text: Callable[..., CompiledScenario],
) -> None:
    compiled = compile_text(BRANCHY.replace("name: Branchy", "name: Branchy\nlead_fields: [track]"))
    route = compiled.machine.events["advance"].transitions["route"]
    assert [t.dest for t in route] == ["big", "browsing", "small"]
    assert [len(t.conditions) for t in route] == [1, 1, 0]


def _through_the_library(compiled: CompiledScenario, state: str, trigger: str, turn: Turn) -> str:
    compiled.cursor.state = state
    compiled.machine.events[trigger].trigger(compiled.cursor, turn)
    return compiled.cursor.state


def _turn(fields: dict[str, Any], views: int, arm: str) -> Turn:
    events = [EventRecord("page_view", MONDAY_9_UTC - timedelta(hours=h)) for h in range(views)]
    context = {"lead": Record(fields), "events": EventsView(events, MONDAY_9_UTC)}
    return Turn(context, arm=arm, explain=True)


@pytest.mark.parametrize("text", [BRANCHY.replace("name: Branchy", "name: Branchy\nlead_fields: [track]"), SPLIT])
def test_stepping_takes_the_transition_the_machine_would_take(
    compile_text: Callable[..., CompiledScenario], text: str
) -> None:
    compiled = compile_text(text)
    leads: list[dict[str, Any]] = [
        {"company_size": 500, "industry": "SaaS"},
        {"company_size": 500, "industry": "Retail"},
        {"company_size": 20, "industry": "SaaS"},
        {"company_size": "many", "industry": "SaaS"},  # a case that cannot be evaluated
        {},
    ]
    for state in [*compiled.steps, END]:
        for trigger in ("advance", "event", "timeout"):
            for fields in leads:
                for views in (0, 3):
                    for arm in ("a", "b", ""):
                        ours, theirs = _turn(fields, views, arm), _turn(fields, views, arm)
                        try:
                            expected = _through_the_library(compiled, state, trigger, theirs)
                        except (KeyError, MachineError):  # a trigger the machine has nowhere, or not here
                            with pytest.raises(MachineError):
                                compiled.fire(state, trigger, ours)
                            continue
                        assert compiled.fire(state, trigger, ours) == expected
                        assert (ours.chosen, ours.errors, ours.failed) == (theirs.chosen, theirs.errors, theirs.failed)


def test_one_machine_per_version_is_shared(project: Callable[..., Path]) -> None:
    path = project(WAIT_FOR_CLICK)
    before = compile_scenario(load_scenario(path))
    assert compile_scenario(load_scenario(path)) is before
    path.write_text(path.read_text() + "\n# changed\n")
    after = compile_scenario(load_scenario(path))
    assert after is not before and after.version != before.version


def test_diagrams_show_every_step_and_edge() -> None:
    loaded = load_scenario(ROOT / "scenarios" / "whitepaper_nurture.yaml", ROOT / "email_templates")
    steps = loaded.scenario.steps
    mermaid = to_mermaid(steps)
    dot = to_dot(steps)
    for step in steps:
        assert f"    s_{step.id}" in mermaid and f'    "{step.id}" [' in dot
    for source, _, target in edges(steps):
        assert f"s_{source} -->" in mermaid and f'"{source}" -> "{target}"' in dot
    assert 's_await_case_study_click -->|"no click in 3d"| s_case_study_reminder' in mermaid
