"""Programs that know about each other, through the daemon: static lists, suppression lists,
exclusive priorities; and hand-offs that go to the project's default owner."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from nurture.store.tables import AUDIT_LOG, ENROLMENTS, LEADS
from tests.integration.conftest import tick, write_scenario
from tests.integration.test_daemon import import_csv
from tests.smtp_server import SmtpServer

PROJECT = """
project:
  lists:
    webinar_2026: {}
    customers: {suppress: true}
  default_owner: {name: Sales desk, email: desk@acme.example}
"""
ALWAYS = 'send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "23:59"}'
NURTURE = f"""
id: nurture
name: Nurture
priority: 1
group: programs
lead_fields: [whitepaper_title]
{ALWAYS}
steps:
  - {{id: hello, type: send_email, template: welcome, subject: Hello}}
  - {{id: pause, type: wait, duration: 30d}}
"""
WEBINAR = f"""
id: webinar
name: Webinar follow-up
priority: 5
group: programs
entry: {{lists: [webinar_2026]}}
{ALWAYS}
steps:
  - {{id: pause, type: wait, duration: 1d}}
  - {{id: tell_sales, type: notify_sales, message: Came to the webinar}}
  - {{id: rest, type: wait, duration: 30d}}
"""
LEADS_CSV = (
    "email,first_name,timezone,country\nann@a.example,Ann,UTC,DE\nbob@b.example,Bob,UTC,DE\ncat@c.example,Cat,UTC,DE\n"
)


def enrolments(daemon: Daemon) -> dict[tuple[str, str], tuple[str, str | None]]:
    with daemon.store.reading() as conn:
        rows = conn.execute(
            select(LEADS.c.email, ENROLMENTS.c.scenario_id, ENROLMENTS.c.status, ENROLMENTS.c.exit_reason).join(
                LEADS, LEADS.c.id == ENROLMENTS.c.lead_id
            )
        ).all()
    return {(r.email, r.scenario_id): (r.status, r.exit_reason) for r in rows}


def test_lists_suppression_and_priorities_decide_who_is_in_which_program(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    (workspace / "scenarios" / "project.yaml").write_text(textwrap.dedent(PROJECT), encoding="utf-8")
    write_scenario(workspace, NURTURE, "nurture.yaml")
    write_scenario(workspace, WEBINAR, "webinar.yaml")
    daemon = make_daemon(db_url)
    import_csv(daemon, tmp_path, LEADS_CSV)
    with daemon.store.transaction() as conn:
        daemon.store.lists.add(conn, "customers", ["CAT@c.example"], clock.now())
    tick(daemon)
    assert enrolments(daemon) == {
        ("ann@a.example", "nurture"): ("active", None),
        ("bob@b.example", "nurture"): ("active", None),
    }, "the customer enters nothing; nobody is on the webinar list yet"
    clock.advance(timedelta(hours=1))
    with daemon.store.transaction() as conn:
        daemon.store.lists.add(conn, "webinar_2026", ["bob@b.example", "cat@c.example"], clock.now())
    tick(daemon)
    found = enrolments(daemon)
    assert found[("bob@b.example", "webinar")] == ("active", None)
    assert found[("bob@b.example", "nurture")] == ("exited", "left for 'webinar' (priority 5)")
    assert ("cat@c.example", "webinar") not in found, "a suppression list wins over every entry rule"
    assert found[("ann@a.example", "nurture")] == ("active", None)


def test_a_hand_off_goes_to_the_default_owner_and_the_owner_is_saved_on_the_lead(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    (workspace / "scenarios" / "project.yaml").write_text(textwrap.dedent(PROJECT), encoding="utf-8")
    write_scenario(workspace, WEBINAR, "webinar.yaml")
    daemon = make_daemon(db_url)
    import_csv(daemon, tmp_path, LEADS_CSV)
    with daemon.store.transaction() as conn:
        daemon.store.lists.add(conn, "webinar_2026", ["ann@a.example"], clock.now())
    tick(daemon)
    clock.advance(timedelta(days=1, minutes=1))
    tick(daemon)
    tick(daemon)
    to_desk = [m for m in smtp.messages if m["To"].addresses[0].addr_spec == "desk@acme.example"]
    assert [m["Subject"] for m in to_desk] == ["Handed over by 'Webinar follow-up': Ann, unknown company"]
    lead = daemon.store.leads.by_email("ann@a.example")
    assert lead is not None and lead.owner == "desk@acme.example"
    with daemon.store.reading() as conn:
        details = [d for (d,) in conn.execute(select(AUDIT_LOG.c.detail)).all() if d.get("notify_sales")]
    assert details[0]["notify_sales"][0]["owner"] == "desk@acme.example"
