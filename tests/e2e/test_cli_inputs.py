"""Hostile or mistaken input files, through the installed commands: clear errors, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_cli_scenarios import ROOT


def nurture(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed `nurture` script (its error handler is the one users meet)."""
    script = Path(sys.executable).parent / "nurture"
    return subprocess.run([str(script), *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("value", ["5", "true"])
def test_steps_of_the_wrong_type_give_a_file_line_error_in_validate_and_graph(tmp_path: Path, value: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(f"id: bad\nname: Bad\nsteps: {value}\n", encoding="utf-8")
    for command in ("validate", "graph"):
        result = nurture(command, str(path))
        assert result.returncode == 1, result.stdout + result.stderr
        assert f"{path}:3: steps: Input should be a valid list" in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_a_cp932_file_is_recognised_and_imports_with_the_offered_option(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'n.db'}"
    assert nurture("db", "upgrade", "--db", db).returncode == 0
    path = tmp_path / "excel.csv"
    path.write_bytes("email,company,first_name\n\nyamada@example.jp,山田製作所,太郎\n".encode("cp932"))
    refused = nurture("leads", "import", str(path), "--db", db)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"{path}:3: not UTF-8" in refused.stderr and "--encoding cp932" in refused.stderr
    imported = nurture("leads", "import", str(path), "--encoding", "cp932", "--db", db)
    assert imported.returncode == 0, imported.stderr
    assert "1 created" in imported.stdout
    shown = nurture("leads", "show", "yamada@example.jp", "--db", db)
    assert "company: 山田製作所" in shown.stdout


def test_import_keeps_line_numbers_after_blank_lines_and_refuses_addresses_the_sender_cannot_send(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'n.db'}"
    assert nurture("db", "upgrade", "--db", db).returncode == 0
    path = tmp_path / "leads.csv"
    path.write_text("email,first_name\n\n\ntaro@例え.jp,Taro\n\n山田@example.jp,Yamada\nbroken,X\n", encoding="utf-8")
    result = nurture("leads", "import", str(path), "--db", db)
    assert result.returncode == 1
    assert result.stdout.strip() == "1 created, 0 updated, 2 rejected"
    assert f"{path}:6: email: '山田@example.jp' has non-ASCII characters before the @, which needs SMTPUTF8" in (
        result.stderr
    )
    assert f"{path}:7: email: not a valid email address: 'broken'" in result.stderr
    assert nurture("leads", "show", "taro@xn--r8jz45g.jp", "--db", db).returncode == 0


def test_events_add_at_with_an_offset_is_recorded_and_shown_in_utc_and_bad_times_are_clear_errors(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'n.db'}"
    assert nurture("db", "upgrade", "--db", db).returncode == 0
    path = tmp_path / "leads.csv"
    path.write_text("email\nann@a.example\n", encoding="utf-8")
    assert nurture("leads", "import", str(path), "--db", db).returncode == 0
    added = nurture("events", "add", "ann@a.example", "click", "--at", "2026-03-02T10:00:00+09:00", "--db", db)
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "recorded click for ann@a.example at 2026-03-02 01:00 UTC"
    for bad, message in [
        ("garbage", "--at: bad time 'garbage'"),
        ("2026-02-30T10:00", "--at: bad time '2026-02-30T10:00': day is out of range for month"),
        ("+99999999d", "--at: time '+99999999d' is out of range"),
    ]:
        refused = nurture("events", "add", "ann@a.example", "click", "--at", bad, "--db", db)
        assert refused.returncode == 1 and message in refused.stderr and "Traceback" not in refused.stderr
