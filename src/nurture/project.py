"""The files of a project's `scenarios/` folder: scenarios, and at most one scoring file."""

from __future__ import annotations

from pathlib import Path

from nurture.errors import Diagnostic
from nurture.scenario.loader import LoadedScenario, check_scenario, default_templates_dir
from nurture.scenario.yamlsource import LineDict, parse_yaml
from nurture.scoring.engine import CompiledScoring
from nurture.scoring.loader import check_scoring_data, is_scoring_document


def check_file(
    path: Path, templates_dir: Path | None = None
) -> tuple[LoadedScenario | CompiledScoring | None, list[Diagnostic]]:
    """A scenario or the scoring model in `path`, and every problem found."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, UnicodeDecodeError):
        return check_scenario(path, templates_dir)
    data, problems = parse_yaml(text, str(path))
    if not problems and isinstance(data, LineDict) and is_scoring_document(data):
        return check_scoring_data(data, str(path))
    return check_scenario(path, templates_dir or default_templates_dir(path))


def find_scoring(folder: Path, templates_dir: Path | None = None) -> CompiledScoring | None:
    """The valid scoring model among the files of `folder`, if there is one."""
    found = find_scoring_file(folder, templates_dir)
    return found[1] if found else None


def find_scoring_file(folder: Path, templates_dir: Path | None = None) -> tuple[Path, CompiledScoring] | None:
    """The valid scoring file among the files of `folder` and its model, if there is one."""
    from nurture.scenario.loader import scenario_files

    for path in scenario_files([folder]):
        loaded, _ = check_file(path, templates_dir)
        if isinstance(loaded, CompiledScoring):
            return path, loaded
    return None
