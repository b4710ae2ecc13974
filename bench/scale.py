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
import json
import shutil
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
from nurture.store.tables import SENDS

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
DELAY = 0.05

SLOW_SINK = r"""
import asyncio, re, sys, threading
from aiosmtpd.controller import Controller
port, delay, log = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
out = open(log, "a", buffering=1) if log else None
MID = re.compile(rb"^Message-ID:\s*(\S+)", re.I | re.M)
class Slow:
    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(delay)
        if out is not None:
            found = MID.search(envelope.original_content or envelope.content)
            out.write((found.group(1).decode() if found else "-") + "\n")
        return "250 2.0.0 Ok: queued"
controller = Controller(Slow(), hostname="127.0.0.1", port=port, decode_data=False)
controller.start()
print("ready", flush=True)
threading.Event().wait()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SlowSink:
    """An SMTP relay in its own process that answers each DATA after `delay` seconds."""

    def __init__(self, folder: Path, delay: float = DELAY, log: bool = False) -> None:
        self.port = _free_port()
        self.log = folder / f"sink-{self.port}.log" if log else None
        self.process = subprocess.Popen(
            [sys.executable, "-c", SLOW_SINK, str(self.port), str(delay), str(self.log or "")],
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

SENDER = r"""
import asyncio, json, sys, time
from datetime import UTC, datetime
from pathlib import Path
from nurture.clock import FakeClock
from nurture.config import Settings
from nurture.daemon import Daemon
from nurture.jobs.send import Outbox
from nurture.mail.sender import SmtpPool
from nurture.store import Store
from nurture.store.db import make_engine
settings = Settings(**json.loads(sys.argv[1]))
clock = FakeClock(datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
store = Store(make_engine(settings.database_url), clock)
pool = SmtpPool(settings)
outbox = Outbox(store, settings, clock, pool, worker=settings.worker_id, templates_dir=settings.templates_dir)
Daemon.tune_gc()
async def main():
    await outbox.start()
    print("ready", flush=True)
    sys.stdin.readline()
    start = time.time()
    stats = await outbox.drain_until_idle(max_batches=100_000)
    end = time.time()
    await pool.close()
    await outbox.close()
    print(json.dumps({"start": start, "end": end, "sent": stats.sent, "errors": stats.errors[:3]}), flush=True)
asyncio.run(main())
"""


def _send_with(processes: int, engine: Any, folder: Path, port: int, pool: int, batch: int) -> dict[str, Any]:
    """Start `processes` sending processes on one database, let them go at once, and time
    them until the outbox is empty (from the first start to the last end)."""
    workers = []
    for n in range(processes):
        options = {**_options(url_of(engine), folder, port, pool, batch), "worker_id": f"sender{n}"}
        process = subprocess.Popen(
            [sys.executable, "-c", SENDER, json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        workers.append(process)
    for process in workers:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("a sending process did not start")
    for process in workers:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    reports = []
    for process in workers:
        out, _ = process.communicate(timeout=3600)
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return {
        "seconds": max(r["end"] for r in reports) - min(r["start"] for r in reports),
        "sent": [r["sent"] for r in reports],
    }


def bench_scaleout(folder: Path, count: int, pool: int, batch: int = 50) -> list[Result]:
    """One sending process against two on one database, each with `pool` connections to the
    slow relay; every email must arrive exactly once (no crash here, so no repeat at all)."""
    if not Database.pg_url:
        raise SystemExit("scaleout needs PostgreSQL (--pg URL): several processes share one outbox there")
    runs = {}
    for processes in (1, 2):
        sink = SlowSink(folder, log=True)
        try:
            engine = outbox_db(folder, f"scaleout{processes}", count)
            runs[processes] = _send_with(processes, engine, folder, sink.port, pool, batch)
            received = sink.received()
        finally:
            sink.close()
        with engine.begin() as conn:
            sent = conn.execute(select(func.count()).select_from(SENDS).where(SENDS.c.status == "sent")).scalar_one()
        repeats = sum(n - 1 for n in Counter(received).values())
        if sent != count or len(set(received)) != count:
            raise SystemExit(f"scaleout with {processes}: {sent} marked sent, {len(set(received))} of {count} arrived")
        runs[processes]["repeats"] = repeats
        print(f"  {processes} sending process(es): {runs[processes]}", flush=True)
    one, two = runs[1], runs[2]
    return [
        Result(
            f"scale-out: {count:,} emails to the {DELAY * 1000:.0f} ms relay, two sending processes "
            f"({pool} connections each, batches of {batch}, split {two['sent'][0]:,}/{two['sent'][1]:,}) vs one; "
            f"every email arrived once ({two['repeats']} repeats)",
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
# The driver's own executemany of one INSERT (psycopg pipelines it), the rows as csv reads them.
mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
columns = "email, first_name, last_name, company, company_size, industry, job_title, country"
sql = (f"INSERT INTO lead ({columns}, tags, custom, lifecycle_stage, unsubscribed, bounced, score_fit,"
       f" score_engagement, grade, score_adjustment, created_at, updated_at)"
       f" VALUES ({', '.join([mark] * 8)}, '[]', '{{}}', 'cold', false, false, 0, 0, 'D', 0, {mark}, {mark})")
now = datetime.now(UTC) if mark == "%s" else datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
start = time.perf_counter()
with open(sys.argv[2], newline="") as f, engine.begin() as conn:
    reader = csv.reader(f)
    next(reader)
    rows = []
    for r in reader:
        rows.append((*r[:4], int(r[4]), *r[5:], now, now))
        if len(rows) == 1000:
            conn.exec_driver_sql(sql, rows)
            rows = []
    if rows:
        conn.exec_driver_sql(sql, rows)
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
            f"executemany INSERT of the same rows read with csv",
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
