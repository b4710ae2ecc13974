"""Sending against a relay that answers like a remote one, several sending processes on one
database, and importing large lead files. Sections of bench/run.py (`latency`, `scaleout`,
`import`); each prints ratios against a raw baseline or a scaling ratio measured in the same run.

The relay is an aiosmtpd process that answers each message's DATA after 50 ms (the end of
the data, when a real relay has queued the message), as a relay tens of milliseconds away
does; it writes each Message-ID it accepts to a file, so a run can count what arrived.
"""

from __future__ import annotations

import asyncio
import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import Database, Result, at_least, at_most, bulk_leads, fresh_db, ratio_result, raw_send, url_of
from sqlalchemy import func, insert, select, update

from nurture.clock import FakeClock
from nurture.config import Settings, default_render_processes
from nurture.jobs.send import Outbox
from nurture.mail.sender import SmtpPool
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.tables import SENDS

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DELAY = 0.05

SLOW_SINK = r"""
import asyncio, os, re, signal, sys
from aiosmtpd.smtp import SMTP
port, delay, log, workers = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
MID = re.compile(rb"^Message-ID:\s*(\S+)", re.I | re.M)
class Slow:
    def __init__(self, out):
        self.out = out
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return responses[:-1] + ["250-PIPELINING"] + responses[-1:]  # as Postfix offers it
    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(delay)
        if self.out is not None:
            found = MID.search(envelope.original_content or envelope.content)
            self.out.write((found.group(1).decode() if found else "-") + "\n")
        return "250 2.0.0 Ok: queued"
def serve(ready):
    handler = Slow(open(log, "a", buffering=1) if log else None)
    async def main():
        loop = asyncio.get_running_loop()
        factory = lambda: SMTP(handler, hostname="relay.example", decode_data=False)
        await loop.create_server(factory, "127.0.0.1", port, reuse_port=True)
        os.write(ready, b"r")
        await asyncio.Event().wait()
    asyncio.run(main())
ready_r, ready_w = os.pipe()
children = []
for _ in range(workers):
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        serve(ready_w)
        os._exit(0)
    children.append(pid)
for _ in range(workers):
    os.read(ready_r, 1)
print("ready", flush=True)
def stop(*_):
    for pid in children:
        os.kill(pid, signal.SIGTERM)
    for pid in children:
        os.waitpid(pid, 0)
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
while True:
    signal.pause()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SlowSink:
    """An SMTP relay that answers each DATA after `delay` seconds: `workers` processes on one
    port (SO_REUSEPORT), as a real relay serves connections in parallel, so that on a small
    machine the relay's own CPU does not set the pace of the clients it is measuring."""

    def __init__(self, folder: Path, delay: float = DELAY, log: bool = False, workers: int = 2) -> None:
        self.port = _free_port()
        self.log = folder / f"sink-{self.port}.log" if log else None
        self.process = subprocess.Popen(
            [sys.executable, "-c", SLOW_SINK, str(self.port), str(delay), str(self.log or ""), str(workers)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the slow SMTP sink did not start")

    def received(self) -> list[str]:
        return self.log.read_text().split() if self.log and self.log.exists() else []

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def outbox_db(folder: Path, name: str, count: int) -> Any:
    """A fresh database with `count` leads and one pending welcome email each."""
    engine = fresh_db(folder, name)
    bulk_leads(engine, count, NOW)
    with engine.begin() as conn:
        for start in range(0, count, 10_000):
            conn.execute(
                insert(SENDS),
                [
                    {
                        "idempotency_key": f"bench-{i}",
                        "kind": "email",
                        "lead_id": i + 1,
                        "scenario_id": "bench",
                        "scenario_version": "v",
                        "step": "welcome",
                        "template": "welcome",
                        "subject": "Your copy, {{ lead.first_name }}",
                        "sender": "Acme <hello@acme.example>",
                        "status": "pending",
                        "attempts": 0,
                        "created_at": NOW,
                        "next_attempt_at": NOW,
                    }
                    for i in range(start, min(count, start + 10_000))
                ],
            )
    return engine


def _project(folder: Path) -> tuple[Path, Path]:
    scenarios = folder / "scenarios"
    scenarios.mkdir(exist_ok=True)
    templates = folder / "email_templates"
    if not templates.exists():
        shutil.copytree(ROOT / "email_templates", templates)
    return scenarios, templates


def _options(url: str, folder: Path, port: int, pool: int, batch: int) -> dict[str, Any]:
    scenarios, templates = _project(folder)
    return {
        "database_url": url,
        "templates_dir": str(templates),
        "scenarios_dir": str(scenarios),
        "smtp_port": port,
        "smtp_pool_size": pool,
        "batch_size": batch,
        "secret_key": "bench",
        "base_url": "https://t.example",
        "render_processes": default_render_processes(),
    }


def _settings(url: str, folder: Path, port: int, pool: int, batch: int) -> Settings:
    return Settings(**_options(url, folder, port, pool, batch))


async def _nurture_send(engine: Any, settings: Settings, count: int) -> tuple[float, bytes]:
    clock = FakeClock(NOW)
    store = Store(engine, clock)
    pool = SmtpPool(settings)
    outbox = Outbox(store, settings, clock, pool, worker="bench", templates_dir=settings.templates_dir)
    sample = outbox.composer.compose(
        store.sends.claim("probe", NOW, 1, timedelta(seconds=1))[0]._mapping, store.leads.by_ids([1])[1]._mapping, NOW
    )
    with engine.begin() as conn:  # put the probe row back
        conn.execute(
            update(SENDS)
            .where(SENDS.c.id == 1)
            .values(status="pending", lease_owner=None, lease_until=None, attempts=0)
        )
    await outbox.start()
    start = time.perf_counter()
    stats = await outbox.drain_until_idle()
    elapsed = time.perf_counter() - start
    await pool.close()
    await outbox.close()
    assert stats.sent == count, stats
    return elapsed, sample.data


def bench_latency(folder: Path, pools: tuple[int, ...], per_connection: int, rounds: int = 2) -> list[Result]:
    """nurture's send rate against raw aiosmtplib over the same number of connections, to a
    relay answering each DATA after 50 ms; one row per pool size."""
    results = []
    sink = SlowSink(folder)
    try:
        for connections in pools:
            count = connections * per_connection
            nurture_best, raw_best, payload = float("inf"), float("inf"), b""
            for index in range(rounds):  # alternating, so a busy spell hits both sides
                engine = outbox_db(folder, f"latency{connections}_{index}", count)
                settings = _settings(url_of(engine), folder, sink.port, connections, 1000)
                elapsed, payload = asyncio.run(_nurture_send(engine, settings, count))
                nurture_best = min(nurture_best, elapsed)
                raw_best = min(raw_best, asyncio.run(raw_send(sink.port, payload, count, connections)))
            results.append(
                ratio_result(
                    f"send to a relay answering DATA after {DELAY * 1000:.0f} ms: {count:,} emails, "
                    f"{connections} connections (NURTURE_SMTP_POOL_SIZE), best of {rounds}",
                    count / nurture_best,
                    count / raw_best,
                    "msg/s",
                    at_least(0.9),
                )
            )
    finally:
        sink.close()
    return results


def bench_latency_dkim(
    folder: Path, key_file: Path, connections: int, per_connection: int, rounds: int = 2
) -> list[Result]:
    """DKIM signing's cost where a relay, not the CPU, sets the pace: nurture signing every
    message vs the same send unsigned, to the relay answering DATA after 50 ms."""
    sink = SlowSink(folder)
    count = connections * per_connection
    signing = {"dkim_domain": "acme.example", "dkim_selector": "bench", "dkim_key_file": str(key_file)}
    signed_best, plain_best = float("inf"), float("inf")
    try:
        for index in range(rounds):  # alternating, so a busy spell hits both sides
            for signed in (True, False):
                engine = outbox_db(folder, f"latency_dkim{index}_{signed}", count)
                options = _options(url_of(engine), folder, sink.port, connections, 1000)
                elapsed, _ = asyncio.run(
                    _nurture_send(engine, Settings(**options, **(signing if signed else {})), count)
                )
                if signed:
                    signed_best = min(signed_best, elapsed)
                else:
                    plain_best = min(plain_best, elapsed)
    finally:
        sink.close()
    return [
        ratio_result(
            f"send with DKIM signing (RSA-2048) vs the same send unsigned, to a relay answering DATA after "
            f"{DELAY * 1000:.0f} ms: {count:,} emails, {connections} connections, best of {rounds}",
            count / signed_best,
            count / plain_best,
            "msg/s",
            at_least(0.8),
        )
    ]


# -- scale-out --------------------------------------------------------------------------------------

# Every lead of the run enters, gets one email and leaves: the daemons do the whole job (the
# enrol job enrols, the advance job steps and queues the email, the send job sends it).
SCALEOUT_SCENARIO = """
id: scaleout
name: Scale-out
entry:
  when: 'lead.source == "bench"'
send_window: {days: [mon, tue, wed, thu, fri, sat, sun], start: "00:00", end: "23:59"}
lead_fields: [whitepaper_title]
steps:
  - id: welcome
    type: send_email
    template: welcome
    subject: "Your copy, {{ lead.first_name }}"
  - id: done
    type: exit
"""


def _daemons(
    processes: int, url: str, folder: Path, port: int, pool: int, batch: int, count: int, timeout: float
) -> dict[str, Any]:
    """Start `processes` `nurture run` daemons on an empty database, wait until each runs its
    jobs, then add `count` leads in one transaction and time until the relay has accepted
    `count` distinct messages (from the leads' commit to the last message)."""
    scenarios, templates = folder / f"scaleout-{processes}", folder / "email_templates"
    scenarios.mkdir(exist_ok=True)
    (scenarios / "scaleout.yaml").write_text(SCALEOUT_SCENARIO)
    _project(folder)
    log_path = folder / f"scaleout-{processes}-daemons.log"
    env = dict(os.environ) | {
        "NURTURE_DATABASE_URL": url,
        "NURTURE_SCENARIOS_DIR": str(scenarios),
        "NURTURE_TEMPLATES_DIR": str(templates),
        "NURTURE_SMTP_PORT": str(port),
        "NURTURE_SMTP_POOL_SIZE": str(pool),
        "NURTURE_BATCH_SIZE": str(batch),
        "NURTURE_TICK_SECONDS": "0.5",
        "NURTURE_SEND_SECONDS": "0.5",
        "NURTURE_ENROL_SECONDS": "1",
        "NURTURE_SECRET_KEY": "bench",
        "NURTURE_BASE_URL": "https://t.example",
    }
    daemons = []
    with log_path.open("ab") as log:
        for n in range(processes):
            daemons.append(
                subprocess.Popen(
                    [sys.executable, "-m", "nurture", "run"],
                    env=env | {"NURTURE_WORKER_ID": f"daemon{n}"},
                    stdout=log,
                    stderr=log,
                )
            )
    engine = make_engine(url)
    try:
        deadline = time.monotonic() + 120
        while not all(f"daemon daemon{n} running" in log_path.read_text() for n in range(processes)):
            if time.monotonic() > deadline or any(d.poll() is not None for d in daemons):
                raise RuntimeError(f"the daemons did not start: see {log_path}")
            time.sleep(0.1)
        time.sleep(2)  # past each daemon's first full enrol sweep (of no leads)
        start = time.time()
        bulk_leads(engine, count, datetime.now(UTC))
        committed = time.time()
        return {"start": start, "committed": committed, "log": log_path, "timeout": timeout, "engine": engine,
                "daemons": daemons}  # fmt: skip
    except BaseException:
        _stop(daemons)
        engine.dispose()
        raise


def _stop(daemons: list[subprocess.Popen[bytes]]) -> None:
    for daemon in daemons:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
    for daemon in daemons:
        try:
            daemon.wait(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()


def bench_scaleout(folder: Path, count: int, pool: int, batch: int = 500) -> list[Result]:
    """One `nurture run` daemon against two on one PostgreSQL, each with `pool` connections to
    the slow relay: `count` new leads enrolled, stepped and sent one email each. Every email
    must arrive; a repeat (same Message-ID twice) is allowed only within the crash bound of
    one message per connection, and no daemon is stopped here, so none is expected."""
    if not Database.pg_url:
        raise SystemExit("scaleout needs PostgreSQL (--pg URL): several daemons share one database there")
    runs = {}
    for processes in (1, 2):
        sink = SlowSink(folder, log=True)
        engine = fresh_db(folder, f"scaleout{processes}")
        url = url_of(engine)
        engine.dispose()
        run = _daemons(processes, url, folder, sink.port, pool, batch, count, timeout=300)
        try:
            deadline = time.monotonic() + run["timeout"]
            first = None
            while True:
                received = sink.received()
                if received and first is None:
                    first = time.time()
                if len(set(received)) >= count:
                    end = time.time()
                    break
                if time.monotonic() > deadline or any(d.poll() is not None for d in run["daemons"]):
                    raise SystemExit(
                        f"scaleout with {processes} daemon(s): {len(set(received))} of {count} arrived"
                        f" (see {run['log']})"
                    )
                time.sleep(0.05)
        finally:
            _stop(run["daemons"])
            received = sink.received()
            sink.close()
        with run["engine"].begin() as conn:
            sent = conn.execute(select(func.count()).select_from(SENDS).where(SENDS.c.status == "sent")).scalar_one()
            per_lead = conn.execute(
                select(func.count()).select_from(SENDS).group_by(SENDS.c.lead_id).having(func.count() > 1)
            ).all()
            by_worker = dict(
                conn.execute(
                    select(SENDS.c.lease_owner, func.count())
                    .where(SENDS.c.status == "sent")
                    .group_by(SENDS.c.lease_owner)
                ).all()
            )
        run["engine"].dispose()
        repeats = sum(n - 1 for n in Counter(received).values())
        if sent != count or len(set(received)) != count or per_lead:
            raise SystemExit(
                f"scaleout with {processes}: {sent} marked sent, {len(set(received))} of {count} arrived, "
                f"{len(per_lead)} leads with more than one email"
            )
        if repeats > processes * pool:
            raise SystemExit(f"scaleout with {processes}: {repeats} repeats, more than the crash bound")
        runs[processes] = {
            "seconds": end - run["committed"],
            "sending": end - (first or end),
            "repeats": repeats,
            "split": sorted(by_worker.values(), reverse=True),
        }
        print(f"  {processes} daemon(s): {runs[processes]}", flush=True)
    one, two = runs[1], runs[2]
    split = "/".join(f"{n:,}" for n in two["split"])
    return [
        Result(
            f"scale-out: two `nurture run` daemons vs one, {count:,} new leads enrolled, stepped and sent one "
            f"email each to the {DELAY * 1000:.0f} ms relay ({pool} connections a daemon, batches of {batch}; "
            f"split {split}); every email arrived, {two['repeats']} repeats (crash bound {2 * pool}); "
            f"sending alone {count / two['sending']:,.0f} vs {count / one['sending']:,.0f} msg/s",
            f"{count / two['seconds']:,.0f} msg/s",
            f"{count / one['seconds']:,.0f} msg/s",
            one["seconds"] / two["seconds"],
            at_least(1.8),
        )
    ]


# -- import -----------------------------------------------------------------------------------------

COLUMNS = ["email", "first_name", "last_name", "company", "company_size", "industry", "job_title", "country"]


def lead_file(folder: Path, rows: int) -> Path:
    path = folder / f"leads-{rows}.csv"
    if not path.exists():
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(COLUMNS)
            for i in range(rows):
                writer.writerow(
                    [f"user{i}@example{i % 1000}.com", f"First{i}", f"Last{i}", f"Company {i % 5000}",
                     i % 3000, "SaaS", "Engineer", "US"]
                )  # fmt: skip
    return path


IMPORTER = r"""
import sys, time
from pathlib import Path
from nurture.clock import SystemClock
from nurture.leads import import_leads
from nurture.store import Store
from nurture.store.db import make_engine
store = Store(make_engine(sys.argv[1]), SystemClock())
start = time.perf_counter()
report = import_leads(store, Path(sys.argv[2]))
seconds = time.perf_counter() - start
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(peak, report.created, len(report.problems), round(seconds, 2))
"""

RAW = r"""
import csv, sys, time
from datetime import UTC, datetime
from nurture.store.db import make_engine
engine = make_engine(sys.argv[1])
pg = engine.dialect.name == "postgresql"
columns = "email, first_name, last_name, company, company_size, industry, job_title, country"
fixed = "'[]', '{}', 'cold', false, false, 0, 0, 'D', 0"
head = (f"INSERT INTO lead ({columns}, tags, custom, lifecycle_stage, unsubscribed, bounced, score_fit,"
        f" score_engagement, grade, score_adjustment, created_at, updated_at)")
if pg:
    # One INSERT of the chunk's rows, one array parameter a column: psycopg's executemany is
    # pipelined but is still one INSERT a row, and the table's statement-level triggers then
    # run once a row (6 times slower here); this is the driver's fastest parametrised INSERT.
    sql = (f"{head} SELECT e, f, l, c, s, i, j, k, {fixed}, %s, %s FROM unnest(%s::text[], %s::text[],"
           f" %s::text[], %s::text[], %s::int[], %s::text[], %s::text[], %s::text[]) AS t(e, f, l, c, s, i, j, k)")
    now = datetime.now(UTC)
    def write(cursor, rows):
        cursor.execute(sql, [now, now, *map(list, list(zip(*rows)))])
else:
    # sqlite3's executemany: one prepared statement stepped once a row, no round trips.
    sql = f"{head} VALUES ({', '.join(['?'] * 8)}, {fixed}, ?, ?)"
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
    def write(cursor, rows):
        cursor.executemany(sql, [(*r, now, now) for r in rows])
start = time.perf_counter()
raw = engine.raw_connection()
cursor = raw.cursor()
if not pg:
    cursor.execute("BEGIN")  # nurture's engine leaves transactions to the caller on SQLite
with open(sys.argv[2], newline="") as f:
    reader = csv.reader(f)
    next(reader)
    rows = []
    for r in reader:
        rows.append((*r[:4], int(r[4]), *r[5:]))
        if len(rows) == 1000:
            write(cursor, rows)
            rows = []
    if rows:
        write(cursor, rows)
raw.commit()
print(round(time.perf_counter() - start, 2))
"""


def _import(folder: Path, rows: int) -> tuple[int, float]:
    """Peak memory (KiB) and seconds of `leads import` of a `rows`-row CSV into an empty database."""
    path = lead_file(folder, rows)
    engine = fresh_db(folder, f"import{rows}")
    url = url_of(engine)
    engine.dispose()
    out = subprocess.run([sys.executable, "-c", IMPORTER, url, str(path)], capture_output=True, text=True, check=True)
    peak, created, problems, seconds = out.stdout.split()
    if int(created) != rows or int(problems):
        raise SystemExit(f"import of {rows} rows created {created}, rejected {problems}")
    return int(peak), float(seconds)


def _raw_import(folder: Path, rows: int) -> float:
    path = lead_file(folder, rows)
    engine = fresh_db(folder, f"import_raw{rows}")
    url = url_of(engine)
    engine.dispose()
    out = subprocess.run([sys.executable, "-c", RAW, url, str(path)], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def bench_import(folder: Path, small: int, large: int) -> list[Result]:
    small_peak, _ = _import(folder, small)
    large_peak, seconds = _import(folder, large)
    raw = _raw_import(folder, large)
    return [
        ratio_result(
            f"leads import of a {large:,}-row CSV (validate, upsert by email in chunks of 1,000) vs a raw "
            f"INSERT of the same rows read with csv ("
            + ("one INSERT of 1,000 rows of array parameters" if Database.pg_url else "sqlite3's executemany")
            + ")",
            large / seconds,
            large / raw,
            "rows/s",
            at_least(0.25),
        ),
        Result(
            f"leads import peak memory: {large:,}-row file vs {small:,}-row file",
            f"{large_peak / 1024:,.0f} MiB",
            f"{small_peak / 1024:,.0f} MiB",
            large_peak / small_peak,
            at_most(1.2),
        ),
    ]
