"""Batches follow each other without a gap: the next one is claimed while the last messages of
the one before are still on the wire; a stop gives back the batches claimed ahead, untried."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from nurture.mail.sender import RateLimiter
from nurture.store.tables import SENDS
from tests.integration.test_daemon import import_csv
from tests.integration.test_smtp_faults import send_row, setup
from tests.smtp_server import SmtpServer

SIX = "email,first_name,timezone,source\n" + "".join(f"lead{n}@six.example,L{n},UTC,web\n" for n in range(6))
ADDRESSES = ["ann@alpha.example", "bob@beta.example", "cho@gamma.example"] + [f"lead{n}@six.example" for n in range(6)]


def test_a_connection_free_at_the_end_of_a_batch_sends_from_the_next_one(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    # Nine emails in batches of three over two connections: the third message of the first
    # batch is held in DATA until the server has accepted a fourth one, which can only come
    # from the second batch, sent over the other connection while the first batch still waits.
    daemon = setup(make_daemon, workspace, tmp_path, db_url, batch_size=3, smtp_pool_size=2)
    import_csv(daemon, tmp_path, SIX)
    recorder = smtp.recorder
    accept = recorder.handle_DATA
    started = [0]
    overlapped: list[bool] = []

    async def hold_the_third(server: Any, session: Any, envelope: Any) -> str:
        started[0] += 1
        if started[0] == 3:
            deadline = time.monotonic() + 20  # well inside the sender's 30-second timeout
            while len(recorder.deliveries) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            overlapped.append(len(recorder.deliveries) >= 3)
        return await accept(server, session, envelope)

    recorder.handle_DATA = hold_the_third  # type: ignore[method-assign]

    async def scenario() -> None:
        await daemon.tick()
        assert daemon.pool is not None
        await daemon.pool.close()

    asyncio.run(scenario())
    assert overlapped == [True]
    # Every email went once, and every row says so.
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in smtp.messages) == sorted(ADDRESSES)
    assert len({str(m["Message-ID"]) for m in smtp.messages}) == len(ADDRESSES)
    for address in ADDRESSES:
        assert send_row(daemon, address)["status"] == "sent"


def test_a_stop_sends_the_batch_under_way_and_gives_back_the_batches_claimed_ahead_untried(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    daemon = setup(make_daemon, workspace, tmp_path, db_url, batch_size=3, smtp_pool_size=2)
    import_csv(daemon, tmp_path, SIX)
    release = threading.Event()
    accept = smtp.recorder.handle_DATA

    async def stall(server: Any, session: Any, envelope: Any) -> str:
        while not release.is_set():  # the server stalls every DATA until released
            await asyncio.sleep(0.01)
        return await accept(server, session, envelope)

    smtp.recorder.handle_DATA = stall  # type: ignore[method-assign]

    def leased() -> int:
        with daemon.store.engine.connect() as conn:
            return int(conn.execute(select(func.count()).where(SENDS.c.status == "sending")).scalar_one())

    async def scenario() -> None:
        await daemon.enrol()
        await daemon.advance()
        sending = asyncio.create_task(daemon.send())
        # While the first batch's messages wait on the server, the next batch is claimed.
        deadline = time.monotonic() + 120
        while await asyncio.to_thread(leased) < 6:
            assert time.monotonic() < deadline, "the next batch was never claimed"
            await asyncio.sleep(0.01)
        daemon.stop()
        release.set()
        stats = await sending
        assert stats.sent == 3
        assert daemon.pool is not None
        await daemon.pool.close()

    try:
        asyncio.run(scenario())
    finally:
        release.set()
    assert len(smtp.messages) == 3
    rows = [send_row(daemon, address) for address in ADDRESSES]
    assert sorted(str(r["status"]) for r in rows) == ["pending"] * 6 + ["sent"] * 3
    # What went back was not tried: no attempt counted, no lease kept.
    for row in rows:
        if row["status"] == "pending":
            assert (row["attempts"], row["lease_owner"], row["last_error"]) == (0, None, None), row


def test_a_send_the_rate_limit_holds_past_half_the_lease_goes_back_untried(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    # One connection, a message every 10 seconds, a 30-second lease. The first message goes at
    # once, the second after 10 seconds; the third could only start 20 seconds after the claim,
    # past half the lease, when another worker may already be taking the row over: it goes
    # back untried, and the next claim sends it.
    daemon = setup(make_daemon, workspace, tmp_path, db_url, smtp_pool_size=1, smtp_timeout=10, lease_seconds=30)
    now = [0.0]  # the sender's monotonic clock, moved only by the rate limit's waits

    async def wait(seconds: float) -> None:
        now[0] += seconds
        await asyncio.sleep(0)

    async def scenario() -> None:
        await daemon.enrol()
        await daemon.advance()
        outbox = daemon._outbox()
        assert daemon.pool is not None
        outbox.timer = lambda: now[0]
        daemon.pool.limiter = RateLimiter(0.1, burst=1, timer=lambda: now[0], sleep=wait)
        first = await outbox.drain_once()
        assert (first.claimed, first.sent) == (3, 2)
        assert len(smtp.messages) == 2
        held_back = [send_row(daemon, a) for a in ADDRESSES[:3] if send_row(daemon, a)["status"] != "sent"]
        assert [(r["status"], r["attempts"], r["lease_owner"]) for r in held_back] == [("pending", 0, None)]
        second = await outbox.drain_once()
        assert (second.claimed, second.sent) == (1, 1)
        await daemon.pool.close()

    asyncio.run(scenario())
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in smtp.messages) == sorted(ADDRESSES[:3])
