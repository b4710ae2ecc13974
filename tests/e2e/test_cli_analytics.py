"""The analytics commands as an analyst runs them: tables on screen, CSV and SVG files."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.e2e.test_cli_scenarios import ROOT, nurture


def test_backtest_near_miss_drift_learn_and_report(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'n.db'}"
    nurture("db", "upgrade", "--db", db)
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "email,first_name,company,company_size,industry,job_title,country\n"
        "ada@nordwerk.example,Ada,Nordwerk,1500,Manufacturing,Head of Operations,DE\n"
        "bo@smallco.example,Bo,Smallco,300,Retail,IT Manager,US\n"
    )
    nurture("leads", "import", str(leads), "--db", db)
    for when in ("2026-02-02T10:00:00Z", "2026-02-03T10:00:00Z"):
        assert (
            nurture("events", "add", "ada@nordwerk.example", "webinar_attended", "--at", when, "--db", db).returncode
            == 0
        )
    nurture("events", "add", "ada@nordwerk.example", "inquiry", "--at", "2026-02-04T10:00:00Z", "--db", db)
    nurture("events", "add", "bo@smallco.example", "download", "--at", "2026-02-05T10:00:00Z", "--db", db)
    nurture("sales", "won", "ada@nordwerk.example", "--reason", "signed", "--db", db)

    out_csv, chart = tmp_path / "backtest.csv", tmp_path / "backtest.svg"
    backtest = nurture(
        "score",
        "backtest",
        "--from",
        "2026-02-01",
        "--to",
        "2026-02-28",
        "--threshold",
        "20:60:20",
        "--csv",
        str(out_csv),
        "--chart",
        str(chart),
        "--db",
        db,
    )
    assert backtest.returncode == 0, backtest.stderr
    assert "1 converting lead(s)" in backtest.stdout
    rows = list(csv.DictReader(out_csv.read_text().splitlines()))
    assert rows[0]["grades"] == "current" and {r["threshold"] for r in rows[1:]} == {"20", "40", "60"}
    a_at_20 = next(r for r in rows if r["grades"] == "A" and r["threshold"] == "20")
    assert (a_at_20["promoted"], a_at_20["good"], a_at_20["recall"]) == ("1", "1", "1.0000")
    assert chart.read_text().startswith("<svg") and "A+B recall" in chart.read_text()
    bad = nurture("score", "backtest", "--from", "2026-02-01", "--to", "2026-02-28", "--threshold", "90:40", "--db", db)
    assert bad.returncode == 1 and "bad --threshold '90:40'" in bad.stderr

    near = nurture("score", "near-miss", "--engagement-gap", "100", "--db", db)
    assert near.returncode == 0 and "bo@smallco.example" in near.stdout

    assert nurture("score", "drift", "--db", db).returncode == 0

    outcomes = tmp_path / "outcomes.csv"
    outcomes.write_text("email,converted\nada@nordwerk.example,yes\nbo@smallco.example,no\n")
    proposed = tmp_path / "proposed.yaml"
    learned = nurture("score", "learn", "--outcomes", str(outcomes), "--out", str(proposed), "--db", db)
    assert learned.returncode == 0, learned.stderr
    assert "in-sample" in learned.stdout and f"wrote {proposed}" in learned.stdout
    assert nurture("validate", str(proposed)).returncode == 0
    assert (ROOT / "scenarios" / "scoring.yaml").read_text() != proposed.read_text()

    report = nurture("report", "whitepaper_nurture", "--db", db)
    assert report.returncode == 0 and "Whitepaper" in report.stdout
    missing = nurture("report", "nope", "--db", db)
    assert missing.returncode == 1 and "no scenario 'nope'" in missing.stderr
