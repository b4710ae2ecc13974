"""Helpers shared by the benchmarks: fast bulk loading and timing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import aiosmtplib
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from nurture.store.db import make_engine
from nurture.store.migrate import upgrade
from nurture.store.tables import ENROLMENTS, LEADS

T = TypeVar("T")

BRANCH_AND_WAIT = """
id: bench
name: Bench
entry:
  when: 'lead.source == "bench"'
exit_when: [unsubscribed, bounced]
steps:
  - id: route
    type: branch
    cases:
      - if: 'lead.company_size >= 100 and lead.industry in ["SaaS", "Manufacturing"]'
        goto: big_wait
    else: small_wait
  - id: big_wait
    type: wait
    duration: 3d
    next: done
  - id: small_wait
    type: wait
    duration: 7d
  - id: done
    type: exit
"""


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


class Database:
    """Where the benchmarks build their databases: SQLite files (the default) or, with
    `use_postgres(url)`, one PostgreSQL database whose schema is dropped and rebuilt for
    each fresh database (so a benchmark keeps one of them alive at a time)."""

    pg_url: str | None = None
    engines: ClassVar[list[Engine]] = []

    @classmethod
    def label(cls) -> str:
        return "PostgreSQL" if cls.pg_url else "SQLite"


def use_postgres(url: str) -> None:
    """Build the benchmarks' databases on PostgreSQL at `url`, creating that database if the
    server does not have it yet."""
    engine = make_engine(url)
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
        name = engine.url.database
        admin = make_engine(engine.url.set(database="postgres").render_as_string(hide_password=False))
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
    engine.dispose()
    Database.pg_url = url


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def fresh_db(folder: Path, name: str) -> Engine:
    """A new, migrated, empty database (see `Database`)."""
    if Database.pg_url is None:
        return fresh_sqlite(folder, name)
    for old in Database.engines:
        old.dispose()
    Database.engines.clear()
    engine = make_engine(Database.pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    upgrade(engine)
    Database.engines.append(engine)
    return engine


def fresh_sqlite(folder: Path, name: str) -> Engine:
    path = folder / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


def _copy(engine: Engine, table: str, columns: Sequence[str], rows: Any) -> None:
    """PostgreSQL: load rows with COPY (a multi-row INSERT of a million rows takes minutes)."""
    with engine.begin() as conn:
        driver: Any = conn.connection.dbapi_connection
        with driver.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def bulk_leads(engine: Engine, count: int, now: datetime, chunk: int = 50_000) -> None:
    industries = ["SaaS", "Manufacturing", "Retail", "Finance"]
    if engine.dialect.name == "postgresql":
        columns = ["email", "first_name", "company", "company_size", "industry", "timezone", "source"]
        columns += ["lifecycle_stage", "tags", "custom", "created_at", "updated_at"]
        columns += ["unsubscribed", "bounced", "score_fit", "score_engagement", "grade", "score_adjustment"]
        rows = (
            (f"lead{i}@bench.example", f"L{i}", f"C{i % 997}", (i * 37) % 2000, industries[i % 4], "UTC", "bench",
             "cold", "[]", "{}", now, now, False, False, 0, 0, "D", 0)
            for i in range(count)
        )  # fmt: skip
        _copy(engine, "lead", columns, rows)
        return
    with engine.begin() as conn:
        for start in range(0, count, chunk):
            conn.execute(
                insert(LEADS),
                [
                    {
                        "email": f"lead{i}@bench.example",
                        "first_name": f"L{i}",
                        "company": f"C{i % 997}",
                        "company_size": (i * 37) % 2000,
                        "industry": industries[i % 4],
                        "timezone": "UTC",
                        "source": "bench",
                        "lifecycle_stage": "cold",
                        "tags": [],
                        "custom": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for i in range(start, min(count, start + chunk))
                ],
            )


def bulk_enrollments(engine: Engine, count: int, due: int, now: datetime, version: str, chunk: int = 50_000) -> None:
    """`count` active enrolments at 'route'; the first `due` are due now, the rest in a month."""
    later = now + timedelta(days=30)
    if engine.dialect.name == "postgresql":
        columns = ["lead_id", "scenario_id", "scenario_version", "state", "status", "seq", "entered_at", "due_at"]
        rows = (
            (i + 1, "bench", version, "route", "active", 0, now, now if i < due else later, now) for i in range(count)
        )
        _copy(engine, "enrollment", [*columns, "enrolled_at"], rows)
        return
    with engine.begin() as conn:
        for start in range(0, count, chunk):
            conn.execute(
                insert(ENROLMENTS),
                [
                    {
                        "lead_id": i + 1,
                        "scenario_id": "bench",
                        "scenario_version": version,
                        "state": "route",
                        "status": "active",
                        "seq": 0,
                        "entered_at": now,
                        "due_at": now if i < due else later,
                        "enrolled_at": now,
                    }
                    for i in range(start, min(count, start + chunk))
                ],
            )


@dataclass(frozen=True)
class Goal:
    """What a benchmark's ratio (nurture ÷ baseline) must be: at least or at most `bound`."""

    at_least: bool
    bound: float

    def met(self, ratio: float) -> bool:
        return ratio >= self.bound if self.at_least else ratio <= self.bound

    def __str__(self) -> str:
        return f"{'≥' if self.at_least else '≤'} {self.bound:g}×"


def at_least(bound: float) -> Goal:
    return Goal(True, bound)


def at_most(bound: float) -> Goal:
    return Goal(False, bound)


@dataclass(frozen=True)
class Result:
    """One row of the results table, and whether its ratio met the goal printed beside it."""

    name: str
    nurture: str
    baseline: str
    ratio: float
    goal: Goal

    @property
    def met(self) -> bool:
        return self.goal.met(self.ratio)

    @property
    def line(self) -> str:
        verdict = "" if self.met else " **missed**"
        return f"| {self.name} | {self.nurture} | {self.baseline} | {self.ratio:.2f}× | {self.goal}{verdict} |"


def ratio_result(name: str, nurture: float, baseline: float, unit: str, goal: Goal) -> Result:
    return Result(name, f"{nurture:,.0f} {unit}", f"{baseline:,.0f} {unit}", nurture / baseline, goal)


@dataclass(frozen=True)
class SectionRun:
    """One section of a run: its rows, how long it took and the load average around it, or
    why it failed. A suite of runs collects these, one JSON line each, into one table."""

    database: str
    section: str
    seconds: float
    load_start: float
    load_end: float
    results: list[Result]
    error: str | None = None

    @property
    def timing(self) -> str:
        load = f"load average {self.load_start:.1f} → {self.load_end:.1f}"
        return f"{self.section} on {self.database}: {self.seconds:,.0f} s, {load}"

    def append_to(self, path: Path) -> None:
        record = {
            "database": self.database,
            "section": self.section,
            "seconds": round(self.seconds, 1),
            "load": [self.load_start, self.load_end],
            "error": self.error,
            "results": [
                {
                    "name": r.name,
                    "nurture": r.nurture,
                    "baseline": r.baseline,
                    "ratio": r.ratio,
                    "at_least": r.goal.at_least,
                    "bound": r.goal.bound,
                }
                for r in self.results
            ],
        }
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")

    @staticmethod
    def read(path: Path) -> list[SectionRun]:
        runs = []
        if not path.exists():
            return runs
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            results = [
                Result(r["name"], r["nurture"], r["baseline"], r["ratio"], Goal(r["at_least"], r["bound"]))
                for r in record["results"]
            ]
            start, end = record["load"]
            runs.append(
                SectionRun(
                    record["database"], record["section"], record["seconds"], start, end, results, record["error"]
                )
            )
        return runs


def missed(results: Sequence[Result]) -> list[str]:
    """One line per result whose ratio missed its goal (empty when every goal was met)."""
    return [f"goal missed: {r.name}: {r.ratio:.2f}×, goal {r.goal}" for r in results if not r.met]


Row = dict[str, Any]


async def raw_send(port: int, payload: bytes, count: int, connections: int) -> float:
    """The send baseline: aiosmtplib's `sendmail` of pre-built bytes over `connections`
    connections at once; seconds for `count` messages."""
    clients = [aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) for _ in range(connections)]
    await asyncio.gather(*(client.connect() for client in clients))
    per = [count // connections + (1 if i < count % connections else 0) for i in range(connections)]

    async def pump(client: aiosmtplib.SMTP, n: int) -> None:
        for i in range(n):
            await client.sendmail("hello@acme.example", [f"lead{i}@bench.example"], payload)

    start = time.perf_counter()
    await asyncio.gather(*(pump(c, n) for c, n in zip(clients, per, strict=True)))
    elapsed = time.perf_counter() - start
    for client in clients:
        await client.quit()
    return elapsed
