"""One bad row never blocks the others: a lead whose data breaks its step or its message
fails alone, with its error recorded, while the rest of its batch goes on."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update

from nurture.daemon import Daemon
from nurture.store.tables import AUDIT_LOG, ENROLMENTS, LEADS
from nurture.web.app import create_app
from tests.http_server import serving
from tests.integration.conftest import ROOT, write_scenario
from tests.integration.test_authoring_aids import csrf
from tests.integration.test_daemon import TWO_STEP, import_csv, import_web_leads, sends_by_status
from tests.integration.test_smtp_faults import send_row
from tests.integration.test_web import log_in
from tests.smtp_server import SmtpServer

SIZED = """
id: sized
name: Sized by a lead field
entry:
  when: 'lead.source == "web"'
exit_when: [unsubscribed, bounced]
lead_fields: [copies, rounds, pad]
send_window:
  days: [mon, tue, wed, thu, fri]
  start: "08:00"
  end: "18:00"
from: "Acme <hello@acme.example>"
steps:
  - id: hello
    type: send_email
    template: sized
    subject: "Hello {{ lead.first_name }}"
"""
# Repeats sized by lead fields: `validate` cannot see the size, and the render finds it out.
SIZED_TEMPLATE = (
    '{% extends "_layout.html" %}{% block body %}'
    '{% for a in "x" * lead.copies|int %}{% for b in "y" * lead.rounds|int %}{% endfor %}'
    '<p>{{ lead.first_name }}, one more copy{{ "." * lead.pad|int }}</p>{% endfor %}{% endblock %}'
)

LEADS_ = ["ann@alpha.example", "bob@beta.example", "cho@gamma.example", "dan@delta.example"]


def corrupt(daemon: Daemon, email: str) -> None:
    """Data no import would store (custom fields that are a list, not a mapping), as a bug
    or a hand-edited database might leave it."""
    with daemon.store.transaction() as conn:
        conn.execute(update(LEADS).where(LEADS.c.email == email).values(custom=[1, 2]))


def test_a_lead_whose_message_cannot_be_built_fails_alone_and_the_batch_is_sent(
    db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    write_scenario(workspace, TWO_STEP)
    daemon = make_daemon(db_url)
    import_web_leads(daemon, tmp_path, LEADS_)

    async def scenario() -> None:
        await daemon.enrol()
        await daemon.advance()  # the emails are queued
        corrupt(daemon, "bob@beta.example")
        await daemon.send()
        assert daemon.pool is not None
        await daemon.pool.close()

    asyncio.run(scenario())
    assert sorted(smtp.recorder.by_recipient()) == sorted(set(LEADS_) - {"bob@beta.example"})
    bob = send_row(daemon, "bob@beta.example")
    assert bob["status"] == "failed" and bob["attempts"] == 1
    assert str(bob["last_error"]).startswith("the message could not be built: TypeError")
    assert sends_by_status(daemon) == {"sent": 3, "failed": 1}


def test_a_render_over_the_sandbox_bounds_fails_at_once_without_retries_and_the_batch_is_sent(
    db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    write_scenario(workspace, SIZED)
    (workspace / "email_templates" / "sized.html").write_text(SIZED_TEMPLATE, encoding="utf-8")
    daemon = make_daemon(db_url, max_attempts=6, retry_base_seconds=0)
    rows = {  # copies, rounds, pad
        "ann@alpha.example": (2, 1, 1),
        "big@beta.example": (90_000, 1, 50_000),  # would be 4.5 GB: over the size limit after 20 copies
        "slow@gamma.example": (90_000, 90_000, 1),  # 8.1e9 loop turns: over the time limit
        "dan@delta.example": (3, 2, 1),
    }
    import_csv(
        daemon,
        tmp_path,
        "email,first_name,timezone,source,copies,rounds,pad\n"
        + "".join(f"{email},X,UTC,web,{c},{r},{p}\n" for email, (c, r, p) in rows.items()),
    )

    async def scenario() -> None:
        await daemon.enrol()
        await daemon.advance()
        await daemon.send()
        await daemon.send()  # nothing is left to retry: the failures were final
        assert daemon.pool is not None
        await daemon.pool.close()

    asyncio.run(scenario())
    assert sorted(smtp.recorder.by_recipient()) == ["ann@alpha.example", "dan@delta.example"]
    big, slow = send_row(daemon, "big@beta.example"), send_row(daemon, "slow@gamma.example")
    assert big["status"] == "failed" and big["attempts"] == 1, big
    assert str(big["last_error"]).startswith("template 'sized': output is over the limit of"), big
    assert slow["status"] == "failed" and slow["attempts"] == 1, slow
    assert str(slow["last_error"]) == "template 'sized': rendering took longer than 2s", slow
    assert sends_by_status(daemon) == {"sent": 2, "failed": 2}


def cli(workspace: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`nurture ARGS` as an operator runs it, on the test's project."""
    env = dict(os.environ)
    env.update({"NURTURE_SCENARIOS_DIR": str(workspace / "scenarios"),
                "NURTURE_TEMPLATES_DIR": str(workspace / "email_templates")})  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "nurture", *args], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env
    )


def test_a_lead_whose_step_raises_is_parked_with_its_error_the_batch_goes_on_and_it_resumes_after_the_fix(
    db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    write_scenario(workspace, TWO_STEP)
    daemon = make_daemon(db_url)
    import_web_leads(daemon, tmp_path, LEADS_)

    async def advance_and_send() -> None:
        await daemon.enrol()
        await daemon.advance()
        await daemon.send()
        assert daemon.pool is not None
        await daemon.pool.close()

    async def enrol() -> None:
        await daemon.enrol()

    asyncio.run(enrol())
    corrupt(daemon, "cho@gamma.example")
    asyncio.run(advance_and_send())
    assert sorted(smtp.recorder.by_recipient()) == sorted(set(LEADS_) - {"cho@gamma.example"})
    [cho] = enrolments_of(daemon, "cho@gamma.example")
    assert (cho.status, cho.state, cho.finished_at) == ("parked", "hello", None)
    assert cho.exit_reason.startswith("step failed at 'hello': TypeError")
    with daemon.store.reading() as conn:
        audit = conn.execute(select(AUDIT_LOG.c.detail).where(AUDIT_LOG.c.kind == "step_failed")).all()
    assert len(audit) == 1 and "TypeError" in audit[0].detail["error"]

    # Parked, it stays in its scenario: not stepped again, not enrolled a second time.
    asyncio.run(advance_and_send())
    assert enrolments_of(daemon, "cho@gamma.example") == [cho]
    assert "cho@gamma.example" not in smtp.recorder.by_recipient()

    status = cli(workspace, "status", "--db", db_url)
    assert status.returncode == 0, status.stderr
    assert re.search(r"two_step\s+│\s+\S+\s+│\s+parked\s+│\s+hello\s+│\s+1", status.stdout), status.stdout
    assert "parked: 1 enrolment(s) whose step failed" in status.stdout
    assert "cho@gamma.example two_step: step failed at 'hello': TypeError" in status.stdout
    shown = cli(workspace, "leads", "show", "cho@gamma.example", "--db", db_url)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"two_step v\S+: parked at 'hello' \(step failed at 'hello': TypeError", shown.stdout)
    assert "nurture leads resume cho@gamma.example --scenario two_step" in shown.stdout

    with daemon.store.transaction() as conn:  # the operator fixes the data
        conn.execute(update(LEADS).where(LEADS.c.email == "cho@gamma.example").values(custom={}))
    resumed = cli(
        workspace, "leads", "resume", "cho@gamma.example", "--scenario", "two_step", "--by", "ops", "--db", db_url
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed cho@gamma.example in two_step" in resumed.stdout and "at 'hello'" in resumed.stdout
    again = cli(workspace, "leads", "resume", "cho@gamma.example", "--db", db_url)
    assert again.returncode == 1 and "cho@gamma.example has no parked enrolment" in again.stderr

    asyncio.run(advance_and_send())
    assert len(smtp.recorder.by_recipient()["cho@gamma.example"]) == 1
    [cho] = enrolments_of(daemon, "cho@gamma.example")
    assert (cho.status, cho.state, cho.exit_reason) == ("active", "pause", None)
    with daemon.store.reading() as conn:
        [resume] = conn.execute(select(AUDIT_LOG.c.detail).where(AUDIT_LOG.c.kind == "step_resumed")).all()
    assert resume.detail["by"] == "ops" and resume.detail["at_step"] == "hello"


def enrolments_of(daemon: Daemon, email: str) -> list[Any]:
    with daemon.store.reading() as conn:
        return list(
            conn.execute(
                select(ENROLMENTS).join(LEADS, LEADS.c.id == ENROLMENTS.c.lead_id).where(LEADS.c.email == email)
            ).all()
        )


def test_parked_leads_are_counted_in_metrics_listed_on_the_scenario_page_and_resumed_from_there(
    db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    write_scenario(workspace, TWO_STEP)
    daemon = make_daemon(db_url, base_url="http://nurture.test", metrics_token="metrics-secret")
    import_web_leads(daemon, tmp_path, LEADS_)

    async def run(*jobs: str) -> None:
        for job in jobs:
            await getattr(daemon, job)()
        if daemon.pool is not None:
            await daemon.pool.close()

    asyncio.run(run("enrol"))
    corrupt(daemon, "cho@gamma.example")
    asyncio.run(run("advance", "send"))
    with serving(create_app(daemon.settings, daemon.clock, daemon.store)) as base, httpx.Client(base_url=base) as site:
        metrics = site.get("/metrics", headers={"Authorization": "Bearer metrics-secret"}).text
        assert re.search(r"^nurture_enrolments_parked 1\.0$", metrics, re.M), metrics
        log_in(daemon, site)
        page = site.get("/scenarios/two_step").text
        row = re.search(r'<table id="parked-leads">.*?</table>', page, re.S)
        assert row is not None, page
        assert "cho@gamma.example" in row.group(0) and "step failed at &#39;hello&#39;: TypeError" in row.group(0)
        [action] = re.findall(r'action="(/scenarios/two_step/parked/\d+/resume)"', row.group(0))
        assert site.post(action, data={}).status_code == 403, "no CSRF token, nothing resumed"
        assert enrolments_of(daemon, "cho@gamma.example")[0].status == "parked"

        with daemon.store.transaction() as conn:  # the operator fixes the data
            conn.execute(update(LEADS).where(LEADS.c.email == "cho@gamma.example").values(custom={}))
        done = site.post(action, data={"csrf": csrf(page)}, follow_redirects=True)
        assert done.status_code == 200 and "resumed at &#39;hello&#39;" in done.text, done.text
        assert 'id="parked-leads"' not in done.text
        metrics = site.get("/metrics", headers={"Authorization": "Bearer metrics-secret"}).text
        assert re.search(r"^nurture_enrolments_parked 0\.0$", metrics, re.M), metrics
        again = site.post(action, data={"csrf": csrf(page)}, follow_redirects=True)
        assert "no parked enrolment" in again.text
    asyncio.run(run("advance", "send"))
    assert len(smtp.recorder.by_recipient()["cho@gamma.example"]) == 1
    with daemon.store.reading() as conn:
        [resume] = conn.execute(select(AUDIT_LOG.c.detail).where(AUDIT_LOG.c.kind == "step_resumed")).all()
    assert resume.detail["by"] == "max" and resume.detail["at_step"] == "hello"
