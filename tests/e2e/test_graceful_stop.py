"""`nurture run` stops gracefully on SIGTERM and SIGINT, even while the SMTP server stalls a batch:
the batch completes, no email is left `sending`, the exit code is 0 and a restart sends nothing twice."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ROOT, wait_for, write_scenario
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.slow

ONE_EMAIL = """
id: one_email
name: One email
exit_when: [unsubscribed, bounced]
lead_fields: [whitepaper_title]
send_window:
  days: [mon, tue, wed, thu, fri, sat, sun]
  start: "00:00"
  end: "23:59"
steps:
  - id: only
    type: send_email
    template: welcome
    subject: "Hello {{ lead.first_name }}"
"""

LEADS, BATCH = 60, 20


def nurture(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "nurture", *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def outbox(db: str) -> dict[str, int]:
    """The outbox line of `nurture status`, as counts by state."""
    line = next(line for line in nurture("status", "--db", db).splitlines() if line.startswith("outbox:"))
    return {state: int(n) for n, state in re.findall(r"(\d+) (pending|sending|sent|bounced|failed)", line)}


def daemon(db: str, workspace: Path, smtp: SmtpServer, worker: str, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "NURTURE_DATABASE_URL": db,
            "NURTURE_SCENARIOS_DIR": str(workspace / "scenarios"),
            "NURTURE_TEMPLATES_DIR": str(workspace / "email_templates"),
            "NURTURE_SMTP_PORT": str(smtp.port),
            "NURTURE_SMTP_POOL_SIZE": "2",
            "NURTURE_SMTP_TIMEOUT": "60",  # the stall below is not a time-out
            "NURTURE_BATCH_SIZE": str(BATCH),
            "NURTURE_TICK_SECONDS": "0.2",
            "NURTURE_SEND_SECONDS": "0.2",
            "NURTURE_ENROL_SECONDS": "0.5",
            "NURTURE_FREQUENCY_CAP": "1000",
            "NURTURE_WORKER_ID": worker,
            "NURTURE_RENDER_PROCESSES": "0",
        }
    )
    handle = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "nurture", "run"], env=env, stdout=handle, stderr=handle)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_while_the_smtp_server_stalls_completes_the_batch_and_a_restart_sends_nothing_twice(
    stop: signal.Signals, workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'nurture.db'}"
    write_scenario(workspace, ONE_EMAIL)
    nurture("db", "upgrade", "--db", db)
    csv = tmp_path / "leads.csv"
    csv.write_text("email,first_name,timezone\n" + "".join(f"lead{i}@stop.example,L{i},UTC\n" for i in range(LEADS)))
    nurture("leads", "import", str(csv), "--db", db)

    # The server stalls: it takes each message's DATA and holds its reply until released (both
    # connections wait, so the daemon is still in its first batch when the signal comes).
    stalled, release = threading.Event(), threading.Event()
    accept = smtp.recorder.handle_DATA

    async def stall(server: Any, session: Any, envelope: Any) -> str:
        stalled.set()
        while not release.is_set():
            await asyncio.sleep(0.01)
        return await accept(server, session, envelope)

    smtp.recorder.handle_DATA = stall  # type: ignore[method-assign]
    log = tmp_path / "daemon.log"
    first = daemon(db, workspace, smtp, "first", log)
    try:
        wait_for("the first message's DATA to reach the server", stalled.is_set, log=log)
        first.send_signal(stop)  # delivered before the daemon can read the server's reply
        release.set()
        assert first.wait(timeout=120) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        release.set()
        if first.poll() is None:
            first.kill()
    after_stop = outbox(db)
    assert after_stop.get("sending", 0) == 0, after_stop
    # The stalled batch completed (every row marked sent arrived), and the daemon stopped after it
    # rather than draining the rest of the outbox first.
    assert after_stop["sent"] == len(smtp.messages)
    assert 1 <= after_stop["sent"] <= BATCH, after_stop

    second = daemon(db, workspace, smtp, "second", log)
    try:
        wait_for(
            "the second daemon to run", lambda: "daemon second running" in log.read_text(errors="replace"), log=log
        )
        wait_for(f"all {LEADS} emails to arrive", lambda: len(smtp.messages) >= LEADS, log=log)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=120) == 0, log.read_text(errors="replace")[-3000:]
    assert outbox(db) == {"pending": 0, "sending": 0, "sent": LEADS, "bounced": 0, "failed": 0}
    received = Counter(str(m["Message-ID"]) for m in smtp.messages)
    assert len(received) == LEADS and set(received.values()) == {1}, "a restart sent something twice"
