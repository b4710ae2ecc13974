"""The scenarios a daemon runs: current versions from `scenarios/`, older ones from the store."""

from __future__ import annotations

from pathlib import Path

from nurture.errors import NurtureError, ValidationFailed
from nurture.project import check_file
from nurture.scenario.compiler import CompiledScenario, compile_scenario
from nurture.scenario.loader import load_scenario_text, scenario_files
from nurture.scoring.engine import CompiledScoring
from nurture.store.repo import Store


class Catalog:
    def __init__(self, store: Store, scenarios_dir: Path, templates_dir: Path) -> None:
        self.store = store
        self.scenarios_dir = scenarios_dir
        self.templates_dir = templates_dir
        self.current: dict[str, CompiledScenario] = {}
        self.scoring: CompiledScoring | None = None
        self._versions: dict[tuple[str, str], CompiledScenario] = {}

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
        if problems:
            raise ValidationFailed(problems)
        for scenario_id, compiled in found.items():
            previous = self.current.get(scenario_id)
            if previous is not None and previous.version == compiled.version:
                continue
            moved = self.store.register_version(
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
            stored = self.store.version_source(scenario_id, version)
            if stored is None:
                raise NurtureError(f"scenario '{scenario_id}' version {version} is not in the store")
            path, source = stored
            compiled = compile_scenario(load_scenario_text(source, Path(path), self.templates_dir))
            self._versions[(scenario_id, version)] = compiled
        return compiled
