"""The project file (`scenarios/project.yaml`): what all scenarios of a project share.

Custom events with their properties, static and suppression lists, the lead field that
picks an email's language, how names are written, holidays and company blackout periods
for send windows, UTM parameters, and the owner who
receives hand-offs when routing finds nobody. Every part is optional; a project without
the file gets the defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nurture.errors import Diagnostic
from nurture.hints import did_you_mean
from nurture.scenario.model import STEP_ID, Blackout
from nurture.scenario.yamlsource import LineDict, parse_yaml
from nurture.vocabulary import EVENT_TYPES

PROJECT_FILE_NAMES = ("project.yaml", "project.yml")
PropertyKind = Literal["text", "number", "boolean", "url", "time"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CustomEvent(_Strict):
    """A product-usage event (`login`, `workflow_created`, ...) the project sends to nurture."""

    description: str = ""
    properties: dict[str, PropertyKind] = Field(
        default_factory=dict, description="Property names and kinds: text, number, boolean, url, time."
    )


class ListSpec(_Strict):
    """A static list of leads, filled by imports (`nurture lists import NAME FILE`)."""

    description: str = ""
    suppress: bool = Field(
        default=False, description="Members never enter any scenario (customers, competitors, partners)."
    )


class DefaultOwner(_Strict):
    name: str
    email: str


class ProjectSettings(_Strict):
    language_field: str = Field(default="language", description="Lead field that picks an email's language variant.")
    default_language: str | None = Field(
        default=None, description="Variant for leads whose language has none (e.g. 'en' → welcome.en.html)."
    )
    name_order: Literal["auto", "given_first", "family_first"] = Field(
        default="auto",
        description="auto: family name first for Japanese leads (language ja or country JP); a lead's own "
        "`name_order` field wins.",
    )
    events: dict[str, CustomEvent] = Field(default_factory=dict, description="Custom events by name.")
    lists: dict[str, ListSpec] = Field(default_factory=dict, description="Static and suppression lists by name.")
    default_owner: DefaultOwner | None = Field(
        default=None, description="Receives hand-offs when the scoring file's routing finds no owner."
    )
    holidays: list[str] = Field(
        default_factory=list, description="Countries whose public holidays close every send window, e.g. [JP]."
    )
    blackouts: list[Blackout] = Field(default_factory=list, description="Company blackout periods (every year).")
    utm: dict[str, str] = Field(default_factory=dict, description="UTM parameters added to every tracked link.")

    @field_validator("events")
    @classmethod
    def _v_events(cls, value: dict[str, CustomEvent]) -> dict[str, CustomEvent]:
        import re

        for name in value:
            if not re.match(STEP_ID, name):
                raise ValueError(f"event name {name!r}: use lower case letters, digits and '_'")
            if name in EVENT_TYPES:
                raise ValueError(f"event '{name}' is built in; declare only your own events")
        return value

    def event_names(self) -> tuple[str, ...]:
        return (*EVENT_TYPES, *self.events)

    @property
    def suppression_lists(self) -> frozenset[str]:
        return frozenset(name for name, spec in self.lists.items() if spec.suppress)


class ProjectFile(_Strict):
    project: ProjectSettings


DEFAULTS = ProjectSettings()


@dataclass(frozen=True)
class LoadedProject:
    settings: ProjectSettings = DEFAULTS
    path: Path | None = None
    problems: list[Diagnostic] = field(default_factory=list)


def is_project_document(data: Any) -> bool:
    return isinstance(data, dict) and "project" in data and "steps" not in data


def check_project_data(data: LineDict, filename: str) -> tuple[ProjectSettings | None, list[Diagnostic]]:
    from nurture.scenario.loader import structural_diagnostic

    try:
        parsed = ProjectFile.model_validate(data)
    except ValidationError as exc:
        return None, [structural_diagnostic(filename, data, e, ProjectFile) for e in exc.errors()]
    problems = []
    for country in parsed.project.holidays:
        if not _holiday_country_known(country):
            line = data["project"].key_lines.get("holidays", 1)
            problems.append(Diagnostic(filename, line, f"no holiday calendar for {country!r}", "use a code like JP"))
    return (parsed.project if not problems else None), problems


def _holiday_country_known(code: str) -> bool:
    from nurture.timeutil import holiday_calendar

    return holiday_calendar(code) is not None


_CACHE: dict[tuple[str, int], LoadedProject] = {}


def project_file_in(folder: Path) -> Path | None:
    for name in PROJECT_FILE_NAMES:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def load_project(folder: Path) -> LoadedProject:
    """The project settings of a scenarios folder (the defaults when it has no project file;
    the defaults and the file's problems when the file is broken)."""
    path = project_file_in(folder)
    if path is None:
        return LoadedProject()
    try:
        stat = path.stat()
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return LoadedProject(DEFAULTS, path, [Diagnostic(str(path), 1, f"cannot read the project file: {exc}")])
    key = (str(path.resolve()), stat.st_mtime_ns)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    loaded = load_project_text(text, path)
    _CACHE[key] = loaded
    return loaded


def load_project_text(text: str, path: Path) -> LoadedProject:
    data, problems = parse_yaml(text, str(path))
    if problems:
        return LoadedProject(DEFAULTS, path, problems)
    if not isinstance(data, LineDict) or "project" not in data:
        return LoadedProject(DEFAULTS, path, [Diagnostic(str(path), 1, "a project file starts with 'project:'")])
    settings, problems = check_project_data(data, str(path))
    return LoadedProject(settings or DEFAULTS, path, problems)


def utm_for(scenario_id: str, scenario_utm: Mapping[str, str], project_utm: Mapping[str, str]) -> dict[str, str]:
    """A scenario's UTM parameters over the project's; the campaign defaults to the scenario id."""
    merged = {**project_utm, **scenario_utm}
    if merged and not {"campaign", "utm_campaign"} & set(merged):
        merged["campaign"] = scenario_id
    return merged


def unknown_event_hint(name: str, settings: ProjectSettings) -> str:
    hint = did_you_mean(name, settings.event_names())
    if hint.startswith("did you mean"):
        return hint
    return "declare your own events under 'events:' in scenarios/project.yaml"
