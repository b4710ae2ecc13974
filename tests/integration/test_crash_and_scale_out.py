"""Real daemon processes: SIGKILL mid-batch and restart; several daemons on one PostgreSQL.

Exactly-once is checked where a user would check it: in the store (one `sent` row per
idempotency key) and at the SMTP server (every expected Message-ID arrived).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nurture.clock import SystemClock
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.migrate import upgrade
from nurture.store.tables import ENROLMENTS, SENDS
from tests.integration.conftest import write_scenario
from tests.smtp_server import SmtpServer

pytestmark = pytest.mark.slow

BURST = """
id: burst
name: Burst
exit_when: [unsubscribed, bounced]
lead_fields: [whitepaper_title]
send_window:
  days: [mon, tue, wed, thu, fri, sat, sun]
  start: "00:00"
  end: "23:59"
steps:
  - id: first
    type: send_email
    template: welcome
    subject: "First for {{ lead.first_name }}"
  - id: pause
    type: wait
    duration: 1s
  - id: second
    type: send_email
    template: case_study
    subject: "Second for {{ lead.first_name }}"
"""


def environment(url: str, workspace: Path, smtp: SmtpServer, worker: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "NURTURE_DATABASE_URL": url,
            "NURTURE_SCENARIOS_DIR": str(workspace / "scenarios"),
            "NURTURE_TEMPLATES_DIR": str(workspace / "email_templates"),
            "NURTURE_SMTP_PORT": str(smtp.port),
            "NURTURE_SMTP_POOL_SIZE": "4",
            "NURTURE_SMTP_TIMEOUT": "1",
            "NURTURE_TICK_SECONDS": "0.2",
            "NURTURE_SEND_SECONDS": "0.2",
            "NURTURE_ENROL_SECONDS": "0.5",
            "NURTURE_LEASE_SECONDS": "2",
            "NURTURE_FREQUENCY_CAP": "1000",
            "NURTURE_BATCH_SIZE": "40",
            "NURTURE_WORKER_ID": worker,
            "NURTURE_MAIL_DOMAIN": "crash.example",
        }
    )
    return env


def start_daemon(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen([sys.executable, "-m", "nurture", "run"], env=env, stdout=handle, stderr=handle)


def prepare(url: str, workspace: Path, tmp_path: Path, leads: int) -> Store:
    write_scenario(workspace, BURST)
    engine = make_engine(url)
    upgrade(engine)
    csv = tmp_path / "leads.csv"
    csv.write_text("email,first_name,timezone\n" + "".join(f"lead{i}@load.example,L{i},UTC\n" for i in range(leads)))
    result = subprocess.run(
        [sys.executable, "-m", "nurture", "leads", "import", str(csv), "--db", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"{leads} created" in result.stdout
    return Store(engine, SystemClock())


def wait_until_running(log: Path, worker: str, timeout: float = 60) -> None:
    """A daemon handles SIGTERM gracefully once it says it is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and f"daemon {worker} running" in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError(f"daemon {worker} did not start:\n{log.read_text()[-2000:]}")


def wait_until_done(store: Store, expected_sends: int, timeout: float = 600) -> None:
    """Wait for every send to be sent and every enrolment finished (generously: a busy machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with store.engine.connect() as conn:
            sent = conn.execute(select(func.count()).where(SENDS.c.status == "sent")).scalar()
            active = conn.execute(select(func.count()).where(ENROLMENTS.c.status == "active")).scalar()
            enrolled = conn.execute(select(func.count()).select_from(ENROLMENTS)).scalar()
        if sent == expected_sends and active == 0 and enrolled:
            return
        time.sleep(0.3)
    raise AssertionError(f"not done in {timeout}s: {sent} sent of {expected_sends}, {active} active")


def check_exactly_once(store: Store, smtp: SmtpServer, leads: int, window: int) -> None:
    with store.engine.connect() as conn:
        statuses = dict(conn.execute(select(SENDS.c.status, func.count()).group_by(SENDS.c.status)).all())  # type: ignore[arg-type]
        stored_ids = {r for (r,) in conn.execute(select(SENDS.c.message_id))}
        per_lead = Counter(r for (r,) in conn.execute(select(SENDS.c.lead_id)))
    assert statuses == {"sent": 2 * leads}
    assert set(per_lead.values()) == {2}
    received = Counter(str(m["Message-ID"]) for m in smtp.messages)
    assert set(received) == stored_ids, "every stored send arrived, and nothing else did"
    duplicates = sum(received.values()) - len(received)
    assert duplicates <= window, f"{duplicates} resends exceed the crash window of {window}"


def crash_and_restart(url: str, workspace: Path, smtp: SmtpServer, tmp_path: Path, leads: int) -> None:
    store = prepare(url, workspace, tmp_path, leads)
    rng = random.Random(7)
    log = tmp_path / "daemon.log"
    kills = 0
    for attempt in range(5):
        process = start_daemon(environment(url, workspace, smtp, f"crash-{attempt}"), log)
        # Killed in the middle of sending, whatever the machine's speed: once the server has
        # taken a random number of further messages (or the outbox ran dry meanwhile).
        target = len(smtp.messages) + rng.randint(1, 40)
        deadline = time.monotonic() + 60
        while len(smtp.messages) < target and time.monotonic() < deadline and process.poll() is None:
            if len(smtp.messages) >= 2 * leads:
                break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        kills += 1
    assert len(smtp.messages) > 0, log.read_text()[-2000:]
    final = start_daemon(environment(url, workspace, smtp, "final"), log)
    try:
        wait_until_running(log, "final")
        wait_until_done(store, 2 * leads)
    finally:
        final.send_signal(signal.SIGTERM)
        assert final.wait(timeout=30) == 0, log.read_text()[-2000:]
    check_exactly_once(store, smtp, leads, window=kills * 4)


def test_sqlite_daemon_killed_repeatedly_loses_and_repeats_nothing(
    sqlite_url: str, workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    crash_and_restart(sqlite_url, workspace, smtp, tmp_path, leads=300)


@pytest.mark.postgres
def test_postgres_daemon_killed_repeatedly_loses_and_repeats_nothing(
    pg_url: str, workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    crash_and_restart(pg_url, workspace, smtp, tmp_path, leads=300)


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended; only its parent's reaping is left


def test_render_processes_end_with_a_killed_daemon(
    sqlite_url: str, workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    prepare(sqlite_url, workspace, tmp_path, leads=5)
    log = tmp_path / "daemon.log"
    env = environment(sqlite_url, workspace, smtp, "renders") | {"NURTURE_RENDER_PROCESSES": "2"}
    process = start_daemon(env, log)
    try:
        wait_until_running(log, "renders")  # render processes start before the daemon says so
        renderers = {pid for pid in children(process.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()}
        assert len(renderers) == 2
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in renderers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in renderers if alive(pid)], "render processes outlived their daemon"


@pytest.mark.postgres
def test_three_daemons_on_one_postgres_send_each_email_once(
    pg_url: str, workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    leads = 600
    store = prepare(pg_url, workspace, tmp_path, leads)
    log = tmp_path / "daemons.log"
    processes = [start_daemon(environment(pg_url, workspace, smtp, f"node-{n}"), log) for n in range(3)]
    try:
        for n in range(3):
            wait_until_running(log, f"node-{n}")
        wait_until_done(store, 2 * leads)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=30) for process in processes]
    assert codes == [0, 0, 0], log.read_text()[-2000:]
    check_exactly_once(store, smtp, leads, window=0)
    with store.engine.connect() as conn:
        workers = {r for (r,) in conn.execute(select(func.distinct(ENROLMENTS.c.lease_owner)))}
    assert workers == {None}
    assert len({m["X-Nurture-Key"] for m in smtp.messages}) == 2 * leads
