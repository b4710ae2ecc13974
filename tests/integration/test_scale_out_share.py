"""Several daemons on one PostgreSQL really share the work: each sends a share, none sends twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from nurture.store.db import make_engine
from nurture.store.migrate import upgrade
from nurture.store.tables import SENDS as S
from tests.integration.conftest import ROOT, wait_for, write_scenario
from tests.smtp_server import SmtpServer

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

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

LEADS, WORKERS = 600, ("node-0", "node-1", "node-2")


def daemon(url: str, workspace: Path, smtp: SmtpServer, worker: str, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "NURTURE_DATABASE_URL": url,
            "NURTURE_SCENARIOS_DIR": str(workspace / "scenarios"),
            "NURTURE_TEMPLATES_DIR": str(workspace / "email_templates"),
            "NURTURE_SMTP_PORT": str(smtp.port),
            "NURTURE_SMTP_POOL_SIZE": "2",
            "NURTURE_BATCH_SIZE": "10",
            "NURTURE_TICK_SECONDS": "0.2",
            "NURTURE_SEND_SECONDS": "0.2",
            "NURTURE_ENROL_SECONDS": "0.5",
            "NURTURE_FREQUENCY_CAP": "1000",
            "NURTURE_RENDER_PROCESSES": "0",
            "NURTURE_WORKER_ID": worker,
        }
    )
    handle = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "nurture", "run"], env=env, stdout=handle, stderr=handle)


def test_three_daemons_on_one_postgres_each_send_a_share_and_nothing_twice(
    pg_url: str, workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    write_scenario(workspace, ONE_EMAIL)
    engine = make_engine(pg_url)
    upgrade(engine)
    # The server takes a little while per message, as a real one does, so that no daemon can drain
    # the outbox alone before the others claim their batches.
    accept = smtp.recorder.handle_DATA

    async def slow_accept(server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.05)
        return await accept(server, session, envelope)

    smtp.recorder.handle_DATA = slow_accept  # type: ignore[method-assign]
    log = tmp_path / "daemons.log"
    processes = [daemon(pg_url, workspace, smtp, worker, log) for worker in WORKERS]
    try:
        for worker in WORKERS:
            wait_for(
                f"daemon {worker} to run",
                lambda w=worker: f"daemon {w} running" in log.read_text(),
                timeout=180,
                log=log,
            )
        # The work arrives once all three are running.
        csv = tmp_path / "leads.csv"
        csv.write_text(
            "email,first_name,timezone\n" + "".join(f"lead{i}@share.example,L{i},UTC\n" for i in range(LEADS))
        )
        imported = subprocess.run(
            [sys.executable, "-m", "nurture", "leads", "import", str(csv), "--db", pg_url],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert imported.returncode == 0, imported.stderr
        wait_for(f"all {LEADS} emails to arrive", lambda: len(smtp.messages) >= LEADS, timeout=180, log=log)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=60) for process in processes]
    assert codes == [0, 0, 0], log.read_text()[-3000:]

    with engine.connect() as conn:
        statuses = dict(conn.execute(select(S.c.status, func.count()).group_by(S.c.status)).all())  # type: ignore[arg-type]
        senders = Counter(dict(conn.execute(select(S.c.lease_owner, func.count()).group_by(S.c.lease_owner)).all()))  # type: ignore[arg-type]
    engine.dispose()
    assert statuses == {"sent": LEADS}
    received = Counter(str(m["Message-ID"]) for m in smtp.messages)
    assert len(received) == LEADS and set(received.values()) == {1}, "an email was sent twice"
    # Every sent row names the daemon that sent it; each of the three sent a real share.
    assert set(senders) == set(WORKERS) and sum(senders.values()) == LEADS, senders
    assert min(senders.values()) >= LEADS // 10, senders
