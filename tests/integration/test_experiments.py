"""Experiments through the real daemon, on SQLite and PostgreSQL, with a real SMTP server.

Leads are split between two versions of an email; people click one of them, a link scanner
clicks the other; the experiments job decides, records the decision in the audit log, mails
the scenario's owner, and from then on new leads get the winner.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import select

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from nurture.leads import import_leads
from nurture.store.tables import AUDIT_LOG, EXPERIMENT_ASSIGNMENTS, EXPERIMENTS, SENDS
from nurture.web.app import create_app
from tests.http_server import serving
from tests.integration.conftest import ROOT, write_scenario
from tests.integration.test_web import log_in
from tests.smtp_server import SmtpServer

TRIAL = """
id: trial
name: Trial onboarding
owner: owner@acme.example
entry:
  source: [web]
send_window:
  days: [mon, tue, wed, thu, fri, sat, sun]
  start: "00:00"
  end: "23:59"
steps:
  - id: first_email
    type: split
    experiment:
      goal: click
      within: 1d
      method: msprt
      alpha: 0.05
      effect: 0.3
      min_per_arm: 20
      max_duration: 30d
    variants:
      - {name: plain, weight: 1}
      - {name: bold, weight: 1, template: bold, subject: "Bold news, {{ lead.first_name }}"}
  - id: hello
    type: send_email
    template: plain
    subject: "Hello {{ lead.first_name }}"
  - id: pause
    type: wait
    duration: 5d
"""

TEMPLATES = {
    "plain": '<p>Hello {{ lead.first_name }}</p><a href="https://acme.example/a">a</a> '
    '<a href="{{ unsubscribe_url }}">unsubscribe</a>',
    "bold": '<p><b>Hello {{ lead.first_name }}</b></p><a href="https://acme.example/b">b</a> '
    '<a href="{{ unsubscribe_url }}">unsubscribe</a>',
}


def import_people(daemon: Daemon, tmp_path: Path, names: list[str]) -> None:
    path = tmp_path / f"leads-{names[0]}.csv"
    path.write_text(
        "email,first_name,timezone,source\n" + "".join(f"{n}@people.example,{n},UTC,web\n" for n in names),
        encoding="utf-8",
    )
    assert import_leads(daemon.store, path).problems == []


def sent_rows(daemon: Daemon) -> list[tuple[int, int, str, object]]:
    with daemon.store.reading() as conn:
        rows = conn.execute(
            select(SENDS.c.id, SENDS.c.lead_id, SENDS.c.template, SENDS.c.sent_at).order_by(SENDS.c.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_an_experiment_decides_tells_its_owner_and_sends_new_leads_to_the_winner(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    for name, body in TEMPLATES.items():
        (workspace / "email_templates" / f"{name}.html").write_text(body, encoding="utf-8")
    shutil.copy(ROOT / "scenarios" / "scoring.yaml", workspace / "scenarios" / "scoring.yaml")
    write_scenario(workspace, TRIAL)
    daemon = make_daemon(db_url, base_url="http://nurture.test")  # https would make the session cookie Secure
    import_people(daemon, tmp_path, [f"p{i}" for i in range(60)])

    asyncio.run(story(daemon, clock, smtp, tmp_path))

    # The dashboard's scenario page shows the experiment, its winner and the chart.
    with serving(create_app(daemon.settings, daemon.clock, daemon.store)) as base, httpx.Client(base_url=base) as site:
        log_in(daemon, site)
        page = site.get("/scenarios/trial")
    assert page.status_code == 200
    section = re.search(r'<section class="experiment" id="experiment-first_email">.*?</section>', page.text, re.S)
    assert section is not None, page.text[-3000:]
    html = section.group(0)
    assert "decided" in html and "bold</strong> ← winner" in html
    assert html.count("<polyline") == 2 and html.count("<polygon") == 2  # a line and a band per arm

    # `nurture report` prints the same.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nurture",
            "report",
            "trial",
            "--db",
            daemon.settings.database_url,
            "--scenarios",
            str(workspace / "scenarios"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NURTURE_TEMPLATES_DIR": str(workspace / "email_templates")},
    )
    assert result.returncode == 0, result.stderr
    assert "experiment 'first_email' (click within 1d, mSPRT" in result.stdout
    assert "decided on " in result.stdout and "'bold' wins" in result.stdout
    assert "bold − plain: +100.0 points" in result.stdout


async def story(daemon: Daemon, clock: FakeClock, smtp: SmtpServer, tmp_path: Path) -> None:
    """The whole run in one event loop (the daemon's SMTP connections belong to it)."""
    await daemon.tick()
    await daemon.tick()
    sends = sent_rows(daemon)
    assert len(sends) == 60 and all(sent_at is not None for *_, sent_at in sends)
    by_template = {t: sum(1 for _, _, tt, _ in sends if tt == t) for t in ("plain", "bold")}
    assert by_template["plain"] >= 20 and by_template["bold"] >= 20, by_template
    with daemon.store.reading() as conn:
        arms = dict(conn.execute(select(EXPERIMENT_ASSIGNMENTS.c.lead_id, EXPERIMENT_ASSIGNMENTS.c.arm)).all())
    assert {lead: ("bold" if t == "bold" else "plain") for _, lead, t, _ in sends} == arms

    # People click the bold email two hours after it arrives; a link scanner clicks every
    # plain one within two seconds of delivery. Only people count.
    with daemon.store.transaction() as conn:
        for send_id, lead_id, template, sent_at in sends:
            assert sent_at is not None
            person = template == "bold"
            daemon.store.events.record(
                conn,
                lead_id,
                "click",
                sent_at + (timedelta(hours=2) if person else timedelta(seconds=2)),  # type: ignore[operator]
                {
                    "send": send_id,
                    "scenario": "trial",
                    "step": "hello",
                    "sent_at": sent_at.isoformat(),  # type: ignore[attr-defined]
                    "link": "https://acme.example/x",
                    "user_agent": "Mozilla/5.0" if person else "Barracuda Sentinel",
                },
                f"click-{send_id}",
            )

    await daemon.tick()  # before the window closed: nothing is final, nothing is decided
    with daemon.store.reading() as conn:
        assert conn.execute(select(EXPERIMENTS.c.status)).scalar_one() == "running"
    clock.advance(timedelta(days=1, hours=1))
    await daemon.tick()
    await daemon.tick()  # the owner's email goes out with the notification outbox
    with daemon.store.reading() as conn:
        experiment = conn.execute(select(EXPERIMENTS)).one()
        audit = conn.execute(select(AUDIT_LOG.c.detail).where(AUDIT_LOG.c.kind == "experiment")).scalar_one()
    assert (experiment.status, experiment.winner, experiment.route_to) == ("decided", "bold", "bold")
    assert experiment.effect == 1.0  # every bold lead clicked, no plain lead did (the scanner does not count)
    assert experiment.interval_low > 0 and "mixture likelihood ratio" in experiment.statistic
    assert audit["winner"] == "bold" and audit["arms"]["plain"]["converted"] == 0
    assert audit["arms"]["bold"]["converted"] == audit["arms"]["bold"]["assigned"] == by_template["bold"]
    (note,) = smtp.recorder.by_recipient()["owner@acme.example"]
    assert note["Subject"] == "Experiment 'first_email' in Trial onboarding: 'bold' wins"
    body = note.get_payload(0).get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert f"bold: {by_template['bold']}/{by_template['bold']} = 100.0%" in body
    assert "http://nurture.test/scenarios/trial" in body

    # New leads now get the winner; they are not part of the comparison.
    import_people(daemon, tmp_path, [f"late{i}" for i in range(10)])

    await daemon.tick()
    await daemon.tick()
    assert daemon.pool is not None
    await daemon.pool.close()
    late = [t for _, _, t, _ in sent_rows(daemon)][60:]
    assert late == ["bold"] * 10
    with daemon.store.reading() as conn:
        routed = (
            conn.execute(
                select(EXPERIMENT_ASSIGNMENTS.c.randomised).where(
                    EXPERIMENT_ASSIGNMENTS.c.assigned_at > clock.now() - timedelta(hours=1)
                )
            )
            .scalars()
            .all()
        )
    assert routed == [False] * 10


BEST_HOUR = """
id: digest
name: Digest
entry:
  source: [web]
send_window:
  days: [mon, tue, wed, thu, fri]
  start: "09:00"
  end: "17:00"
steps:
  - id: digest_email
    type: send_email
    template: plain
    subject: "Your digest, {{ lead.first_name }}"
    send_time: optimal
    send_time_control: 0
"""


def test_the_daemon_sends_at_the_hour_the_lead_reads_email_and_ignores_a_scanners_hours(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    (workspace / "email_templates" / "plain.html").write_text(TEMPLATES["plain"], encoding="utf-8")
    shutil.copy(ROOT / "scenarios" / "scoring.yaml", workspace / "scenarios" / "scoring.yaml")
    write_scenario(workspace, BEST_HOUR)
    daemon = make_daemon(db_url)
    path = tmp_path / "lead.csv"
    path.write_text("email,first_name,timezone,source\nreader@people.example,Rea,Europe/Berlin,web\n", encoding="utf-8")
    assert import_leads(daemon.store, path).problems == []
    lead = daemon.store.leads.by_email("reader@people.example")
    assert lead is not None
    with daemon.store.transaction() as conn:
        for day in range(4):  # the person opens at 15:xx Berlin (14:xx UTC in winter) ...
            at = clock.now() - timedelta(days=7 - day) + timedelta(hours=5, minutes=20)
            daemon.store.events.record(conn, lead.id, "open", at, {"send": 1000 + day}, f"open-{day}")
        for day in range(8):  # ... and a scanner fetches everything at 10:00 Berlin
            at = clock.now() - timedelta(days=8 - day) + timedelta(hours=0)
            daemon.store.events.record(conn, lead.id, "open", at, {"user_agent": "Barracuda"}, f"scan-{day}")

    async def hours() -> None:
        for _ in range(10):
            await daemon.tick()
            clock.advance(timedelta(hours=1))
        assert daemon.pool is not None
        await daemon.pool.close()

    asyncio.run(hours())  # Monday 09:00 UTC (10:00 in Berlin) to 18:00 UTC
    assert len(smtp.recorder.by_recipient()["reader@people.example"]) == 1
    with daemon.store.reading() as conn:
        sent_at, timing = conn.execute(select(SENDS.c.sent_at, SENDS.c.timing)).one()
    assert timing == "optimal"
    assert sent_at.astimezone(ZoneInfo("Europe/Berlin")).hour == 15, sent_at


def test_a_decision_is_recorded_once_even_when_two_daemons_reach_it(
    db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, clock: FakeClock, tmp_path: Path
) -> None:
    write_scenario(workspace, TRIAL.replace("template: bold", "template: plain"))
    (workspace / "email_templates" / "plain.html").write_text(TEMPLATES["plain"], encoding="utf-8")
    daemon = make_daemon(db_url)
    import_people(daemon, tmp_path, ["solo"])
    lead = daemon.store.leads.by_email("solo@people.example")
    assert lead is not None
    now = clock.now()
    row = {
        "experiment_key": "trial/first_email/x",
        "scenario_id": "trial",
        "step": "first_email",
        "lead_id": lead.id,
        "enrollment_id": None,
        "arm": "bold",
        "randomised": True,
        "assigned_at": now,
    }
    with daemon.store.transaction() as conn:
        daemon.store.experiments.assign(conn, [row])
        daemon.store.experiments.assign(conn, [{**row, "arm": "plain"}])  # a lead keeps its first arm
    values = {"status": "decided", "winner": "bold", "route_to": "bold", "statistic": "s", "reason": "r"}
    with daemon.store.transaction() as conn:
        first = daemon.store.experiments.decide(conn, "trial/first_email/x", now, values, {"winner": "bold"})
    with daemon.store.transaction() as conn:
        second = daemon.store.experiments.decide(conn, "trial/first_email/x", now, {**values, "winner": "plain"}, {})
    assert (first, second) == (True, False)
    with daemon.store.reading() as conn:
        assert daemon.store.experiments.routes(conn, {"trial/first_email/x"}) == {"trial/first_email/x": "bold"}
        assert daemon.store.experiments.arms_of(conn, [lead.id], {"trial/first_email/x"}) == {
            lead.id: {"trial/first_email/x": "bold"}
        }
        entries = conn.execute(select(AUDIT_LOG.c.detail).where(AUDIT_LOG.c.kind == "experiment")).all()
    assert len(entries) == 1
