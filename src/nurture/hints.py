"""Did-you-mean suggestions for user-facing errors."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """ "did you mean 'x'?" for the closest choice, or a list of the valid ones."""
    options = sorted(set(choices))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if len(options) <= 12:
        return "expected one of: " + ", ".join(options)
    return ""


def hint_with(*parts: str) -> str:
    """Join the non-empty parts of a hint."""
    return " ".join(p for p in parts if p)
