"""Real daemon processes: SIGKILL mid-batch and restart; several daemons on one PostgreSQL.

Exactly-once is checked where a user would check it: in the store (one `sent` row per
idempotency key) and at the SMTP server (every expected Message-ID arrived). Kills happen at
points chosen by progress (right after the server accepted the k-th new message), never after
a fixed time, so the tests behave the same on a fast or a loaded machine.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from nurture.clock import SystemClock
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.migrate import upgrade
from nurture.store.tables import ENROLMENTS, SENDS
from tests.integration.conftest import write_scenario
from tests.smtp_server import Delivery, SmtpServer

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


POOL = 4
KILLS = 30


def environment(url: str, workspace: Path, smtp: SmtpServer, worker: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "NURTURE_DATABASE_URL": url,
            "NURTURE_SCENARIOS_DIR": str(workspace / "scenarios"),
            "NURTURE_TEMPLATES_DIR": str(workspace / "email_templates"),
            "NURTURE_SMTP_PORT": str(smtp.port),
            "NURTURE_SMTP_POOL_SIZE": str(POOL),
            "NURTURE_SMTP_TIMEOUT": "5",
            # The server learns which daemon sent a message from its EHLO name.
            "NURTURE_SMTP_HELO_NAME": worker,
            "NURTURE_TICK_SECONDS": "0.2",
            "NURTURE_SEND_SECONDS": "0.2",
            "NURTURE_ENROL_SECONDS": "0.5",
            "NURTURE_LEASE_SECONDS": "15",
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


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


def wait_until_running(log: Path, worker: str, timeout: float = 120) -> None:
    """A daemon handles SIGTERM gracefully once it says it is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and f"daemon {worker} running" in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError(f"waited {timeout}s for daemon {worker} to say it is running:\n{tail(log)}")


def wait_until_done(store: Store, expected_sends: int, timeout: float = 600) -> None:
    """Wait for every send to be marked sent and every enrolment to have finished."""
    deadline = time.monotonic() + timeout
    while True:
        with store.engine.connect() as conn:
            sent = conn.execute(select(func.count()).where(SENDS.c.status == "sent")).scalar()
            active = conn.execute(select(func.count()).where(ENROLMENTS.c.status == "active")).scalar()
            enrolled = conn.execute(select(func.count()).select_from(ENROLMENTS)).scalar()
        if sent == expected_sends and active == 0 and enrolled:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout}s for {expected_sends} sends: {sent} sent, {active} still active")
        time.sleep(0.3)


def distinct(deliveries: list[Delivery]) -> int:
    return len({d.message_id for d in deliveries})


@dataclass(frozen=True)
class Kill:
    worker: str
    at: float  # monotonic, taken just before SIGKILL went out


def kill_after_progress(
    process: subprocess.Popen[bytes], worker: str, smtp: SmtpServer, new_messages: int, log: Path
) -> Kill:
    """SIGKILL `process` the moment the server has accepted `new_messages` more distinct
    messages: kills land right after an acceptance, inside the crash window."""
    with smtp.recorder.lock:
        target = distinct(smtp.recorder.deliveries) + new_messages

    def progressed(deliveries: list[Delivery]) -> bool:
        if process.poll() is not None:
            raise AssertionError(f"daemon {worker} ended by itself:\n{tail(log)}")
        return distinct(deliveries) >= target

    try:
        smtp.recorder.wait_for(progressed, f"{new_messages} new messages before killing {worker}", timeout=180)
    except AssertionError as exc:
        process.kill()
        raise AssertionError(f"{exc}\n{tail(log)}") from None
    kill = Kill(worker, time.monotonic())
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return kill


def check_exactly_once_per_kill(store: Store, smtp: SmtpServer, leads: int, kills: list[Kill]) -> None:
    """Nothing lost; every repeat is attributed to the kill of the daemon that delivered the
    previous copy of that message (the EHLO name the server saw), came after that kill, and no
    kill caused more repeats than that daemon had pooled connections."""
    with store.engine.connect() as conn:
        statuses = dict(conn.execute(select(SENDS.c.status, func.count()).group_by(SENDS.c.status)).all())  # type: ignore[arg-type]
        stored_ids = {r for (r,) in conn.execute(select(SENDS.c.message_id))}
        per_lead = Counter(r for (r,) in conn.execute(select(SENDS.c.lead_id)))
    assert statuses == {"sent": 2 * leads}
    assert set(per_lead.values()) == {2}
    deliveries = list(smtp.recorder.deliveries)
    assert {d.message_id for d in deliveries} == stored_ids, "every stored send arrived, and nothing else did"
    killed = {k.worker: k for k in kills}
    last: dict[str, Delivery] = {}
    repeats_per_kill: Counter[str] = Counter()
    for delivery in deliveries:
        previous = last.get(delivery.message_id)
        last[delivery.message_id] = delivery
        if previous is None:
            continue
        kill = killed.get(previous.client)
        assert kill is not None, f"{delivery.message_id} repeated though {previous.client} was never killed"
        assert delivery.at > kill.at, f"{delivery.message_id} repeated before {kill.worker} was killed"
        repeats_per_kill[kill.worker] += 1
    worst = max(repeats_per_kill.values(), default=0)
    assert worst <= POOL, f"a kill repeated {worst} messages, more than {POOL} pooled connections: {repeats_per_kill}"


def crash_and_restart(
    url: str, workspace: Path, smtp: SmtpServer, tmp_path: Path, leads: int, daemons: int = 1, kills: int = KILLS
) -> None:
    """Keep `daemons` daemons running; `kills` times, SIGKILL one of them after a random
    number of new accepted messages and start a fresh one in its place; then let the
    survivors finish and stop them gracefully."""
    store = prepare(url, workspace, tmp_path, leads)
    rng = random.Random(7)
    log = tmp_path / "daemon.log"
    running: list[tuple[subprocess.Popen[bytes], str]] = []
    started = 0

    def start() -> None:
        nonlocal started
        worker = f"crash-{started}"
        started += 1
        running.append((start_daemon(environment(url, workspace, smtp, worker), log), worker))

    done: list[Kill] = []
    try:
        for _ in range(daemons):
            start()
        for n in range(kills):
            process, worker = running.pop(n % len(running) if daemons > 1 else 0)
            done.append(kill_after_progress(process, worker, smtp, rng.randint(1, 12), log))
            start()
        for _, worker in running:
            wait_until_running(log, worker)
        wait_until_done(store, 2 * leads)
    finally:
        for process, _ in running:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=60) for process, _ in running]
    assert codes == [0] * len(running), tail(log)
    assert len(done) == kills
    check_exactly_once_per_kill(store, smtp, leads, done)


def test_sqlite_daemon_killed_30_times_loses_nothing_and_repeats_at_most_one_per_connection_per_kill(
    sqlite_url: str, workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    crash_and_restart(sqlite_url, workspace, smtp, tmp_path, leads=250)


@pytest.mark.postgres
def test_postgres_daemon_killed_30_times_loses_nothing_and_repeats_at_most_one_per_connection_per_kill(
    pg_url: str, workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    crash_and_restart(pg_url, workspace, smtp, tmp_path, leads=250)


@pytest.mark.postgres
def test_two_postgres_daemons_killed_30_times_lose_nothing_and_repeat_at_most_one_per_connection_per_kill(
    pg_url: str, workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    crash_and_restart(pg_url, workspace, smtp, tmp_path, leads=250, daemons=2)


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
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in renderers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in renderers if alive(pid)], "waited 60s for the render processes to end with their daemon"


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
    assert codes == [0, 0, 0], tail(log)
    check_exactly_once_per_kill(store, smtp, leads, kills=[])
    with store.engine.connect() as conn:
        workers = {r for (r,) in conn.execute(select(func.distinct(ENROLMENTS.c.lease_owner)))}
    assert workers == {None}
    assert len({m["X-Nurture-Key"] for m in smtp.messages}) == 2 * leads
