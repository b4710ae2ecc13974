"""Checks that need the whole project folder, not one file: no silent drops, and references
between scenarios.

- A `notify_sales` step hands a lead to the owner the scoring file's routing picks. With no
  scoring file (so no routing) and no `default_owner` in the project file, nobody would get
  the hand-off: that is an error, not a silent drop.
- `exclusive_with` names other scenarios by id: an unknown id is a typo.
- Two files with one scenario id would fight over the same enrolments.
"""

from __future__ import annotations

from collections.abc import Sequence

from nurture.errors import Diagnostic
from nurture.hints import did_you_mean
from nurture.scenario.loader import LoadedScenario
from nurture.scenario.model import NotifySales
from nurture.scenario.projectfile import LoadedProject
from nurture.scenario.yamlsource import LineDict, LineList, parse_yaml


def check_project(scenarios: Sequence[LoadedScenario], has_routing: bool, project: LoadedProject) -> list[Diagnostic]:
    """Problems across the valid scenarios of one project folder.

    `has_routing`: the folder has a valid scoring file (whose routing always names owners).
    """
    problems: list[Diagnostic] = []
    default_owner = project.settings.default_owner
    ids: dict[str, LoadedScenario] = {}
    for loaded in scenarios:
        if loaded.id in ids:
            problems.append(
                Diagnostic(str(loaded.path), 1, f"scenario id '{loaded.id}' is also used by {ids[loaded.id].path}")
            )
        ids.setdefault(loaded.id, loaded)
    for loaded in scenarios:
        if not has_routing and default_owner is None:
            for step in loaded.scenario.steps:
                if isinstance(step, NotifySales):
                    problems.append(
                        Diagnostic(
                            str(loaded.path),
                            loaded.step_lines.get(step.id, 1),
                            f"step '{step.id}' hands the lead to sales, but nobody would receive it: "
                            "the project has no scoring file with routing",
                            "add scenarios/scoring.yaml with routing.owners, or a default_owner "
                            "(name, email) in scenarios/project.yaml",
                        )
                    )
        for other, line in _exclusive_lines(loaded):
            if other not in ids:
                problems.append(
                    Diagnostic(
                        str(loaded.path),
                        line,
                        f"exclusive_with names unknown scenario '{other}'",
                        did_you_mean(other, [i for i in ids if i != loaded.id]),
                    )
                )
    return problems


def _exclusive_lines(loaded: LoadedScenario) -> list[tuple[str, int]]:
    data, _ = parse_yaml(loaded.text, str(loaded.path))
    others = data.get("exclusive_with") if isinstance(data, LineDict) else None
    if not isinstance(others, LineList):
        return []
    return [(str(o), others.item_lines[i]) for i, o in enumerate(others)]
