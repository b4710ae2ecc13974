"""The scenario report read from its counters equals the report computed from the sends,
events and stage changes themselves: after a daemon's run with people, scanners, an
unsubscribe, a bounce and conversions, for a window of days, after the raw events are
pruned, after an upgrade over existing rows, and with two PostgreSQL daemons sending while
events and conversions arrive from several threads."""

from __future__ import annotations

import random
import shutil
import signal
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import delete, func, insert, select

from nurture.analytics.outcomes import catch_up
from nurture.analytics.report import ScenarioReport, scenario_report, scenario_report_scan
from nurture.clock import FakeClock
from nurture.jobs.catalog import Catalog
from nurture.leads import erase_person
from nurture.lifecycle import change_stage
from nurture.retention import prune_events
from nurture.scenario.compiler import CompiledScenario
from nurture.scoring.engine import CompiledScoring
from nurture.scoring.loader import load_scoring
from nurture.store import Store
from nurture.store.migrate import alembic_config, upgrade
from nurture.store.tables import ENROLMENTS, EVENTS, LEADS, LIFECYCLE_CHANGES, OUTCOME_PENDING, SENDS
from tests.integration.conftest import ROOT, START, ticks, write_scenario
from tests.integration.test_analytics import REPORT_LEADS, REPORTED
from tests.integration.test_crash_and_scale_out import (
    environment,
    prepare,
    start_daemon,
    tail,
    wait_until_done,
    wait_until_running,
)
from tests.integration.test_daemon import import_csv, run
from tests.smtp_server import SmtpServer


def by_scan(store: Store, compiled: CompiledScenario, scoring: CompiledScoring | None, **window: Any) -> ScenarioReport:
    scanned = scenario_report_scan(store, compiled, scoring, window.get("since"), window.get("until"))
    return replace(scanned, time_to_hot=[], hot_median=scanned.median_time_to_hot)


def assert_counters_equal_the_scan(
    store: Store, compiled: CompiledScenario, scoring: CompiledScoring | None, **window: Any
) -> ScenarioReport:
    counted = scenario_report(store, compiled, scoring, window.get("since"), window.get("until"))
    assert counted.uncounted == 0
    assert counted == by_scan(store, compiled, scoring, **window)
    return counted


def engage(store: Store, email: str, step: str, type_: str, after: timedelta, **props: Any) -> None:
    with store.reading() as conn:
        send = conn.execute(
            select(SENDS.c.id, SENDS.c.lead_id, SENDS.c.sent_at)
            .join(LEADS, LEADS.c.id == SENDS.c.lead_id)
            .where(LEADS.c.email == email, SENDS.c.step == step)
        ).one()
    with store.transaction() as conn:
        store.events.record(
            conn,
            send.lead_id,
            type_,
            send.sent_at + after,
            {"send": send.id, "sent_at": send.sent_at.isoformat(), **props},
        )


def test_the_report_from_counters_equals_the_scan_for_all_time_for_days_and_after_a_prune(
    db_url: str, make_daemon: Any, workspace: Path, smtp: SmtpServer, clock: FakeClock, tmp_path: Path
) -> None:
    write_scenario(workspace, REPORTED)
    shutil.copy(ROOT / "scenarios" / "scoring.yaml", workspace / "scenarios")
    daemon = make_daemon(db_url)
    import_csv(daemon, tmp_path, REPORT_LEADS)
    smtp.recorder.rcpt_replies["eve@r.example"] = "550 5.1.1 no such user"
    store: Store = daemon.store
    run(ticks(daemon, clock))
    engage(store, "ann@r.example", "hello", "open", timedelta(hours=1))
    engage(store, "ann@r.example", "hello", "click", timedelta(hours=1, minutes=1), link="whitepaper")
    engage(store, "bob@r.example", "hello", "open", timedelta(hours=2))
    engage(store, "bob@r.example", "hello", "open", timedelta(hours=3))
    engage(store, "cho@r.example", "hello", "click", timedelta(seconds=2), link="whitepaper")
    engage(store, "cho@r.example", "hello", "honeypot", timedelta(seconds=3))
    engage(store, "dee@r.example", "hello", "unsubscribe", timedelta(hours=1), via="link")
    engage(store, "ann@r.example", "hello", "bounce", timedelta(hours=5))
    compiled = daemon.catalog.current["reported"]
    scoring = daemon.catalog.scoring
    first = assert_counters_equal_the_scan(store, compiled, scoring)
    assert {r.step: r.opened for r in first.steps}["hello"] == 2
    clock.advance(timedelta(days=1))
    # A second wave of leads enrols a day later: a window of days sees only its own.
    import_csv(daemon, tmp_path, "email,first_name,company,source\nfay@r.example,Fay,Fay Ltd,web\n")
    run(ticks(daemon, clock, timedelta(days=2, hours=1), timedelta(hours=1)))
    engage(store, "bob@r.example", "follow_up", "open", timedelta(hours=5))
    engage(store, "fay@r.example", "hello", "click", timedelta(hours=2), link="whitepaper")
    ann = store.leads.by_email("ann@r.example")
    fay = store.leads.by_email("fay@r.example")
    assert ann is not None and fay is not None
    with store.transaction() as conn:
        change_stage(store, conn, ann.id, "cold", "hot", "grade A", "qualify", clock.now())
        change_stage(store, conn, fay.id, "cold", "accepted", "sales", "sales@acme.example", clock.now())
    report = assert_counters_equal_the_scan(store, compiled, scoring)
    assert (report.hot, report.converted_total, report.enrolled) == (1, 2, 6)
    day = START.replace(hour=0, minute=0, second=0, microsecond=0)
    for since, until in ((day, day + timedelta(days=1)), (day + timedelta(days=1), day + timedelta(days=5))):
        windowed = assert_counters_equal_the_scan(store, compiled, scoring, since=since, until=until)
        assert windowed.enrolled in (5, 1)
    # The qualify job keeps the counters current; the raw events can then go (retention).
    daemon.qualifier.run_once()
    with store.transaction() as conn:
        assert conn.execute(select(func.count()).select_from(OUTCOME_PENDING)).scalar() == 0
        conn.execute(delete(EVENTS))
    assert scenario_report(store, compiled, scoring) == report


def test_an_upgrade_counts_the_sends_and_names_the_leads_that_were_there_before_it(
    db_url: str, make_daemon: Any, workspace: Path, smtp: SmtpServer, clock: FakeClock, tmp_path: Path
) -> None:
    write_scenario(workspace, REPORTED)
    daemon = make_daemon(db_url)
    import_csv(daemon, tmp_path, REPORT_LEADS)
    store: Store = daemon.store
    run(ticks(daemon, clock, timedelta(days=2, hours=1), timedelta(hours=1)))
    engage(store, "ann@r.example", "hello", "click", timedelta(hours=1), link="whitepaper")
    engage(store, "bob@r.example", "follow_up", "unsubscribe", timedelta(hours=1))
    compiled = daemon.catalog.current["reported"]
    expected = by_scan(store, compiled, None)
    upgrade(store.engine, "0015")
    upgrade(store.engine)
    with store.reading() as conn:
        assert store.outcomes.pending(conn) == 2
    assert catch_up(store, None) == 2
    assert_counters_equal_the_scan(store, compiled, None)
    assert scenario_report(store, compiled, None) == expected


RELAYED = """
id: relayed
name: Relayed
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
    duration: 2s
  - id: second
    type: send_email
    template: case_study
    subject: "Second for {{ lead.first_name }}"
"""


@pytest.mark.slow
@pytest.mark.postgres
def test_two_postgres_daemons_sending_while_four_threads_record_events_and_conversions_keep_the_report_exact(
    pg_url: str, workspace: Path, smtp: SmtpServer, tmp_path: Path
) -> None:
    leads = 240
    store = prepare(pg_url, workspace, tmp_path, leads)
    (workspace / "scenarios" / "test.yaml").unlink()
    write_scenario(workspace, RELAYED, "relayed.yaml")
    shutil.copy(ROOT / "scenarios" / "scoring.yaml", workspace / "scenarios")
    log = tmp_path / "daemons.log"
    processes = [start_daemon(environment(pg_url, workspace, smtp, f"node-{n}"), log) for n in range(2)]
    failures: list[BaseException] = []
    with store.reading() as conn:
        ids = list(conn.execute(select(LEADS.c.id).order_by(LEADS.c.id)).scalars())

    def first_send(lead_id: int) -> Any:
        with store.reading() as conn:
            return conn.execute(
                select(SENDS.c.id, SENDS.c.sent_at)
                .where(SENDS.c.lead_id == lead_id, SENDS.c.status == "sent")
                .order_by(SENDS.c.id)
                .limit(1)
            ).first()

    def write(writer: int) -> None:
        chance = random.Random(writer)
        try:
            for lead_id in ids[writer::4]:
                send = None
                while send is None:
                    send = first_send(lead_id)
                now = datetime.now(UTC)
                props = {"send": send.id}
                with store.transaction() as conn:
                    store.events.record(conn, lead_id, "open", now, {**props, "user_agent": "Mozilla/5.0"})
                    if chance.random() < 0.3:
                        store.events.record(conn, lead_id, "click", now, {**props, "link": "a", "user_agent": "x"})
                    if chance.random() < 0.2:  # a scanner: both links within a second, and the hidden one
                        for link in ("a", "b"):
                            store.events.record(conn, lead_id, "click", now, {**props, "link": link})
                        store.events.record(conn, lead_id, "honeypot", now, props)
                if chance.random() < 0.3:  # sales takes the lead while its second email may be going out
                    with store.transaction() as conn:
                        row = store.leads.in_(conn, [lead_id])[0]
                        to = "hot" if chance.random() < 0.5 else "accepted"
                        change_stage(store, conn, lead_id, row.lifecycle_stage, to, "test", "sales", datetime.now(UTC))
        except BaseException as exc:
            failures.append(exc)

    try:
        for n in range(2):
            wait_until_running(log, f"node-{n}")
        writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
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
    catalog = Catalog(store, workspace / "scenarios", workspace / "email_templates")
    catalog.reload()
    compiled = catalog.current["relayed"]
    scoring = load_scoring(workspace / "scenarios" / "scoring.yaml")
    report = assert_counters_equal_the_scan(store, compiled, scoring)
    rows = {r.step: r for r in report.steps}
    assert rows["first"].sent == rows["second"].sent == leads
    assert 0 < rows["first"].opened <= leads and rows["first"].machine_clicked > 0 and report.converted_total > 0
    with store.reading() as conn:
        assert conn.execute(select(func.count()).select_from(ENROLMENTS)).scalar() == leads


def test_the_counters_stay_exact_after_an_erasure_and_a_prune_and_a_recount_changes_nothing(
    db_url: str, make_daemon: Any, workspace: Path, smtp: SmtpServer, clock: FakeClock, tmp_path: Path
) -> None:
    write_scenario(workspace, REPORTED)
    shutil.copy(ROOT / "scenarios" / "scoring.yaml", workspace / "scenarios")
    daemon = make_daemon(db_url)
    daemon.qualifier.overlap = timedelta(0)
    import_csv(daemon, tmp_path, REPORT_LEADS)
    store: Store = daemon.store
    store.retention.ensure_partitions(through=clock.now() + timedelta(days=300))
    run(ticks(daemon, clock, timedelta(days=2, hours=1), timedelta(hours=1)))
    engage(store, "ann@r.example", "hello", "open", timedelta(hours=1))
    engage(store, "ann@r.example", "hello", "click", timedelta(hours=1, minutes=1), link="whitepaper")
    engage(store, "bob@r.example", "hello", "open", timedelta(hours=2))
    engage(store, "bob@r.example", "follow_up", "click", timedelta(hours=2), link="whitepaper")
    engage(store, "cho@r.example", "hello", "click", timedelta(seconds=2), link="whitepaper")
    engage(store, "dee@r.example", "hello", "unsubscribe", timedelta(hours=1), via="link")
    ann = store.leads.by_email("ann@r.example")
    assert ann is not None
    with store.transaction() as conn:
        change_stage(store, conn, ann.id, "cold", "hot", "grade A", "qualify", clock.now())
    compiled = daemon.catalog.current["reported"]
    scoring = daemon.catalog.scoring
    daemon.qualifier.run_once()
    before = assert_counters_equal_the_scan(store, compiled, scoring)
    assert (before.hot, before.enrolled) == (1, 5)

    erase_person(store, daemon.settings, "ann@r.example", "privacy desk")
    erased = assert_counters_equal_the_scan(store, compiled, scoring)
    assert (erased.hot, erased.enrolled) == (0, 4)

    clock.advance(timedelta(days=240))
    daemon.qualifier.run_once()
    pruned = prune_events(
        store, daemon.settings.model_copy(update={"event_retention_days": 200}), scoring, overlap=timedelta(0)
    )
    assert pruned.events > 0 and _raw_events(store) == 0
    after = scenario_report(store, compiled, scoring)
    assert after == erased and after.uncounted == 0
    store.outcomes.name_everyone()
    assert catch_up(store, scoring) > 0
    assert scenario_report(store, compiled, scoring) == erased


def _raw_events(store: Store) -> int:
    with store.reading() as conn:
        return int(conn.execute(select(func.count()).select_from(EVENTS)).scalar_one())


def test_the_median_time_to_hot_over_many_hot_enrolments_equals_the_scan_odd_even_and_after_a_deletion(
    db_url: str, make_daemon: Any, workspace: Path, clock: FakeClock
) -> None:
    write_scenario(workspace, REPORTED)
    shutil.copy(ROOT / "scenarios" / "scoring.yaml", workspace / "scenarios")
    daemon = make_daemon(db_url)
    store: Store = daemon.store
    compiled = daemon.catalog.current["reported"]
    scoring = daemon.catalog.scoring
    now = clock.now()
    # 301 enrolments over 13 days, each made hot after a wait of its own (some waits shared).
    with store.transaction() as conn:
        for i in range(301):
            enrolled = now + timedelta(hours=i)
            lead = conn.execute(
                insert(LEADS).values(
                    email=f"hot{i}@r.example", source="web", tags=[], custom={}, created_at=now, updated_at=now
                )
            ).inserted_primary_key[0]
            conn.execute(
                insert(ENROLMENTS).values(
                    lead_id=lead,
                    scenario_id="reported",
                    scenario_version="v1",
                    state="hello",
                    entered_at=enrolled,
                    enrolled_at=enrolled,
                )
            )
            wait = timedelta(hours=5) if i % 10 == 0 else timedelta(minutes=(i * 7919) % 10_000, microseconds=i)
            change_stage(store, conn, lead, "cold", "hot", "grade A", "qualify", enrolled + wait)
    catch_up(store, scoring)
    odd = assert_counters_equal_the_scan(store, compiled, scoring)
    assert odd.hot == 301
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for since, until in ((day, day + timedelta(days=1)), (day + timedelta(days=2), day + timedelta(days=9))):
        assert assert_counters_equal_the_scan(store, compiled, scoring, since=since, until=until).hot > 0
    # A promotion undone: its enrolment's counted time is taken back (on PostgreSQL a row of
    # -1 beside the folded one until the next fold), and the median is over 300 again.
    with store.transaction() as conn:
        lead = conn.execute(select(LEADS.c.id).where(LEADS.c.email == "hot150@r.example")).scalar_one()
        conn.execute(delete(LIFECYCLE_CHANGES).where(LIFECYCLE_CHANGES.c.lead_id == lead))
    catch_up(store, scoring)
    even = assert_counters_equal_the_scan(store, compiled, scoring)
    assert even.hot == 300 and even.median_time_to_hot != odd.median_time_to_hot
    # Counted before the buckets of times (migration 0019): the upgrade makes them from the times.
    command.downgrade(alembic_config(db_url), "0018")
    with store.transaction() as conn:
        lead = conn.execute(select(LEADS.c.id).where(LEADS.c.email == "hot151@r.example")).scalar_one()
        conn.execute(delete(LIFECYCLE_CHANGES).where(LIFECYCLE_CHANGES.c.lead_id == lead))
    catch_up(store, scoring)
    upgrade(store.engine)
    assert assert_counters_equal_the_scan(store, compiled, scoring).hot == 299
