"""What the README promises about delivery when the SMTP server misbehaves: the backoff's
growing delays and its end, and the one repeat a time-out after DATA can cause."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from tests.integration.test_daemon import import_csv
from tests.integration.test_smtp_faults import send_row, setup
from tests.smtp_server import SmtpServer


def attempt_times(smtp: SmtpServer, clock: FakeClock, address: str) -> list[datetime]:
    """The product clock's time at every RCPT the server sees for `address`."""
    seen: list[datetime] = []
    rcpt = smtp.recorder.handle_RCPT

    async def timed(server: Any, session: Any, envelope: Any, to: str, options: Any) -> str:
        if to.lower() == address:
            seen.append(clock.now())
        return await rcpt(server, session, envelope, to, options)

    smtp.recorder.handle_RCPT = timed  # type: ignore[method-assign]
    return seen


def test_three_4xx_in_a_row_back_off_60_120_240_seconds_then_the_send_fails_at_max_attempts(
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    daemon = setup(make_daemon, workspace, tmp_path, db_url, max_attempts=4, retry_base_seconds=60)
    smtp.recorder.rcpt_replies["bob@beta.example"] = "451 4.7.1 greylisted, try again later"
    attempts = attempt_times(smtp, clock, "bob@beta.example")
    start = clock.now()

    async def scenario() -> None:
        await daemon.tick()
        for _ in range(90):  # 15 minutes in 10-second ticks
            clock.advance(timedelta(seconds=10))
            await daemon.tick()
        assert daemon.pool is not None
        await daemon.pool.close()

    asyncio.run(scenario())
    # Each failure doubles the wait: 60 s, then 120 s, then 240 s; the fourth attempt is the last.
    assert [int((at - start).total_seconds()) for at in attempts] == [0, 60, 180, 420]
    row = send_row(daemon, "bob@beta.example")
    assert (row["status"], row["attempts"]) == ("failed", 4) and "451" in str(row["last_error"])
    received = smtp.recorder.by_recipient()
    assert "bob@beta.example" not in received
    assert sorted(received) == ["ann@alpha.example", "cho@gamma.example"]


def test_a_server_that_stalls_after_data_repeats_at_most_one_message_per_connection_with_its_message_id(
    sqlite_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    six = "email,first_name,timezone,source\n" + "".join(f"lead{n}@six.example,L{n},UTC,web\n" for n in range(6))
    daemon = setup(make_daemon, workspace, tmp_path, sqlite_url, smtp_timeout=0.5, smtp_pool_size=2)
    import_csv(daemon, tmp_path, six)
    addresses = ["ann@alpha.example", "bob@beta.example", "cho@gamma.example"] + [
        f"lead{n}@six.example" for n in range(6)
    ]
    # The server takes the first message on each of the two connections, then stalls its reply
    # past the sender's time-out (a real MTA delivers what it has taken even if the reply is
    # never read): the sender cannot know these two arrived.
    stalls = [2]
    accept = smtp.recorder.handle_DATA

    async def take_then_stall(server: Any, session: Any, envelope: Any) -> str:
        reply = await accept(server, session, envelope)
        if stalls[0] > 0:
            stalls[0] -= 1
            await asyncio.sleep(5)
        return reply

    smtp.recorder.handle_DATA = take_then_stall  # type: ignore[method-assign]

    async def scenario() -> None:
        await daemon.tick()
        timed_out = [r for r in (send_row(daemon, a) for a in addresses) if r["status"] == "pending"]
        assert len(timed_out) == 2 and all("Timeout" in str(r["last_error"]) for r in timed_out)
        clock.advance(timedelta(seconds=61))  # past the first retry delay
        await daemon.tick()
        assert daemon.pool is not None
        await daemon.pool.close()

    asyncio.run(scenario())
    by_id: dict[str, list[str]] = {}
    for message in smtp.messages:
        by_id.setdefault(str(message["Message-ID"]), []).append(message["To"].addresses[0].addr_spec)
    # Every lead's email arrived; the two that timed out in DATA arrived twice (one per connection),
    # each repeat carrying the same Message-ID and going to the same lead; nothing else repeated.
    recipients = {to for tos in by_id.values() for to in tos}
    assert recipients == set(addresses) and len(by_id) == 9
    repeats = {mid: tos for mid, tos in by_id.items() if len(tos) > 1}
    assert len(repeats) == 2 and all(len(tos) == 2 and tos[0] == tos[1] for tos in repeats.values())
    for address in recipients:
        assert send_row(daemon, address)["status"] == "sent"
