"""No silent drops: a hand-off nobody would receive is an error; references between scenarios are checked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nurture.scenario.loader import load_scenario
from nurture.scenario.projectcheck import check_project
from nurture.scenario.projectfile import load_project

HAND_OFF = """
id: hand_off
name: Hand-off
exclusive_with: [reengagment]
steps:
  - id: tell_sales
    type: notify_sales
    message: Ready
"""
REENGAGE = """
id: reengagement
name: Re-engagement
steps:
  - id: bye
    type: exit
"""


def test_a_hand_off_without_routing_or_default_owner_is_an_error(project: Callable[..., Path]) -> None:
    path = project(HAND_OFF)
    other = project(REENGAGE, name="r.yaml")
    loaded = [load_scenario(path), load_scenario(other)]
    problems = [str(p).replace(str(path), "FILE") for p in check_project(loaded, False, load_project(path.parent))]
    assert (
        "FILE:5: step 'tell_sales' hands the lead to sales, but nobody would receive it: the project has no "
        "scoring file with routing — add scenarios/scoring.yaml with routing.owners, or a default_owner "
        "(name, email) in scenarios/project.yaml"
    ) in problems
    assert "FILE:3: exclusive_with names unknown scenario 'reengagment' — did you mean 'reengagement'?" in problems
    assert not any("tell_sales" in p for p in map(str, check_project(loaded, True, load_project(path.parent))))
    (path.parent / "project.yaml").write_text(
        "project:\n  default_owner: {name: Desk, email: desk@acme.example}\n", encoding="utf-8"
    )
    assert not any("tell_sales" in str(p) for p in check_project(loaded, False, load_project(path.parent)))
