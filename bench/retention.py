"""Event retention on PostgreSQL (`python bench/run.py --pg URL retention`): what a million
events cost on disk before and after the monthly partitioning (migration 0014), how long the
migration takes, how fast `nurture events prune` rolls up and drops old months against a raw
SELECT of the same events, what is left per million events recorded, and that the figures
users read (event tallies, the scenario report, the rollups' total) are the same after.

The data is pgdata's (events over the 300 days before 2026-11-20, `{"send": id}` as their
only property) built at revision 0013 in the --pg database (its schema is dropped), or,
with NURTURE_BENCH_RETENTION_URL, an existing database at revision 0013 that the section
migrates and prunes (a copy of a big one: it is changed).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pgdata
from common import Database, Result, at_least, at_most
from sqlalchemy import text
from sqlalchemy.engine import Engine

from nurture.analytics.outcomes import catch_up
from nurture.analytics.report import scenario_report, scenario_report_scan
from nurture.clock import FakeClock
from nurture.config import Settings
from nurture.jobs.catalog import Catalog
from nurture.retention import prune_events
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.migrate import current_revision, upgrade
from nurture.store.retention import month_start

MIB = 1024 * 1024
REPORT_LEADS = 200_000  # the scenario report is compared up to this many leads (it reads every event)


def _plain_bytes(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_total_relation_size('event')")).scalar_one())


def _count(engine: Engine, where: str = "", params: dict[str, Any] | None = None) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM event {where}"), params or {}).scalar_one())


def _raw_select(engine: Engine, cutoff: Any) -> float:
    """Seconds to stream the events before `cutoff` in the order the prune reads them."""
    start = time.perf_counter()
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT lead_id, type, at, props, id FROM event WHERE at < :cutoff ORDER BY lead_id, at, id"
            ).execution_options(stream_results=True, yield_per=10_000),
            {"cutoff": cutoff},
        )
        for _ in rows:
            pass
    return time.perf_counter() - start


def bench_retention(folder: Path, quick: bool, log: Callable[[str], None] = print) -> list[Result]:
    given = os.environ.get("NURTURE_BENCH_RETENTION_URL")
    url = given or Database.pg_url
    if not url:
        raise SystemExit("the retention section runs on PostgreSQL: give --pg URL")
    if given:
        engine = make_engine(given)
        if current_revision(engine) != "0013":
            raise SystemExit(f"{given}: needs a database at revision 0013 (before the event partitions)")
    else:
        engine = pgdata.fresh(url)
        scale = pgdata.Scale(20_000, 200_000, 100_000) if quick else pgdata.Scale(100_000, 1_000_000, 500_000)
        pgdata.build(engine, scale, log, to="0013")
    with engine.connect() as conn:
        leads = int(conn.execute(text("SELECT count(*) FROM lead")).scalar_one())
    events = _count(engine)
    plain = _plain_bytes(engine)

    start = time.perf_counter()
    with engine.begin() as conn:  # the raw baseline: one copy of the rows with the same keys and index
        conn.execute(text("CREATE TABLE event_copy AS SELECT * FROM event"))
        conn.execute(text("ALTER TABLE event_copy ADD PRIMARY KEY (id, at)"))
        conn.execute(text("ALTER TABLE event_copy ADD FOREIGN KEY (lead_id) REFERENCES lead (id)"))
        conn.execute(text("CREATE INDEX ON event_copy (lead_id, at)"))
        conn.execute(text("DROP TABLE event_copy"))
    raw_copy = time.perf_counter() - start
    start = time.perf_counter()
    upgrade(engine, "0014")
    migration = time.perf_counter() - start
    log(f"  migration 0014 (monthly partitions, {events:,} events moved) in {migration:.0f} s")
    partitioned = Store(engine, FakeClock(pgdata.NOW)).retention.storage()
    start = time.perf_counter()
    upgrade(engine)
    log(f"  the migrations after 0014 in {time.perf_counter() - start:.0f} s")

    scenarios, templates = pgdata._project(folder)
    settings = Settings(database_url=url, scenarios_dir=scenarios, templates_dir=templates)
    store = Store(engine, FakeClock(pgdata.NOW))
    catalog = Catalog(store, scenarios, templates)
    catalog.reload()
    compiled, scoring = catalog.current["bench_mail"], catalog.scoring
    with store.transaction() as conn:  # the qualify job has seen every event (the bench stands in for it)
        store.settings.put(conn, "qualify:watermark", store.reports.database_time().isoformat())

    if leads <= REPORT_LEADS:  # the outcome counters of every email, as the daemon keeps them
        catch_up(store, scoring)

    def figures() -> tuple[Any, ...]:
        store.tallies.fold()
        with store.reading() as conn:
            tallies = store.tallies.count(conn, "event", ("a", "day"))
        if leads > REPORT_LEADS:
            return tallies, None
        # From the counters, and recounted from the sends and (raw or rolled up) events.
        return tallies, scenario_report(store, compiled, scoring), scenario_report_scan(store, compiled, scoring)

    before = figures()
    stored = store.retention.storage()
    before_prune = pgdata.NOW - timedelta(days=180)
    cutoff = month_start(before_prune)
    raw = _raw_select(engine, cutoff)
    start = time.perf_counter()
    pruned = prune_events(store, settings, scoring, before_prune)
    took = time.perf_counter() - start
    log(
        f"  pruned {pruned.events:,} events before {pruned.cutoff:%Y-%m-%d} ({len(pruned.partitions)} partitions) "
        f"into {pruned.rollups:,} rollup rows in {took:.0f} s"
    )
    after = store.retention.storage()
    with store.reading() as conn:
        rolled = int(conn.execute(text("SELECT coalesce(sum(n), 0) FROM event_daily")).scalar_one())
    same = figures() == before and rolled == pruned.events and _count(engine) == events - pruned.events

    per_m = 1_000_000 / events
    plain_m = plain * per_m / MIB
    parted_m = (partitioned["event"] + partitioned["event_key"]) * per_m / MIB
    after_m = sum(after.values()) * per_m / MIB
    raw_share = pruned.events / events
    pruned_raw_m = parted_m * raw_share  # what the pruned events took, per million recorded
    rollup_m = after["event_daily"] * per_m / MIB
    scale_note = f"{events / 1e6:.1f}M events, {leads / 1e6:.2f}M leads"
    log(
        f"  storage per million events recorded (at head): {sum(stored.values()) * per_m / MIB:,.0f} MiB before "
        f"the prune, {after_m:,.0f} MiB after"
    )
    return [
        Result(
            f"PG retention: storage per million events, partitioned by month vs one table ({scale_note})",
            f"{parted_m:,.0f} MiB",
            f"{plain_m:,.0f} MiB",
            parted_m / plain_m,
            at_most(1.1),
        ),
        Result(
            f"PG retention: migration 0014 moving {events:,} events into monthly partitions vs a raw copy of them "
            "with the same key, foreign key and index",
            f"{migration:,.0f} s",
            f"{raw_copy:,.0f} s",
            raw_copy / migration,
            at_least(0.25),
        ),
        Result(
            "PG retention: rollups per million events recorded vs the raw events they replace",
            f"{rollup_m:,.1f} MiB",
            f"{pruned_raw_m:,.1f} MiB",
            rollup_m / pruned_raw_m,
            at_most(1.0),
        ),
        Result(
            f"PG retention: prune of {pruned.events:,} events (rollup, drop {len(pruned.partitions)} partitions) "
            "vs a raw SELECT of them",
            f"{pruned.events / took:,.0f} events/s",
            f"{pruned.events / raw:,.0f} events/s",
            raw / took,
            at_least(0.25),
        ),
        Result(
            "PG retention: tallies, rollup total"
            + (" and scenario report (counters and recount)" if before[1] is not None else "")
            + " the same after the prune",
            "same" if same else "DIFFERENT",
            "before",
            1.0 if same else 0.0,
            at_least(1.0),
        ),
    ]
