"""The catalog of loaded scenarios: the files of a project's `scenarios/` folder (scenarios,
and at most one scoring file), their current versions, and older versions from the store."""

from __future__ import annotations

from pathlib import Path

from nurture.errors import Diagnostic, NurtureError, ValidationFailed
from nurture.scenario.compiler import CompiledScenario, compile_scenario
from nurture.scenario.loader import (
    LoadedScenario,
    check_scenario,
    default_templates_dir,
    load_scenario_text,
    scenario_files,
)
from nurture.scenario.projectcheck import check_project
from nurture.scenario.projectfile import load_project
from nurture.scenario.yamlsource import LineDict, parse_yaml
from nurture.scoring.engine import CompiledScoring
from nurture.scoring.loader import check_scoring_data, is_scoring_document
from nurture.store import Store


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
    for path in scenario_files([folder]):
        loaded, _ = check_file(path, templates_dir)
        if isinstance(loaded, CompiledScoring):
            return path, loaded
    return None


class Catalog:
    def __init__(self, store: Store, scenarios_dir: Path, templates_dir: Path) -> None:
        self.store = store
        self.scenarios_dir = scenarios_dir
        self.templates_dir = templates_dir
        self.current: dict[str, CompiledScenario] = {}
        self.scoring: CompiledScoring | None = None
        self._versions: dict[tuple[str, str], CompiledScenario] = {}
        self.name_order = "auto"

    def reload(self) -> list[str]:
        """(Re)load the scenario files; a file that fails validation is refused as a whole.

        Returns one message per registered change (new versions, migrated enrolments).
        """
        notes: list[str] = []
        problems = []
        found: dict[str, CompiledScenario] = {}
        scoring: CompiledScoring | None = None
        for path in scenario_files([self.scenarios_dir]):
            loaded, diagnostics = check_file(path, self.templates_dir)
            if diagnostics or loaded is None:
                problems += diagnostics
                continue
            if isinstance(loaded, CompiledScoring):
                if scoring is not None:
                    raise NurtureError(f"{path}: a second scoring file; keep one per project")
                scoring = loaded
                continue
            compiled = compile_scenario(loaded)
            if compiled.id in found:
                raise NurtureError(
                    f"{path}: scenario id '{compiled.id}' is also used by {found[compiled.id].loaded.path}"
                )
            found[compiled.id] = compiled
        if not problems and found:
            project = load_project(self.scenarios_dir)
            problems = check_project([c.loaded for c in found.values()], scoring is not None, project)
            self.name_order = project.settings.name_order
        if problems:
            raise ValidationFailed(problems)
        for scenario_id, compiled in found.items():
            previous = self.current.get(scenario_id)
            if previous is not None and previous.version == compiled.version:
                continue
            moved = self.store.versions.register(
                scenario_id,
                compiled.version,
                str(compiled.loaded.path),
                compiled.loaded.text,
                compiled.scenario.migrate,
            )
            notes.append(
                f"{scenario_id}: version {compiled.version}" + (f", {moved} enrolment(s) migrated" if moved else "")
            )
            self._versions[(scenario_id, compiled.version)] = compiled
        self.current = found
        self.scoring = scoring
        return notes

    def get(self, scenario_id: str, version: str) -> CompiledScenario:
        compiled = self._versions.get((scenario_id, version))
        if compiled is None:
            stored = self.store.versions.source(scenario_id, version)
            if stored is None:
                raise NurtureError(f"scenario '{scenario_id}' version {version} is not in the store")
            path, source = stored
            compiled = compile_scenario(load_scenario_text(source, Path(path), self.templates_dir))
            self._versions[(scenario_id, version)] = compiled
        return compiled
