"""The store's contract, run against the `Store` interface on SQLite and on PostgreSQL.

Every test here runs twice (see the `db_url` fixture): what one database does, the other
must do too. The leased queue's rules are those of `nurture.store.queue`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nurture.clock import FakeClock
from nurture.config import Settings
from nurture.jobs.notify import Notifier
from nurture.mail.sender import SmtpPool
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.migrate import upgrade
from nurture.vocabulary import EnrolmentStatus, NotificationStatus, SendStatus
from tests.integration.conftest import START

LEASE = timedelta(minutes=5)
EXPIRED = timedelta(seconds=-1)  # a lease that has already run out by the database's clock


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    engine = make_engine(db_url)
    upgrade(engine)
    yield Store(engine, FakeClock(START))
    engine.dispose()


def add_lead(store: Store, email: str, **fields: Any) -> int:
    with store.transaction() as conn:
        lead_id, _ = store.leads.upsert(conn, {"email": email, **fields})
    return lead_id


def queue_sends(store: Store, lead_id: int, count: int, at: datetime = START) -> list[int]:
    rows = [
        {
            "idempotency_key": f"key-{lead_id}-{n}",
            "lead_id": lead_id,
            "scenario_id": "welcome",
            "scenario_version": "v1",
            "step": f"step{n}",
            "template": "welcome",
            "subject": "Hello",
            "sender": "nurture <n@example.com>",
            "status": SendStatus.PENDING,
            "attempts": 0,
            "created_at": at,
            "next_attempt_at": at,
        }
        for n in range(count)
    ]
    with store.transaction() as conn:
        store.sends.add(conn, rows)
    return sorted(s.id for s in store.sends.of_lead(lead_id))


def queue_notifications(store: Store, lead_id: int, count: int) -> None:
    rows = [
        {
            "key": f"hot:{lead_id}:{n}:email",
            "kind": "email",
            "lead_id": lead_id,
            "target": "owner@example.com",
            "subject": "Hot lead",
            "payload": {},
            "status": NotificationStatus.PENDING,
            "attempts": 0,
            "created_at": START,
            "next_attempt_at": START,
        }
        for n in range(count)
    ]
    with store.transaction() as conn:
        store.notifications.add(conn, rows)


# -- leads and events ----------------------------------------------------------------------


def test_upserting_a_lead_again_merges_its_custom_fields_and_tags(store: Store) -> None:
    with store.transaction() as conn:
        first, created = store.leads.upsert(
            conn, {"email": " Ada@Example.COM ", "company": "Nordwerk", "custom": {"a": 1}, "tags": ["x"]}
        )
        again, created_again = store.leads.upsert(
            conn, {"email": "ada@example.com", "job_title": "CTO", "custom": {"b": 2}, "tags": ["y", "x"]}
        )
    assert (created, created_again, again) == (True, False, first)
    lead = store.leads.by_email("ADA@example.com")
    assert lead is not None
    assert (lead.email, lead.company, lead.job_title) == ("ada@example.com", "Nordwerk", "CTO")
    assert lead.custom == {"a": 1, "b": 2} and lead.tags == ["x", "y"]


def test_an_event_with_a_known_external_id_is_stored_once(store: Store) -> None:
    lead_id = add_lead(store, "ada@example.com")
    with store.transaction() as conn:
        first = store.events.record(conn, lead_id, "click", START, {"link": "a"}, external_id="e-1")
        second = store.events.record(conn, lead_id, "click", START, {"link": "a"}, external_id="e-1")
    with store.reading() as conn:
        events = store.events.for_leads(conn, [lead_id], START - timedelta(days=1))
    assert (first, second) == (True, False)
    assert [(e.type, e.props) for e in events[lead_id]] == [("click", {"link": "a"})]


def test_leads_events_read_back_with_their_properties_and_ids_as_recorded(store: Store) -> None:
    ada, bob = add_lead(store, "ada@example.com"), add_lead(store, "bob@example.com")
    recorded = [
        (ada, "click", {"send": 7, "link": "a", "honeypot": False}),
        (ada, "open", {}),
        (bob, "page_view", {"url": '/preise?x="1"', "nested": {"list": [1, 2.5, None]}, "name": "部長"}),
        (bob, "custom", {"name": "login", "ok": True}),
        (ada, "page_view", None),
    ]
    with store.transaction() as conn:
        for n, (lead_id, type_, props) in enumerate(recorded):
            store.events.record(conn, lead_id, type_, START + timedelta(minutes=n), props)
        store.events.record(conn, bob, "open", START - timedelta(days=2), {"send": 1})  # before `since`
    with store.reading() as conn:
        events = store.events.for_leads(conn, [ada, bob], START - timedelta(days=1))
    assert {k: [(e.type, e.at, e.props) for e in v] for k, v in events.items()} == {
        ada: [(t, START + timedelta(minutes=n), p or {}) for n, (i, t, p) in enumerate(recorded) if i == ada],
        bob: [(t, START + timedelta(minutes=n), p or {}) for n, (i, t, p) in enumerate(recorded) if i == bob],
    }
    ids = [e.id for v in events.values() for e in v]
    assert all(isinstance(i, str) and i.isdigit() for i in ids) and len(set(ids)) == len(ids)


@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo"])
def test_account_members_read_whole_are_the_leads_rows(db_url: str, zone: str) -> None:
    """The members of accounts, every column (as the qualify job reads them): the same values,
    attributes and mapping as the lead's own row, their times in UTC whatever the session's zone."""
    options = {"connect_args": {"options": f"-c TimeZone={zone}"}} if db_url.startswith("postgresql") else {}
    engine = make_engine(db_url, **options)
    upgrade(engine)
    store = Store(engine, FakeClock(START))
    ids = [
        add_lead(store, "ada@nordwerk.example", company="Nordwerk", job_title="CTO", company_size=1200),
        add_lead(store, "bob@nordwerk.example", company="NORDWERK ", custom={"plan": "pro", "seats": 3}),
        add_lead(store, "cy@other.example", company="Other"),
        add_lead(store, "di@nordwerk.example", company="nordwerk", tags=["x"]),
    ]
    with store.transaction() as conn:
        store.leads.restart_engagement(conn, ids[3], START + timedelta(hours=20))
        store.leads.record_score(conn, store.leads.in_(conn, [ids[0]])[0], 30, 12, "B", START + timedelta(hours=21))
        if zone != "UTC" and options:  # the store's own sessions speak UTC; this one does not
            conn.exec_driver_sql(f"SET TIME ZONE '{zone}'")
        members = store.leads.accounts(conn, True, {"nordwerk", "other"}, whole=True)
        rows = {row.id: row for row in store.leads.in_(conn, ids)}
    engine.dispose()
    assert {m.id for m in members} == {ids[0], ids[2], ids[3]}
    for member in members:
        row = rows[member.id]
        assert tuple(member) == tuple(row)
        assert dict(member._mapping) == dict(row._mapping)
        assert (member.email, member.custom, member.tags, member.scored_at) == (
            row.email,
            row.custom,
            row.tags,
            row.scored_at,
        )
        for name in ("created_at", "updated_at", "engagement_since", "scored_at"):
            moment = member._mapping[name]
            assert moment is None or moment.tzinfo is UTC


def test_events_read_back_in_utc_whatever_zone_the_server_speaks(db_url: str) -> None:
    """A server set to Tokyo time: the store's sessions still speak UTC, so an event at 20:00
    UTC reads back on its UTC day (the day per-day caps count), not on Tokyo's next one."""
    tokyo = {"connect_args": {"options": "-c TimeZone=Asia/Tokyo"}} if db_url.startswith("postgresql") else {}
    engine = make_engine(db_url, **tokyo)
    upgrade(engine)
    store = Store(engine, FakeClock(START))
    evening = START.replace(hour=20)
    lead_id = add_lead(store, "ada@example.com")
    with store.transaction() as conn:
        store.events.record(conn, lead_id, "page_view", evening, {"url": "/pricing"})
    with store.reading() as conn:
        (event,) = store.events.for_leads(conn, [lead_id], START - timedelta(days=1))[lead_id]
    if tokyo:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW TimeZone").scalar() == "UTC"
    engine.dispose()
    assert event.at == evening and event.at.tzinfo is UTC
    assert event.at.date() == evening.date()


def test_an_unsubscribe_event_flags_the_lead_and_suppression_flags_a_bounce(store: Store) -> None:
    ada, bob = add_lead(store, "ada@example.com"), add_lead(store, "bob@example.com")
    with store.transaction() as conn:
        store.events.record(conn, ada, "unsubscribe", START)
        store.leads.suppress(conn, "BOB@example.com", "bounce", "550 no such user")
    assert store.leads.by_id(ada).unsubscribed is True  # type: ignore[union-attr]
    assert store.leads.by_id(bob).bounced is True  # type: ignore[union-attr]


def test_an_event_wakes_the_leads_active_enrolments(store: Store) -> None:
    lead_id = add_lead(store, "ada@example.com")
    later = START + timedelta(days=3)
    with store.transaction() as conn:
        store.enrolments.enrol(
            conn,
            [
                {
                    "lead_id": lead_id,
                    "scenario_id": "welcome",
                    "scenario_version": "v1",
                    "state": "wait",
                    "status": EnrolmentStatus.ACTIVE,
                    "seq": 0,
                    "entered_at": START,
                    "due_at": later,
                    "enrolled_at": START,
                }
            ],
        )
        store.events.record(conn, lead_id, "click", START + timedelta(hours=1))
    [enrolment] = store.enrolments.of_lead(lead_id)
    assert enrolment.due_at == START + timedelta(hours=1)


def test_settings_are_written_over(store: Store) -> None:
    with store.transaction() as conn:
        assert store.settings.get(conn, "mark") is None
        store.settings.put(conn, "mark", "1")
        store.settings.put(conn, "mark", "2")
    with store.reading() as conn:
        assert store.settings.get(conn, "mark") == "2"


def test_a_new_scenario_version_moves_enrolments_by_its_migration_map(store: Store) -> None:
    lead_id = add_lead(store, "ada@example.com")
    store.versions.register("welcome", "v1", "welcome.yaml", "source v1", {})
    with store.transaction() as conn:
        store.enrolments.enrol(
            conn,
            [
                {
                    "lead_id": lead_id,
                    "scenario_id": "welcome",
                    "scenario_version": "v1",
                    "state": "old_step",
                    "status": EnrolmentStatus.ACTIVE,
                    "seq": 0,
                    "entered_at": START,
                    "due_at": START + timedelta(days=2),
                    "enrolled_at": START,
                }
            ],
        )
    moved = store.versions.register("welcome", "v2", "welcome.yaml", "source v2", {"old_step": "new_step"})
    [enrolment] = store.enrolments.of_lead(lead_id)
    assert moved == 1
    assert (enrolment.scenario_version, enrolment.state, enrolment.seq) == ("v2", "new_step", 1)
    assert store.versions.source("welcome", "v1") == ("welcome.yaml", "source v1")


# -- the leased queue, for both outboxes ----------------------------------------------------


def claim_sends(store: Store, worker: str, limit: int = 10, lease: timedelta = LEASE) -> list[int]:
    return [row.id for row in store.sends.claim(worker, START, limit, lease)]


def claim_notifications(store: Store, worker: str, limit: int = 10, lease: timedelta = LEASE) -> list[int]:
    return [row.id for row in store.notifications.claim(worker, START, limit, lease)]


QUEUES = {
    "sends": (queue_sends, claim_sends, lambda s: s.sends),
    "notifications": (
        lambda s, lead, n: queue_notifications(s, lead, n),
        claim_notifications,
        lambda s: s.notifications,
    ),
}


@pytest.fixture(params=sorted(QUEUES))
def queue(request: pytest.FixtureRequest) -> tuple[Callable[..., Any], Callable[..., list[int]], Callable[..., Any]]:
    return QUEUES[request.param]


def rows_of(store: Store, which: Any) -> dict[int, tuple[str, int, str | None]]:
    """id → (status, attempts, lease owner) of every row of a queue."""
    table = which.queue.table
    with store.reading() as conn:
        rows = conn.execute(table.select()).all()
    return {r.id: (r.status, r.attempts, r.lease_owner) for r in rows}


def test_a_claim_leases_due_rows_to_one_worker_and_counts_an_attempt(store: Store, queue: Any) -> None:
    add, claim, part = queue
    lead_id = add_lead(store, "ada@example.com")
    add(store, lead_id, 3)
    first = claim(store, "w1", limit=2)
    second = claim(store, "w2")
    third = claim(store, "w3")
    assert len(first) == 2 and len(second) == 1 and third == []
    assert not set(first) & set(second)
    rows = rows_of(store, part(store))
    assert {rows[i] for i in first} == {(SendStatus.SENDING, 1, "w1")}
    assert rows[second[0]] == (SendStatus.SENDING, 1, "w2")


def test_rows_not_yet_due_are_not_claimed(store: Store) -> None:
    lead_id = add_lead(store, "ada@example.com")
    queue_sends(store, lead_id, 1, at=START + timedelta(minutes=1))
    assert claim_sends(store, "w1") == []


def test_a_row_whose_lease_ran_out_goes_to_the_next_worker_and_only_its_outcome_counts(
    store: Store, queue: Any
) -> None:
    add, claim, part = queue
    lead_id = add_lead(store, "ada@example.com")
    add(store, lead_id, 1)
    [row_id] = claim(store, "w1", lease=EXPIRED)
    assert claim(store, "w2") == [row_id]  # w1's lease has run out by the database's clock
    with store.transaction() as conn:
        lost = part(store).queue.finish(conn, "w1", row_id, SendStatus.SENT, None)
        kept = part(store).queue.finish(conn, "w2", row_id, SendStatus.FAILED, "550")
    assert (lost, kept) == (False, True)
    assert rows_of(store, part(store))[row_id] == (SendStatus.FAILED, 2, None)


def test_a_live_lease_is_not_taken_over(store: Store, queue: Any) -> None:
    add, claim, part = queue
    lead_id = add_lead(store, "ada@example.com")
    add(store, lead_id, 1)
    [row_id] = claim(store, "w1")
    assert claim(store, "w2") == []
    with store.transaction() as conn:
        assert part(store).queue.finish(conn, "w2", row_id, SendStatus.SENT, None) is False
    assert rows_of(store, part(store))[row_id] == (SendStatus.SENDING, 1, "w1")


def test_released_rows_go_back_without_counting_an_attempt(store: Store, queue: Any) -> None:
    add, claim, part = queue
    lead_id = add_lead(store, "ada@example.com")
    add(store, lead_id, 2)
    claimed = claim(store, "w1")
    part(store).release("w2", claimed)  # not w2's: nothing happens
    assert {v[2] for v in rows_of(store, part(store)).values()} == {"w1"}
    part(store).release("w1", claimed)
    assert set(rows_of(store, part(store)).values()) == {(SendStatus.PENDING, 0, None)}
    assert sorted(claim(store, "w2")) == sorted(claimed)


def test_a_failed_send_waits_for_its_retry_time(store: Store) -> None:
    lead_id = add_lead(store, "ada@example.com")
    [send_id] = queue_sends(store, lead_id, 1)
    claim_sends(store, "w1")
    store.sends.finish("w1", send_id, SendStatus.PENDING, START, error="421", retry_at=START + timedelta(minutes=2))
    assert claim_sends(store, "w1") == []
    assert [r.id for r in store.sends.claim("w1", START + timedelta(minutes=2), 10, LEASE)] == [send_id]


def test_a_sent_mark_records_the_message_id_and_the_worker_that_sent_it(store: Store) -> None:
    lead_id = add_lead(store, "ada@example.com")
    [send_id] = queue_sends(store, lead_id, 1)
    claim_sends(store, "w1")

    async def mark() -> None:
        async with store.sends.marks("w1") as marks:
            await marks.commit([(send_id, "<m1@example.com>")], START)

    asyncio.run(mark())
    [row] = store.sends.of_lead(lead_id)
    assert (row.status, row.message_id, row.lease_owner, row.lease_until) == (
        SendStatus.SENT,
        "<m1@example.com>",
        "w1",
        None,
    )


def test_a_notifier_past_half_its_lease_starts_no_delivery_and_gives_its_rows_back(store: Store) -> None:
    """Deliveries started late could outlive the lease and be made twice; none start."""
    lead_id = add_lead(store, "ada@example.com")
    queue_notifications(store, lead_id, 3)
    # A lease of no length is past its half at once.
    settings = Settings(lease_seconds=0, smtp_timeout=0, smtp_port=1)
    notifier = Notifier(store, settings, store.clock, SmtpPool(settings), worker="w1")
    stats = asyncio.run(notifier.drain_once())
    assert (stats.sent, stats.retried, stats.failed) == (0, 0, 0)
    assert set(rows_of(store, store.notifications).values()) == {(NotificationStatus.PENDING, 0, None)}


def test_daemons_registering_the_same_new_version_at_once_record_it_once(store: Store) -> None:
    """Several daemons start with the same scenario files: none fails on the others' row."""
    store.versions.register("welcome", "v1", "welcome.yaml", "source v1", {})
    store.versions.register("welcome", "v1", "welcome.yaml", "source v1", {})
    other = Store(store.engine, store.clock)
    with ThreadPoolExecutor(4) as pool:
        moved = list(pool.map(lambda _: other.versions.register("welcome", "v2", "w.yaml", "v2", {}), range(4)))
    assert moved == [0, 0, 0, 0]
    assert store.versions.source("welcome", "v2") == ("w.yaml", "v2")


def test_a_batch_of_events_stores_each_once_wakes_enrolments_at_the_earliest_and_flags_unsubscribes(
    store: Store,
) -> None:
    ada, bob = add_lead(store, "ada@example.com"), add_lead(store, "bob@example.com")
    later = START + timedelta(days=3)
    with store.transaction() as conn:
        store.enrolments.enrol(
            conn,
            [
                {
                    "lead_id": lead_id,
                    "scenario_id": "welcome",
                    "scenario_version": "v1",
                    "state": "wait",
                    "status": EnrolmentStatus.ACTIVE,
                    "seq": 0,
                    "entered_at": START,
                    "due_at": later,
                    "enrolled_at": START,
                }
                for lead_id in (ada, bob)
            ],
        )
        stored = store.events.record_many(
            conn,
            [
                (ada, "click", START + timedelta(hours=2), {"url": "https://a.example"}, "e-1"),
                (ada, "open", START + timedelta(hours=1), {}, "e-2"),
                (ada, "open", START + timedelta(hours=1), {}, "e-2"),  # the same event again
                (bob, "unsubscribe", START + timedelta(days=4), {}, None),  # after bob's due time
            ],
        )
    assert sorted(stored) == [(ada, "click"), (ada, "open"), (bob, "unsubscribe")]
    with store.transaction() as conn:
        assert store.events.record_many(conn, [(ada, "click", START, {}, "e-1")]) == []
    due = {e.lead_id: e.due_at for lead_id in (ada, bob) for e in store.enrolments.of_lead(lead_id)}
    assert due == {ada: START + timedelta(hours=1), bob: later}
    assert store.leads.by_id(bob).unsubscribed is True  # type: ignore[union-attr]
    assert store.leads.by_id(ada).unsubscribed is False  # type: ignore[union-attr]
