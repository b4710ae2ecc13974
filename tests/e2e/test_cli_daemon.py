"""The daemon-side commands, run as an operator would: db, leads, status, demo."""

from __future__ import annotations

import json
import mailbox
import os
import re
import socket
from pathlib import Path

import pytest
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


DEMO_DAYS = "14"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One demo of two simulated weeks with the default seed, as a script runs it (--no-serve)."""
    workdir = tmp_path_factory.mktemp("demo") / "demo"
    result = nurture(
        "demo", "--days", DEMO_DAYS, "--seconds-per-day", "0", "--workdir", str(workdir), "--no-serve", cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result.stdout


def test_demo_runs_end_to_end_and_every_sent_email_is_in_the_maildir(demo_run: tuple[Path, str]) -> None:
    workdir, out = demo_run
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
        assert f"{scenario}: " in out
    assert out.count("Emails sent, per step in journey order") == out.count("How enrolments finished") == 3
    subjects = {m["Subject"] for m in mailbox.Maildir(str(workdir / "maildir"), create=False)}
    assert any("=?utf-8?" in s.lower() for s in subjects)  # Japanese subjects travel RFC 2047-encoded
    # The script form stops after the summary; it names the dashboard login it created.
    assert "Dashboard" not in out and "nurture score backtest --from 2026-03-02" in out


# The story the default seed tells, on any machine: simulated time moves only when the
# daemon's round and everything people do in it are done, and every choice is a hash of
# stable names (an address, a send's key), never of timing or order.
EXPECTED_SUMMARY: dict[str, object] = {
    "leads": 150,
    "enrolments": 127,
    "emails sent": 390,
    "alerts to sales": 53,
    "queued": 0,
    "bounced": 2,
    "failed": 8,
    "lifecycle": {"cold": 63, "warm": 62, "accepted": 3, "rejected": 5, "recycled": 12, "customer": 5},
    "people": {
        "accepted": 9,
        "clicks": 141,
        "complaints": 3,
        "deals recycled": 1,
        "deals won": 5,
        "downloads": 41,
        "forms filled": 5,
        "hard bounces at SMTP": 2,
        "opens": 289,
        "page views": 244,
        "recycled": 4,
        "rejected": 5,
        "scenarios paused by the reputation guard": 2,
        "scenarios resumed by marketing": 2,
        "soft bounces at SMTP": 46,
        "unsubscribes": 9,
        "webinar attendances": 16,
        "webinar registrations": 39,
    },
    "scenarios": {
        "reengagement": {
            "enrolled": 12,
            "emails sent by step": [["ask_question", 6], ["offer_value", 5], ["last_try", 6]],
            "enrolments": [["active", "", 8], ["completed", "re-engaged", 4]],
        },
        "seminar_followup_ja": {
            "enrolled": 10,
            "emails sent by step": [["thanks", 8], ["materials", 8], ["consultation", 1]],
            "enrolments": [["completed", "フォロー完了", 9], ["exited", "unsubscribed", 1]],
        },
        "whitepaper_nurture": {
            "enrolled": 105,
            "emails sent by step": [
                ["welcome", 94],
                ["case_study", 92],
                ["case_study_reminder", 46],
                ["webinar_invite", 84],
                ["pricing_interest", 9],
                ["monthly_digest", 31],
            ],
            "enrolments": [
                ["active", "", 41],
                ["completed", "completed the nurture", 32],
                ["completed", "handed to sales", 10],
                ["exited", "became_hot", 9],
                ["exited", "bounced", 2],
                ["exited", "unsubscribed", 11],
            ],
        },
    },
    "in the maildir": 443,
}


def test_demo_tells_the_same_story_for_its_default_seed(demo_run: tuple[Path, str]) -> None:
    workdir, out = demo_run
    figures = json.loads((workdir / "summary.json").read_text())
    assert figures == EXPECTED_SUMMARY
    people = figures["people"]
    assert people["hard bounces at SMTP"] > 0 and people["soft bounces at SMTP"] > 0
    assert people["complaints"] > 0 and people["unsubscribes"] > 0
    assert people["accepted"] > 0 and people["rejected"] > 0 and people["recycled"] > 0 and people["deals won"] > 0
    assert people["webinar attendances"] > 0 and people["forms filled"] > 0 and people["page views"] > 0
    # The journey order is the scenario file's, and finished enrolments say how.
    steps = [step for step, _ in figures["scenarios"]["whitepaper_nurture"]["emails sent by step"]]
    assert steps[:4] == ["welcome", "case_study", "case_study_reminder", "webinar_invite"]
    assert f"Summary: 150 leads · {figures['enrolments']} enrolments · {figures['emails sent']} emails sent" in out


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("│┃").split("│")]


def test_every_analytics_command_gives_figures_on_the_demo_database(demo_run: tuple[Path, str]) -> None:
    workdir, _ = demo_run
    figures = json.loads((workdir / "summary.json").read_text())
    people = figures["people"]
    db = ("--db", f"sqlite:///{workdir / 'nurture.db'}", "--scenarios", str(ROOT / "scenarios"))
    end = f"2026-03-{2 + int(DEMO_DAYS):02d}T06:00:00Z"

    backtest = nurture("score", "backtest", "--from", "2026-03-02", "--to", end, *db)
    assert backtest.returncode == 0, backtest.stderr
    converting = int(re.search(r"(\d+) converting lead", backtest.stdout).group(1))  # type: ignore[union-attr]
    # Converting: leads sales accepted (every won deal was accepted first), as the demo's sales team did.
    assert converting == people["accepted"] > people["deals won"] > 0
    current = next(_cells(line) for line in backtest.stdout.splitlines() if "as in file" in line)
    promoted, good = int(current[2]), int(current[3])
    precision, recall = int(current[5].rstrip("%")), int(current[6].rstrip("%"))
    assert 0 < good <= promoted and 0 < precision < 100 and 0 < recall <= 100
    assert precision == round(100 * good / promoted) and recall == round(100 * good / converting)

    near = nurture("score", "near-miss", "--at", end, "--engagement-gap", "15", *db)  # as the demo suggests
    assert near.returncode == 0, near.stderr
    assert int(re.search(r"(\d+) near miss", near.stdout).group(1)) > 0  # type: ignore[union-attr]
    assert "more engagement points" in near.stdout or "more fit points" in near.stdout

    drift = nurture("score", "drift", *db)
    assert drift.returncode == 0, drift.stderr
    promotions, rejected = map(int, re.search(r"(\d+) promotion\(s\), (\d+) rejected", drift.stdout).groups())  # type: ignore[union-attr]
    assert promotions >= promoted and rejected == people["rejected"] > 0
    assert any(reason in drift.stdout for reason in ("no budget", "not a decision maker", "company too small"))

    outcomes = (workdir / "outcomes.csv").read_text().splitlines()
    learned = nurture("score", "learn", "--outcomes", str(workdir / "outcomes.csv"), "--out",
                      str(workdir / "proposed.txt"), *db)  # fmt: skip
    assert learned.returncode == 0, learned.stderr
    assert f"{len(outcomes) - 1} example(s), {converting} converted" in learned.stdout
    assert "on a held-out quarter" in learned.stdout and (workdir / "proposed.txt").is_file()

    report = nurture("report", *db)
    assert report.returncode == 0, report.stderr
    totals = [_cells(line) for line in report.stdout.splitlines() if line.startswith("│ all emails")]
    assert len(totals) == 3
    sent = sum(int(t[2]) for t in totals)
    unsubscribed = sum(int(t[7]) for t in totals)
    bounced = sum(int(t[8]) for t in totals)
    assert sent == figures["emails sent"]
    assert unsubscribed == people["unsubscribes"] > 0
    assert bounced == figures["bounced"] > 0
    assert all(int(t[5].split()[0]) > 0 for t in totals)  # clicks, bots left out


def test_demo_ends_serving_its_dashboard_with_a_demo_login_until_interrupted(tmp_path: Path) -> None:
    """`make demo`'s form: after the summary, the dashboard on the demo's database at
    127.0.0.1, with the printed login working, until Ctrl-C (SIGINT)."""
    import signal
    import subprocess
    import sys
    import time

    import httpx

    from tests.e2e.test_cli_scenarios import SENDER

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "nurture", "demo", "--days", "1", "--seconds-per-day", "0"]
    command += ["--workdir", str(tmp_path / "demo"), "--port", str(port)]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NURTURE_SENDER_")}, **SENDER}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        address = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        page = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                page = httpx.get(f"{address}/login", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert page is not None and page.status_code == 200, "the dashboard did not answer within 120 s"
        with httpx.Client(base_url=address, timeout=10) as site:
            token = re.search(r'name="csrf" value="([^"]+)"', site.get("/login").text)
            assert token
            site.post("/login", data={"username": "demo", "password": "demo-password", "csrf": token.group(1)})
            inbox = site.get("/inbox")
            assert inbox.status_code == 200 and "login" not in str(inbox.url)
            scenario = site.get("/scenarios/whitepaper_nurture")
            assert scenario.status_code == 200 and "welcome" in scenario.text
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert f"Dashboard: {address}/" in out and "log in as demo / demo-password" in out, out[-2000:] + err[-2000:]
