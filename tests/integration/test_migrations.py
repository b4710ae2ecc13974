"""Migrations: a database made by an older release upgrades with its data, and a migrated
schema is exactly the one the models define, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from nurture.clock import FakeClock
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.leads import SEARCH_INDEXES
from nurture.store.migrate import alembic_config, current_revision, upgrade
from nurture.store.retention import partitioning_only
from nurture.store.tables import EVENT_DAILY
from nurture.store.types import sqlite_text

THEN = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# One row in every table of release 0003 (the schema before consent, accounts, lists,
# experiments and feedback), with only the columns that release had.
RELEASE_0003_ROWS: list[tuple[str, dict[str, Any]]] = [
    ("kv", {"key": "qualify.watermark", "value": "2026-03-01T00:00:00+00:00"}),
    ("scenario_version", {"scenario_id": "welcome", "version": "v1abc", "path": "scenarios/welcome.yaml",
                          "source": "id: welcome", "loaded_at": THEN, "is_current": True}),
    ("lead", {"id": 1, "email": "jane@example.com", "first_name": "Jane", "company": "Acme",
              "company_size": 250, "lifecycle_stage": "warm", "tags": ["webinar"], "custom": {"plan": "pro"},
              "unsubscribed": False, "bounced": False, "score_fit": 40, "score_engagement": 25, "grade": "B",
              "created_at": THEN, "updated_at": THEN, "score_adjustment": 0}),
    ("suppression", {"email": "gone@example.com", "reason": "bounced", "created_at": THEN}),
    ("audit_log", {"id": 1, "at": THEN, "lead_id": 1, "kind": "enrolled", "detail": {"scenario": "welcome"}}),
    ("enrollment", {"id": 1, "lead_id": 1, "scenario_id": "welcome", "scenario_version": "v1abc",
                    "state": "wait_a_day", "status": "active", "seq": 2, "entered_at": THEN,
                    "enrolled_at": THEN, "due_at": THEN}),
    ("event", {"id": 1, "lead_id": 1, "type": "click", "at": THEN, "props": {"url": "https://acme.example/p"},
               "received_at": THEN}),
    ("send", {"id": 1, "idempotency_key": "welcome:1:send_welcome", "kind": "email", "lead_id": 1,
              "enrollment_id": 1, "scenario_id": "welcome", "scenario_version": "v1abc", "step": "send_welcome",
              "template": "welcome", "subject": "Welcome", "sender": "news@acme.example", "status": "sent",
              "attempts": 1, "created_at": THEN, "next_attempt_at": THEN, "sent_at": THEN,
              "message_id": "<1@acme.example>"}),
    ("activity", {"id": 1, "lead_id": 1, "at": THEN, "kind": "call", "note": "budget in Q3", "actor": "max"}),
    ("lifecycle_change", {"id": 1, "lead_id": 1, "at": THEN, "from_stage": "cold", "to_stage": "warm",
                          "reason": "score", "actor": "nurture"}),
    ("notification", {"id": 1, "key": "hot:1", "kind": "email", "lead_id": 1, "target": "sales@acme.example",
                      "subject": "Hot lead", "payload": {"email": "jane@example.com"}, "status": "sent",
                      "attempts": 1, "created_at": THEN, "next_attempt_at": THEN, "sent_at": THEN}),
    ("score_history", {"id": 1, "lead_id": 1, "at": THEN, "fit": 40, "engagement": 25, "grade": "B"}),
    ("api_key", {"id": 1, "name": "crm", "prefix": "nk_abcd", "key_hash": "0" * 64, "created_at": THEN}),
    ("dashboard_user", {"id": 1, "username": "max", "password_hash": "x", "display_name": "Max",
                        "created_at": THEN, "disabled": False}),
    ("step_visit", {"scenario_id": "welcome", "scenario_version": "v1abc", "step": "send_welcome", "entered": 1}),
]  # fmt: skip


def fill_release_0003(engine: sa.Engine) -> None:
    """Write the rows as that release would have: through its own tables, not today's models."""
    with engine.begin() as conn:
        tables = sa.MetaData()
        tables.reflect(conn)
        for name, row in RELEASE_0003_ROWS:
            if engine.dialect.name == "sqlite":
                row = {k: sqlite_text(v) if isinstance(v, datetime) else v for k, v in row.items()}
            conn.execute(tables.tables[name].insert(), row)
        if engine.dialect.name == "postgresql":  # the ids above were given, not drawn
            for name, _ in RELEASE_0003_ROWS:
                if "id" in tables.tables[name].c:
                    conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), 100)"))


def test_a_database_of_release_0003_upgrades_to_head_keeping_every_row(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine, "0003")
    fill_release_0003(engine)

    upgrade(engine)

    store = Store(engine, FakeClock(THEN))
    assert current_revision(engine) != "0003"
    with engine.connect() as conn:
        for name, _ in RELEASE_0003_ROWS:
            assert conn.execute(sa.text(f'SELECT count(*) FROM "{name}"')).scalar_one() == 1, name
    jane = store.leads.by_email("jane@example.com")
    assert jane is not None
    assert (jane.company, jane.company_size, jane.lifecycle_stage) == ("Acme", 250, "warm")
    assert (jane.score_fit, jane.score_engagement, jane.tags, jane.custom) == (40, 25, ["webinar"], {"plan": "pro"})
    assert [row.state for row in store.enrolments.of_lead(jane.id)] == ["wait_a_day"]
    assert [row.message_id for row in store.sends.of_lead(jane.id)] == ["<1@acme.example>"]
    # The upgraded rows take today's writes: an import updates the old lead and adds a new one.
    with store.transaction() as conn:
        assert store.leads.upsert(conn, {"email": "jane@example.com", "job_title": "CTO"}) == (jane.id, False)
        new_id, created = store.leads.upsert(conn, {"email": "ken@example.com"})
    assert created and new_id > jane.id
    engine.dispose()


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_every_migrated_table_matches_its_model(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    postgres = engine.dialect.name == "postgresql"

    def compared(item: Any, name: str | None, kind: str, _reflected: bool, _other: Any) -> bool:
        table = getattr(getattr(item, "table", None), "name", None)
        return not (postgres and partitioning_only(name, kind, table))

    with engine.connect() as conn:
        # The search indexes differ per database by design and are the migration's alone;
        # so is PostgreSQL's partitioning of events.
        context = MigrationContext.configure(
            conn,
            opts={
                "include_name": lambda name, kind, _: not (kind == "index" and name in SEARCH_INDEXES),
                "include_object": compared,
            },
        )
        differences = compare_metadata(context, SQLModel.metadata)
    engine.dispose()
    assert differences == []


@pytest.mark.postgres
def test_a_populated_event_table_becomes_monthly_partitions_keeping_rows_tallies_and_dedup(pg_url: str) -> None:
    engine = make_engine(pg_url)
    upgrade(engine, "0013")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO lead (id, email, lifecycle_stage, tags, custom, unsubscribed, bounced, score_fit,"
                " score_engagement, grade, score_adjustment, created_at, updated_at)"
                " VALUES (1, 'jane@example.com', 'cold', '[]', '{}', false, false, 0, 0, 'D', 0, now(), now())"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO event (lead_id, type, at, props, external_id, received_at)"
                " SELECT 1, CASE WHEN g % 2 = 0 THEN 'open' ELSE 'click' END,"
                " timestamptz '2026-01-15 12:00+00' + g * interval '1 day', '{}', 'esp:' || g, now()"
                " FROM generate_series(0, 99) g"
            )
        )
        tallies = conn.execute(sa.text("SELECT a, day, sum(n) FROM tally WHERE kind = 'event' GROUP BY 1, 2")).all()

    upgrade(engine)

    with engine.begin() as conn:
        partitions = conn.execute(
            sa.text(
                "SELECT c.relname, count(e.id) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " LEFT JOIN event e ON e.tableoid = c.oid WHERE i.inhparent = 'event'::regclass GROUP BY 1"
            )
        ).all()
        found = {name: n for name, n in partitions}
        assert {m: found[m] for m in ("event_2026_01", "event_2026_02", "event_2026_04")} == {
            "event_2026_01": 17,
            "event_2026_02": 28,
            "event_2026_04": 24,
        }
        assert sum(found.values()) == 100
        assert found["event_default"] == 0
        after = conn.execute(sa.text("SELECT a, day, sum(n) FROM tally WHERE kind = 'event' GROUP BY 1, 2")).all()
        assert sorted(after) == sorted(tallies)
    store = Store(engine, FakeClock(THEN))
    with store.transaction() as conn:
        at = datetime(2026, 2, 1, tzinfo=UTC)
        assert not store.events.record(conn, 1, "open", at, {}, external_id="esp:3")  # seen before the upgrade
        assert store.events.record(conn, 1, "open", at, {}, external_id="esp:100")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM event")).scalar_one() == 101
        assert conn.execute(sa.text("SELECT max(id) FROM event")).scalar_one() == 101
    engine.dispose()


@pytest.mark.postgres
def test_a_populated_partitioned_event_table_downgrades_to_one_table_keeping_rows_and_dedup(pg_url: str) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    store = Store(engine, FakeClock(THEN))
    ats = [datetime(1999, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC), datetime(2040, 1, 1, tzinfo=UTC)]
    with store.transaction() as conn:
        lead, _ = store.leads.upsert(conn, {"email": "jane@example.com"})
        for i, at in enumerate(ats):
            assert store.events.record(conn, lead, "open", at, {}, external_id=f"esp:{i}")

    command.downgrade(alembic_config(pg_url), "0013")

    with engine.begin() as conn:
        assert conn.execute(sa.text("SELECT at FROM event ORDER BY at")).scalars().all() == ats
        kind = conn.execute(sa.text("SELECT relkind FROM pg_class WHERE relname = 'event'")).scalar_one()
        assert kind == "r"  # one plain table again
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO event (lead_id, type, at, props, external_id, received_at)"
                " VALUES (:lead, 'open', now(), '{}', 'esp:1', now())"
            ),
            {"lead": lead},
        )
    upgrade(engine)
    with store.transaction() as conn:
        assert not store.events.record(conn, lead, "open", ats[1], {}, external_id="esp:1")
    engine.dispose()


def test_a_downgrade_below_event_retention_is_refused_once_events_were_pruned(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    clock = FakeClock(datetime(2026, 3, 2, tzinfo=UTC))
    store = Store(engine, clock)
    store.retention.ensure_partitions()
    with store.transaction() as conn:
        lead, _ = store.leads.upsert(conn, {"email": "jane@example.com"})
        store.events.record(conn, lead, "page_view", datetime(2026, 3, 5, tzinfo=UTC), {})
    clock.set(datetime(2026, 9, 1, tzinfo=UTC))
    store.retention.prune(
        datetime(2026, 4, 1, tzinfo=UTC), keep=timedelta(days=30), processed_before=datetime(2100, 1, 1, tzinfo=UTC)
    )

    with pytest.raises(RuntimeError, match="pruned into 1 daily rollups"):
        command.downgrade(alembic_config(db_url), "0013")

    assert current_revision(engine) != "0013"
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.select(EVENT_DAILY.c.day, EVENT_DAILY.c.n)).all() == [(date(2026, 3, 5), 1)]
    engine.dispose()
