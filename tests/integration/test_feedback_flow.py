"""Reports and complaints acting on leads, against real SQLite and PostgreSQL: the daemon
sends through a real SMTP server with per-send return paths, reports come back through the
bounce listener (a real aiosmtpd server), and the lead, its timeline, the suppression list
and the scenario's reputation follow."""

from __future__ import annotations

import re
import smtplib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from nurture.feedback.intake import BounceHandler
from nurture.feedback.reports import ReportReader
from nurture.feedback.suppressions import Suppression
from nurture.jobs.feedback import FeedbackHandler
from nurture.leads import import_leads
from nurture.mail.verp import ReturnPath
from nurture.store.tables import ACTIVITIES, ENROLMENTS, FEEDBACK, LEADS, NOTIFICATIONS, SENDS, SUPPRESSIONS
from nurture.web.app import create_app
from tests.http_server import serving
from tests.integration.conftest import tick, write_scenario
from tests.smtp_server import SmtpServer, free_port

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "feedback"
BOUNCE_DOMAIN = "bounce.acme-analytics.example"

SCENARIO = """
id: news
name: News
entry:
  when: 'lead.source == "web"'
exit_when: [unsubscribed, bounced]
send_window:
  days: [mon, tue, wed, thu, fri, sat, sun]
  start: "00:00"
  end: "23:59"
from: "Acme Analytics <hello@acme-analytics.example>"
lead_fields: [whitepaper_title]
steps:
  - id: hello
    type: send_email
    template: welcome
    subject: "Hello {{ lead.first_name }}"
  - id: pause
    type: wait
    duration: 1d
  - id: again
    type: send_email
    template: case_study
    subject: "Again, {{ lead.first_name }}"
"""


def import_many(daemon: Daemon, tmp_path: Path, count: int) -> None:
    path = tmp_path / "leads.csv"
    rows = "".join(f"lead{i}@x{i % 7}.example,Lead{i},web\n" for i in range(count))
    path.write_text("email,first_name,source\n" + rows, encoding="utf-8")
    assert import_leads(daemon.store, path).problems == []


@pytest.fixture
def daemon(db_url: str, make_daemon: Callable[..., Daemon], workspace: Path) -> Daemon:
    write_scenario(workspace, SCENARIO)
    return make_daemon(
        db_url,
        bounce_domain=BOUNCE_DOMAIN,
        reputation_min_sends=20,
        marketing_email="marketing@acme-analytics.example",
        base_url="http://nurture.test",  # https would make the dashboard's session cookie Secure
        metrics_token="metrics-secret",
    )


@pytest.fixture
def listener(daemon: Daemon) -> Iterator[int]:
    """`nurture bounces serve`'s parts: the SMTP listener handing reports to the feedback job."""
    handler = FeedbackHandler(daemon.store, daemon.settings, daemon.clock)
    reader = ReportReader(ReturnPath(BOUNCE_DOMAIN, daemon.settings.secret_key))
    port = free_port()
    controller = Controller(
        BounceHandler(reader, lambda events, raw: handler.handle(events, raw), [BOUNCE_DOMAIN]),
        hostname="127.0.0.1",
        port=port,
    )
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def report(port: int, fixture: str, to: str, recipient: str, original_recipient: str) -> None:
    """A report in a real MTA's format, about `recipient`, delivered to return path `to`."""
    text = (FIXTURES / fixture).read_text().replace(original_recipient, recipient)
    data = text.replace("\r\n", "\n").replace("\n", "\r\n").encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("", [to], data)


def return_paths(smtp: SmtpServer) -> dict[str, str]:
    """Recipient -> the envelope sender its email went out with."""
    return {
        str(m["To"].addresses[0].addr_spec): sender
        for m, sender in zip(smtp.messages, smtp.recorder.mail_from, strict=True)
    }


def lead_row(daemon: Daemon, email: str) -> object:
    with daemon.store.reading() as conn:
        return conn.execute(select(LEADS).where(LEADS.c.email == email)).one()


def test_hard_bounce_suppresses_the_lead_and_its_timeline_keeps_the_reply(
    daemon: Daemon, listener: int, smtp: SmtpServer, clock: FakeClock, tmp_path: Path
) -> None:
    import_many(daemon, tmp_path, 2)
    tick(daemon)
    paths = return_paths(smtp)
    report(listener, "gmail_user_unknown.eml", paths["lead0@x0.example"], "lead0@x0.example", "anna.gone@gmail.com")
    lead = lead_row(daemon, "lead0@x0.example")
    assert lead.bounced and not lead.unsubscribed  # type: ignore[attr-defined]
    with daemon.store.reading() as conn:
        [suppressed] = conn.execute(select(SUPPRESSIONS.c.reason)).scalars().all()
        [note] = conn.execute(select(ACTIVITIES.c.note).where(ACTIVITIES.c.kind == "email_hard_bounce")).scalars()
    assert suppressed == "hard_bounce"
    assert note.startswith("hard bounce (5.1.1): address suppressed — dsn: smtp; 550-5.1.1")
    assert "The email account that you tried to reach does not exist" in note
    clock.advance(timedelta(days=2))
    tick(daemon)
    subjects = [(m["To"].addresses[0].addr_spec, m["Subject"]) for m in smtp.messages]
    assert ("lead1@x1.example", "Again, Lead1") in subjects
    assert ("lead0@x0.example", "Again, Lead0") not in subjects  # the bounced lead left the scenario
    with daemon.store.reading() as conn:
        exits = dict(conn.execute(select(ENROLMENTS.c.lead_id, ENROLMENTS.c.exit_reason)).all())
    assert exits[lead.id] == "bounced"  # type: ignore[attr-defined]


def test_forged_bounce_is_recorded_and_changes_nothing(
    daemon: Daemon, listener: int, smtp: SmtpServer, tmp_path: Path
) -> None:
    import_many(daemon, tmp_path, 1)
    tick(daemon)
    real = return_paths(smtp)["lead0@x0.example"]
    forged = real.replace("-", "-0", 1)  # someone guessing at the MAC
    report(listener, "postfix_user_unknown.eml", forged, "lead0@x0.example", "erik@nordwerk.example")
    assert not lead_row(daemon, "lead0@x0.example").bounced  # type: ignore[attr-defined]
    with daemon.store.reading() as conn:
        [(authenticated, decision)] = conn.execute(select(FEEDBACK.c.authenticated, FEEDBACK.c.decision)).all()
        assert conn.execute(select(SUPPRESSIONS)).all() == []
    assert not authenticated and decision == "unverified report: recorded, nothing changed"


def test_policy_refusals_never_suppress_and_soft_bounces_do_after_three(
    daemon: Daemon, listener: int, smtp: SmtpServer, tmp_path: Path
) -> None:
    import_many(daemon, tmp_path, 2)
    tick(daemon)
    paths = return_paths(smtp)
    for _ in range(3):
        report(listener, "gmail_dmarc_policy.eml", paths["lead0@x0.example"], "lead0@x0.example", "ben@gmail.com")
    assert not lead_row(daemon, "lead0@x0.example").bounced  # type: ignore[attr-defined]
    for count in range(1, 4):
        report(listener, "exim_mailbox_full.eml", paths["lead1@x1.example"], "lead1@x1.example", "gus@fullbox.example")
        assert lead_row(daemon, "lead1@x1.example").bounced is (count == 3)  # type: ignore[attr-defined]
    with daemon.store.reading() as conn:
        notes = conn.execute(select(ACTIVITIES.c.note).order_by(ACTIVITIES.c.id)).scalars().all()
    assert notes[0].startswith("refused by policy (5.7.26): the address is not suppressed — dsn: smtp; 550-5.7.26")
    assert notes[-1].startswith("soft bounce (5.2.2), 3 within 30 days: address suppressed")


def test_a_flood_of_complaints_pauses_the_scenario_until_it_is_resumed(
    daemon: Daemon, listener: int, smtp: SmtpServer, clock: FakeClock, tmp_path: Path
) -> None:
    import_many(daemon, tmp_path, 30)
    tick(daemon)
    assert len(smtp.messages) == 30
    paths = return_paths(smtp)
    for i in range(3):  # 3 complaints in 30 sends: 10%, far over 0.3%
        email = f"lead{i}@x{i % 7}.example"
        report(listener, "yahoo_arf_complaint.eml", "fbl@" + BOUNCE_DOMAIN, email, "hana@yahoo.com")
        # the ARF report quotes the original message's return path
        report(listener, "yahoo_arf_complaint.eml", paths[email], email, "hana@yahoo.com")
    paused = daemon.store.feedback.paused()
    assert list(paused) == ["news"]
    assert "complaint rate" in paused["news"].reason
    with daemon.store.reading() as conn:
        [alert] = conn.execute(select(NOTIFICATIONS.c.target, NOTIFICATIONS.c.subject)).all()
    assert tuple(alert) == ("marketing@acme-analytics.example", "Scenario paused: news")
    assert lead_row(daemon, "lead0@x0.example").unsubscribed  # type: ignore[attr-defined]

    clock.advance(timedelta(days=2))
    smtp.messages.clear()
    tick(daemon)
    assert [m for m in smtp.messages if m["Subject"].startswith("Again")] == []  # held back, not sent
    with daemon.store.reading() as conn:
        held = conn.execute(select(SENDS.c.status).where(SENDS.c.step == "again")).scalars().all()
    assert len(held) == 27 and set(held) == {"pending"}  # the three who complained exited

    assert daemon.store.feedback.resume("news", "max", clock.now())
    tick(daemon)
    assert len([m for m in smtp.messages if m["Subject"].startswith("Again")]) == 27
    assert daemon.store.feedback.paused() == {}


def test_an_address_suppressed_after_its_email_was_queued_gets_nothing(
    daemon: Daemon, smtp: SmtpServer, clock: FakeClock, tmp_path: Path
) -> None:
    import_many(daemon, tmp_path, 2)
    tick(daemon)
    added = daemon.store.feedback.import_suppressions(
        [Suppression("lead1@x1.example", "imported", None, "old tool")], clock.now()
    )
    assert added == 1
    clock.advance(timedelta(days=2))
    smtp.messages.clear()
    tick(daemon)
    assert [m["To"].addresses[0].addr_spec for m in smtp.messages] == ["lead0@x0.example"]
    with daemon.store.reading() as conn:
        statuses = dict(
            conn.execute(
                select(LEADS.c.email, SENDS.c.status)
                .join(LEADS, LEADS.c.id == SENDS.c.lead_id)
                .where(SENDS.c.step == "again")
            ).all()
        )
    assert statuses == {"lead0@x0.example": "sent", "lead1@x1.example": "suppressed"}


def test_dashboard_and_metrics_show_the_reputation_and_the_dashboard_resumes(
    daemon: Daemon, listener: int, smtp: SmtpServer, tmp_path: Path
) -> None:
    import_many(daemon, tmp_path, 25)
    tick(daemon)
    paths = return_paths(smtp)
    report(listener, "yahoo_arf_complaint.eml", paths["lead0@x0.example"], "lead0@x0.example", "hana@yahoo.com")
    report(listener, "gmail_user_unknown.eml", paths["lead1@x1.example"], "lead1@x1.example", "anna.gone@gmail.com")
    daemon.store.access.set_user("max", "correct horse battery", "Max Keller")
    with serving(create_app(daemon.settings, daemon.clock, daemon.store)) as base, httpx.Client(base_url=base) as site:
        bearer = {"Authorization": "Bearer metrics-secret"}
        metrics = site.get("/metrics", headers=bearer).text
        assert 'nurture_scenario_paused{scenario="news"} 1.0' in metrics
        assert 'nurture_reputation_rate{outcome="complaint",scenario="news"} 0.04' in metrics
        assert 'nurture_reputation_rate{outcome="hard_bounce",scenario="news"} 0.04' in metrics
        assert 'nurture_domain_reputation_rate{domain="x0.example",outcome="complaint"}' in metrics
        assert 'nurture_feedback_total{kind="complaint",source="arf"} 1.0' in metrics

        token = re.search(r'name="csrf" value="([^"]+)"', site.get("/login").text)
        assert token is not None
        site.post("/login", data={"username": "max", "password": "correct horse battery", "csrf": token.group(1)})
        page = site.get("/scenarios/news").text
        assert "Paused" in page and "complaint rate 4.00% over the last 25 sends exceeds 0.30%" in page
        assert '<table id="reputation">' in page and "<svg" in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        assert site.post("/scenarios/news/resume", data={}).status_code == 403  # no CSRF token, no resume
        answer = site.post("/scenarios/news/resume", data={"csrf": csrf.group(1)})
        assert answer.status_code == 303
        assert daemon.store.feedback.paused() == {}
        assert 'nurture_scenario_paused{scenario="news"}' not in site.get("/metrics", headers=bearer).text
