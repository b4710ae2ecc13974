"""The analytics commands as an analyst runs them: tables on screen, CSV and SVG files."""

from __future__ import annotations

import asyncio
import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nurture.clock import FakeClock
from nurture.config import Settings
from nurture.daemon import Daemon
from tests.e2e.test_cli_scenarios import ROOT, nurture
from tests.integration.test_qualification import record


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


def test_score_drift_credits_rejected_promotions_to_the_rules_that_made_them_hot(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'n.db'}"
    assert nurture("db", "upgrade", "--db", db).returncode == 0
    leads = tmp_path / "leads.csv"
    people = ["ann", "ben", "cy", "dee", "eve"]
    leads.write_text(
        "email,first_name,company,company_size,industry,job_title,country\n"
        + "".join(f"{p}@{p}.example,{p},{p} AG,1500,Manufacturing,Head of Operations,DE\n" for p in people)
    )
    assert nurture("leads", "import", str(leads), "--db", db).returncode == 0
    clock = FakeClock(datetime(2026, 2, 2, 10, 0, tzinfo=UTC))
    daemon = Daemon(
        Settings(database_url=db, scenarios_dir=ROOT / "scenarios", templates_dir=ROOT / "email_templates"), clock
    )
    daemon.load()
    day = timedelta(days=1)
    # Ann, Ben and Cy turn hot through a webinar and an inquiry (20 + 40); Dee and Eve through
    # three days on the pricing page, a webinar registration and a download (30 + 10 + 10).
    for p in ("ann", "ben", "cy"):
        record(daemon, f"{p}@{p}.example", "webinar_attended", clock.now())
        record(daemon, f"{p}@{p}.example", "inquiry", clock.now() + day)
    for p in ("dee", "eve"):
        for n in range(3):
            record(daemon, f"{p}@{p}.example", "page_view", clock.now() + n * day, url="https://acme.example/pricing")
        record(daemon, f"{p}@{p}.example", "webinar_registered", clock.now() + day)
        record(daemon, f"{p}@{p}.example", "download", clock.now() + 2 * day, asset="whitepaper")
    clock.advance(2 * day + timedelta(hours=1))  # the qualify job runs after the last event
    stats = asyncio.run(daemon.qualify())
    assert stats.promoted == 5

    for p, reason in (("ann", "student"), ("ben", "student"), ("dee", "no budget")):
        assert nurture("sales", "reject", f"{p}@{p}.example", "--reason", reason, "--db", db).returncode == 0
    for p in ("cy", "eve"):
        assert nurture("sales", "accept", f"{p}@{p}.example", "--reason", "call booked", "--db", db).returncode == 0

    result = nurture("score", "drift", "--db", db)
    assert result.returncode == 0, result.stderr
    assert "5 promotion(s), 3 rejected by sales" in result.stdout
    rows = {}
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if len(cells) == 7 and cells[2].isdigit():
            rows[cells[0]] = cells[1:]
    # rule: kind, promoted, rejected, accepted, rejection rate, top reasons
    assert rows["inquiry"] == ["engagement", "3", "2", "1", "67%", "student (2)"]
    assert rows["webinar_attended"] == ["engagement", "3", "2", "1", "67%", "student (2)"]
    assert rows["pricing_page"] == ["engagement", "2", "1", "1", "50%", "no budget (1)"]
    assert rows["whitepaper"] == ["engagement", "2", "1", "1", "50%", "no budget (1)"]
    assert rows["webinar_registered"] == ["engagement", "2", "1", "1", "50%", "no budget (1)"]
    assert rows["enterprise"] == ["fit", "5", "3", "2", "60%", "student (2), no budget (1)"]
