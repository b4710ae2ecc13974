"""Event retention: old raw events are rolled into daily counts and dropped, and what users
read from events (scores, a backtest, near misses, the scenario report, the tallies) is the
same before and after; on PostgreSQL the event table is partitioned by month."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import select

from nurture.analytics.backtest import backtest, parse_cuts, parse_thresholds, scope
from nurture.analytics.history import StoredHistory, load_history
from nurture.analytics.nearmiss import near_misses
from nurture.analytics.nearmiss import scope as nearmiss_scope
from nurture.analytics.report import ScenarioReport, scenario_report
from nurture.clock import FakeClock
from nurture.config import Settings
from nurture.daemon import Daemon
from nurture.retention import prune_events
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.migrate import upgrade
from nurture.store.retention import RetentionError
from nurture.store.tables import EVENT_DAILY, EVENTS, LEADS, SENDS
from nurture.web.app import create_app
from tests.http_server import serving
from tests.integration.conftest import ROOT, ticks, wait_for, write_scenario
from tests.integration.test_analytics import REPORTED
from tests.integration.test_daemon import import_csv, run
from tests.smtp_server import SmtpServer

LEADS_CSV = "email,first_name,company,company_size,job_title,source\n" + "".join(
    f"{name}@r.example,{name.title()},{company},{size},{title},web\n"
    for name, company, size, title in (
        ("ann", "Ann Ltd", 2000, "Head of Ops"),
        ("bob", "Bob Ltd", 300, "Engineer"),
        ("cho", "Cho Ltd", 50, "Manager"),
        ("dee", "Shared Inc", 1500, "Director"),
        ("eve", "Shared Inc", 1500, "CTO"),
    )
)


def _scores(store: Store) -> dict[str, tuple[Any, ...]]:
    with store.reading() as conn:
        rows = conn.execute(
            select(LEADS.c.email, LEADS.c.score_fit, LEADS.c.score_engagement, LEADS.c.grade, LEADS.c.lifecycle_stage)
        ).all()
    return {r.email: tuple(r[1:]) for r in rows}


def _event_tallies(store: Store) -> dict[Any, int]:
    store.tallies.fold()
    with store.reading() as conn:
        return store.tallies.count(conn, "event", ("a", "day"))


def _raw_events(store: Store) -> int:
    with store.reading() as conn:
        return int(conn.execute(select(sa.func.count()).select_from(EVENTS)).scalar_one())


def test_pruning_old_events_keeps_scores_backtest_near_misses_report_and_tallies(
    db_url: str, make_daemon: Any, workspace: Path, smtp: SmtpServer, clock: FakeClock, tmp_path: Path
) -> None:
    """Emails go out in March and are opened, clicked (once by a scanner, two seconds after
    delivery), unsubscribed from; page views and a webinar follow over eight months. Pruning
    March and April changes none of the figures a user reads."""
    write_scenario(workspace, REPORTED)
    shutil.copy(ROOT / "scenarios" / "scoring.yaml", workspace / "scenarios")
    daemon: Daemon = make_daemon(db_url)
    daemon.qualifier.overlap = timedelta(0)  # one writer, never recording during a run
    store = daemon.store
    start = clock.now()
    store.retention.ensure_partitions(through=start + timedelta(days=300))
    import_csv(daemon, tmp_path, LEADS_CSV)
    run(ticks(daemon, clock))

    def record(email: str, type_: str, at: datetime, **props: Any) -> None:
        with store.transaction() as conn:
            lead = conn.execute(select(LEADS.c.id).where(LEADS.c.email == email)).scalar_one()
            store.events.record(conn, lead, type_, at, props, external_id=f"{email}:{type_}:{at.isoformat()}")

    def engage(email: str, type_: str, after: timedelta, **props: Any) -> None:
        with store.reading() as conn:
            send = conn.execute(
                select(SENDS.c.id, SENDS.c.sent_at)
                .join(LEADS, LEADS.c.id == SENDS.c.lead_id)
                .where(LEADS.c.email == email, SENDS.c.step == "hello")
            ).one()
        record(email, type_, send.sent_at + after, send=send.id, sent_at=send.sent_at.isoformat(), **props)

    engage("ann@r.example", "open", timedelta(hours=1))
    engage("ann@r.example", "click", timedelta(hours=1, minutes=1), link="whitepaper")
    engage("bob@r.example", "open", timedelta(hours=2))
    engage("bob@r.example", "open", timedelta(hours=3))
    engage("cho@r.example", "click", timedelta(seconds=2), link="whitepaper")
    engage("dee@r.example", "unsubscribe", timedelta(hours=1), via="link")
    for day in range(0, 240, 9):
        for email in ("ann@r.example", "bob@r.example", "eve@r.example"):
            record(email, "page_view", start + timedelta(days=day, hours=3), url=f"https://acme.example/p{day}")
    record("ann@r.example", "page_view", start + timedelta(days=231), url="https://acme.example/pricing")
    record("eve@r.example", "webinar_attended", start + timedelta(days=235))
    clock.set(start + timedelta(days=240))
    daemon.qualifier.run_once(everyone=True)

    scoring = daemon.catalog.scoring
    assert scoring is not None
    compiled = daemon.catalog.current["reported"]
    now = clock.now()
    since, until = now - timedelta(days=20), now
    thresholds, cuts = parse_thresholds("20:60:10"), parse_cuts(None, scoring)

    def figures() -> tuple[Any, ...]:
        return (
            _scores(store),
            backtest(scoring, load_history(store, scoring, since, until), since, until, thresholds, cuts),
            near_misses(scoring, load_history(store, scoring, now, now), now, 30, 30),
            # As the commands read them: a chunk at a time, only the leads each can use.
            backtest(
                scoring,
                StoredHistory(store, scoring, scope(since, until), since, until),
                since,
                until,
                thresholds,
                cuts,
            ),
            near_misses(scoring, StoredHistory(store, scoring, nearmiss_scope(), now, now), now, 30, 30),
            scenario_report(store, compiled, scoring),
            _event_tallies(store),
        )

    before = figures()
    assert any(points for _fit, points, *_ in before[0].values()), "the leads have engagement to keep"
    assert before[5].steps[0].opened == 2 and before[5].steps[0].bot_events == 1
    assert (before[3], before[4]) == (before[1], before[2])
    events_before = _raw_events(store)

    settings = Settings(database_url=db_url, scenarios_dir=workspace / "scenarios")
    pruned = prune_events(store, settings, scoring, start + timedelta(days=50), overlap=timedelta(0))

    assert pruned.cutoff == datetime(2026, 4, 1, tzinfo=UTC)
    assert pruned.events > 0
    assert _raw_events(store) == events_before - pruned.events
    if store.postgres:
        assert pruned.partitions == ["event_2026_03"]
    with store.reading() as conn:
        rolled = conn.execute(select(sa.func.sum(EVENT_DAILY.c.n))).scalar_one()
        assert rolled == pruned.events
        assert conn.execute(select(sa.func.min(EVENTS.c.at))).scalar_one() >= pruned.cutoff
    daemon.qualifier.run_once(everyone=True)
    assert figures() == before
    # Counting every lead's emails again (as a late event on a pruned email does) reads the
    # pruned months from their rollups: the report stays the same.
    report = next(figure for figure in before if isinstance(figure, ScenarioReport))
    store.outcomes.name_everyone()
    assert scenario_report(store, compiled, scoring) == report


def test_a_prune_that_could_change_scores_or_skip_unqualified_events_is_refused(
    db_url: str, make_daemon: Any, workspace: Path, clock: FakeClock, tmp_path: Path
) -> None:
    shutil.copy(ROOT / "scenarios" / "scoring.yaml", workspace / "scenarios")
    daemon: Daemon = make_daemon(db_url)
    daemon.qualifier.overlap = timedelta(0)
    store, scoring = daemon.store, daemon.catalog.scoring
    import_csv(daemon, tmp_path, LEADS_CSV)
    start = clock.now()
    with store.transaction() as conn:
        lead = conn.execute(select(LEADS.c.id)).scalars().first()
        assert lead is not None
        store.events.record(conn, lead, "page_view", start, {"url": "/"})
    clock.set(start + timedelta(days=230))
    settings = Settings(database_url=db_url, scenarios_dir=workspace / "scenarios")

    with pytest.raises(RetentionError, match="shorter than the 180 days"):
        prune_events(store, settings.model_copy(update={"event_retention_days": 30}), scoring)
    with pytest.raises(RetentionError, match="scores and scenarios still read 180 days"):
        prune_events(store, settings, scoring, clock.now() - timedelta(days=10))
    with pytest.raises(RetentionError, match="after the qualify job's last run"):
        prune_events(store, settings, scoring, start + timedelta(days=45), overlap=timedelta(0))
    assert _raw_events(store) == 1

    daemon.qualifier.run_once()
    dry = prune_events(store, settings, scoring, start + timedelta(days=45), dry_run=True, overlap=timedelta(0))
    assert (dry.events, dry.dry_run, _raw_events(store)) == (1, True, 1)
    pruned = prune_events(
        store, settings.model_copy(update={"event_retention_days": 185}), scoring, overlap=timedelta(0)
    )
    assert (pruned.events, _raw_events(store)) == (1, 0)
    with pytest.raises(RetentionError, match="start the window on"):
        load_history(store, scoring, start + timedelta(days=100), clock.now())  # type: ignore[arg-type]
    with pytest.raises(RetentionError, match="start the window on"):
        window = (start + timedelta(days=100), clock.now())
        list(StoredHistory(store, scoring, scope(*window), *window))  # type: ignore[arg-type]


def test_an_event_redelivered_with_its_external_id_is_stored_once(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    store = Store(engine, FakeClock(datetime(2026, 3, 2, tzinfo=UTC)))
    with store.transaction() as conn:
        lead, _ = store.leads.upsert(conn, {"email": "ann@r.example"})
        at = datetime(2026, 3, 2, 9, tzinfo=UTC)
        assert store.events.record(conn, lead, "click", at, {}, external_id="esp:1")
        assert not store.events.record(conn, lead, "click", at + timedelta(minutes=5), {}, external_id="esp:1")
        stored = store.events.record_many(
            conn,
            [
                (lead, "open", at, {}, "esp:2"),
                (lead, "open", at, {}, "esp:2"),
                (lead, "open", at, {}, "esp:1"),
                (lead, "open", at, {}, None),
            ],
        )
    assert stored == [(lead, "open"), (lead, "open")]
    assert _raw_events(store) == 3
    assert _event_tallies(store) == {("click", "2026-03-02"): 1, ("open", "2026-03-02"): 2}
    engine.dispose()


@pytest.mark.postgres
def test_events_of_any_moment_land_in_a_partition_and_months_are_made_ahead(pg_url: str) -> None:
    """An event decades away lands in the default partition; making its month's partition
    moves it there. The tallies count every event once whatever partition holds it."""
    engine = make_engine(pg_url)
    upgrade(engine)
    clock = FakeClock(datetime(2031, 5, 20, tzinfo=UTC))
    store = Store(engine, clock)
    with store.transaction() as conn:
        lead, _ = store.leads.upsert(conn, {"email": "ann@r.example"})
        for at in (datetime(1999, 1, 1, tzinfo=UTC), datetime(2031, 6, 3, tzinfo=UTC)):
            store.events.record(conn, lead, "page_view", at, {})

    def where() -> dict[str, int]:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT tableoid::regclass::text, count(*) FROM event GROUP BY 1")).all()
        return {name: n for name, n in rows}

    assert where() == {"event_default": 2}
    made = store.retention.ensure_partitions()
    assert made == ["event_2031_05", "event_2031_06", "event_2031_07", "event_2031_08"]
    assert where() == {"event_default": 1, "event_2031_06": 1}
    assert store.retention.ensure_partitions() == []
    assert _event_tallies(store) == {("page_view", "1999-01-01"): 1, ("page_view", "2031-06-03"): 1}
    engine.dispose()


def _daemon_keeping_180_days(
    url: str, make_daemon: Any, workspace: Path, tmp_path: Path, *page_views: datetime
) -> Daemon:
    """A daemon with the sample scoring and a 180-day retention, and ann's page views."""
    shutil.copy(ROOT / "scenarios" / "scoring.yaml", workspace / "scenarios")
    daemon: Daemon = make_daemon(url, event_retention_days=180)
    daemon.qualifier.overlap = timedelta(0)
    import_csv(daemon, tmp_path, LEADS_CSV)
    with daemon.store.transaction() as conn:
        lead = conn.execute(select(LEADS.c.id).where(LEADS.c.email == "ann@r.example")).scalar_one()
        for n, at in enumerate(page_views):
            daemon.store.events.record(conn, lead, "page_view", at, {"url": f"/{n}"})
    return daemon


def test_the_daemon_prunes_events_past_the_retention_once_a_day(
    db_url: str, make_daemon: Any, workspace: Path, clock: FakeClock, tmp_path: Path
) -> None:
    start = clock.now()
    daemon = _daemon_keeping_180_days(db_url, make_daemon, workspace, tmp_path, start, start + timedelta(days=200))
    store = daemon.store
    clock.set(start + timedelta(days=240))

    run(daemon.housekeeping())

    with store.reading() as conn:
        assert store.retention.pruned_before(conn) == datetime(2026, 5, 1, tzinfo=UTC)
        assert conn.execute(select(EVENTS.c.at)).scalars().all() == [start + timedelta(days=200)]
        assert conn.execute(select(EVENT_DAILY.c.day, EVENT_DAILY.c.type, EVENT_DAILY.c.n)).all() == [
            (start.date(), "page_view", 1)
        ]


@pytest.mark.postgres
def test_a_month_that_cannot_be_partitioned_does_not_stop_the_daily_job(
    pg_url: str, make_daemon: Any, workspace: Path, clock: FakeClock, tmp_path: Path
) -> None:
    """A table in the way of a coming month's partition: the daily job logs it, still prunes,
    and counts as done for the day, so the everyone-rescore is not run again at every tick."""
    start = clock.now()
    daemon = _daemon_keeping_180_days(pg_url, make_daemon, workspace, tmp_path, start)
    store = daemon.store
    clock.set(start + timedelta(days=400))  # months past those the migration made
    in_the_way = f"event_{clock.now() + timedelta(days=62):%Y_%m}"
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE {in_the_way} (id integer)"))

    run(daemon.housekeeping())

    with store.reading() as conn:
        assert store.retention.pruned_before(conn) == datetime(2026, 10, 1, tzinfo=UTC)
        assert store.settings.get(conn, "daily:last") == clock.now().isoformat()
        assert in_the_way not in store.retention.partitions(conn)
    with store.engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE {in_the_way}"))
    clock.advance(timedelta(days=1))
    run(daemon.housekeeping())
    with store.reading() as conn:
        assert in_the_way in store.retention.partitions(conn)


def _insert_uncommitted(engine: sa.Engine, lead: int, at: datetime) -> sa.Connection:
    """A writer that has inserted an event and not committed yet (the caller commits)."""
    conn = engine.connect()
    conn.execute(
        sa.text(
            "INSERT INTO event (lead_id, type, at, props, received_at) VALUES (:lead, 'page_view', :at, '{}', now())"
        ),
        {"lead": lead, "at": at},
    )
    return conn


@pytest.mark.postgres
def test_a_month_is_partitioned_while_an_event_of_it_is_being_written_to_the_default(pg_url: str) -> None:
    """A writer puts an event of a month without partition into the default partition and
    commits while the daemon makes that month's partition: the event ends up in it."""
    engine = make_engine(pg_url)
    upgrade(engine)
    store = Store(engine, FakeClock(datetime(2031, 6, 2, tzinfo=UTC)))
    with store.transaction() as conn:
        lead, _ = store.leads.upsert(conn, {"email": "ann@r.example"})
    writer = _insert_uncommitted(engine, lead, datetime(2031, 6, 3, tzinfo=UTC))
    made: list[list[str]] = []
    worker = threading.Thread(target=lambda: made.append(store.retention.ensure_partitions()))
    worker.start()
    wait_for("the partitioning to wait for the writer", lambda: _lock_waiters(engine) > 0, timeout=30)
    writer.commit()
    writer.close()
    worker.join(timeout=60)
    assert made and "event_2031_06" in made[0]
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT tableoid::regclass::text, count(*) FROM event GROUP BY 1")).all()
    assert dict(rows) == {"event_2031_06": 1}
    engine.dispose()


@pytest.mark.postgres
def test_an_old_event_written_during_a_prune_is_not_dropped_unrolled(pg_url: str) -> None:
    """An event of a month being pruned, committed while the prune rolls up, is either rolled
    up or kept: here the prune is refused, nothing is dropped, and a later prune takes it."""
    engine = make_engine(pg_url)
    upgrade(engine)
    clock = FakeClock(datetime(2026, 3, 2, tzinfo=UTC))
    store = Store(engine, clock)
    store.retention.ensure_partitions()
    with store.transaction() as conn:
        lead, _ = store.leads.upsert(conn, {"email": "ann@r.example"})
        store.events.record(conn, lead, "page_view", datetime(2026, 3, 5, tzinfo=UTC), {})
    clock.set(datetime(2026, 9, 1, tzinfo=UTC))
    writer = _insert_uncommitted(engine, lead, datetime(2026, 3, 6, tzinfo=UTC))
    outcome: list[object] = []

    def prune() -> None:
        try:
            outcome.append(
                store.retention.prune(
                    datetime(2026, 4, 1, tzinfo=UTC),
                    keep=timedelta(days=30),
                    processed_before=datetime(2027, 1, 1, tzinfo=UTC),
                )
            )
        except RetentionError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=prune)
    worker.start()
    wait_for("the prune to wait for the writer", lambda: _lock_waiters(engine) > 0, timeout=30)
    writer.commit()
    writer.close()
    worker.join(timeout=60)
    assert len(outcome) == 1 and isinstance(outcome[0], RetentionError), outcome
    assert "arrived during the prune" in str(outcome[0])
    assert _raw_events(store) == 2
    with store.reading() as conn:
        assert conn.execute(select(sa.func.count()).select_from(EVENT_DAILY)).scalar_one() == 0
        assert store.retention.pruned_before(conn) is None
    again = store.retention.prune(
        datetime(2026, 4, 1, tzinfo=UTC), keep=timedelta(days=30), processed_before=datetime(2027, 1, 1, tzinfo=UTC)
    )
    assert again.events == 2 and _raw_events(store) == 0
    with store.reading() as conn:
        assert conn.execute(select(EVENT_DAILY.c.day, EVENT_DAILY.c.n).order_by(EVENT_DAILY.c.day)).all() == [
            (date(2026, 3, 5), 1),
            (date(2026, 3, 6), 1),
        ]
    engine.dispose()


def test_events_prune_from_the_command_line_refuses_a_short_retention_and_dry_runs(tmp_path: Path) -> None:
    (tmp_path / "scenarios").mkdir()
    shutil.copy(ROOT / "scenarios" / "scoring.yaml", tmp_path / "scenarios")
    env = {**os.environ, "NURTURE_DATABASE_URL": f"sqlite:///{tmp_path / 'n.db'}"}

    def nurture(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nurture", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={**env, **extra},
        )

    assert nurture("db", "upgrade").returncode == 0
    short = nurture("events", "prune", NURTURE_EVENT_RETENTION_DAYS="30")
    assert short.returncode == 1
    assert "NURTURE_EVENT_RETENTION_DAYS=30 is shorter than the 180 days" in short.stderr
    dry = nurture("events", "prune", "--before", "2026-01-15", "--dry-run")
    assert (dry.returncode, dry.stdout.strip()) == (0, "would prune 0 events before 2026-01-01")


def test_events_prune_from_the_command_line_goes_month_by_month_and_an_older_event_is_not_added(
    tmp_path: Path,
) -> None:
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "leads.csv").write_text(LEADS_CSV)
    env = {**os.environ, "NURTURE_DATABASE_URL": f"sqlite:///{tmp_path / 'n.db'}"}

    def nurture(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "nurture", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env
        )

    assert nurture("db", "upgrade").returncode == 0
    assert nurture("leads", "import", "leads.csv").returncode == 0
    for at in ("2025-01-05T10:00:00Z", "2025-02-07T10:00:00Z"):
        assert nurture("events", "add", "ann@r.example", "page_view", "--at", at).returncode == 0
    pruned = nurture("events", "prune", "--before", "2025-03-15")
    assert (pruned.returncode, pruned.stdout.splitlines()[:3]) == (
        0,
        ["pruned 1 events of 2025-01", "pruned 1 events of 2025-02", "pruned 2 events before 2025-03-01"],
    )
    late = nurture("events", "add", "ann@r.example", "page_view", "--at", "2025-02-20T10:00:00Z")
    assert late.returncode == 1
    assert "not recorded: events dated before 2025-03-01 are kept only as daily counts" in late.stderr


def test_events_are_pruned_without_a_scoring_file(
    db_url: str, make_daemon: Any, workspace: Path, clock: FakeClock, tmp_path: Path
) -> None:
    """Without a scoring file the qualify job scores nothing and keeps no watermark: a prune
    is not refused for events it 'has not seen'."""
    daemon: Daemon = make_daemon(db_url, event_retention_days=180)
    store = daemon.store
    assert daemon.catalog.scoring is None
    import_csv(daemon, tmp_path, LEADS_CSV)
    start = clock.now()
    with store.transaction() as conn:
        lead = conn.execute(select(LEADS.c.id).where(LEADS.c.email == "ann@r.example")).scalar_one()
        store.events.record(conn, lead, "page_view", start, {"url": "/"})
    clock.set(start + timedelta(days=240))
    daemon.qualifier.run_once()

    pruned = prune_events(store, daemon.settings, None)

    assert (pruned.events, _raw_events(store)) == (1, 0)


@pytest.mark.postgres
def test_two_processes_making_the_same_partitions_at_once_make_them_once(pg_url: str) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    stores = [Store(engine, FakeClock(datetime(2031, 6, 2, tzinfo=UTC))) for _ in range(2)]
    with stores[0].transaction() as conn:
        lead, _ = stores[0].leads.upsert(conn, {"email": "ann@r.example"})
    writer = _insert_uncommitted(engine, lead, datetime(2031, 6, 3, tzinfo=UTC))  # holds both back
    made: list[list[str]] = []
    errors: list[Exception] = []

    def make(store: Store) -> None:
        try:
            made.append(store.retention.ensure_partitions())
        except Exception as exc:
            errors.append(exc)

    workers = [threading.Thread(target=make, args=(s,)) for s in stores]
    for w in workers:
        w.start()

    def both_waiting() -> bool:
        with engine.connect() as conn:
            return (
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND wait_event_type = 'Lock'"
                    )
                ).scalar_one()
                == 2
            )

    wait_for("both processes to wait", both_waiting, timeout=30)
    writer.commit()
    writer.close()
    for w in workers:
        w.join(timeout=60)
    assert errors == []
    assert sorted(made, key=len) == [[], ["event_2031_06", "event_2031_07", "event_2031_08", "event_2031_09"]]
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT tableoid::regclass::text, count(*) FROM event GROUP BY 1")).all()
    assert dict(rows) == {"event_2031_06": 1}
    engine.dispose()


def _serving_api(daemon: Daemon) -> Any:
    """The daemon's web app served, and an httpx client holding an API key for it."""
    stack = contextlib.ExitStack()
    base = stack.enter_context(serving(create_app(daemon.settings, daemon.clock, daemon.store)))
    key = daemon.store.access.create_key("esp")
    client = stack.enter_context(httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60))
    return stack, client


def _rollups(store: Store) -> list[tuple[Any, ...]]:
    with store.reading() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                select(EVENT_DAILY.c.day, EVENT_DAILY.c.type, EVENT_DAILY.c.n).order_by(EVENT_DAILY.c.day)
            )
        ]


def _page_views_in_march_april_and_may(
    url: str, make_daemon: Any, workspace: Path, clock: FakeClock, tmp_path: Path
) -> tuple[Daemon, tuple[datetime, datetime, datetime]]:
    """A daemon keeping 180 days with ann's page views in March, April and May; the clock
    240 days on, when all three months are past the retention."""
    start = clock.now()
    months = (start + timedelta(days=1), start + timedelta(days=35), start + timedelta(days=65))
    daemon = _daemon_keeping_180_days(url, make_daemon, workspace, tmp_path, *months)
    clock.set(start + timedelta(days=240))
    return daemon, months


def test_a_prune_commits_month_by_month_and_ingest_is_not_held_between_months(
    db_url: str, make_daemon: Any, workspace: Path, clock: FakeClock, tmp_path: Path
) -> None:
    """March and April are pruned in a transaction each: when March is done (and committed,
    the mark past it), an event posted to the ingest API is stored before April begins."""
    daemon, (march, april, _may) = _page_views_in_march_april_and_may(db_url, make_daemon, workspace, clock, tmp_path)
    store = daemon.store
    daemon.qualifier.run_once()
    stack, api = _serving_api(daemon)
    seen: list[tuple[datetime, int, datetime | None, int]] = []

    def between_months(month: Any) -> None:
        answers: list[httpx.Response] = []
        event = {"email": "bob@r.example", "type": "page_view", "props": {"url": f"/during/{len(seen)}"}}
        writer = threading.Thread(target=lambda: answers.append(api.post("/api/v1/events", json=event)))
        writer.start()
        # A prune still holding the database would keep the writer waiting (SQLite: up to its
        # 30 s busy timeout); committed months let it through at once.
        wait_for("the ingest API to store an event between two months", lambda: bool(answers), timeout=20)
        assert answers[0].status_code == 200 and answers[0].json() == {"stored": 1, "duplicates": 0}
        with store.reading() as conn:
            seen.append((month.cutoff, month.events, store.retention.pruned_before(conn), _raw_events(store)))

    with stack:
        pruned = prune_events(
            store, daemon.settings, daemon.catalog.scoring, overlap=timedelta(0), on_month=between_months
        )

    april_1, may_1 = datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)
    # After March: April and May raw, plus the event posted; after April: May and both posted.
    assert seen == [(april_1, 1, april_1, 3), (may_1, 1, may_1, 3)]
    assert (pruned.cutoff, pruned.events) == (may_1, 2)
    assert _rollups(store) == [(march.date(), "page_view", 1), (april.date(), "page_view", 1)]


def test_a_prune_stopped_between_months_leaves_them_consistent_and_a_rerun_finishes(
    db_url: str, make_daemon: Any, workspace: Path, clock: FakeClock, tmp_path: Path
) -> None:
    daemon, (march, april, may) = _page_views_in_march_april_and_may(db_url, make_daemon, workspace, clock, tmp_path)
    store = daemon.store
    daemon.qualifier.run_once()
    tallies = _event_tallies(store)

    def crash(_month: Any) -> None:
        raise KeyboardInterrupt  # the process stopped after March's transaction committed

    with pytest.raises(KeyboardInterrupt):
        prune_events(store, daemon.settings, daemon.catalog.scoring, overlap=timedelta(0), on_month=crash)

    with store.reading() as conn:
        assert store.retention.pruned_before(conn) == datetime(2026, 4, 1, tzinfo=UTC)
        assert sorted(conn.execute(select(EVENTS.c.at)).scalars()) == [april, may]
    assert _rollups(store) == [(march.date(), "page_view", 1)]
    assert _event_tallies(store) == tallies

    again = prune_events(store, daemon.settings, daemon.catalog.scoring, overlap=timedelta(0))

    assert (again.cutoff, again.events) == (datetime(2026, 5, 1, tzinfo=UTC), 1)
    with store.reading() as conn:
        assert conn.execute(select(EVENTS.c.at)).scalars().all() == [may]
    assert _rollups(store) == [(march.date(), "page_view", 1), (april.date(), "page_view", 1)]
    assert _event_tallies(store) == tallies


def test_a_prune_that_ends_after_another_went_further_leaves_the_mark_where_the_other_put_it(
    db_url: str, make_daemon: Any, workspace: Path, clock: FakeClock, tmp_path: Path
) -> None:
    """Two prunes overlap (SQLite has no cluster lock): one up to April, which, once March is
    done, lets another prune up to May run through. The first then ends with the months
    without events, which must not move the mark back to April, or April's events, gone,
    would be taken again at ingest."""
    daemon, (_march, _april, may) = _page_views_in_march_april_and_may(db_url, make_daemon, workspace, clock, tmp_path)
    store = daemon.store
    seen = store.reports.database_time()  # every event received before it: the qualify job's part
    keep = timedelta(days=150)

    def the_other_prune(_month: Any) -> None:
        store.retention.prune(datetime(2026, 5, 15, tzinfo=UTC), keep=keep, processed_before=seen)

    store.retention.prune(datetime(2026, 4, 15, tzinfo=UTC), keep=keep, processed_before=seen, on_month=the_other_prune)

    with store.reading() as conn:
        assert store.retention.pruned_before(conn) == datetime(2026, 5, 1, tzinfo=UTC)
        assert conn.execute(select(EVENTS.c.at)).scalars().all() == [may]


def test_an_event_dated_before_the_pruned_months_is_refused_at_ingest_with_its_reason(
    db_url: str, make_daemon: Any, workspace: Path, clock: FakeClock, tmp_path: Path
) -> None:
    """An ESP redelivers a March click after March was pruned (its id forgotten with it):
    the API stores nothing for it and says why, on both databases, so the rollups, tallies
    and scores stay as they were; May's events, not pruned, are still deduplicated by id."""
    start = clock.now()
    daemon = _daemon_keeping_180_days(db_url, make_daemon, workspace, tmp_path)
    store = daemon.store
    stack, api = _serving_api(daemon)
    march = {"id": "esp:march", "email": "ann@r.example", "type": "page_view", "at": "2026-03-01T10:00:00Z"}
    may = {"id": "esp:may", "email": "ann@r.example", "type": "page_view", "at": "2026-05-05T10:00:00Z"}
    with stack:
        assert api.post("/api/v1/events", json=march).json() == {"stored": 1, "duplicates": 0}
        clock.set(start + timedelta(days=70))
        assert api.post("/api/v1/events", json=may).json() == {"stored": 1, "duplicates": 0}
        clock.set(start + timedelta(days=240))
        daemon.qualifier.run_once(everyone=True)
        prune_events(store, daemon.settings, daemon.catalog.scoring, overlap=timedelta(0))
        if store.postgres:  # the pruned month's ids went with it; May's stay
            with store.reading() as conn:
                keys = conn.execute(sa.text("SELECT external_id FROM event_key")).scalars().all()
            assert keys == ["esp:may"]
        before = (_raw_events(store), _rollups(store), _event_tallies(store), _scores(store))

        again = api.post("/api/v1/events/batch", json={"events": [march, may]})
        single = api.post("/api/v1/events", json=march)
        daemon.qualifier.run_once(everyone=True)
        after = (_raw_events(store), _rollups(store), _event_tallies(store), _scores(store))
        fresh = {"id": "esp:now", "email": "bob@r.example", "type": "page_view"}
        mixed = api.post("/api/v1/events/batch", json={"events": [march, fresh]})
        # An unsubscribe dated in a pruned month (an old list imported from another sender) is
        # not stored either, but its address is suppressed all the same.
        old_unsubscribe = {"email": "bob@r.example", "type": "unsubscribe", "at": "2026-03-02T10:00:00Z"}
        unsubscribed = api.post("/api/v1/events", json=old_unsubscribe)

    refused = {
        "too_old": 1,
        "kept_since": "2026-05-01T00:00:00Z",
        "reason": "1 event dated before 2026-05-01 not stored: events before then are kept only as daily counts "
        "(event retention), which are final; a redelivered event is already counted in them (an unsubscribe or "
        "bounce among them still suppresses its address)",
    }
    assert (again.status_code, again.json()) == (200, {"stored": 0, "duplicates": 1, **refused})
    assert (single.status_code, single.json()) == (200, {"stored": 0, "duplicates": 0, **refused})
    assert after == before
    assert before[1] == [(date(2026, 3, 1), "page_view", 1)]
    assert mixed.json() == {"stored": 1, "duplicates": 0, **refused}
    assert _raw_events(store) == before[0] + 1
    assert unsubscribed.json() == {"stored": 0, "duplicates": 0, **refused}
    bob = store.leads.by_email("bob@r.example")
    assert bob is not None and bob.unsubscribed
    assert store.leads.by_email("ann@r.example").unsubscribed is False  # type: ignore[union-attr]


@pytest.mark.postgres
def test_an_old_event_posted_while_its_month_is_being_dropped_is_refused_once_the_prune_commits(
    pg_url: str, make_daemon: Any, workspace: Path, clock: FakeClock, tmp_path: Path
) -> None:
    """The ingest API reads the prune's mark only once it holds the event table's writer
    lock: an event of March posted while March is being dropped waits for the prune, then
    finds March pruned and is refused, instead of landing unrolled in the default partition."""
    start = clock.now()
    daemon = _daemon_keeping_180_days(pg_url, make_daemon, workspace, tmp_path, start + timedelta(days=1))
    store = daemon.store
    clock.set(start + timedelta(days=240))
    daemon.qualifier.run_once()
    # Another session holds `event_key`: the prune stops there, holding `event` exclusively.
    blocker = store.engine.connect()
    blocker.execute(sa.text("LOCK TABLE event_key IN ACCESS EXCLUSIVE MODE"))
    pruned: list[object] = []
    answers: list[httpx.Response] = []
    stack, api = _serving_api(daemon)
    with stack:
        before = datetime(2026, 4, 1, tzinfo=UTC)
        prune = threading.Thread(
            target=lambda: pruned.append(
                prune_events(store, daemon.settings, daemon.catalog.scoring, before, overlap=timedelta(0))
            )
        )
        prune.start()
        wait_for("the prune to wait with March in hand", lambda: _lock_waiters(store.engine) == 1, timeout=30)
        late = {"id": "esp:late", "email": "ann@r.example", "type": "page_view", "at": "2026-03-20T10:00:00Z"}
        post = threading.Thread(target=lambda: answers.append(api.post("/api/v1/events", json=late)))
        post.start()
        wait_for("the ingest to wait for the prune", lambda: _lock_waiters(store.engine) == 2, timeout=30)
        blocker.rollback()
        blocker.close()
        prune.join(timeout=60)
        post.join(timeout=60)

    assert len(pruned) == 1 and answers and answers[0].json()["too_old"] == 1
    assert _raw_events(store) == 0
    assert _rollups(store) == [((start + timedelta(days=1)).date(), "page_view", 1)]


def _lock_waiters(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )
