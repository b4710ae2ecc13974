"""What happens when the SMTP server says no, hangs up or stalls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from nurture.clock import FakeClock
from nurture.config import Settings
from nurture.daemon import Daemon
from nurture.mail.message import BuiltMessage, MessageError
from nurture.mail.sender import SmtpPool
from nurture.store.tables import ENROLMENTS, LEADS, SENDS, SUPPRESSIONS
from tests.integration.conftest import pool_timer, ticks, write_scenario
from tests.integration.test_daemon import TWO_STEP, import_csv
from tests.smtp_server import SmtpServer

SMTP_MODES = True  # every test against a server that offers PIPELINING and one that does not

THREE = (
    "email,first_name,company,timezone,source\n"
    "ann@alpha.example,Ann,A,UTC,web\nbob@beta.example,Bob,B,UTC,web\ncho@gamma.example,Cho,C,UTC,web\n"
)


def send_row(daemon: Daemon, email: str) -> dict[str, object]:
    with daemon.store.engine.connect() as conn:
        row = conn.execute(
            select(SENDS).join(LEADS, LEADS.c.id == SENDS.c.lead_id).where(LEADS.c.email == email).order_by(SENDS.c.id)
        ).first()
    assert row is not None
    return dict(row._mapping)


def setup(make_daemon: Callable[..., Daemon], workspace: Path, tmp_path: Path, url: str, **kw: object) -> Daemon:
    write_scenario(workspace, TWO_STEP)
    daemon = make_daemon(url, **kw)
    import_csv(daemon, tmp_path, THREE)
    return daemon


def test_temporary_451_is_retried_with_backoff_and_delivered_once(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    daemon = setup(make_daemon, workspace, tmp_path, db_url)
    smtp.recorder.rcpt_replies["bob@beta.example"] = "451 4.7.1 greylisted, try again later"

    async def scenario() -> None:
        await daemon.tick()
        row = send_row(daemon, "bob@beta.example")
        assert row["status"] == "pending" and row["attempts"] == 1
        assert "451" in str(row["last_error"])
        assert row["next_attempt_at"] == clock.now() + timedelta(seconds=60)
        clock.advance(timedelta(seconds=30))
        await daemon.tick()  # not due yet
        assert sorted(smtp.recorder.by_recipient()) == ["ann@alpha.example", "cho@gamma.example"]
        del smtp.recorder.rcpt_replies["bob@beta.example"]
        await ticks(daemon, clock, timedelta(seconds=31))

    asyncio.run(scenario())
    assert [m["Subject"] for m in smtp.recorder.by_recipient()["bob@beta.example"]] == ["Hello Bob"]
    assert send_row(daemon, "bob@beta.example")["status"] == "sent"


def test_permanent_550_bounces_suppresses_and_stops_the_lead(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    daemon = setup(make_daemon, workspace, tmp_path, db_url)
    smtp.recorder.rcpt_replies["bob@beta.example"] = "550 5.1.1 no such user"
    asyncio.run(ticks(daemon, clock, timedelta(hours=1), timedelta(days=3)))
    row = send_row(daemon, "bob@beta.example")
    assert row["status"] == "bounced" and row["attempts"] == 1 and "550" in str(row["last_error"])
    with daemon.store.engine.connect() as conn:
        assert (
            conn.execute(select(SUPPRESSIONS.c.reason).where(SUPPRESSIONS.c.email == "bob@beta.example")).scalar()
            == "bounce"
        )
        lead = conn.execute(select(LEADS.c.id, LEADS.c.bounced).where(LEADS.c.email == "bob@beta.example")).one()
        assert lead.bounced is True
        enrolment = conn.execute(
            select(ENROLMENTS.c.status, ENROLMENTS.c.exit_reason).where(ENROLMENTS.c.lead_id == lead.id)
        ).one()
    assert tuple(enrolment) == ("exited", "bounced")
    assert "bob@beta.example" not in smtp.recorder.by_recipient()
    assert len(smtp.recorder.by_recipient()["ann@alpha.example"]) == 2


def test_a_refused_sender_is_retried_on_4xx_and_fails_on_5xx_without_suppressing_anyone(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    daemon = setup(make_daemon, workspace, tmp_path, db_url, max_attempts=2)
    smtp.recorder.mail_reply = "451 4.3.0 try later"

    async def scenario() -> None:
        await daemon.tick()
        row = send_row(daemon, "ann@alpha.example")
        assert row["status"] == "pending" and row["attempts"] == 1
        assert "MAIL: 451" in str(row["last_error"])
        smtp.recorder.mail_reply = "553 5.1.8 sender domain does not exist"
        await ticks(daemon, clock, timedelta(minutes=5))

    asyncio.run(scenario())
    row = send_row(daemon, "ann@alpha.example")
    assert row["status"] == "failed" and "MAIL: 553 5.1.8" in str(row["last_error"])
    assert smtp.messages == []
    with daemon.store.engine.connect() as conn:
        assert conn.execute(select(SUPPRESSIONS)).all() == []  # our sender's problem, not the leads'


def test_an_address_that_could_smuggle_smtp_parameters_never_reaches_the_server(smtp: SmtpServer) -> None:
    pool = SmtpPool(Settings(smtp_port=smtp.port))
    message = BuiltMessage("us@acme.example", "ann@alpha.example> NOTIFY=NEVER", "<m@x>", b"Subject: x\r\n\r\nhi\r\n")

    async def scenario() -> None:
        with pytest.raises(MessageError, match="not a bare address"):
            await pool.send(message)
        await pool.close()

    asyncio.run(scenario())
    assert smtp.recorder.rcpts == [] and smtp.messages == []


def test_dropped_connection_is_retried_and_the_pool_recovers(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    daemon = setup(make_daemon, workspace, tmp_path, db_url, smtp_pool_size=1)
    smtp.recorder.drop_next = 1
    asyncio.run(ticks(daemon, clock, timedelta(seconds=61)))
    received = smtp.recorder.by_recipient()
    assert sorted(received) == ["ann@alpha.example", "bob@beta.example", "cho@gamma.example"]
    assert all(len(messages) == 1 for messages in received.values())


def test_reply_421_on_data_pauses_sending_and_everything_goes_out_after_the_pause(
    sqlite_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    daemon = setup(make_daemon, workspace, tmp_path, sqlite_url, smtp_pool_size=1)
    timer = pool_timer(daemon)
    smtp.recorder.data_replies = ["421 4.3.2 service shutting down"]

    async def scenario() -> None:
        await daemon.tick()
        rows = [send_row(daemon, e) for e in ("ann@alpha.example", "bob@beta.example", "cho@gamma.example")]
        assert {r["status"] for r in rows} == {"pending"}
        assert sorted(str(r["last_error"]) for r in rows) == ["DATA: 421 4.3.2 service shutting down", "None", "None"]
        timer.now += 31
        await ticks(daemon, clock, timedelta(seconds=61))

    asyncio.run(scenario())
    assert len(smtp.messages) == 3


def test_server_that_stalls_times_out_and_is_retried(
    sqlite_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    daemon = setup(make_daemon, workspace, tmp_path, sqlite_url, smtp_timeout=2, smtp_pool_size=3)
    smtp.recorder.delay = 5

    async def scenario() -> None:
        await daemon.tick()
        rows = [send_row(daemon, e) for e in ("ann@alpha.example", "bob@beta.example", "cho@gamma.example")]
        assert {r["status"] for r in rows} == {"pending"}
        assert all("Timeout" in str(r["last_error"]) for r in rows), [r["last_error"] for r in rows]
        smtp.recorder.delay = 0
        # Wait until the stalled server has finished (or abandoned) what it had, so the
        # retries below are counted alone.
        await asyncio.to_thread(smtp.recorder.wait_until_idle)
        smtp.recorder.messages.clear()
        await ticks(daemon, clock, timedelta(seconds=61))

    asyncio.run(scenario())
    assert len(smtp.messages) == 3


def test_retries_stop_after_max_attempts(
    sqlite_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    daemon = setup(make_daemon, workspace, tmp_path, sqlite_url, max_attempts=3)
    smtp.recorder.rcpt_replies["bob@beta.example"] = "452 4.2.2 mailbox full"
    asyncio.run(ticks(daemon, clock, *[timedelta(minutes=10)] * 4))
    row = send_row(daemon, "bob@beta.example")
    assert row["status"] == "failed" and row["attempts"] == 3 and "452" in str(row["last_error"])
