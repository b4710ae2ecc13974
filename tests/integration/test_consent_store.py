"""Consent records in the store, on SQLite and PostgreSQL; the migration matches the models."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from nurture.clock import FakeClock
from nurture.consent.model import ALL_TOPICS, ConsentRecord, ConsentSource, ConsentStatus
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.migrate import upgrade
from tests.integration.conftest import START


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    engine = make_engine(db_url)
    upgrade(engine)
    yield Store(engine, FakeClock(START))
    engine.dispose()


def add_lead(store: Store, email: str) -> int:
    with store.transaction() as conn:
        lead_id, _ = store.leads.upsert(conn, {"email": email})
    return lead_id


def test_the_migrations_create_the_consent_tables_as_the_models_define_them(store: Store) -> None:
    with store.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    ours = [d for d in differences if "consent_record" in repr(d) or "erasure_log" in repr(d)]
    assert ours == []


def test_consent_statements_are_kept_whole_and_read_back_in_time_order(store: Store) -> None:
    ann, bob = add_lead(store, "ann@example.com"), add_lead(store, "bob@example.com")
    later = ConsentRecord(
        "newsletter", ConsentStatus.WITHDRAWN, ConsentSource.ONE_CLICK, START + timedelta(days=3), detail="send 12"
    )
    first = ConsentRecord(
        "newsletter", ConsentStatus.GRANTED, ConsentSource.FORM, START, "newsletter-form-v2", "2001:db8::7",
        "Mozilla/5.0 (Macintosh) " + "x" * 600,
    )  # fmt: skip
    with store.transaction() as conn:
        store.consents.add(conn, ann, [later, first])
        store.consents.add(conn, bob, [ConsentRecord(ALL_TOPICS, ConsentStatus.GRANTED, ConsentSource.IMPORT, START)])
    records = store.consents.of_lead(ann)
    assert [r.status for r in records] == [ConsentStatus.GRANTED, ConsentStatus.WITHDRAWN]
    assert records[0].wording == "newsletter-form-v2" and records[0].ip == "2001:db8::7"
    assert records[0].at == START and records[0].user_agent is not None and len(records[0].user_agent) == 500
    assert records[1] == later
    with store.reading() as conn:
        both = store.consents.for_leads(conn, [ann, bob])
    assert {k: len(v) for k, v in both.items()} == {ann: 2, bob: 1}
