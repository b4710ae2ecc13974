"""Comparisons that can never mean what the author wrote: a number compared with text.

`lead.company_size >= "100名"` raises at run time on every lead (Python cannot order a
number and a string) and is then treated as false, so the condition silently never
holds. The kinds of the built-in fields, the score and declared event properties are
known, so `validate` can point at the mistake instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from nurture.scenario.expr import Comparison, Usage
from nurture.vocabulary import FIELD_KINDS

SCORE_KINDS = {"fit": "number", "engagement": "number", "total": "number", "grade": "text"}
_LEADING_NUMBER = re.compile(r"^\s*([0-9０-９][0-9０-９,，.]*)")


def kinds_for(event_props: Mapping[str, str] | None = None) -> dict[str, str]:
    """`lead.X` / `score.X` / `event.X` → 'number', 'text' or 'boolean' where it is known."""
    kinds = {f"lead.{name}": kind for name, kind in FIELD_KINDS.items()}
    kinds |= {f"score.{name}": kind for name, kind in SCORE_KINDS.items()}
    kinds |= {f"event.{name}": _normal(kind) for name, kind in (event_props or {}).items()}
    return kinds


def _normal(kind: str) -> str:
    return {"integer": "number", "float": "number", "string": "text", "url": "text", "bool": "boolean"}.get(kind, kind)


def comparison_problems(usage: Usage, kinds: Mapping[str, str]) -> list[tuple[str, str]]:
    """(message, hint) for each comparison between a field and a constant of another kind."""
    problems = []
    for comparison in usage.comparisons:
        kind = kinds.get(comparison.term)
        value = comparison.value
        if kind == "number" and isinstance(value, str):
            problems.append(_number_with_text(comparison))
        elif kind == "text" and comparison.ordering and isinstance(value, int | float) and not isinstance(value, bool):
            problems.append(
                (
                    f"expression compares {comparison.term} (text) with the number {value!r}: {comparison.describe()}",
                    f"{comparison.term} holds text; compare it with text in quotes, or use a number field",
                )
            )
    return problems


def _number_with_text(comparison: Comparison) -> tuple[str, str]:
    message = (
        f"expression compares {comparison.term} (a number) with the text {comparison.value!r}: "
        f"{comparison.describe()} never holds"
    )
    digits = _LEADING_NUMBER.match(str(comparison.value))
    if digits:
        number = re.sub(r"[,，]", "", digits[1]).translate(str.maketrans("０１２３４５６７８９", "0123456789"))
        fixed = Comparison(comparison.term, comparison.op, int(float(number)) if "." not in number else float(number))
        return message, f"write the number alone, without quotes or units: {fixed.describe()}"
    return message, "compare it with a number, without quotes"
