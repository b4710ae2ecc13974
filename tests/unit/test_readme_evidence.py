"""The README's "What the tests prove" section names tests that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## What the tests prove")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def test_every_test_the_readme_names_exists() -> None:
    named = set(re.findall(r"`(test_\w+)`", section()))
    assert len(named) >= 50
    defined = {
        match
        for path in (ROOT / "tests").rglob("test_*.py")
        for match in re.findall(r"^(?:async )?def (test_\w+)\(", path.read_text(encoding="utf-8"), re.MULTILINE)
    }
    assert sorted(named - defined) == []
