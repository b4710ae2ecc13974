"""Loading and checking the scoring file, with file:line messages like scenarios."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nurture.errors import Diagnostic, ExpressionError, ValidationFailed
from nurture.hints import did_you_mean, hint_with
from nurture.scenario.expr import Expression
from nurture.scenario.loader import structural_diagnostic
from nurture.scenario.typecheck import comparison_problems, kinds_for
from nurture.scenario.yamlsource import LineDict, LineList, line_of, parse_yaml, too_large
from nurture.scoring.bots import MachineData, MachineDataError, parse_machine_data
from nurture.scoring.engine import CompiledScoring
from nurture.scoring.model import ScoringFile
from nurture.vocabulary import OPTIONAL_FIELDS, STANDARD_FIELDS

# Keys only a scoring file has: a file with them but without the top-level `scoring:` key
# is a scoring file that forgot it, not a scenario with unknown keys.
_SCORING_KEYS = frozenset({"fit", "engagement", "hot", "routing", "grades", "half_life", "bots"})


def is_scoring_document(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    return "scoring" in data or ("steps" not in data and len(_SCORING_KEYS & set(data)) >= 2)


@lru_cache(maxsize=1)
def shipped_machine_data() -> MachineData:
    """The address ranges and user agents of scanners and proxies that ship with nurture."""
    text = resources.files("nurture.scoring").joinpath("data/machines.yaml").read_text(encoding="utf-8")
    data, problems = parse_yaml(text, "nurture/scoring/data/machines.yaml")
    if problems:
        raise ValidationFailed(problems)
    return parse_machine_data(data)


def load_machine_data(path: Path) -> MachineData:
    """A machine-data file of the user's own (same format as the shipped one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFailed([Diagnostic(str(path), 1, f"cannot read machine data: {exc.strerror}")]) from exc
    data, problems = parse_yaml(text, str(path))
    if problems:
        raise ValidationFailed(problems)
    try:
        return parse_machine_data(data)
    except MachineDataError as exc:
        raise ValidationFailed([Diagnostic(str(path), 1, str(exc))]) from exc


def check_scoring_data(data: LineDict, filename: str) -> tuple[CompiledScoring | None, list[Diagnostic]]:
    """Check a scoring document (with or without its top-level `scoring:` key)."""
    if "scoring" not in data:
        wrapped = LineDict(scoring=data)
        wrapped.line, wrapped.key_lines = data.line, {"scoring": data.line}
        data = wrapped
    from nurture.scenario.projectfile import load_project, unknown_event_hint

    project = load_project(Path(filename).parent).settings
    events = project.event_names()
    problems: list[Diagnostic] = []
    try:
        parsed = ScoringFile.model_validate(data)
    except ValidationError as exc:
        return None, [structural_diagnostic(filename, data, e, ScoringFile) for e in exc.errors()]
    model = parsed.scoring
    raw = data["scoring"]
    fields = set(STANDARD_FIELDS) | set(OPTIONAL_FIELDS) | set(model.lead_fields)
    fit_items = raw.get("fit") if isinstance(raw, LineDict) else None
    for index, rule in enumerate(model.fit):
        line = fit_items.item_lines[index] if isinstance(fit_items, LineList) else raw.line
        try:
            usage = Expression(rule.when).usage
        except ExpressionError as exc:
            problems.append(Diagnostic(filename, line, f"fit rule '{rule.name}': bad expression: {exc}"))
            continue
        for name in sorted(usage.names - {"lead"}):
            problems.append(
                Diagnostic(
                    filename,
                    line,
                    f"fit rule '{rule.name}' uses unknown name '{name}'",
                    "fit rules read lead fields only",
                )
            )
        for message, hint in comparison_problems(usage, kinds_for()):
            problems.append(Diagnostic(filename, line, f"fit rule '{rule.name}': {message}", hint))
        for name in sorted(usage.lead_fields - fields):
            problems.append(
                Diagnostic(
                    filename,
                    line,
                    f"fit rule '{rule.name}' uses lead.{name}, which no lead field provides",
                    hint_with(did_you_mean(name, fields), "(declare it in lead_fields)"),
                )
            )
    engagement_items = raw.get("engagement") if isinstance(raw, LineDict) else None
    for index, scored in enumerate(model.engagement):
        line = engagement_items.item_lines[index] if isinstance(engagement_items, LineList) else raw.line
        if scored.event not in events:
            problems.append(
                Diagnostic(
                    filename,
                    line,
                    f"engagement rule '{scored.name}' scores unknown event '{scored.event}'",
                    unknown_event_hint(scored.event, project),
                )
            )
    names = [r.name for r in model.fit] + [r.name for r in model.engagement]
    for name in {n for n in names if names.count(n) > 1}:
        problems.append(Diagnostic(filename, raw.line, f"rule name '{name}' is used twice"))
    if problems:
        return None, problems
    if model.bots.data is None:
        machines = shipped_machine_data()
    else:
        where = Path(filename).parent / model.bots.data
        try:
            machines = load_machine_data(where)
        except ValidationFailed as exc:
            line = line_of(data, ["scoring", "bots", "data"])
            return None, [
                Diagnostic(filename, line, f"bots.data: {d.message}", f"in {d.file}:{d.line}") for d in exc.diagnostics
            ]
    return CompiledScoring(model, machines), []


def load_scoring(path: Path) -> CompiledScoring:
    oversized = too_large(path.stat().st_size, str(path))
    if oversized:
        raise ValidationFailed([oversized])
    text = path.read_text(encoding="utf-8")
    data, problems = parse_yaml(text, str(path))
    if problems or not isinstance(data, LineDict):
        raise ValidationFailed(problems or [Diagnostic(str(path), 1, "a scoring file is a mapping")])
    compiled, problems = check_scoring_data(data, str(path))
    if compiled is None:
        raise ValidationFailed(problems)
    return compiled
