"""PostgreSQL at scale, for the data side: reports and dashboard read from tallies, event
ingest through the batch API, rescoring. Each section prints ratios against a raw baseline
measured in the same run (see bench/run.py: `python bench/run.py pgreports pgingest pgqualify`).

The database is NURTURE_BENCH_PG_URL (default: the local server's `nurture_bench6`); its
`public` schema is dropped and rebuilt.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from common import Result, at_most
from nurture.store.db import make_engine
from nurture.store.migrate import upgrade

PG_URL = os.environ.get("NURTURE_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/nurture_bench6")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
STEPS = ("welcome", "guide", "case_study", "webinar", "offer")

SCENARIO = """
id: bench_mail
name: Bench mail
exit_when: [unsubscribed, bounced]
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


def build(engine: Engine, scale: Scale, log: Callable[[str], None] = print) -> float:
    """Leads, enrolments (one per lead), sends and events made by SQL on the schema before the
    tallies, then the upgrade that counts them; returns the upgrade's seconds."""
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
            FROM generate_series(1, {scale.leads}) l, generate_series(1, {per_lead_sends}) s""",
        f"""INSERT INTO event (lead_id, type, at, props, received_at)
            SELECT l, (ARRAY['open','open','click','page_view','open','form_submit','page_view','open',
                              'click','page_view'])[1 + e % 10],
              '{NOW.isoformat()}'::timestamptz - (l % 300) * interval '1 day' + e * interval '7 hours',
              jsonb_build_object('send', (l - 1) * {per_lead_sends} + 1 + e % {per_lead_sends}),
              '{NOW.isoformat()}'::timestamptz - (l % 300) * interval '1 day' + e * interval '7 hours'
            FROM generate_series(1, {scale.leads}) l, generate_series(1, {per_lead_events}) e""",
    ]
    for statement in statements:
        start = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text(statement))
        log(f"  built {statement.split()[2]} in {time.perf_counter() - start:.0f} s")
    with engine.begin() as conn:
        conn.execute(text("VACUUM ANALYZE") if False else text("ANALYZE"))
    start = time.perf_counter()
    upgrade(engine)
    took = time.perf_counter() - start
    log(f"  migration 0009 (tallies counted from the rows, lower(company) index) in {took:.0f} s")
    return took


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
    return Result(
        name,
        f"p50 {p50:,.0f} ms, p95 {high:,.0f} ms",
        f"goal 300 ms (the scan it replaces: p95 {scan95:,.0f} ms)",
        high / 300,
        at_most(1.0),
    )


def folder_note(folder: Path) -> str:
    return str(folder)
