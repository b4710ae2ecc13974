"""Scoring and sales feedback from the command line."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_cli_scenarios import ROOT, nurture


def test_events_explain_and_feedback(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'n.db'}"
    nurture("db", "upgrade", "--db", db)
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "email,first_name,company,company_size,industry,job_title,country\n"
        "ada@nordwerk.example,Ada,Nordwerk,1500,Manufacturing,Head of Operations,DE\n"
    )
    assert nurture("leads", "import", str(leads), "--db", db).returncode == 0
    for _n in range(6):
        added = nurture(
            "events",
            "add",
            "ada@nordwerk.example",
            "page_view",
            "--prop",
            "url=https://acme.example/pricing",
            "--db",
            db,
        )
        assert added.returncode == 0, added.stderr
    nurture(
        "events",
        "add",
        "ada@nordwerk.example",
        "click",
        "--prop",
        "link=a",
        "--prop",
        "send=9",
        "--prop",
        "user_agent=Mozilla/5.0 (compatible; Barracuda)",
        "--db",
        db,
    )
    bad = nurture("events", "add", "ada@nordwerk.example", "clik", "--db", db)
    assert bad.returncode == 1 and "unknown event type 'clik'" in bad.stderr

    explained = nurture("score", "explain", "ada@nordwerk.example", "--db", db, "--scenarios", str(ROOT / "scenarios"))
    assert explained.returncode == 0, explained.stderr
    out = explained.stdout
    assert out.startswith(
        "ada@nordwerk.example (stage cold): fit 80 (grade A), engagement 10 = own 10 + account 0; "
        "hot needs A ≥ 40, B ≥ 60, with at least 20 of its own"
    )
    assert "pricing_page               10.00 from 6 event(s), 10 before decay; 50 points over caps" in out
    assert "tracking activity: 0 human, 0 suspect, 1 machine" in out
    assert "click a machine (not counted): known scanner user agent: Barracuda" in out
    assert "missing: needs 30 more engagement points (grade A needs 40)" in out

    accepted = nurture("sales", "accept", "ada@nordwerk.example", "--reason", "demo booked", "--by", "max", "--db", db)
    assert accepted.stdout.strip() == "ada@nordwerk.example: cold → accepted"
    logged = nurture("leads", "log", "ada@nordwerk.example", "--kind", "call", "--note", "budget in Q3", "--db", db)
    assert logged.returncode == 0
    refused = nurture("sales", "recycle", "ada@nordwerk.example", "--reason", "", "--db", db)
    assert refused.returncode == 1 and "feedback needs a reason" in refused.stderr
    shown = nurture("leads", "show", "ada@nordwerk.example", "--db", db)
    assert "lifecycle_stage: accepted" in shown.stdout
