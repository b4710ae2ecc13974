"""One exception hierarchy for everything nurture reports to its users."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a user's file, pointing at the line to fix."""

    file: str
    line: int
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}: {self.message}"
        return f"{text} — {self.hint}" if self.hint else text


class NurtureError(Exception):
    """Root of all errors nurture raises on purpose."""


class ValidationFailed(NurtureError):
    """A scenario, scoring or data file has one or more problems."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(str(d) for d in diagnostics))


class ExpressionError(NurtureError):
    """An expression could not be parsed or evaluated."""


class DurationError(NurtureError, ValueError):
    """A duration such as '3d' or 'tuesday 10:00' could not be understood."""


class ImportProblem(NurtureError):
    """A row of an import file is unusable; carries where and why."""
