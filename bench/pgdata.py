"""PostgreSQL at scale, for the data side: reports and dashboard read from tallies, event
ingest through the batch API, rescoring, the analytics commands. Each section prints ratios
against a raw baseline measured in the same run (see bench/run.py:
`python bench/run.py pgreports pgingest pgqualify pganalytics`).

The database is NURTURE_BENCH_PG_URL (default: the local server's `nurture_bench6`); its
`public` schema is dropped and rebuilt. With NURTURE_BENCH_PG_BIG_URL instead, that database
is taken as already built (by an earlier run) and only migrated to head.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from common import Result, at_least, at_most, timed
from sqlalchemy import text
from sqlalchemy.engine import Engine

from nurture.scenario.compiler import CompiledScenario
from nurture.scoring.engine import CompiledScoring
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.migrate import upgrade

# A database an earlier run (or `build`) already filled is reused as it is: no rebuild.
BUILT_URL = os.environ.get("NURTURE_BENCH_PG_BIG_URL")
PG_URL = BUILT_URL or os.environ.get(
    "NURTURE_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/nurture_bench6"
)
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
STEPS = ("welcome", "guide", "case_study", "webinar", "offer")

SCENARIO = """
id: bench_mail
name: Bench mail
exit_when: [unsubscribed, bounced]
lead_fields: [whitepaper_title]
steps:
""" + "".join(
    f"""  - id: {step}
    type: send_email
    template: welcome
    subject: "{step}"
  - id: wait_{step}
    type: wait
    duration: 2d
"""
    for step in STEPS
)


@dataclass(frozen=True)
class Scale:
    leads: int
    events: int
    sends: int


def fresh(url: str = PG_URL) -> Engine:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    return engine


def build(engine: Engine, scale: Scale, log: Callable[[str], None] = print, to: str = "head") -> float:
    """Leads, enrolments (one per lead), sends and events made by SQL on the schema before the
    tallies, then the upgrade (to revision `to`) that counts them; returns the upgrade's seconds."""
    upgrade(engine, "0008")
    per_lead_sends = max(1, scale.sends // scale.leads)
    per_lead_events = max(1, scale.events // scale.leads)
    steps = "ARRAY[" + ", ".join(f"'{s}'" for s in STEPS) + "]"
    statements = [
        f"""INSERT INTO lead (email, first_name, company, company_size, industry, timezone, source,
            lifecycle_stage, tags, custom, unsubscribed, bounced, score_fit, score_engagement, grade,
            score_adjustment, created_at, updated_at)
            SELECT 'lead' || i || '@bench.example', 'L' || i, 'Company ' || (i % 50000), (i * 37) % 2000,
              (ARRAY['SaaS','Manufacturing','Retail','Finance'])[1 + i % 4], 'UTC', 'bench',
              (ARRAY['cold','cold','cold','warm','hot','accepted'])[1 + i % 6], '[]', '{{}}',
              i % 97 = 0, i % 89 = 0, (i * 7) % 60, (i * 13) % 120, (ARRAY['A','B','C','D'])[1 + i % 4], 0,
              '{NOW.isoformat()}'::timestamptz - (i % 365) * interval '1 day', '{NOW.isoformat()}'::timestamptz
            FROM generate_series(1, {scale.leads}) i""",
        f"""INSERT INTO enrollment (lead_id, scenario_id, scenario_version, state, status, seq, entered_at,
            due_at, enrolled_at, finished_at, exit_reason)
            SELECT i, 'bench_mail', 'v1', CASE WHEN i % 3 = 0 THEN 'offer' ELSE 'wait_guide' END,
              CASE WHEN i % 3 = 0 THEN 'finished' ELSE 'active' END, 0,
              '{NOW.isoformat()}'::timestamptz - (i % 300) * interval '1 day',
              '{NOW.isoformat()}'::timestamptz + (i % 1000) * interval '1 minute',
              '{NOW.isoformat()}'::timestamptz - (i % 300) * interval '1 day',
              CASE WHEN i % 3 = 0 THEN '{NOW.isoformat()}'::timestamptz END,
              CASE WHEN i % 3 = 0 THEN 'completed' END
            FROM generate_series(1, {scale.leads}) i""",
        f"""INSERT INTO send (idempotency_key, kind, lead_id, enrollment_id, scenario_id, scenario_version, step,
            template, subject, sender, status, attempts, created_at, next_attempt_at, sent_at, message_id, timing)
            SELECT 'k' || l || '-' || s, 'email', l, l, 'bench_mail', 'v1', ({steps})[s], 'welcome', 'Hello',
              'news@acme.example', CASE WHEN (l + s) % 50 = 0 THEN 'bounced' ELSE 'sent' END, 1,
              '{NOW.isoformat()}'::timestamptz - ((l % 300) - s * 2) * interval '1 day',
              '{NOW.isoformat()}'::timestamptz - ((l % 300) - s * 2) * interval '1 day',
              CASE WHEN (l + s) % 50 = 0 THEN NULL
                ELSE '{NOW.isoformat()}'::timestamptz - ((l % 300) - s * 2) * interval '1 day' END,
              '<' || l || '.' || s || '@acme.example>', 'window'
            FROM generate_series(1, {scale.leads}) l, generate_series(1, {per_lead_sends}) s
            ORDER BY l, s""",
        f"""INSERT INTO event (lead_id, type, at, props, received_at)
            SELECT l, (ARRAY['open','open','click','page_view','open','form_submit','page_view','open',
                              'click','page_view'])[1 + e % 10],
              '{NOW.isoformat()}'::timestamptz - (l % 300) * interval '1 day' + e * interval '7 hours',
              jsonb_build_object('send', (l - 1) * {per_lead_sends} + 1 + e % {per_lead_sends}),
              '{NOW.isoformat()}'::timestamptz - (l % 300) * interval '1 day' + e * interval '7 hours'
            FROM generate_series(1, {scale.leads}) l, generate_series(1, {per_lead_events}) e""",
    ]
    if to == "head":
        statements.append(HOT_CHANGES)
    statements.append(
        "INSERT INTO scenario_version (scenario_id, version, path, source, loaded_at, is_current)"
        f" VALUES ('bench_mail', 'v1', 'bench_mail.yaml', :source, '{NOW.isoformat()}', false)"
    )
    for statement in statements:
        start = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text(statement), {"source": SCENARIO} if ":source" in statement else {})
        log(f"  built {statement.split()[2]} in {time.perf_counter() - start:.0f} s")
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    start = time.perf_counter()
    upgrade(engine, to)
    took = time.perf_counter() - start
    log(f"  migration 0009 (tallies counted from the rows, lower(company) index) in {took:.0f} s")
    if to == "head":
        start = time.perf_counter()
        written = count_outcomes(engine)
        log(f"  {written:,} outcome rows written by SQL in {time.perf_counter() - start:.0f} s, none left pending")
    # The upgrade moved the events into new monthly partitions, which have no statistics yet
    # (autovacuum would gather them within minutes of a real upgrade; a copy made by
    # `createdb -T` never would): without them a batch's events are read by sequential scans.
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return took


# Every 20th lead (5% of the enrolments) became hot after its enrolment: every 200th three
# days after (then accepted or rejected by sales a day later, the promotions drift replays),
# the others after a time of their own within a week (45,000 distinct times, as real ones are).
HOT_CHANGES = f"""INSERT INTO lifecycle_change (lead_id, at, from_stage, to_stage, reason, actor)
    SELECT l.id, t.at, t.from_stage, t.to_stage, t.reason, t.actor FROM lead l,
    LATERAL (VALUES
      ('{NOW.isoformat()}'::timestamptz - (l.id % 300) * interval '1 day' + CASE WHEN l.id % 200 = 0
         THEN interval '3 days' ELSE ((l.id::bigint * 7919) % 604800) * interval '1 second'
           + (l.id % 999983) * interval '1 microsecond' END, 'warm', 'hot', 'score', 'qualify'),
      ('{NOW.isoformat()}'::timestamptz - (l.id % 300) * interval '1 day' + interval '4 days', 'hot',
       CASE WHEN l.id % 300 < 100 THEN 'rejected' ELSE 'accepted' END,
       CASE WHEN l.id % 3 = 0 THEN 'No budget' ELSE 'Student' END, 'sales')
    ) AS t(at, from_stage, to_stage, reason, actor)
    WHERE l.id % 20 = 0 AND (l.id % 200 = 0 OR t.to_stage = 'hot')"""

# The outcome rows `catch_up` would write for the builder's data, by SQL (see
# nurture.analytics.outcomes.outcomes_of): its email events are people's opens and clicks
# (no delivery data for the bot rules to flag, hours apart), no unsubscribes or bounces; an
# email converted when the lead's last promotion to hot or beyond is at or after its sending;
# an enrolment's time to hot runs to the first promotion to hot at or after it.
# `check_outcomes` recounts a sample with `catch_up` and fails on any difference.
OUTCOME_ROWS = (
    """INSERT INTO outcome (lead_id, send_id, enrollment_id, scenario_id, step, metric, detail, day, n)
    SELECT s.lead_id, s.id, NULL, s.scenario_id, s.step, m.metric, '', to_char(timezone('UTC', e.enrolled_at),
      'YYYY-MM-DD'), 1
    FROM send s JOIN enrollment e ON e.id = s.enrollment_id AND e.scenario_id = s.scenario_id
    JOIN (SELECT lead_id, (props->>'send')::bigint AS send_id, bool_or(type = 'click') AS clicked
          FROM event WHERE type IN ('open', 'click') AND jsonb_typeof(props->'send') = 'number'
          GROUP BY lead_id, (props->>'send')::bigint) v ON v.lead_id = s.lead_id AND v.send_id = s.id,
    LATERAL (VALUES ('opened'), ('clicked')) m(metric)
    WHERE s.kind = 'email' AND (m.metric = 'opened' OR v.clicked)""",
    """INSERT INTO outcome (lead_id, send_id, enrollment_id, scenario_id, step, metric, detail, day, n)
    SELECT s.lead_id, s.id, NULL, s.scenario_id, s.step, 'converted', '', to_char(timezone('UTC', e.enrolled_at),
      'YYYY-MM-DD'), 1
    FROM send s JOIN enrollment e ON e.id = s.enrollment_id AND e.scenario_id = s.scenario_id
    JOIN (SELECT lead_id, max(at) AS at FROM lifecycle_change WHERE to_stage IN ('hot', 'accepted', 'customer')
          GROUP BY lead_id) c ON c.lead_id = s.lead_id
    WHERE s.kind = 'email' AND s.sent_at IS NOT NULL AND c.at >= s.sent_at""",
    """INSERT INTO outcome (lead_id, send_id, enrollment_id, scenario_id, step, metric, detail, day, n)
    SELECT lead_id, NULL, NULL, scenario_id, '', 'converted_lead', '', min(day), 1 FROM outcome
    WHERE metric = 'converted' GROUP BY lead_id, scenario_id""",
    """INSERT INTO outcome (lead_id, send_id, enrollment_id, scenario_id, step, metric, detail, day, n)
    SELECT e.lead_id, NULL, e.id, e.scenario_id, '', 'hot',
      lpad((extract(epoch FROM h.at - e.enrolled_at) * 1000000)::numeric(30, 0)::text, 18, '0'),
      to_char(timezone('UTC', e.enrolled_at), 'YYYY-MM-DD'), 1
    FROM enrollment e, LATERAL (SELECT min(c.at) AS at FROM lifecycle_change c
      WHERE c.lead_id = e.lead_id AND c.to_stage = 'hot' AND c.at >= e.enrolled_at) h
    WHERE h.at IS NOT NULL""",
)


def count_outcomes(engine: Engine) -> int:
    """Write the builder's outcome rows by SQL (the tallies count them) and clear the names
    the upgrade left for a catch-up; returns the rows written."""
    written = 0
    with engine.begin() as conn:
        for statement in OUTCOME_ROWS:
            written += conn.execute(text(statement)).rowcount or 0
        conn.execute(text("DELETE FROM outcome_pending"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE outcome, outcome_pending"))  # as after a catch-up's autovacuum
    return written


def check_outcomes(store: Store, scoring: CompiledScoring | None, sample: int = 1000) -> int:
    """Recount `sample` random leads with `catch_up` and compare the rows with those before
    (the builder's); raises on any difference. Returns how many leads were compared."""
    from nurture.analytics.outcomes import catch_up

    query = (
        "SELECT lead_id, send_id, enrollment_id, scenario_id, step, metric, detail, day, n FROM outcome"
        " WHERE lead_id = ANY(:ids)"
    )
    with store.engine.begin() as conn:
        if conn.execute(text("SELECT count(*) FROM outcome_pending")).scalar():
            raise RuntimeError("leads are still named for a catch-up: the sample would count them too")
        leads = int(conn.execute(text("SELECT max(id) FROM lead")).scalar() or 0)
    ids = sorted(random.Random(17).sample(range(1, leads + 1), min(sample, leads)))
    with store.engine.begin() as conn:
        built = sorted(conn.execute(text(query), {"ids": ids}).all(), key=repr)
        conn.execute(text("INSERT INTO outcome_pending (lead_id) SELECT unnest(CAST(:ids AS bigint[]))"), {"ids": ids})
    catch_up(store, scoring)
    with store.engine.connect() as conn:
        counted = sorted(conn.execute(text(query), {"ids": ids}).all(), key=repr)
    if built != counted:
        extra, missing = set(built) - set(counted), set(counted) - set(built)
        raise RuntimeError(
            f"the builder's outcome rows differ from catch_up's for the sample: {len(extra)} rows only the builder"
            f" wrote (e.g. {sorted(extra, key=repr)[:3]}), {len(missing)} only catch_up"
            f" (e.g. {sorted(missing, key=repr)[:3]})"
        )
    return len(ids)


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def latency(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    """(p50, p95) in milliseconds over `rounds` calls after one warm-up call."""
    fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), p95(samples)


def report_result(name: str, fn: Callable[[], object], scan: Callable[[], object], rounds: int) -> Result:
    """A page or report against the 300 ms p95 goal, beside the scan it replaces."""
    p50, high = latency(fn, rounds)
    _scan50, scan95 = latency(scan, max(3, rounds // 5))
    print(f"  {name}: p50 {p50:.0f} ms, p95 {high:.0f} ms; scan p95 {scan95:.0f} ms", flush=True)
    return Result(
        name,
        f"p50 {p50:,.0f} ms, p95 {high:,.0f} ms",
        f"goal 300 ms (the scan it replaces: p95 {scan95:,.0f} ms)",
        high / 300,
        at_most(1.0),
    )


def folder_note(folder: Path) -> str:
    return str(folder)


def _project(folder: Path) -> tuple[Path, Path]:
    root = Path(__file__).resolve().parents[1]
    scenarios, templates = folder / "pg-scenarios", folder / "pg-templates"
    scenarios.mkdir(parents=True, exist_ok=True)
    (scenarios / "bench_mail.yaml").write_text(SCENARIO, encoding="utf-8")
    (scenarios / "scoring.yaml").write_text((root / "scenarios" / "scoring.yaml").read_text(), encoding="utf-8")
    if not templates.exists():
        shutil.copytree(root / "email_templates", templates)
    return scenarios, templates


def bench_reports(folder: Path, scale: Scale, rounds: int = 40, rebuild: bool = True) -> list[Result]:
    """Funnel, /metrics, the scoring page, a lead's page (with its account) and the scenario
    report at `scale`, against the 300 ms p95 goal, each beside the scan it replaces."""
    from fastapi.testclient import TestClient

    from nurture.analytics.outcomes import catch_up
    from nurture.analytics.report import scenario_report, scenario_report_scan
    from nurture.clock import FakeClock
    from nurture.config import Settings
    from nurture.jobs.catalog import Catalog
    from nurture.web.app import create_app

    engine = make_engine(PG_URL)
    if rebuild:
        engine = fresh()
        build(engine, scale)
    else:
        upgrade(engine)
    scenarios, templates = _project(folder)
    clock = FakeClock(NOW)
    store = Store(engine, clock)
    settings = Settings(
        database_url=PG_URL,
        scenarios_dir=scenarios,
        templates_dir=templates,
        secret_key="bench-secret",
        metrics_public=True,
    )
    client = TestClient(create_app(settings, clock, store), follow_redirects=False)
    store.access.set_user("bench", "correct horse battery", "Bench")
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
    assert token is not None
    form = {"username": "bench", "password": "correct horse battery", "csrf": token.group(1)}
    assert client.post("/login", data=form).status_code == 303

    def get(path: str) -> Callable[[], object]:
        def fetch() -> object:
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
            return answer

        return fetch

    def scan(*statements: str) -> Callable[[], object]:
        def run() -> object:
            with engine.connect() as conn:
                return [conn.execute(text(s)).all() for s in statements]

        return run

    results = [
        report_result(
            "PG reports: scenario funnel (1M enrolments, 5M sends)",
            lambda: store.reports.funnel("bench_mail"),
            scan(
                "SELECT step, count(*) FROM send WHERE scenario_id = 'bench_mail' AND status = 'sent' GROUP BY step",
                "SELECT exit_reason, count(*) FROM enrollment WHERE scenario_id = 'bench_mail'"
                " AND status <> 'active' GROUP BY exit_reason",
                "SELECT count(*) FROM enrollment WHERE scenario_id = 'bench_mail'",
            ),
            rounds,
        ),
        report_result(
            "PG reports: /metrics",
            get("/metrics"),
            scan(
                "SELECT status, count(*) FROM send GROUP BY status",
                "SELECT type, count(*) FROM event GROUP BY type",
                "SELECT lifecycle_stage, count(*) FROM lead GROUP BY lifecycle_stage",
            ),
            rounds,
        ),
        report_result(
            "PG reports: /scoring page",
            get("/scoring"),
            scan("SELECT grade, score_engagement, lifecycle_stage FROM lead WHERE NOT unsubscribed AND NOT bounced"),
            rounds,
        ),
        report_result(
            "PG reports: a lead's page with its account (1M leads)",
            get("/leads/4242"),
            scan("SELECT id FROM lead WHERE lower(company) || '' = 'company 4242'"),
            rounds,
        ),
    ]
    catalog = Catalog(store, scenarios, templates)
    catalog.reload()
    compiled, scoring = catalog.current["bench_mail"], catalog.scoring
    counted, took = timed(lambda: catch_up(store, scoring))
    if counted:  # a one-off after an upgrade (the daemon or `nurture report` does it); not after `build`
        print(f"  counted the outcomes of {counted:,} named leads in {took:,.0f} s", flush=True)
    checked, took = timed(lambda: check_outcomes(store, scoring))
    print(f"  {checked:,} random leads recounted by catch_up: the same outcome rows ({took:,.0f} s)", flush=True)
    day = (NOW - timedelta(days=3)).replace(hour=0)  # whole UTC days, as `nurture report --from` gives
    _p50, scan95 = latency(lambda: scenario_report_scan(store, compiled, scoring, day, day + timedelta(days=1)), 3)
    month, seconds = timed(lambda: scenario_report_scan(store, compiled, scoring, NOW - timedelta(days=30), NOW))
    whole = scale.leads / (month.enrolled / seconds)
    replaced = f"the scan it replaces: 1 day p95 {scan95:,.0f} ms, whole scenario ≈ {whole:,.0f} s"
    for name, fn in (
        ("scenario report, whole scenario (1M enrolments)", lambda: scenario_report(store, compiled, scoring)),
        (
            "scenario report, one day of enrolments",
            lambda: scenario_report(store, compiled, scoring, day, day + timedelta(days=1)),
        ),
        ("dashboard scenario page (whole scenario)", get("/scenarios/bench_mail")),
        ("nurture report (report, experiments, send times)", lambda: _cli_report(store, compiled, scoring)),
    ):
        p50, high = latency(fn, rounds)
        print(f"  {name}: p50 {p50:.0f} ms, p95 {high:.0f} ms", flush=True)
        results.append(
            Result(
                f"PG reports: {name}",
                f"p50 {p50:,.0f} ms, p95 {high:,.0f} ms",
                f"goal 300 ms ({replaced})",
                high / 300,
                at_most(1.0),
            )
        )
    return results


def _cli_report(store: Store, compiled: CompiledScenario, scoring: CompiledScoring | None) -> object:
    """What `nurture report <scenario>` computes (without starting a process)."""
    from nurture.analytics.experiments import experiment_reports, send_time_lifts
    from nurture.analytics.report import scenario_report

    return (
        scenario_report(store, compiled, scoring),
        experiment_reports(store, compiled, NOW),
        send_time_lifts(store, compiled, scoring),
    )


def _daemon(folder: Path, scenarios: Path, templates: Path) -> subprocess.Popen[bytes]:
    """A `nurture run` on the bench database: the enrol, advance, send and qualify jobs tick
    as in production (the qualify job rescores the leads whose events arrive)."""
    env = dict(os.environ)
    env.update(
        {
            "NURTURE_DATABASE_URL": PG_URL,
            "NURTURE_SCENARIOS_DIR": str(scenarios),
            "NURTURE_TEMPLATES_DIR": str(templates),
            "NURTURE_SMTP_PORT": "9",
            "NURTURE_TICK_SECONDS": "1",
            "NURTURE_WORKER_ID": "bench-daemon",
        }
    )
    log = (folder / "pg-daemon.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "nurture", "run"], env=env, stdout=log, stderr=log)


def bench_ingest(
    folder: Path, leads: int, batches: int = 30, size: int = 1000, with_daemon: bool = True
) -> list[Result]:
    """`POST /api/v1/events/batch` with `size` events per request while a daemon runs, against
    a raw executemany INSERT of the same rows (best of the rounds of each)."""
    import json

    from fastapi.testclient import TestClient

    from nurture.clock import SystemClock
    from nurture.config import Settings
    from nurture.store import Store
    from nurture.web.app import create_app

    engine = make_engine(PG_URL)
    upgrade(engine)
    scenarios, templates = _project(folder)
    store = Store(engine, SystemClock())
    with engine.begin() as conn:
        # Nothing due for a year, and the qualify job's watermark now: the daemon's work is
        # the events that arrive (rescoring their leads), not a backlog of the built data.
        conn.execute(text("UPDATE enrollment SET due_at = now() + interval '1 year' WHERE status = 'active'"))
        conn.execute(
            text(
                "INSERT INTO kv (key, value) VALUES ('qualify:watermark', to_char(now() AT TIME ZONE 'UTC',"
                " 'YYYY-MM-DD\"T\"HH24:MI:SS.US+00:00')) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            )
        )
    settings = Settings(database_url=PG_URL, scenarios_dir=scenarios, templates_dir=templates)
    client = TestClient(create_app(settings, SystemClock(), store))
    key = store.access.create_key(f"bench-{time.time_ns()}")
    at = datetime.now(UTC) - timedelta(hours=1)

    def rows(round_: int, tag: str) -> list[dict[str, object]]:
        start = (round_ * size * 7919) % leads
        return [
            {
                "id": f"{tag}-{round_}-{i}",
                "email": f"lead{1 + (start + i * 13) % leads}@bench.example",
                "type": "page_view" if i % 3 else "click",
                "at": (at + timedelta(milliseconds=i)).isoformat(),
                "props": {"url": f"https://acme.example/p/{i % 50}"},
            }
            for i in range(size)
        ]

    daemon = _daemon(folder, scenarios, templates) if with_daemon else subprocess.Popen(["sleep", "3600"])
    try:
        time.sleep(5 if with_daemon else 0)  # let it start its jobs
        tag = f"b{time.time_ns()}"
        latencies = []
        start = time.perf_counter()
        for round_ in range(batches):
            body = {"events": rows(round_, tag)}
            began = time.perf_counter()
            answer = client.post("/api/v1/events/batch", json=body, headers={"X-API-Key": key})
            latencies.append((time.perf_counter() - began) * 1000)
            assert answer.status_code == 200 and answer.json()["stored"] == size, answer.text[:300]
        nurture_rate = batches * size / (time.perf_counter() - start)

        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            start = time.perf_counter()
            for round_ in range(batches):
                batch = rows(round_, tag + "raw")
                cursor.execute("SELECT email, id FROM lead WHERE email = ANY(%s)", ([r["email"] for r in batch],))
                ids = dict(cursor.fetchall())
                cursor.executemany(
                    "INSERT INTO event (lead_id, type, at, props, external_id, received_at)"
                    " VALUES (%s, %s, %s, %s, %s, now())",
                    [(ids[r["email"]], r["type"], r["at"], json.dumps(r["props"]), r["id"]) for r in batch],
                )
                raw.commit()
            raw_rate = batches * size / (time.perf_counter() - start)
        finally:
            raw.close()
        alive = daemon.poll() is None
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=120)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    ordered = sorted(latencies)
    p50, p99 = statistics.median(ordered), ordered[max(0, round(0.99 * len(ordered)) - 1)]
    return [
        Result(
            f"PG ingest: POST /events/batch ({size:,} a request, "
            + (f"daemon {'running' if alive else 'DIED'})" if with_daemon else "no daemon)"),
            f"{nurture_rate:,.0f} events/s (p50 {p50:,.0f} ms, p99 {p99:,.0f} ms a batch)",
            f"{raw_rate:,.0f} events/s (raw executemany)",
            nurture_rate / raw_rate,
            at_least(0.3),
        )
    ]


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def bench_qualify(folder: Path, sizes: tuple[int, int] = (500, 2500)) -> list[Result]:
    """The qualify job after new events for `size` leads (rescoring them and their colleagues:
    accounts of 20 here), against a raw SELECT of the same events; memory at both sizes."""
    import gc
    import threading

    import nurture.jobs.qualify as qualify_job
    from nurture.clock import FakeClock
    from nurture.daemon import Daemon
    from nurture.jobs.catalog import Catalog
    from nurture.jobs.qualify import Qualifier
    from nurture.store import Store

    engine = make_engine(PG_URL)
    upgrade(engine)
    # Statistics as any database has them minutes after its upgrade (see `build`): a database
    # built before the builder gathered them, or copied from one, has none on its partitions.
    with engine.begin() as conn:
        conn.execute(text("ANALYZE event"))
        conn.execute(text("ANALYZE lead"))
    scenarios, templates = _project(folder)
    measured: list[tuple[int, float, float, float]] = []
    # The job also counts the scenario report's outcomes of the leads whose activity changed:
    # timed apart, so the rescoring's own rate can be told from it.
    outcomes = [0.0]
    counted = qualify_job.catch_up

    def catch_up(*args: Any, **kwargs: Any) -> int:
        start = time.perf_counter()
        try:
            return counted(*args, **kwargs)
        finally:
            outcomes[0] += time.perf_counter() - start

    qualify_job.catch_up = catch_up
    with engine.connect() as conn:
        leads = int(conn.execute(text("SELECT max(id) FROM lead")).scalar() or 0)
        # Each round's events are received after the latest an earlier run added, so a run
        # hours after another on the same database sees only its own.
        latest = conn.execute(text("SELECT max(received_at) FROM event")).scalar()
    start = max(datetime.now(UTC), latest or NOW)
    for n, size in enumerate(sizes):
        clock = FakeClock(NOW + timedelta(minutes=n + 1))
        store = Store(engine, clock)
        catalog = Catalog(store, scenarios, templates)
        catalog.reload()
        # The job runs in a daemon, which moves its start-up heap (catalog, SQLAlchemy's
        # metadata) out of the garbage collector's way once loaded: so does the bench.
        Daemon.tune_gc()
        scoring = catalog.scoring
        assert scoring is not None
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO kv (key, value) VALUES ('qualify:watermark', :mark)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
                ),
                {"mark": (start + timedelta(hours=3 * (n + 1))).isoformat()},
            )
            # New events for `size` leads of distinct accounts, received after the watermark.
            conn.execute(
                text(
                    "INSERT INTO event (lead_id, type, at, props, received_at)"
                    " SELECT 1 + (i * 50021) % :leads, 'page_view', :at, '{}', :received"
                    " FROM generate_series(1, :size) i"
                ),
                {
                    "leads": leads,
                    "size": size,
                    "at": clock.now() - timedelta(hours=1),
                    # After this round's watermark, before the next one's: each round sees its own.
                    "received": start + timedelta(hours=3 * (n + 1), minutes=1),
                },
            )
        # Both sides read warm: the events the run will read are read once first, or the job
        # would read each from disk and the raw SELECT after it read the same rows from memory.
        with engine.connect() as conn:
            rescored = [
                r[0]
                for r in conn.execute(
                    text(
                        "SELECT id FROM lead WHERE lower(company) IN (SELECT lower(company) FROM lead"
                        " WHERE id IN (SELECT 1 + (i * 50021) % :leads FROM generate_series(1, :size) i))"
                        " ORDER BY id"
                    ),
                    {"leads": leads, "size": size},
                )
            ]
        _raw_events_of(engine, rescored, clock.now() - scoring.lookback)
        gc.collect()
        base = _rss_mib()
        peak = [base]
        done = threading.Event()

        def sample(peak: list[float] = peak, done: threading.Event = done) -> None:
            while not done.wait(0.2):
                peak[0] = max(peak[0], _rss_mib())

        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        qualifier = Qualifier(store, catalog, clock)
        outcomes[0] = 0.0
        cpu = time.process_time()
        stats, seconds = timed(qualifier.run_once)
        cpu = time.process_time() - cpu
        done.set()
        watcher.join()
        since = clock.now() - scoring.lookback
        # The leads the job rescored (a lead whose score came out the same keeps its scored_at).
        assert stats.scored == len(rescored), (stats.scored, len(rescored))
        events, raw_seconds = _raw_events_of(engine, rescored, since)
        del rescored
        print(
            f"  qualify {stats.scored:,} leads, {events:,} events in {seconds:.1f} s (of which the scenario report's"
            f" outcome counts {outcomes[0]:.1f} s); raw SELECT {raw_seconds:.1f} s; the process's CPU {cpu:.1f} s"
            f" ({cpu / max(stats.scored, 1) * 1000:.2f} ms a lead); RSS +{peak[0] - base:.0f} MiB",
            flush=True,
        )
        measured.append((stats.scored, events / seconds, events / raw_seconds, peak[0] - base))
        alone = events / max(seconds - outcomes[0], 1e-9)
    qualify_job.catch_up = counted
    (small, _r1, _b1, mem_small), (large, rate, raw_rate, mem_large) = measured
    return [
        Result(
            f"PG qualify: rescoring {large:,} leads of {leads:,} (new events for {sizes[1]:,}, with their colleagues)",
            f"{rate:,.0f} events/s",
            f"{raw_rate:,.0f} events/s (raw SELECT of the same events)",
            rate / raw_rate,
            at_least(0.25),
        ),
        Result(
            "PG qualify: the same run without the scenario report's outcome counts (which the job also keeps)",
            f"{alone:,.0f} events/s",
            f"{raw_rate:,.0f} events/s",
            alone / raw_rate,
            at_least(0.25),
        ),
        Result(
            f"PG qualify: peak memory, {large:,} vs {small:,} leads rescored",
            f"+{mem_large:,.0f} MiB",
            f"+{mem_small:,.0f} MiB",
            max(mem_large, 1) / max(mem_small, 1),
            at_most(1.5),
        ),
    ]


def _command(args: list[str], env: dict[str, str], timeout: float) -> tuple[float, float, str]:
    """Run `nurture ARGS` as a process of its own: (seconds, peak RSS in MiB, its output).
    A command past `timeout` is stopped, and its seconds are reported as the timeout."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "nurture", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    timer = threading.Timer(timeout, process.terminate)
    timer.start()
    # The process's own high-water mark, read while it runs: its ru_maxrss would be at least
    # this runner's, which Linux carries into a child across fork and exec.
    peak = [0.0]
    reader = threading.Thread(target=_watch_peak, args=(process, peak), daemon=True)
    reader.start()
    try:
        output = process.stdout.read().decode() if process.stdout else ""
        process.wait()
    finally:
        timer.cancel()
    reader.join()
    seconds = time.perf_counter() - start
    if process.returncode != 0 and seconds < timeout:
        raise RuntimeError(f"nurture {' '.join(args)} failed:\n{output[-2000:]}")
    return min(seconds, timeout), peak[0], output


def _watch_peak(process: subprocess.Popen[bytes], peak: list[float]) -> None:
    """Keep `peak[0]` at the process's VmHWM (MiB) until it ends, reading it every 50 ms."""
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]) / 1024)
        except (OSError, ValueError):
            pass
        time.sleep(0.05)  # a sampling interval (VmHWM is itself a high-water mark), not a wait for a condition


def _raw_events(engine: Engine, where: str, params: dict[str, object]) -> tuple[int, float]:
    """(events, seconds): a raw server-side cursor streaming the events `where` names (joins
    and conditions over `event e JOIN lead l`), every row converted to Python values, none kept."""
    raw = engine.raw_connection()
    try:
        start = time.perf_counter()
        with raw.cursor(name="raw_events") as cursor:  # type: ignore[call-arg]
            cursor.itersize = 5000
            cursor.execute(
                f"SELECT e.lead_id, e.type, e.at, e.props, e.id FROM event e JOIN lead l ON l.id = e.lead_id {where}",
                params,
            )
            events = sum(1 for _ in cursor)
        seconds = time.perf_counter() - start
        raw.rollback()
    finally:
        raw.close()
    return events, seconds


def bench_analytics(folder: Path, outcomes: int = 1000, timeout: float = 600) -> list[Result]:
    """`nurture score backtest`, `near-miss`, `drift` and `learn` over the big database, each a
    process of its own: wall time and peak memory, beside a raw SELECT streaming the events
    it reads; the backtest also over a window four times as long (memory flat)."""
    engine = make_engine(PG_URL)
    upgrade(engine)
    scenarios, templates = _project(folder)
    env = {**os.environ, "NURTURE_TEMPLATES_DIR": str(templates)}
    db = ["--db", PG_URL, "--scenarios", str(scenarios)]
    lookback = timedelta(days=180)  # scenarios/scoring.yaml's
    accounts = (
        "JOIN (SELECT DISTINCT lower(m.company) AS k FROM lead m JOIN event x ON x.lead_id = m.id"
        " WHERE x.at BETWEEN %(since)s AND %(until)s) a ON a.k = lower(l.company)"
    )
    with engine.connect() as conn:
        size = conn.execute(text("SELECT (SELECT count(*) FROM lead), (SELECT count(*) FROM event)")).one()
    scale = f"{size[0]:,} leads, {size[1]:,} events"
    results: list[Result] = []
    memory: dict[int, float] = {}
    for days in (7, 28):
        until = NOW - timedelta(days=3)
        since = until - timedelta(days=days)
        seconds, rss, output = _command(
            ["score", "backtest", "--from", since.isoformat(), "--to", until.isoformat(), *db], env, timeout
        )
        memory[days] = rss
        events, raw = _raw_events(
            engine,
            f"{accounts} WHERE e.at BETWEEN %(start)s AND %(until)s",
            {"since": since, "until": until, "start": since - lookback},
        )
        print(
            f"  backtest {days} days: {seconds:.0f} s, {rss:.0f} MiB; raw SELECT of {events:,} events {raw:.0f} s",
            flush=True,
        )
        results.append(
            Result(
                f"PG analytics: score backtest, {days}-day window ({scale})",
                f"{seconds:,.0f} s, peak {rss:,.0f} MiB",
                f"raw SELECT of its {events:,} events: {raw:,.0f} s; goal 300 s",
                seconds / 300,
                at_most(1.0),
            )
        )
    results.append(
        Result(
            "PG analytics: score backtest peak memory, 28-day vs 7-day window",
            f"{memory[28]:,.0f} MiB",
            f"{memory[7]:,.0f} MiB",
            memory[28] / memory[7],
            at_most(1.5),
        )
    )
    seconds, rss, _ = _command(["score", "near-miss", "--at", NOW.isoformat(), *db], env, timeout)
    events, raw = _raw_events(
        engine,
        "WHERE l.lifecycle_stage IN ('cold', 'warm', 'recycled') AND NOT l.unsubscribed AND NOT l.bounced"
        " AND e.at BETWEEN %(start)s AND %(now)s",
        {"start": NOW - lookback, "now": NOW},
    )
    print(f"  near-miss: {seconds:.0f} s, {rss:.0f} MiB; raw SELECT of {events:,} events {raw:.0f} s", flush=True)
    results.append(
        Result(
            f"PG analytics: score near-miss (every scored lead of {scale})",
            f"{seconds:,.0f} s, peak {rss:,.0f} MiB",
            f"raw SELECT of its {events:,} events: {raw:,.0f} s; goal 300 s",
            seconds / 300,
            at_most(1.0),
        )
    )
    with engine.begin() as conn:
        # Promotions for drift to replay, if the database has none: every 200th lead made hot
        # three days after its first event, then accepted or rejected by sales a day later.
        if not conn.execute(text("SELECT 1 FROM lifecycle_change WHERE to_stage = 'hot' LIMIT 1")).first():
            conn.execute(
                text(
                    "INSERT INTO lifecycle_change (lead_id, at, from_stage, to_stage, reason, actor)"
                    " SELECT l.id, t.at, t.from_stage, t.to_stage, t.reason, t.actor FROM lead l,"
                    " LATERAL (VALUES"
                    "  (:now - (l.id % 300) * interval '1 day' + interval '3 days', 'warm', 'hot', 'score', 'qualify'),"
                    "  (:now - (l.id % 300) * interval '1 day' + interval '4 days', 'hot',"
                    "   CASE WHEN l.id % 300 < 100 THEN 'rejected' ELSE 'accepted' END,"
                    "   CASE WHEN l.id % 3 = 0 THEN 'No budget' ELSE 'Student' END, 'sales')"
                    " ) AS t(at, from_stage, to_stage, reason, actor) WHERE l.id % 200 = 0"
                ),
                {"now": NOW},
            )
    seconds, rss, output = _command(["score", "drift", *db], env, timeout)
    promotions = re.search(r"(\d+) promotion", output)
    print(
        f"  drift: {seconds:.0f} s, {rss:.0f} MiB; {promotions.group(0) if promotions else output[-300:]}", flush=True
    )
    results.append(
        Result(
            f"PG analytics: score drift ({promotions.group(0) if promotions else '?'}s)",
            f"{seconds:,.0f} s, peak {rss:,.0f} MiB",
            "goal 300 s",
            seconds / 300,
            at_most(1.0),
        )
    )
    outcomes_csv = folder / "pg-outcomes.csv"
    with engine.connect() as conn:
        leads = int(conn.execute(text("SELECT max(id) FROM lead")).scalar() or 0)
    step = max(1, leads // outcomes)
    outcomes_csv.write_text(
        "email,converted,at\n"
        + "".join(
            f"lead{i}@bench.example,{'yes' if (i // step) % 5 == 0 else 'no'},{NOW.isoformat()}\n"
            for i in range(1, leads + 1, step)
        ),
        encoding="utf-8",
    )
    seconds, rss, _ = _command(
        ["score", "learn", "--outcomes", str(outcomes_csv), "--out", str(folder / "pg-proposed.txt"), *db], env, timeout
    )
    print(f"  learn ({outcomes:,} outcomes): {seconds:.0f} s, {rss:.0f} MiB", flush=True)
    results.append(
        Result(
            f"PG analytics: score learn ({outcomes:,} outcomes, their accounts' events)",
            f"{seconds:,.0f} s, peak {rss:,.0f} MiB",
            "goal 300 s",
            seconds / 300,
            at_most(1.0),
        )
    )
    return results


def _raw_events_of(engine: Engine, ids: list[int], since: datetime) -> tuple[int, float]:
    """The raw baseline: the same leads' events since `since` by the driver, 500 leads a
    query as the job reads them; (events, seconds)."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        events = 0
        start = time.perf_counter()
        for i in range(0, len(ids), 500):
            cursor.execute(
                "SELECT lead_id, type, at, props, id FROM event WHERE lead_id = ANY(%s) AND at >= %s ORDER BY at",
                (ids[i : i + 500], since),
            )
            events += len(cursor.fetchall())
        return events, time.perf_counter() - start
    finally:
        raw.close()


SECTIONS = ("pgreports", "pgingest", "pgqualify", "pganalytics")


def section(name: str, folder: Path, quick: bool) -> list[Result]:
    """One of SECTIONS; `pgreports` (re)builds the data the other two use."""
    scale = Scale(100_000, 1_000_000, 500_000) if quick else Scale(1_000_000, 10_000_000, 5_000_000)
    if name == "pgreports":
        return bench_reports(folder, scale, rounds=20 if quick else 40, rebuild=not BUILT_URL)
    if name == "pgingest":
        return bench_ingest(folder, scale.leads, batches=10 if quick else 30)
    if name == "pgqualify":
        return bench_qualify(folder)
    if name == "pganalytics":
        return bench_analytics(folder, outcomes=500 if quick else 1000)
    raise ValueError(name)
