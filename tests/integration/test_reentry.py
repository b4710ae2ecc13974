"""Re-entry policies in the running daemon: when does a lead who still meets the entry criteria
get the scenario's first email again?"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from nurture.clock import FakeClock
from nurture.daemon import Daemon
from tests.integration.conftest import write_scenario
from tests.integration.test_daemon import import_csv
from tests.smtp_server import SmtpServer

SCENARIO = """
id: monthly
name: Monthly
entry:
  when: 'lead.source == "web"'
reentry:
  policy: {policy}
{cooldown}
exit_when: [unsubscribed, bounced]
lead_fields: [whitepaper_title]
send_window:
  days: [mon, tue, wed, thu, fri, sat, sun]
  start: "00:00"
  end: "23:59"
steps:
  - id: hello
    type: send_email
    template: welcome
    subject: "Hello {{{{ lead.first_name }}}}"
  - id: pause
    type: wait
    duration: 30d
"""


@pytest.mark.parametrize(
    ("policy", "cooldown", "days"),
    [
        # Once only, though the lead matches all along.
        ("never", None, [0]),
        # The enrolment completes on day 30; the cooldown runs from there: back on day 40.
        ("after_exit", "10d", [0, 40]),
        # Without a cooldown, at the next run of the enrol job after the finish (a tick runs it
        # before the advance job that finishes the enrolment): day 31, then 62.
        ("after_exit", None, [0, 31, 62]),
        # The cooldown runs from each entry; the lead starts over while still in the 30-day wait.
        ("always", "10d", [0, 10, 20, 30, 40, 50, 60]),
        ("always", "45d", [0, 45]),
    ],
)
def test_reentry_policy_decides_when_a_matching_lead_gets_the_first_email_again(
    policy: str,
    cooldown: str | None,
    days: list[int],
    db_url: str,
    make_daemon: Callable[..., Daemon],
    workspace: Path,
    smtp: SmtpServer,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    write_scenario(workspace, SCENARIO.format(policy=policy, cooldown=f"  cooldown: {cooldown}" if cooldown else ""))
    daemon = make_daemon(db_url, frequency_cap=100)
    import_csv(daemon, tmp_path, "email,first_name,timezone,source\nann@alpha.example,Ann,UTC,web\n")
    start = clock.now()
    arrived: list[int] = []

    async def seventy_days() -> None:
        for day in range(70):
            clock.set(start + timedelta(days=day))
            before = len(smtp.messages)
            await daemon.tick()
            arrived.extend([day] * (len(smtp.messages) - before))
        assert daemon.pool is not None
        await daemon.pool.close()

    asyncio.run(seventy_days())
    assert arrived == days
    assert len({m["Message-ID"] for m in smtp.messages}) == len(days)
