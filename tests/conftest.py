from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from nurture.runtime.engine import LeadView
from nurture.scenario.compiler import CompiledScenario, compile_scenario
from nurture.scenario.loader import load_scenario

ROOT = Path(__file__).resolve().parent.parent
MONDAY_9_UTC = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

BASIC_TEMPLATES = {
    "hello": '<p>Hello {{ lead.first_name }}</p><a href="{{ unsubscribe_url }}">unsubscribe</a>',
    "again": "<p>Again, {{ lead.first_name }}</p>",
}


@pytest.fixture
def project(tmp_path: Path) -> Callable[..., Path]:
    """Write a scenario (dedented YAML) and templates into a fresh project folder."""

    def write(text: str, templates: dict[str, str] | None = None, name: str = "s.yaml") -> Path:
        (tmp_path / "scenarios").mkdir(exist_ok=True)
        folder = tmp_path / "email_templates"
        folder.mkdir(exist_ok=True)
        for template, body in (BASIC_TEMPLATES if templates is None else templates).items():
            (folder / f"{template}.html").write_text(body, encoding="utf-8")
        path = tmp_path / "scenarios" / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture
def compile_text(project: Callable[..., Path]) -> Callable[..., CompiledScenario]:
    def build(text: str, templates: dict[str, str] | None = None) -> CompiledScenario:
        return compile_scenario(load_scenario(project(text, templates)))

    return build


def lead(email: str = "ann@example.com", **fields: object) -> LeadView:
    score = fields.pop("score", None) or {"fit": 0, "engagement": 0, "total": 0, "grade": "D"}
    base: dict[str, object] = {
        "email": email,
        "first_name": "Ann",
        "timezone": "UTC",
        "tags": [],
        "unsubscribed": False,
        "bounced": False,
        "lifecycle_stage": "cold",
    }
    base.update(fields)
    return LeadView(email, base, score)  # type: ignore[arg-type]
