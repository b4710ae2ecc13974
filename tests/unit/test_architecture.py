"""The layering rules of the source tree, checked on its imports (read with `ast`, never run).

- The pure core (scenario/, runtime/, scoring/, experiments/) does no I/O: it imports nothing from the
  store, mail, web or jobs packages, nor SQLAlchemy, SQLModel, aiosmtplib or the network.
- store/ is the only package that speaks SQL: nothing else imports SQLAlchemy or SQLModel.
- Jobs do not import each other (what two share lives in lifecycle, store or the core);
  only the catalog of loaded scenarios is theirs to share.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "nurture"

CORE = ("scenario", "runtime", "scoring", "experiments")
CORE_FORBIDDEN = (
    "nurture.store",
    "nurture.mail",
    "nurture.web",
    "nurture.jobs",
    "nurture.daemon",
    "nurture.cli",
    "sqlalchemy",
    "sqlmodel",
    "aiosmtplib",
    "aiosmtpd",
    "socket",
    "ssl",
    "http",
    "httpx",
    "urllib.request",
    "smtplib",
    "asyncio",
    "subprocess",
)
SQL = ("sqlalchemy", "sqlmodel", "alembic", "psycopg", "sqlite3")
# Known exceptions, each with its reason; a new one needs a line here and a reason.
CORE_EXCEPTIONS: set[str] = set()
SHARED_JOB_MODULES = ("nurture.jobs.catalog", "nurture.jobs.retry")


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in a file, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = ".".join(path.relative_to(SRC).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            yield node.lineno, base
            for alias in node.names:  # `from nurture import store` imports a package too
                yield node.lineno, f"{base}.{alias.name}"


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    """One "file:line: imports module" per import statement that breaks the rule."""
    found: dict[tuple[Path, int], str] = {}
    for path in files:
        for line, module in imports(path):
            if within(module, forbidden):
                found.setdefault((path, line), f"{path.relative_to(SRC)}:{line}: imports {module}")
    return list(found.values())


def sources(*folders: str) -> list[Path]:
    roots = [PACKAGE / f for f in folders] if folders else [PACKAGE]
    return sorted(p for root in roots for p in root.rglob("*.py"))


def test_the_core_imports_no_adapters_no_database_and_no_network() -> None:
    found = {re.sub(r":\d+:", ":", v) for v in violations(sources(*CORE), CORE_FORBIDDEN)}
    assert found - CORE_EXCEPTIONS == set()


def test_only_the_store_speaks_sql() -> None:
    outside = [p for p in sources() if (PACKAGE / "store") not in p.parents]
    assert violations(outside, SQL) == []


def test_jobs_do_not_import_each_other() -> None:
    found = []
    for path in sources("jobs"):
        own = "nurture.jobs." + path.stem
        for line, module in imports(path):
            other = within(module, ("nurture.jobs",)) and module != "nurture.jobs" and not within(module, (own,))
            if other and not within(module, SHARED_JOB_MODULES):
                found.append(f"{path.relative_to(SRC)}:{line}: imports {module}")
    assert found == []


@pytest.mark.parametrize(
    ("where", "source", "rule", "forbidden"),
    [
        ("scenario/bad.py", "from nurture.store import Store\n", "core", CORE_FORBIDDEN),
        ("runtime/bad.py", "import sqlalchemy as sa\n", "core", CORE_FORBIDDEN),
        ("scoring/bad.py", "from ..mail import sender\n", "core", CORE_FORBIDDEN),
        ("scoring/bad.py", "import socket\n", "core", CORE_FORBIDDEN),
        ("web/bad.py", "\n\nfrom sqlalchemy import select\n", "sql", SQL),
        ("bad.py", "def f():\n    from sqlmodel import Session\n", "sql", SQL),
    ],
)
def test_the_rules_name_the_file_and_line_of_a_broken_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str, source: str, rule: str, forbidden: tuple[str, ...]
) -> None:
    """The checks above would catch a forbidden import: they report it as file:line."""
    root = tmp_path / "src"
    path = root / "nurture" / where
    path.parent.mkdir(parents=True)
    path.write_text(source)
    monkeypatch.setattr(__import__(__name__, fromlist=["SRC"]), "SRC", root)
    line = source.rstrip("\n").count("\n") + 1
    found = violations([path], forbidden)
    assert len(found) == 1 and found[0].startswith(f"nurture/{where}:{line}: imports "), found
