"""Scenario files of the wrong shape or size get `file:line` errors, never a traceback."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from nurture.scenario.loader import check_scenario

GOOD = """\
id: s
name: S
entry:
  when: 'lead.source == "web"'
exit_when: [unsubscribed]
lead_fields: [plan]
send_window:
  days: [mon]
  start: "08:00"
  end: "18:00"
steps:
  - id: hello
    type: send_email
    template: hello
    subject: Hi
  - id: pause
    type: wait
    duration: 2d
  - id: branch
    type: branch
    cases:
      - if: "score.total > 3"
        goto: hello
    else: end
  - id: end
    type: exit
"""

WRONG = ["5", "true", "null", "[1, 2]", "{a: 1}", '"text"', "3.5"]


@pytest.mark.parametrize(
    ("key", "value"),
    list(
        itertools.product(["steps", "entry", "exit_when", "lead_fields", "send_window", "id", "name", "migrate"], WRONG)
    ),
)
def test_a_top_level_key_of_the_wrong_type_is_reported_with_its_line(
    project: Callable[..., Path], key: str, value: str
) -> None:
    lines = GOOD.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:")) if f"\n{key}:" in GOOD else None
    if index is None:
        text = GOOD + f"{key}: {value}\n"
        line = len(lines) + 1
    else:
        end = next((i for i in range(index + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
        text = "\n".join([*lines[:index], f"{key}: {value}", *lines[end:]]) + "\n"
        line = index + 1
    _, problems = check_scenario(project(text))
    if problems:  # a value of the wrong type; some (a quoted name) are right
        assert any(p.line == line for p in problems), problems


def test_the_scenario_the_wrong_types_are_put_into_is_valid(project: Callable[..., Path]) -> None:
    assert check_scenario(project(GOOD))[1] == []


@pytest.mark.parametrize(
    ("key", "value"), list(itertools.product(["duration", "template", "subject", "cases", "type"], WRONG))
)
def test_a_step_key_of_the_wrong_type_is_reported_not_raised(
    project: Callable[..., Path], key: str, value: str
) -> None:
    text = GOOD.replace(
        "    duration: 2d", f"    duration: 2d\n    {key}: {value}" if key != "duration" else f"    {key}: {value}"
    )
    loaded, problems = check_scenario(project(text))
    assert loaded is None and problems


@pytest.mark.parametrize("value", ["5", "true"])
def test_steps_that_are_not_a_list_are_reported_on_their_line(project: Callable[..., Path], value: str) -> None:
    path = project(f"id: s\nname: S\nsteps: {value}\n")
    loaded, problems = check_scenario(path)
    assert loaded is None
    assert [str(p) for p in problems] == [f"{path}:3: steps: Input should be a valid list"]


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed(project: Callable[..., Path]) -> None:
    path = project("id: s\nname: S\nsteps: []\n")
    path.write_text("# padding\n" * 200_000, encoding="utf-8")
    loaded, problems = check_scenario(path)
    assert loaded is None
    assert [str(p) for p in problems] == [
        f"{path}:1: the file is 2.0 MB, over the limit of 1 MB — a scenario is a few kilobytes; "
        "split a very large one into several files"
    ]


def test_a_document_built_from_many_aliases_is_refused(project: Callable[..., Path]) -> None:
    laughs = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    laughs += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 12)]
    path = project("id: s\nname: S\n" + "\n".join(laughs) + "\nsteps: []\n")
    loaded, problems = check_scenario(path)
    assert loaded is None and "more than 100 aliases" in str(problems[0])
