"""The counts reports, /metrics and the dashboard read (the tallies) equal a full recount of
the rows (the scenario report's outcome counts: of the sends and the outcome rows), on SQLite
and on PostgreSQL, after a daemon's run, an erasure, a migration over existing rows, and two
daemons on one PostgreSQL while events arrive from several threads."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from nurture.clock import FakeClock
from nurture.leads import import_leads
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.migrate import upgrade
from nurture.store.tables import ENROLMENTS, EVENTS, LEADS, OUTCOMES, SENDS, TALLIES
from tests.integration.conftest import START, copy_samples, ticks
from tests.integration.test_crash_and_scale_out import (
    environment,
    prepare,
    start_daemon,
    tail,
    wait_until_done,
    wait_until_running,
)
from tests.smtp_server import SmtpServer


def _day(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d")


def recount(store: Store) -> Counter[tuple[str, ...]]:
    """Every tally key counted again from the rows themselves."""
    found: Counter[tuple[str, ...]] = Counter()
    with store.reading() as conn:
        for r in conn.execute(select(EVENTS.c.type, EVENTS.c.at)):
            found[("event", r.type, "", "", "", _day(r.at))] += 1
        for r in conn.execute(
            select(SENDS.c.scenario_id, SENDS.c.step, SENDS.c.status, SENDS.c.kind, SENDS.c.sent_at, SENDS.c.created_at)
        ):
            found[("send", r.scenario_id, r.step, r.status, r.kind, _day(r.sent_at or r.created_at))] += 1
        for r in conn.execute(
            select(ENROLMENTS.c.scenario_id, ENROLMENTS.c.status, ENROLMENTS.c.exit_reason, ENROLMENTS.c.enrolled_at)
        ):
            found[("enrolment", r.scenario_id, r.status, r.exit_reason or "", "", _day(r.enrolled_at))] += 1
        for r in conn.execute(
            select(
                LEADS.c.lifecycle_stage, LEADS.c.grade, LEADS.c.score_engagement, LEADS.c.unsubscribed, LEADS.c.bounced
            )
        ):
            reach = "unreachable" if r.unsubscribed or r.bounced else "reachable"
            found[("lead", r.lifecycle_stage, r.grade, str(r.score_engagement), reach, "")] += 1
        for r in conn.execute(
            select(SENDS.c.scenario_id, SENDS.c.step, SENDS.c.status, ENROLMENTS.c.enrolled_at)
            .join(
                ENROLMENTS,
                (ENROLMENTS.c.id == SENDS.c.enrollment_id) & (ENROLMENTS.c.scenario_id == SENDS.c.scenario_id),
            )
            .where(SENDS.c.kind == "email", SENDS.c.status.in_(("sent", "bounced")))
        ):
            metric = "sent" if r.status == "sent" else "refused"
            found[("outcome", r.scenario_id, r.step, metric, "", _day(r.enrolled_at))] += 1
        for r in conn.execute(select(OUTCOMES)):
            found[("outcome", r.scenario_id, r.step, r.metric, r.detail, r.day)] += r.n
    return found


def tallied(store: Store) -> Counter[tuple[str, ...]]:
    found: Counter[tuple[str, ...]] = Counter()
    t = TALLIES.c
    with store.reading() as conn:
        for r in conn.execute(select(t.kind, t.a, t.b, t.c, t.d, t.day, func.sum(t.n)).group_by(*TALLIES.c[1:7])):
            if r[-1]:
                found[tuple(r[:-1])] += int(r[-1])
    return found


def assert_exact(store: Store) -> None:
    expected, got = recount(store), tallied(store)
    assert got == expected, {
        k: (got.get(k), expected.get(k)) for k in set(got) | set(expected) if got[k] != expected[k]
    }


def test_tallies_equal_a_recount_after_a_daemon_run_events_an_unsubscribe_and_an_erasure(
    db_url: str, make_daemon: Any, workspace: Path, smtp: SmtpServer, clock: FakeClock
) -> None:
    copy_samples(workspace)
    daemon = make_daemon(db_url)
    store: Store = daemon.store
    csv = workspace / "leads.csv"
    csv.write_text(
        "email,first_name,company,timezone,source,whitepaper_title\n"
        + "".join(f"t{i}@acme.example,T{i},Acme,UTC,whitepaper,Guide\n" for i in range(12)),
        encoding="utf-8",
    )
    assert import_leads(store, csv).problems == []
    asyncio.run(ticks(daemon, clock, timedelta(days=1), timedelta(days=3)))
    lead = store.leads.by_email("t3@acme.example")
    assert lead is not None
    with store.transaction() as conn:
        store.events.record(conn, lead.id, "click", clock.now(), {"url": "https://acme.example/p"}, "ext-1")
        store.events.record(conn, lead.id, "click", clock.now(), {"url": "https://acme.example/p"}, "ext-1")
        store.events.record(conn, lead.id, "unsubscribe", clock.now() + timedelta(days=1), {})
    asyncio.run(ticks(daemon, clock, timedelta(days=2)))
    store.consents.erase("t5@acme.example", "erased:x", "dpo", clock.now())
    assert_exact(store)
    assert store.tallies.fold() >= 0
    assert_exact(store)
    stages = store.reports.stages()
    assert sum(stages.values()) == 11
    with store.reading() as conn:
        sent = conn.execute(select(func.count()).where(SENDS.c.status == "sent")).scalar()
    assert sent and store.reports.counters(clock.now(), "heartbeat:").sends["sent"] == sent


def test_the_migration_counts_rows_that_were_there_before_it(db_url: str) -> None:
    clock = FakeClock(START)
    engine = make_engine(db_url)
    upgrade(engine, "0008")
    with engine.begin() as conn:
        for i in range(5):
            conn.execute(
                LEADS.insert().values(
                    email=f"old{i}@acme.example",
                    lifecycle_stage="warm" if i % 2 else "cold",
                    tags=[],
                    custom={},
                    unsubscribed=i == 4,
                    bounced=False,
                    score_fit=0,
                    score_engagement=10 * i,
                    grade="B",
                    score_adjustment=0,
                    created_at=START,
                    updated_at=START,
                )
            )
        ids = [r.id for r in conn.execute(select(LEADS.c.id))]
        for n, lead_id in enumerate(ids):
            conn.execute(
                EVENTS.insert().values(
                    lead_id=lead_id, type="open", at=START + timedelta(days=n), props={}, received_at=START
                )
            )
    upgrade(engine)
    store = Store(engine, clock)
    assert_exact(store)
    assert store.reports.stages() == {"cold": 3, "warm": 2}
    assert sum(c.leads for c in store.reports.score_spread()) == 4


@pytest.mark.slow
@pytest.mark.postgres
def test_two_postgres_daemons_and_four_event_writers_keep_the_tallies_exact(
    pg_url: str, workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    leads = 300
    store = prepare(pg_url, workspace, tmp_path, leads)
    with store.reading() as conn:
        ids = [r.id for r in conn.execute(select(LEADS.c.id))]
    log = tmp_path / "daemons.log"
    processes = [start_daemon(environment(pg_url, workspace, smtp, f"node-{n}"), log) for n in range(2)]
    failures: list[BaseException] = []

    def write_events(writer: int) -> None:
        try:
            for i, lead_id in enumerate(ids[writer::4]):
                with store.transaction() as conn:
                    for k in range(3):
                        store.events.record(conn, lead_id, "open" if k else "click", datetime.now(UTC), {"n": i})
                if i % 20 == 0:
                    store.tallies.fold()
        except BaseException as exc:
            failures.append(exc)

    try:
        for n in range(2):
            wait_until_running(log, f"node-{n}")
        writers = [threading.Thread(target=write_events, args=(w,)) for w in range(4)]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join(timeout=600)
        wait_until_done(store, 2 * leads)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=30) for process in processes]
    assert codes == [0, 0], tail(log)
    assert not failures, failures
    assert_exact(store)
    store.tallies.fold()
    assert_exact(store)
    with store.reading() as conn:
        assert store.tallies.unfolded(conn) == 0
    assert store.reports.funnel("burst")["sent_by_step"] == {"first": leads, "second": leads}
