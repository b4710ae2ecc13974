"""Consent and data rights from the command line, as a privacy desk in Tokyo or Berlin uses them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli_scenarios import ROOT, nurture


def test_show_consent_export_a_person_then_erase_them_and_read_the_erasure_log(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'n.db'}"
    assert nurture("db", "upgrade", "--db", db).returncode == 0
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "email,first_name,last_name,company,country,timezone,source,consent,consent_topic,consent_at,"
        "consent_source,consent_wording,consent_ip\n"
        "hana@sakura.example,花子,山田,Sakura KK,JP,Asia/Tokyo,seminar,granted,marketing;seminars,"
        "2026-02-10T10:30:00+09:00,form,seminar-form-ja-v3,203.0.113.7\n"
        "bad@sakura.example,Bad,Row,Sakura KK,JP,Asia/Tokyo,seminar,perhaps,,,,,\n",
        encoding="utf-8",
    )
    imported = nurture("leads", "import", str(leads), "--db", db)
    assert imported.returncode == 1  # the bad row is reported and skipped; the good one is in
    assert f"{leads}:3: consent: 'perhaps' is not granted, withdrawn or pending" in imported.stderr

    shown = nurture("leads", "consent", "hana@sakura.example", "--db", db, cwd=ROOT)
    assert shown.returncode == 0, shown.stderr
    assert (
        "2026-02-10 01:30:00 UTC  seminars       granted   via form · 'seminar-form-ja-v3' · from 203.0.113.7"
        in shown.stdout
    )
    assert (
        "marketing: may send — consent to topic 'marketing' granted 2026-02-10T01:30:00+00:00 via form" in shown.stdout
    )

    exported = nurture("leads", "export", "hana@sakura.example", "--db", db)
    document = json.loads(exported.stdout)
    assert document["format"] == "nurture.person-export/1"
    assert document["fields"]["last_name"] == "山田" and len(document["consent"]) == 2
    schema = json.loads(nurture("leads", "export", "--schema").stdout)
    assert schema["title"] == "nurture person export"

    assert "say who asked" in nurture("leads", "erase", "hana@sakura.example", "--by", " ", "--db", db).stderr
    erased = nurture("leads", "erase", "hana@sakura.example", "--by", "privacy desk, ticket 4711", "--db", db)
    assert erased.returncode == 0, erased.stderr
    assert "erasure 1: erased rows deleted: consent_record 2, lead 1" in erased.stdout
    assert nurture("leads", "export", "hana@sakura.example", "--db", db).returncode == 1
    log = nurture("leads", "erasures", "--db", db).stdout
    assert "by privacy desk, ticket 4711" in log and "hana" not in log and "山田" not in log
