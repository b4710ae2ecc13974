"""The daemon-side commands, run as an operator would: db, leads, status, demo."""

from __future__ import annotations

import mailbox
import re
from pathlib import Path

from alembic.script import ScriptDirectory

from nurture.store.migrate import alembic_config
from tests.e2e.test_cli_scenarios import ROOT, nurture


def test_db_upgrade_import_show_and_status(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'n.db'}"
    head = ScriptDirectory.from_config(alembic_config(db)).get_current_head()
    assert nurture("db", "upgrade", "--db", db).stdout.strip() == f"database at revision {head}"
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "email,first_name,company,company_size,country,timezone,source,whitepaper_title\n"
        "jane@nordwerk.example,Jane,Nordwerk,600,DE,Europe/Berlin,whitepaper,Analytics 101\n"
        "broken,No,Email,1,DE,Europe/Berlin,whitepaper,\n"
    )
    result = nurture("leads", "import", str(leads), "--db", db)
    assert result.returncode == 1
    assert result.stdout.strip() == "1 created, 0 updated, 1 rejected"
    assert f"{leads}:3: email: not a valid email address: 'broken'" in result.stderr
    shown = nurture("leads", "show", "JANE@nordwerk.example", "--db", db)
    assert shown.returncode == 0
    assert re.search(r"company_size: 600\n", shown.stdout)
    assert "whitepaper_title: Analytics 101  (custom)" in shown.stdout
    missing = nurture("leads", "show", "nobody@x.example", "--db", db)
    assert missing.returncode == 1 and "no lead with email nobody@x.example" in missing.stderr
    status = nurture("status", "--db", db)
    assert status.returncode == 0
    assert "Enrolments (1 leads, 0 due now)" in status.stdout
    assert "outbox: 0 pending (0 retrying), 0 sending, 0 sent" in status.stdout


def test_leads_import_reads_json_lines_naming_the_line_of_each_bad_record(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'n.db'}"
    assert nurture("db", "upgrade", "--db", db).returncode == 0
    leads = tmp_path / "leads.jsonl"
    leads.write_text(
        '{"email": "jane@nordwerk.example", "first_name": "Jane", "company_size": 600, "country": "de"}\n'
        "\n"
        '{"email": "bad@x.example", "company_size": "many"}\n'
        "not json at all\n"
        '["an", "array"]\n'
        '{"email": "kim@tinyshop.example", "first_name": "Kim", "plan": "trial"}\n',
        encoding="utf-8",
    )
    result = nurture("leads", "import", str(leads), "--db", db)
    assert result.returncode == 1
    assert result.stdout.strip() == "2 created, 0 updated, 3 rejected"
    assert f"{leads}:3: company_size: Input should be a valid integer" in result.stderr
    assert f"{leads}:4: bad JSON" in result.stderr
    assert f"{leads}:5: not an object" in result.stderr
    jane = nurture("leads", "show", "jane@nordwerk.example", "--db", db).stdout
    assert re.search(r"company_size: 600\n", jane) and re.search(r"country: DE\n", jane)
    kim = nurture("leads", "show", "kim@tinyshop.example", "--db", db).stdout
    assert "plan: trial  (custom)" in kim
    again = nurture("leads", "import", str(leads), "--db", db)
    assert again.stdout.strip() == "0 created, 2 updated, 3 rejected"  # upsert by email


def test_demo_runs_end_to_end_and_every_sent_email_is_in_the_maildir(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = nurture("demo", "--days", "8", "--seconds-per-day", "0.5", "--workdir", str(workdir), cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "imported 150 leads" in out
    match = re.search(
        r"Summary: 150 leads · (\d+) enrolments · (\d+) emails sent · (\d+) alerts to sales · "
        r"(\d+) in the maildir",
        out,
    )
    assert match, out[-2000:]
    enrolments, sent, alerts, in_maildir = map(int, match.groups())
    assert enrolments >= 100 and sent >= 2 * 100
    assert sent + alerts == in_maildir == len(mailbox.Maildir(str(workdir / "maildir"), create=False))
    assert re.search(r"lifecycle: cold \d+ · warm \d+", out)
    for scenario in ("whitepaper_nurture", "seminar_followup_ja", "reengagement"):
        assert f"{scenario}:" in out
    subjects = {m["Subject"] for m in mailbox.Maildir(str(workdir / "maildir"), create=False)}
    assert any("=?utf-8?" in s.lower() for s in subjects)  # Japanese subjects travel RFC 2047-encoded
