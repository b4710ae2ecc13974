"""SMTP replies that are not about the recipient never suppress it: a real server answers
at each phase of the conversation, and the store shows what became of each send."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from nurture.store.tables import ACTIVITIES, FEEDBACK
from nurture.store.tables import LEADS as L
from nurture.store.tables import SUPPRESSIONS as SUP
from tests.integration.conftest import pool_timer, ticks
from tests.integration.test_smtp_faults import send_row, setup
from tests.smtp_server import SmtpServer, free_port

SMTP_MODES = True  # every test against a server that offers PIPELINING and one that does not

LEADS = ("ann@alpha.example", "bob@beta.example", "cho@gamma.example")


def suppressed(daemon: Daemon) -> list[str]:
    with daemon.store.engine.connect() as conn:
        listed = [r for (r,) in conn.execute(select(SUP.c.email))]
        bounced = [r for (r,) in conn.execute(select(L.c.email).where(L.c.bounced.is_(True)))]
    return sorted(listed + bounced)


def test_content_rejected_at_the_end_of_data_fails_that_send_and_suppresses_nobody(
    db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, smtp: SmtpServer, clock: FakeClock, tmp_path: Path
) -> None:
    daemon = setup(make_daemon, workspace, tmp_path, db_url)
    smtp.recorder.data_replies.append("554 5.7.1 message content rejected")
    asyncio.run(ticks(daemon, clock))
    rows = {e: send_row(daemon, e) for e in LEADS}
    failed = [e for e, r in rows.items() if r["status"] == "failed"]
    assert len(failed) == 1
    assert rows[failed[0]]["last_error"] == "DATA: 554 5.7.1 message content rejected"
    assert sorted(e for e, r in rows.items() if r["status"] == "sent") == sorted(set(LEADS) - set(failed))
    assert suppressed(daemon) == []


def test_mailbox_full_at_the_end_of_data_fails_the_send_and_counts_a_soft_bounce_as_a_dsn_would(
    db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, smtp: SmtpServer, clock: FakeClock, tmp_path: Path
) -> None:
    daemon = setup(make_daemon, workspace, tmp_path, db_url, smtp_pool_size=1)
    smtp.recorder.data_replies.append("552 5.2.2 mailbox full")
    asyncio.run(ticks(daemon, clock))
    failed = [e for e in LEADS if send_row(daemon, e)["status"] == "failed"]
    assert len(failed) == 1 and suppressed(daemon) == []  # a full mailbox empties again
    assert send_row(daemon, failed[0])["last_error"] == "DATA: 552 5.2.2 mailbox full"
    with daemon.store.reading() as conn:
        counted = conn.execute(select(FEEDBACK.c.email, FEEDBACK.c.kind, FEEDBACK.c.status, FEEDBACK.c.source)).all()
        notes = conn.execute(select(ACTIVITIES.c.note).where(ACTIVITIES.c.kind == "email_soft_bounce")).scalars().all()
    assert [tuple(r) for r in counted] == [(failed[0], "soft_bounce", "5.2.2", "smtp")]
    assert notes == ["soft bounce (5.2.2), 1 of 3 within 30 days — smtp: DATA: 552 5.2.2 mailbox full"]


def test_unknown_recipient_bounces_and_a_relay_refusal_at_rcpt_fails_without_suppressing(
    db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, smtp: SmtpServer, clock: FakeClock, tmp_path: Path
) -> None:
    daemon = setup(make_daemon, workspace, tmp_path, db_url)
    smtp.recorder.rcpt_replies["bob@beta.example"] = "550 5.1.1 no such user"
    smtp.recorder.rcpt_replies["cho@gamma.example"] = "554 5.7.1 relay access denied"
    asyncio.run(ticks(daemon, clock))
    assert send_row(daemon, "bob@beta.example")["status"] == "bounced"
    cho = send_row(daemon, "cho@gamma.example")
    assert cho["status"] == "failed" and cho["last_error"] == "RCPT: 554 5.7.1 relay access denied"
    assert send_row(daemon, "ann@alpha.example")["status"] == "sent"
    assert suppressed(daemon) == ["bob@beta.example", "bob@beta.example"]


def test_a_blocked_greeting_pauses_sending_suppresses_nobody_and_everything_goes_out_after_recovery(
    db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, smtp: SmtpServer, clock: FakeClock, tmp_path: Path
) -> None:
    daemon = setup(make_daemon, workspace, tmp_path, db_url)
    timer = pool_timer(daemon)
    smtp.recorder.greeting_reply = "554 5.7.1 client host blocked"

    async def scenario() -> None:
        await daemon.tick()
        assert daemon.pool is not None and daemon.pool.paused
        assert "GREETING: 554 5.7.1 client host blocked" in daemon.pool.pause.reason
        rows = [send_row(daemon, e) for e in LEADS]
        assert {r["status"] for r in rows} == {"pending"}
        # The pool's connections were refused; the sends after them went back to the outbox
        # untried, not counted as attempts.
        blocked = "GREETING: 554 5.7.1 client host blocked"
        assert {r["last_error"] for r in rows} <= {blocked, None} and blocked in {r["last_error"] for r in rows}
        assert all(r["attempts"] == (1 if r["last_error"] else 0) for r in rows)
        # The pause is the daemon's status, for `nurture status` and /metrics.
        daemon.heartbeat()
        assert daemon.store.reports.status()["paused"] == [("w1", blocked)]
        clock.advance(timedelta(minutes=2))
        await daemon.tick()  # still paused: the outbox is left alone
        assert [send_row(daemon, e)["attempts"] for e in LEADS] == [r["attempts"] for r in rows]
        # Still blocked after the pause: the next pause is twice as long.
        timer.now += 31
        await daemon.tick()
        assert daemon.pool.pause.length == 60
        assert smtp.messages == []
        smtp.recorder.greeting_reply = None  # the server recovers
        timer.now += 61
        await ticks(daemon, clock, timedelta(minutes=10))

    asyncio.run(scenario())
    assert sorted(smtp.recorder.by_recipient()) == sorted(LEADS)
    assert {send_row(daemon, e)["status"] for e in LEADS} == {"sent"}
    assert suppressed(daemon) == []
    assert daemon.pool is not None and not daemon.pool.paused


def test_a_sender_refused_by_policy_pauses_sending_and_suppresses_nobody(
    db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, smtp: SmtpServer, clock: FakeClock, tmp_path: Path
) -> None:
    daemon = setup(make_daemon, workspace, tmp_path, db_url)
    pool_timer(daemon)
    smtp.recorder.mail_reply = "550 5.7.1 sender reputation too low"
    asyncio.run(ticks(daemon, clock))
    assert daemon.pool is not None and daemon.pool.paused
    assert {send_row(daemon, e)["status"] for e in LEADS} == {"pending"}
    assert smtp.recorder.rcpts == [] and suppressed(daemon) == []


def test_a_421_at_rcpt_pauses_sending_and_suppresses_nobody(
    db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, smtp: SmtpServer, clock: FakeClock, tmp_path: Path
) -> None:
    daemon = setup(make_daemon, workspace, tmp_path, db_url, smtp_pool_size=1)
    pool_timer(daemon)
    for email in LEADS:
        smtp.recorder.rcpt_replies[email] = "421 4.7.0 too many errors, closing"
    asyncio.run(ticks(daemon, clock))
    assert daemon.pool is not None and daemon.pool.paused
    assert {send_row(daemon, e)["status"] for e in LEADS} == {"pending"}
    assert len(smtp.recorder.rcpts) == 1 and suppressed(daemon) == []


def test_a_server_that_refuses_connections_pauses_sending_and_suppresses_nobody(
    db_url: str, make_daemon: Callable[..., Daemon], workspace: Path, clock: FakeClock, tmp_path: Path
) -> None:
    daemon = setup(make_daemon, workspace, tmp_path, db_url, smtp_port=free_port())  # nobody listens there
    pool_timer(daemon)
    asyncio.run(ticks(daemon, clock))
    assert daemon.pool is not None and daemon.pool.paused
    rows = [send_row(daemon, e) for e in LEADS]
    assert {r["status"] for r in rows} == {"pending"}
    assert any(str(r["last_error"]).startswith("CONNECT: ") for r in rows)
    assert suppressed(daemon) == []
