"""Loading and validating scenario files, reporting every problem with `file:line`."""

from __future__ import annotations

import hashlib
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from nurture.errors import Diagnostic, ExpressionError, ValidationFailed
from nurture.hints import did_you_mean, hint_with
from nurture.scenario import graph as journey
from nurture.scenario.expr import (
    BASE_NAMES,
    EVENTS_METHODS,
    SCORE_FIELDS,
    Expression,
)
from nurture.scenario.model import (
    EXIT_SHORTCUTS,
    GOAL_SHORTCUTS,
    Branch,
    Scenario,
    SendEmail,
    Split,
    Step,
    Update,
    WaitFor,
)
from nurture.scenario.templates import TemplateStore, check_template_source
from nurture.scenario.typecheck import comparison_problems, kinds_for
from nurture.scenario.yamlsource import LineDict, LineList, line_of, parse_yaml, too_large
from nurture.vocabulary import OPTIONAL_FIELDS, READ_ONLY_FIELDS, STANDARD_FIELDS

if typing.TYPE_CHECKING:
    from nurture.scenario.projectfile import ProjectSettings

_STEP = TypeAdapter(Step)


@dataclass(frozen=True)
class LoadedScenario:
    """A valid scenario with where it came from and its content version."""

    scenario: Scenario
    path: Path
    version: str
    templates: TemplateStore
    step_lines: dict[str, int] = field(default_factory=dict)
    text: str = ""
    project: ProjectSettings | None = None
    warnings: list[Diagnostic] = field(default_factory=list)
    variants: dict[str, dict[str, str]] = field(default_factory=dict)  # template → {language: variant}

    @property
    def id(self) -> str:
        return self.scenario.id


def content_version(text: str) -> str:
    """A scenario version: the first 12 hex digits of the SHA-256 of the file's text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def default_templates_dir(scenario_path: Path) -> Path:
    sibling = scenario_path.resolve().parent.parent / "email_templates"
    return sibling if sibling.is_dir() else Path("email_templates")


def scenario_files(paths: Iterable[Path]) -> list[Path]:
    """Expand folders into their `*.yaml` / `*.yml` files, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            found.append(path)
    return found


def load_scenario(path: Path, templates_dir: Path | None = None) -> LoadedScenario:
    """Load one scenario file; raise ValidationFailed listing every problem."""
    loaded, problems = check_scenario(path, templates_dir)
    if problems or loaded is None:
        raise ValidationFailed(problems)
    return loaded


def check_scenario(path: Path, templates_dir: Path | None = None) -> tuple[LoadedScenario | None, list[Diagnostic]]:
    """Load and check one scenario file: the scenario when valid, and every problem found."""
    name = str(path)
    try:
        oversized = too_large(path.stat().st_size, name)
        if oversized:
            return None, [oversized]
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Diagnostic(name, 1, "no such file")]
    except UnicodeDecodeError as exc:
        return None, [Diagnostic(name, 1, f"file is not UTF-8 ({exc.reason})")]
    return check_scenario_text(text, path, templates_dir or default_templates_dir(path))


def load_scenario_text(text: str, path: Path, templates_dir: Path) -> LoadedScenario:
    """Load a scenario from its text (e.g. an older version kept in the store)."""
    loaded, problems = check_scenario_text(text, path, templates_dir)
    if problems or loaded is None:
        raise ValidationFailed(problems)
    return loaded


def check_scenario_text(text: str, path: Path, templates_dir: Path) -> tuple[LoadedScenario | None, list[Diagnostic]]:
    from nurture.scenario.projectfile import check_project_data, is_project_document, load_project

    name = str(path)
    data, problems = parse_yaml(text, name)
    if not problems and isinstance(data, LineDict) and is_project_document(data):
        return None, check_project_data(data, name)[1]
    if data is None and not problems:
        problems = [Diagnostic(name, 1, "the file is empty", "a scenario needs id, name and steps")]
    if problems:
        return None, problems
    if not isinstance(data, LineDict):
        return None, [Diagnostic(name, 1, "a scenario file must be a mapping of keys to values")]
    project = load_project(path.parent).settings
    checker = _Checker(name, data, TemplateStore(templates_dir), project)
    scenario = checker.run()
    if checker.problems or scenario is None:
        return None, sorted(set(checker.problems), key=lambda d: (d.line, d.message))
    return (
        LoadedScenario(
            scenario,
            path,
            content_version(text),
            checker.templates,
            checker.step_lines,
            text,
            project,
            sorted(set(checker.warnings), key=lambda d: (d.line, d.message)),
            checker.variants,
        ),
        [],
    )


class _Checker:
    """Structural checks (pydantic) then semantic checks (references, graph, expressions)."""

    def __init__(self, filename: str, data: LineDict, templates: TemplateStore, project: ProjectSettings) -> None:
        self.file = filename
        self.data = data
        self.templates = templates
        self.project = project
        self.problems: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.step_lines: dict[str, int] = {}
        self.variants: dict[str, dict[str, str]] = {}
        self.events = project.event_names()

    def report(self, line: int, message: str, hint: str = "") -> None:
        self.problems.append(Diagnostic(self.file, line, message, hint))

    def run(self) -> Scenario | None:
        scenario: Scenario | None = None
        try:
            scenario = Scenario.model_validate(self.data)
        except ValidationError as exc:
            for error in exc.errors():
                self._structural(error)
        steps = self._steps_that_parse()
        declared = self.data.get("lead_fields")
        declared = declared if isinstance(declared, list) else []
        fields = set(STANDARD_FIELDS) | set(OPTIONAL_FIELDS) | {f for f in declared if isinstance(f, str)}
        self._semantic(steps, fields)
        return scenario

    # -- structure -------------------------------------------------------------------------

    def _structural(self, error: Any) -> None:
        self.problems.append(structural_diagnostic(self.file, self.data, error, Scenario))

    def _steps_that_parse(self) -> list[tuple[Step, int]]:
        raw = self.data.get("steps")
        if not isinstance(raw, LineList):
            return []
        steps: list[tuple[Step, int]] = []
        seen: dict[str, int] = {}
        for index, item in enumerate(raw):
            line = raw.item_lines[index]
            step_id = item.get("id") if isinstance(item, dict) else None
            if isinstance(step_id, str):
                if step_id in seen:
                    self.report(line, f"duplicate step id '{step_id}'", f"first used on line {seen[step_id]}")
                seen.setdefault(step_id, line)
                self.step_lines.setdefault(step_id, line)
            try:
                steps.append((_STEP.validate_python(item), line))
            except ValidationError:
                continue
        self._all_ids = set(seen)
        return steps

    # -- meaning ---------------------------------------------------------------------------

    def _semantic(self, steps: list[tuple[Step, int]], fields: set[str]) -> None:
        ids: set[str] = getattr(self, "_all_ids", set())
        by_id = {s.id: s for s, _ in steps}
        raw_steps = self.data.get("steps")
        order = [
            item.get("id") if isinstance(item, dict) else None
            for item in (raw_steps if isinstance(raw_steps, list) else [])
        ]
        for step, line in steps:
            following = _following_step(step, order, by_id)
            for label, target in journey.step_targets(step):
                if target not in ids:
                    self.report(
                        _target_line(self.data, line, label, target),
                        f"step '{step.id}' refers to unknown step '{target}' ({label})",
                        did_you_mean(target, ids),
                    )
            self._check_step(step, line, fields, following)
        raw_steps = self.data.get("steps")
        if isinstance(raw_steps, list) and len(steps) == len(raw_steps) and steps and not self.problems:
            self._check_graph([s for s, _ in steps])
        self._check_top_level(fields, ids)

    def _check_step(self, step: Step, line: int, fields: set[str], following: Step | None = None) -> None:
        if isinstance(step, SendEmail):
            self._check_template(step, line, fields)
        elif isinstance(step, WaitFor):
            if step.event not in self.events:
                self.report(
                    _line_near(self.data, line, "event"),
                    f"step '{step.id}' waits for unknown event '{step.event}'",
                    unknown_event_hint(step.event, self.project),
                )
            if step.where:
                self._check_expression(
                    step.where, _line_near(self.data, line, "where"), fields, event=True, event_type=step.event
                )
        elif isinstance(step, Branch):
            raw_cases = _get_step(self.data, step.id).get("cases", [])
            for index, case in enumerate(step.cases):
                case_line = raw_cases.item_lines[index] if isinstance(raw_cases, LineList) else line
                self._check_expression(case.if_, case_line, fields)
        elif isinstance(step, Update):
            for name in step.set:
                if name in READ_ONLY_FIELDS:
                    self.report(line, f"step '{step.id}' cannot set '{name}'", "it is managed by nurture")
                elif name not in fields:
                    self.report(
                        line,
                        f"step '{step.id}' sets unknown lead field '{name}'",
                        hint_with(did_you_mean(name, fields), "(declare custom fields in lead_fields)"),
                    )
        elif isinstance(step, Split):
            self._check_split(step, line, fields, following)

    def _check_split(self, step: Split, line: int, fields: set[str], following: Step | None) -> None:
        names = [v.name for v in step.variants if v.name]
        if len(names) != len(set(names)):
            self.report(line, f"step '{step.id}' has two variants with the same name")
        raw_variants = _get_step(self.data, step.id).get("variants")
        for index, variant in enumerate(step.variants):
            variant_line = raw_variants.item_lines[index] if isinstance(raw_variants, LineList) else line
            if not variant.overrides:
                continue
            if not isinstance(following, SendEmail):
                self.report(
                    variant_line,
                    f"arm '{step.arm_names()[index]}' of step '{step.id}' changes the next email, "
                    "but the step after the split does not send one",
                    "put the send_email right after the split (or its `next:`), or give the arm a goto",
                )
                continue
            raw_variant = raw_variants[index] if isinstance(raw_variants, LineList) else None
            keys = raw_variant.key_lines if isinstance(raw_variant, LineDict) else {}
            if variant.template:
                self._check_template_name(step.id, variant.template, keys.get("template", variant_line), fields)
            if variant.subject:
                subject_line = keys.get("subject", variant_line)
                self.problems += check_template_source(variant.subject, self.file, fields, line=subject_line - 1)
        if step.experiment is not None:
            self._check_experiment(step, line, fields)

    def _check_experiment(self, step: Split, line: int, fields: set[str]) -> None:
        experiment = step.experiment
        assert experiment is not None
        raw = _get_step(self.data, step.id).get("experiment")
        at = raw.key_lines if isinstance(raw, LineDict) else {}
        goal_line = at.get("goal", line)
        goal = experiment.goal
        if isinstance(goal, str):
            if goal not in GOAL_SHORTCUTS:
                self.report(
                    goal_line,
                    f"experiment of step '{step.id}' has unknown goal '{goal}'",
                    hint_with(did_you_mean(goal, GOAL_SHORTCUTS), "or {event: TYPE, where: CONDITION}"),
                )
            elif goal == "click" and any(v.holdout for v in step.variants):
                self.report(
                    goal_line,
                    f"experiment of step '{step.id}' counts clicks, but its holdout arm gets no email to click",
                    "measure a holdout with goal: became_hot, converted or an event",
                )
        else:
            raw_goal = raw.get("goal") if isinstance(raw, LineDict) else None
            goal_at = raw_goal.key_lines if isinstance(raw_goal, LineDict) else {}
            if goal.event not in self.events:
                self.report(
                    goal_at.get("event", goal_line),
                    f"experiment of step '{step.id}' counts unknown event '{goal.event}'",
                    unknown_event_hint(goal.event, self.project),
                )
            if goal.where:
                self._check_expression(
                    goal.where, goal_at.get("where", goal_line), fields, event=True, event_type=goal.event
                )
        if all(v.holdout for v in step.variants):
            self.report(
                line, f"every arm of step '{step.id}' is a holdout", "an experiment needs an arm that gets something"
            )

    def _check_template(self, step: SendEmail, line: int, fields: set[str]) -> None:
        variants = self.templates.variants(step.template)
        self.variants[step.template] = variants
        if variants or isinstance(step.subject, dict):
            self._check_languages(step, line, fields, variants)
            return
        if self._check_template_name(step.id, step.template, _line_near(self.data, line, "template"), fields):
            self._check_unsubscribe(step, step.template, line)
        subject_line = _line_near(self.data, line, "subject")
        assert isinstance(step.subject, str)
        self.problems += check_template_source(step.subject, self.file, fields, line=subject_line - 1)

    def _check_template_name(self, step_id: str, template: str, line: int, fields: set[str]) -> bool:
        """Whether the template exists (reported when not), with its variables checked."""
        if not self.templates.exists(template):
            available = (
                sorted(p.stem for p in self.templates.root.glob("*.html")) if self.templates.root.is_dir() else []
            )
            self.report(
                line,
                f"step '{step_id}' uses missing template '{template}' "
                f"(no {self.templates.root / (template + '.html')})",
                did_you_mean(template, available),
            )
            return False
        self.problems += self.templates.check(template, fields)
        return True

    def _check_languages(self, step: SendEmail, line: int, fields: set[str], variants: dict[str, str]) -> None:
        """A send in several languages: every language with a subject has a body and the
        other way round, and leads of any other language get a fallback."""
        subject_line = _line_near(self.data, line, "subject")
        subjects = step.subject if isinstance(step.subject, dict) else {}
        default = self.project.default_language
        has_plain = self.templates.exists(step.template)
        for language in sorted(subjects):
            if language != "default" and language not in variants and not (has_plain and language == default):
                self.report(
                    subject_line,
                    f"step '{step.id}' has a '{language}' subject but no template "
                    f"{self.templates.root / f'{step.template}.{language}.html'}",
                    did_you_mean(language, variants) if variants else "add the template, or remove the subject",
                )
        if subjects and "default" not in subjects:
            for language in variants:
                if language not in subjects:
                    self.report(
                        subject_line,
                        f"step '{step.id}' has a template for '{language}' but no '{language}' subject",
                        "add it to the subject mapping, or a 'default' subject",
                    )
        fallback = variants.get(default or "") or (step.template if has_plain else None)
        if fallback is None:
            self.report(
                _line_near(self.data, line, "template"),
                f"step '{step.id}': leads in other languages have no '{step.template}' email",
                f"add {self.templates.root / (step.template + '.html')}, or set default_language in "
                "scenarios/project.yaml to one of: " + ", ".join(variants),
            )
        names = [*variants.values(), *([step.template] if has_plain else [])]
        for name in names:
            self.problems += self.templates.check(name, fields)
            self._check_unsubscribe(step, name, line)
        for language, text in subjects.items() if subjects else [("", str(step.subject))]:
            at = _line_near_nested(self.data, line, "subject", language) if language else subject_line
            self.problems += check_template_source(text, self.file, fields, line=at - 1)

    def _check_unsubscribe(self, step: SendEmail, template: str, line: int) -> None:
        if self.templates.links_unsubscribe(template) is False:
            self.warnings.append(
                Diagnostic(
                    self.file,
                    _line_near(self.data, line, "template"),
                    f"warning: template '{template}' (step '{step.id}') has no unsubscribe link",
                    'add <a href="{{ unsubscribe_url }}">Unsubscribe</a> to it or to its layout\'s footer',
                )
            )

    def _check_expression(
        self, source: str, line: int, fields: set[str], *, event: bool = False, event_type: str = ""
    ) -> None:
        try:
            expression = Expression(source)
        except ExpressionError as exc:
            self.report(line, f"bad expression: {exc}")
            return
        usage = expression.usage
        allowed = set(BASE_NAMES) | ({"event"} if event else set())
        for name in sorted(usage.names - allowed):
            self.report(line, f"expression uses unknown name '{name}'", did_you_mean(name, allowed))
        for name in sorted(usage.lead_fields - fields):
            self.report(
                line,
                f"expression uses lead.{name}, which no lead field provides",
                hint_with(did_you_mean(name, fields), "(declare custom fields in lead_fields)"),
            )
        for name in sorted(usage.score_fields - set(SCORE_FIELDS)):
            self.report(line, f"expression uses unknown score.{name}", did_you_mean(name, SCORE_FIELDS))
        for name in sorted(usage.event_methods - set(EVENTS_METHODS)):
            self.report(line, f"expression uses unknown events.{name}", did_you_mean(name, EVENTS_METHODS))
        for name in sorted(usage.event_types - set(self.events)):
            self.report(line, f"expression counts unknown event '{name}'", unknown_event_hint(name, self.project))
        declared = self.project.events.get(event_type)
        if declared is not None and declared.properties:
            known = set(declared.properties) | {"type", "at", "name"}
            for prop in sorted(_event_props(usage) - known):
                self.report(
                    line,
                    f"event '{event_type}' has no property '{prop}'",
                    did_you_mean(prop, declared.properties),
                )
        props = declared.properties if declared is not None else None
        for message, hint in comparison_problems(usage, kinds_for(props)):
            self.report(line, message, hint)

    def _check_top_level(self, fields: set[str], ids: set[str]) -> None:
        entry = self.data.get("entry")
        if isinstance(entry, LineDict) and isinstance(entry.get("when"), str):
            self._check_expression(entry["when"], entry.key_lines["when"], fields)
        if isinstance(entry, LineDict):
            for key in ("lists", "not_lists"):
                names = entry.get(key)
                if isinstance(names, LineList):
                    for index, name in enumerate(names):
                        if isinstance(name, str) and name not in self.project.lists:
                            self.report(
                                names.item_lines[index],
                                f"entry uses unknown list '{name}'",
                                hint_with(
                                    did_you_mean(name, self.project.lists) if self.project.lists else "",
                                    "(declare lists under 'lists:' in scenarios/project.yaml)",
                                ),
                            )
        own = self.data.get("id")
        others = self.data.get("exclusive_with")
        if isinstance(others, LineList) and own in others:
            self.report(others.line, "a scenario cannot exclude itself", "list other scenarios' ids")
        exits = self.data.get("exit_when")
        if isinstance(exits, LineList):
            for index, item in enumerate(exits):
                if isinstance(item, str) and item not in EXIT_SHORTCUTS:
                    if item.isidentifier() and "." not in item:
                        self.report(
                            exits.item_lines[index],
                            f"unknown exit condition '{item}'",
                            hint_with(did_you_mean(item, EXIT_SHORTCUTS), "or write an expression"),
                        )
                    else:
                        self._check_expression(item, exits.item_lines[index], fields)
        migrate = self.data.get("migrate")
        if isinstance(migrate, LineDict):
            for old, new in migrate.items():
                if isinstance(new, str) and new not in ids:
                    self.report(
                        migrate.key_lines[old],
                        f"migration moves '{old}' to unknown step '{new}'",
                        did_you_mean(new, ids),
                    )

    def _check_graph(self, steps: list[Step]) -> None:
        for step_id in journey.unreachable(steps):
            self.report(
                self.step_lines.get(step_id, 1),
                f"step '{step_id}' can never be reached",
                "nothing leads to it: add a goto/next or remove it",
            )
        for loop in journey.waitless_loops(steps):
            first = min(loop, key=lambda s: self.step_lines.get(s, 0))
            self.report(
                self.step_lines.get(first, 1),
                f"steps {', '.join(sorted(loop))} form a loop without a wait",
                "a lead would spin (and could be emailed) endlessly: add a wait or wait_for",
            )


def structural_diagnostic(filename: str, data: Any, error: Any, root: Any) -> Diagnostic:
    """A pydantic validation error of a YAML file as a file:line diagnostic with a hint."""
    loc = tuple(error["loc"])
    kind = error["type"]
    line = line_of(data, loc)
    where = _describe(loc, data)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        return Diagnostic(
            filename, line, f"unknown key '{key}'{where}", did_you_mean(key, _allowed_keys(loc, data, root))
        )
    if kind == "missing":
        return Diagnostic(filename, line_of(data, loc[:-1]), f"missing key '{loc[-1]}'{where}")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = _get(data, (*loc, "type"))
        choices = _step_types()
        if tag is None:
            return Diagnostic(filename, line, f"step has no 'type'{where}", "expected one of: " + ", ".join(choices))
        return Diagnostic(
            filename,
            line_of(data, (*loc, "type")),
            f"unknown step type '{tag}'{where}",
            did_you_mean(str(tag), choices),
        )
    message = str(error["msg"]).removeprefix("Value error, ")
    message, _, hint = message.partition(" — ")
    return Diagnostic(filename, line, f"{_place(loc, data)}: {message}", hint)


def _place(loc: tuple[Any, ...], data: Any) -> str:
    """Where a problem is, as an author names it: `step 'pause': duration`, not `steps.3.duration`."""
    parts = _clean(loc, data)
    if len(parts) >= 2 and parts[0] == "steps" and isinstance(parts[1], int):
        step = _get(data, parts[:2])
        name = (
            f"step '{step['id']}'"
            if isinstance(step, dict) and isinstance(step.get("id"), str)
            else (f"step #{parts[1] + 1}")
        )
        rest = ".".join(str(p) for p in parts[2:])
        return f"{name}: {rest}" if rest else name
    return ".".join(str(p) for p in parts) or "file"


def _event_props(usage: Any) -> set[str]:
    return set(usage.event_fields)


def unknown_event_hint(name: str, project: ProjectSettings) -> str:
    from nurture.scenario.projectfile import unknown_event_hint as hint

    return hint(name, project)


def _line_near_nested(data: LineDict, step_line: int, key: str, inner: str) -> int:
    """Line of `key: {inner: ...}` inside the step that starts on `step_line`."""
    for item in data.get("steps") or []:
        if isinstance(item, LineDict) and item.line == step_line:
            nested = item.get(key)
            if isinstance(nested, LineDict):
                return nested.key_lines.get(inner, item.key_lines.get(key, step_line))
            return item.key_lines.get(key, step_line)
    return step_line


def _get(data: Any, loc: Sequence[Any]) -> Any:
    current = data
    for part in loc:
        if (isinstance(current, dict) and part in current) or (
            isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        ):
            current = current[part]
        elif isinstance(current, dict | list):
            continue
        else:
            return None
    return current


def _following_step(step: Step, order: list[Any], by_id: dict[str, Step]) -> Step | None:
    """The step a lead reaches after `step` when nothing jumps: its `next`, else the one below it."""
    if step.next is not None:
        return by_id.get(step.next)
    if step.id in order:
        index = order.index(step.id)
        if index + 1 < len(order) and isinstance(order[index + 1], str):
            return by_id.get(order[index + 1])
    return None


def _get_step(data: LineDict, step_id: str) -> LineDict:
    for item in data.get("steps") or []:
        if isinstance(item, LineDict) and item.get("id") == step_id:
            return item
    return LineDict()


def _line_near(data: LineDict, step_line: int, key: str) -> int:
    """Line of `key` inside the step that starts on `step_line`."""
    for item in data.get("steps") or []:
        if isinstance(item, LineDict) and item.line == step_line:
            return item.key_lines.get(key, step_line)
    return step_line


def _target_line(data: LineDict, step_line: int, key: str, target: str) -> int:
    """Line of the reference to `target` under `key` (for cases/variants: the item's goto)."""
    for item in data.get("steps") or []:
        if isinstance(item, LineDict) and item.line == step_line:
            nested = item.get(key)
            if isinstance(nested, LineList):
                for entry in nested:
                    if isinstance(entry, LineDict) and entry.get("goto") == target:
                        return entry.key_lines["goto"]
            return item.key_lines.get(key, step_line)
    return step_line


def _clean(loc: tuple[Any, ...], data: Any) -> list[Any]:
    """`loc` without pydantic's internal parts (union tags, validator names)."""
    cleaned: list[Any] = []
    current = data
    for part in loc:
        if isinstance(current, dict) and part in current:
            cleaned.append(part)
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int):
            cleaned.append(part)
            current = current[part] if 0 <= part < len(current) else None
    return cleaned


def _describe(loc: tuple[Any, ...], data: Any) -> str:
    """' in step 'x'' when the problem sits inside a step."""
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        step = _get(data, loc[:2])
        if isinstance(step, dict) and isinstance(step.get("id"), str):
            return f" in step '{step['id']}'"
        return f" in step #{loc[1] + 1}"
    return ""


def _step_types() -> list[str]:
    members = typing.get_args(typing.get_args(Step)[0])
    return [typing.get_args(m.model_fields["type"].annotation)[0] for m in members]


def _allowed_keys(loc: tuple[Any, ...], data: Any, root: Any = Scenario) -> list[str]:
    """Keys the model accepts at the mapping that holds loc[-1]."""
    model: Any = root
    for part in _clean(loc[:-1], data):
        model = _descend(model, part, data, loc)
    model = _unwrap(model)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or name for name, f in model.model_fields.items()]
    return []


def _descend(model: Any, part: Any, data: Any, loc: tuple[Any, ...]) -> Any:
    model = _unwrap(model)
    if isinstance(part, int):
        args = typing.get_args(model)
        item = _unwrap(args[0]) if args else None
        if item is not None and typing.get_origin(item) in (typing.Union, types.UnionType):
            index = loc.index(part) if part in loc else -1
            tag = _get(data, (*loc[: index + 1], "type")) if index >= 0 else None
            for member in typing.get_args(item):
                if typing.get_args(member.model_fields["type"].annotation)[0] == tag:
                    return member
        return item
    if isinstance(model, type) and issubclass(model, BaseModel):
        for name, info in model.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
    return None


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) == 1:
            return _unwrap(members[0])
    return tp
