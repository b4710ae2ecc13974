"""The dashboard's list pages at a million leads: every lead list and inbox view, through the
real ASGI app (session, login, template), p50 and p95 of many requests.

The database is filled fast: SQLite with executemany in one transaction, PostgreSQL with COPY;
both migrated to the revision before the list indexes first and to head after the fill, so
the indexes are built once, in bulk, by the migration itself. The baseline, measured in the
same run, is the login page: the app's floor without any lead query.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import Result, at_most
from sqlalchemy import insert, text
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from nurture.clock import FakeClock
from nurture.config import Settings
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.migrate import upgrade
from nurture.store.tables import ENROLMENTS, LEADS, LIFECYCLE_CHANGES
from nurture.web.app import create_app

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
BEFORE_LIST_INDEXES = "0009"
FIRST = [
    "ada",
    "ben",
    "chloe",
    "david",
    "emma",
    "felix",
    "greta",
    "hugo",
    "ines",
    "jonas",
    "kim",
    "lena",
    "max",
    "nora",
    "omar",
    "paula",
    "quinn",
    "rosa",
    "sven",
    "tara",
]
LAST = [
    "lang",
    "keller",
    "novak",
    "schmidt",
    "garcia",
    "rossi",
    "dubois",
    "jensen",
    "kowalski",
    "silva",
    "tanaka",
    "okafor",
    "murphy",
    "larsen",
    "weber",
    "fischer",
    "moreau",
    "costa",
    "nilsson",
    "horvat",
]
WORDS = [
    "nord",
    "acme",
    "blue",
    "river",
    "stone",
    "bright",
    "iron",
    "oak",
    "sun",
    "delta",
    "alpine",
    "coral",
    "maple",
    "vector",
    "summit",
    "harbor",
    "pixel",
]
KINDS = ["werk", "systems", "labs", "analytics", "logistics", "foods", "bank", "health", "energy", "media"]
OWNERS = ["eva", "max", "jo", "sam", "ali", "mia", "tom", "zoe"]
STAGES = [("cold", 840), ("warm", 120), ("hot", 5), ("accepted", 15), ("rejected", 8), ("recycled", 7), ("customer", 5)]
GRADES = ["A", "B", "C", "D"]
COLUMNS = [
    "email",
    "first_name",
    "last_name",
    "company",
    "company_size",
    "industry",
    "job_title",
    "country",
    "timezone",
    "source",
    "lifecycle_stage",
    "owner",
    "tags",
    "custom",
    "unsubscribed",
    "bounced",
    "score_fit",
    "score_engagement",
    "grade",
    "score_adjustment",
    "created_at",
    "updated_at",
]


def company(i: int) -> str:
    first, second = WORDS[i % len(WORDS)], WORDS[(i // len(WORDS)) % len(WORDS)]
    return f"{first.title()} {second.title()} {KINDS[i % len(KINDS)].title()}"


def lead_rows(count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    stages = [s for s, weight in STAGES for _ in range(weight)]
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        firm = company(rng.randrange(5000))
        yield {
            "email": f"{first}.{last}{i}@{firm.split()[0].lower()}{firm.split()[1].lower()}.example",
            "first_name": first.title(),
            "last_name": last.title(),
            "company": firm,
            "company_size": rng.randrange(1, 5000),
            "industry": "SaaS",
            "job_title": "Manager",
            "country": "DE",
            "timezone": "Europe/Berlin",
            "source": "bench",
            "lifecycle_stage": rng.choice(stages),
            "owner": rng.choice(OWNERS) if rng.random() < 0.9 else None,
            "tags": [],
            "custom": {},
            "unsubscribed": False,
            "bounced": False,
            "score_fit": rng.randrange(0, 60),
            "score_engagement": int(rng.expovariate(1 / 15)),
            "grade": rng.choice(GRADES),
            "score_adjustment": 0,
            "created_at": NOW - timedelta(days=400),
            "updated_at": NOW - timedelta(seconds=rng.randrange(365 * 86400)),
        }


def fill(engine: Engine, count: int, chunk: int = 20_000) -> float:
    """`count` leads, a promotion for each hot lead, sales decisions, a third enrolled; seconds taken."""
    start = time.perf_counter()
    postgres = engine.dialect.name == "postgresql"
    decided: list[tuple[int, str, datetime]] = []  # leads past warm (ids count from 1 in a new database)

    def noting(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for index, row in enumerate(rows, start=1):
            if row["lifecycle_stage"] not in ("cold", "warm"):
                decided.append((index, row["lifecycle_stage"], row["updated_at"]))
            yield row

    with engine.begin() as conn:
        if postgres:
            import json

            raw: Any = conn.connection.driver_connection
            with raw.cursor().copy(f"COPY lead ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in noting(lead_rows(count)):
                    copy.write_row([json.dumps(row[c]) if c in ("tags", "custom") else row[c] for c in COLUMNS])
        else:
            batch: list[dict[str, Any]] = []
            for row in noting(lead_rows(count)):
                batch.append(row)
                if len(batch) == chunk:
                    conn.execute(insert(LEADS), batch)
                    batch = []
            if batch:
                conn.execute(insert(LEADS), batch)
        changes = [
            {"lead_id": i, "at": at, "from_stage": "warm", "to_stage": "hot", "reason": "hot", "actor": "scoring"}
            for i, _stage, at in decided
        ] + [
            {"lead_id": i, "at": at, "from_stage": "hot", "to_stage": stage, "reason": "bench", "actor": "eva"}
            for i, stage, at in decided
            if stage != "hot"
        ]
        _write(conn, postgres, LIFECYCLE_CHANGES, changes, chunk)
        enrolments = [
            {
                "lead_id": i,
                "scenario_id": "bench",
                "scenario_version": "v1",
                "state": "route",
                "status": "active",
                "seq": 0,
                "entered_at": NOW,
                "due_at": NOW + timedelta(days=30),
                "enrolled_at": NOW,
            }
            for i in range(1, count + 1, 3)
        ]
        _write(conn, postgres, ENROLMENTS, enrolments, chunk)
    return time.perf_counter() - start


def _write(conn: Any, postgres: bool, table: Any, rows: list[dict[str, Any]], chunk: int) -> None:
    """Rows into `table`: COPY on PostgreSQL, executemany in chunks on SQLite."""
    if not rows:
        return
    if postgres:
        columns = list(rows[0])
        raw: Any = conn.connection.driver_connection
        with raw.cursor().copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])
        return
    for offset in range(0, len(rows), chunk):
        conn.execute(insert(table), rows[offset : offset + chunk])


def _filled(engine: Engine) -> int:
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM lead")).scalar_one())
    except Exception:  # no database or no table yet
        return -1


@dataclass(frozen=True)
class Timing:
    page: str
    p50: float
    p95: float


def percentile(samples: Sequence[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def time_pages(client: TestClient, pages: Sequence[tuple[str, Sequence[str]]], requests: int) -> list[Timing]:
    """Each page asked `requests` times (cycling through its variants), after one warm-up."""
    found = []
    for name, urls in pages:
        client.get(urls[0])
        samples = []
        for n in range(requests):
            url = urls[n % len(urls)]
            start = time.perf_counter()
            answer = client.get(url)
            samples.append(time.perf_counter() - start)
            if answer.status_code != 200:
                raise SystemExit(f"{url}: HTTP {answer.status_code}")
        found.append(Timing(name, statistics.median(samples) * 1000, percentile(samples, 0.95) * 1000))
    return found


PAGES: list[tuple[str, list[str]]] = [
    ("/leads (latest change)", ["/leads", "/leads?page=2", "/leads?page=20"]),
    ("/leads sorted by engagement", ["/leads?sort=engagement", "/leads?sort=engagement&page=3"]),
    ("/leads by email, page 200", ["/leads?sort=email&page=200", "/leads?sort=email&page=150"]),
    ("/leads?q= email start", [f"/leads?q={f}.{last}12" for f in FIRST[:5] for last in LAST[:4]]),
    ("/leads?q= last name", [f"/leads?q={last}" for last in LAST]),
    ("/leads?q= company", [f"/leads?q={w}" for w in WORDS] + ["/leads?q=acme+blue", "/leads?q=coral+sun"]),
    ("/leads?q= rare text", ["/leads?q=zzzz", "/leads?q=nobody.here"]),
    ("/leads?stage=customer", ["/leads?stage=customer", "/leads?stage=customer&page=2"]),
    ("/leads?grade=A&sort=engagement", ["/leads?grade=A&sort=engagement", "/leads?grade=B&sort=engagement"]),
    ("/leads?owner=", [f"/leads?owner={o}" for o in OWNERS]),
    ("/leads?scenario=", ["/leads?scenario=bench", "/leads?scenario=bench&stage=warm"]),
    (
        "/leads stage+grade+owner+search",
        ["/leads?stage=warm&grade=A&owner=eva&q=lang", "/leads?stage=cold&grade=C&owner=max&q=nord"],
    ),
    ("/inbox (newest promotion)", ["/inbox", "/inbox?page=2"]),
    ("/inbox filtered and sorted", ["/inbox?sort=engagement&grade=A", "/inbox?owner=eva", "/inbox?q=lang"]),
]


def bench_pages(folder: Path, count: int, pg_url: str | None, requests: int = 30) -> list[Result]:
    results: list[Result] = []
    targets: list[tuple[str, str]] = []
    sqlite_path = folder / "pages.db"
    targets.append(("SQLite", f"sqlite:///{sqlite_path}"))
    if pg_url:
        targets.append(("PostgreSQL", pg_url))
    for label, url in targets:
        engine = make_engine(url)
        if _filled(engine) == count:  # a database of an earlier run (--keep): used as it is
            print(f"({label}: reusing the {count:,} leads of an earlier run)", flush=True)
            upgrade(engine)
        else:
            engine.dispose()
            if label == "PostgreSQL":
                with make_engine(url).begin() as conn:
                    conn.execute(text("DROP SCHEMA public CASCADE"))
                    conn.execute(text("CREATE SCHEMA public"))
            else:
                for suffix in ("", "-wal", "-shm"):
                    Path(str(sqlite_path) + suffix).unlink(missing_ok=True)
            engine = make_engine(url)
            upgrade(engine, BEFORE_LIST_INDEXES)
            seconds = fill(engine, count)
            indexing = time.perf_counter()
            upgrade(engine)
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
            indexing = time.perf_counter() - indexing
            print(
                f"({label}: {count:,} leads filled in {seconds:.0f} s, indexed and analysed in {indexing:.0f} s)",
                flush=True,
            )
        (folder / "scenarios").mkdir(exist_ok=True)
        settings = Settings(
            database_url=url,
            scenarios_dir=folder / "scenarios",
            templates_dir=folder / "email_templates",
            secret_key="bench-secret-bench-secret",
            base_url="http://bench.test",
        )
        store = Store(engine, FakeClock(NOW))
        store.access.set_user("bench", "bench password", "Bench")
        app = create_app(settings, FakeClock(NOW), store)
        with TestClient(app, base_url="http://bench.test") as client:
            page = client.get("/login").text
            token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            client.post("/login", data={"username": "bench", "password": "bench password", "csrf": token})
            [floor] = time_pages(client, [("/login", ["/login"])], requests)
            for timing in time_pages(client, PAGES, requests):
                results.append(
                    result := Result(
                        f"{timing.page} ({label}, {count:,} leads)",
                        f"p50 {timing.p50:.0f} ms · p95 {timing.p95:.0f} ms",
                        f"/login p50 {floor.p50:.1f} ms",
                        timing.p95 / floor.p50,
                        at_most(200),
                    )
                )
                print(result.line, flush=True)
        engine.dispose()
    return results
