"""A hostile template under a real daemon: `nurture run` as a process, a real SMTP server, and a
template that passes `nurture validate` but whose loops are sized by lead fields, so only the
render can find out. The good leads' emails arrive, the hostile send fails alone with a clear
`last_error` at its first attempt, and SIGTERM stops the daemon within a process manager's
grace period while the hostile one is being tried."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from nurture.store.tables import LEADS, SENDS
from tests.e2e.test_graceful_stop import nurture, outbox, wait_for
from tests.integration.conftest import ROOT, write_scenario
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.slow

SIZED = """
id: sized
name: Sized by lead fields
lead_fields: [copies, rounds]
send_window:
  days: [mon, tue, wed, thu, fri, sat, sun]
  start: "00:00"
  end: "23:59"
steps:
  - id: only
    type: send_email
    template: sized
    subject: "Hello {{ lead.first_name }}"
"""
# Nested loops sized by two lead fields: one turn each for a good lead; 8.1e9 for the hostile
# one, which the sandbox's time bound stops. Nothing here is constant, so validate passes it.
TEMPLATE = (
    '{% extends "_layout.html" %}{% block body %}'
    '{% for a in "x" * lead.copies|int %}{% for b in "y" * lead.rounds|int %}{% endfor %}'
    "<p>Hi {{ lead.first_name }}, here is your copy.</p>{% endfor %}{% endblock %}"
)
GOOD, BATCH = 40, 10
HOSTILE = "hostile@guests.example"
GRACE_SECONDS = 30  # Kubernetes' default terminationGracePeriodSeconds (systemd allows 90)


def daemon(db: str, workspace: Path, smtp: SmtpServer, worker: str, log: Path, renders: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "NURTURE_DATABASE_URL": db,
            "NURTURE_SCENARIOS_DIR": str(workspace / "scenarios"),
            "NURTURE_TEMPLATES_DIR": str(workspace / "email_templates"),
            "NURTURE_SMTP_PORT": str(smtp.port),
            "NURTURE_SMTP_POOL_SIZE": "2",
            "NURTURE_BATCH_SIZE": str(BATCH),
            "NURTURE_TICK_SECONDS": "0.2",
            "NURTURE_SEND_SECONDS": "0.2",
            "NURTURE_ENROL_SECONDS": "0.5",
            "NURTURE_FREQUENCY_CAP": "1000",
            "NURTURE_WORKER_ID": worker,
            "NURTURE_RENDER_PROCESSES": str(renders),
            "NURTURE_SENDER_NAME": "Acme Analytics",
            "NURTURE_SENDER_POSTAL_ADDRESS": "100 Main Street, Boston, MA 02110",
        }
    )
    handle = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "nurture", "run"], env=env, stdout=handle, stderr=handle)


def hostile_send(db: str) -> dict[str, object] | None:
    engine = create_engine(db)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                select(SENDS.c.status, SENDS.c.attempts, SENDS.c.last_error)
                .join(LEADS, LEADS.c.id == SENDS.c.lead_id)
                .where(LEADS.c.email == HOSTILE)
            ).first()
    finally:
        engine.dispose()
    return None if row is None else dict(row._mapping)


@pytest.mark.parametrize("renders", [0, 1], ids=["render-in-sender", "render-process"])
def test_a_hostile_template_that_passes_validate_fails_alone_and_sigterm_stops_the_daemon_while_it_is_tried(
    renders: int, workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'nurture.db'}"
    write_scenario(workspace, SIZED)
    (workspace / "email_templates" / "sized.html").write_text(TEMPLATE, encoding="utf-8")
    checked = subprocess.run(
        [sys.executable, "-m", "nurture", "validate", str(workspace / "scenarios"),
         "--templates", str(workspace / "email_templates")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "NURTURE_SENDER_NAME": "Acme Analytics",
             "NURTURE_SENDER_POSTAL_ADDRESS": "100 Main Street, Boston, MA 02110"},
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    nurture("db", "upgrade", "--db", db)
    good = [f"lead{i}@good.example" for i in range(GOOD)]
    rows = [f"{email},L{i},UTC,1,1\n" for i, email in enumerate(good)]
    rows.insert(BATCH + BATCH // 2, f"{HOSTILE},Mallory,UTC,90000,90000\n")  # inside the second batch
    csv = tmp_path / "leads.csv"
    csv.write_text("email,first_name,timezone,copies,rounds\n" + "".join(rows), encoding="utf-8")
    nurture("leads", "import", str(csv), "--db", db)

    log = tmp_path / "daemon.log"
    first = daemon(db, workspace, smtp, "first", log, renders)
    try:
        # The hostile send's batch is under way (a connection has started on it: the server has
        # seen a recipient beyond the first batch's), its render being tried or just failed:
        # stop the daemon now. It must finish that batch. (A batch only claimed ahead, with no
        # message started, goes back untried at a stop.)
        def being_tried() -> bool:
            row = hostile_send(db)
            started = len(smtp.recorder.rcpts) > BATCH
            return row is not None and row["status"] in ("sending", "failed") and started

        wait_for("the hostile send's batch to be under way", being_tried, log=log)
        first.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        try:
            code = first.wait(timeout=GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the daemon ignored SIGTERM for {GRACE_SECONDS}s:\n{log.read_text(errors='replace')[-3000:]}"
            ) from None
        assert code == 0, log.read_text(errors="replace")[-3000:]
        took = time.monotonic() - stopping
    finally:
        if first.poll() is None:
            first.kill()
    hostile = hostile_send(db)
    assert hostile == {
        "status": "failed",
        "attempts": 1,
        "last_error": "template 'sized': rendering took longer than 2s",
    }, (hostile, took)
    after_stop = outbox(db)
    # The batch under way completed, its good emails with it, and nothing is left half-sent.
    assert after_stop.get("sending", 0) == 0 and after_stop["sent"] == len(smtp.messages) >= BATCH - 1, after_stop

    # A restart sends the rest; the hostile send is not tried again. (The first daemon's other
    # connection may already have sent every good email while the hostile render was tried, so
    # the restart is stopped only once it runs: its SIGTERM handler is installed by then.)
    second = daemon(db, workspace, smtp, "second", log, renders)
    try:
        wait_for(
            "the second daemon to run", lambda: "daemon second running" in log.read_text(errors="replace"), log=log
        )
        wait_for(f"all {GOOD} good emails to arrive", lambda: len(smtp.messages) >= GOOD, log=log)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=GRACE_SECONDS) == 0, log.read_text(errors="replace")[-3000:]
    received = Counter(str(m["To"].addresses[0].addr_spec) for m in smtp.messages)
    assert sorted(received) == sorted(good) and set(received.values()) == {1}
    assert outbox(db) == {"pending": 0, "sending": 0, "sent": GOOD, "bounced": 0, "failed": 1}
    assert hostile_send(db) == hostile
    status = " ".join(nurture("status", "--db", db).split())  # as printed, unwrapped
    assert f"failed: {HOSTILE} only: template 'sized': rendering took longer than 2s" in status
