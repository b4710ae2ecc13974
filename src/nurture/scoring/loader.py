"""Loading and checking the scoring file, with file:line messages like scenarios."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nurture.errors import Diagnostic, ExpressionError, ValidationFailed
from nurture.hints import did_you_mean, hint_with
from nurture.scenario.expr import Expression
from nurture.scenario.loader import structural_diagnostic
from nurture.scenario.typecheck import comparison_problems, kinds_for
from nurture.scenario.yamlsource import LineDict, LineList, parse_yaml
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
    return CompiledScoring(model), []


def load_scoring(path: Path) -> CompiledScoring:
    text = path.read_text(encoding="utf-8")
    data, problems = parse_yaml(text, str(path))
    if problems or not isinstance(data, LineDict):
        raise ValidationFailed(problems or [Diagnostic(str(path), 1, "a scoring file is a mapping")])
    compiled, problems = check_scoring_data(data, str(path))
    if compiled is None:
        raise ValidationFailed(problems)
    return compiled
