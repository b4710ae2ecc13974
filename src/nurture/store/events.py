"""Behaviour leads showed: recorded once per external id; recording one wakes the lead's enrolments.

`received_at` is the database's clock (not the recording process's): the qualify job's
watermark is read from the same clock, so processes whose clocks drift cannot hide an event
from it.

On PostgreSQL the event table is partitioned by month (see `store/retention.py`), and a
partitioned table cannot hold a unique index without its partition key: external ids are
claimed in `event_key` first, in the same transaction, and only events whose id was new
are inserted. A concurrent delivery of the same id waits on the key's index entry until
the first commits, then finds it taken: exactly one is stored, as with the unique column
SQLite keeps.

An event dated before the retention's prune mark is refused (not stored, no effect): its
month is rolled into daily counts that are final, its external id forgotten with it, and
it is most likely a redelivery of an event those counts already hold (`horizon`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import bindparam, insert, select, text, update

from nurture.scenario.expr import EventRecord
from nurture.scoring.bots import network_part
from nurture.store.base import Connection, Part, insert_ignore
from nurture.store.db import json_loads
from nurture.store.queue import database_now
from nurture.store.retention import month_start
from nurture.store.tables import ENROLMENTS, EVENTS, LEADS
from nurture.vocabulary import EnrolmentStatus, EventType

# Wake the active enrolments of many leads, each due no later than its lead's earliest new
# event: one statement with two array parameters, whatever the batch's size.
_WAKE_PG = text(
    "UPDATE enrollment AS e SET due_at = w.at"
    " FROM unnest(CAST(:ids AS integer[]), CAST(:ats AS timestamptz[])) AS w(lead_id, at)"
    " WHERE e.lead_id = w.lead_id AND e.status = 'active' AND e.due_at > w.at"
)

# Claim external ids; returns those that were new.
_CLAIM_PG = text(
    "INSERT INTO event_key (external_id) SELECT unnest(CAST(:ids AS varchar[]))"
    " ON CONFLICT DO NOTHING RETURNING external_id"
)

_CLOCK_MARGIN = timedelta(days=1)

_WRITER_LOCK_PG = text("LOCK TABLE ONLY event IN ROW EXCLUSIVE MODE")

# Leads' events since a time, oldest first; one array parameter, so one statement text
# whatever the number of leads (which the driver can prepare once it has run it a few times).
# The properties and the id come as text: the properties of all the rows are decoded by one
# call of the JSON decoder (as one array), not by a call of the driver's JSON loader each.
_FOR_LEADS_PG = (
    "SELECT lead_id, type, at, props::text, id::text FROM event WHERE lead_id = ANY(%s) AND at >= %s ORDER BY at"
)


def _json_each(texts: list[str | None]) -> list[Any]:
    """Each JSON text decoded (None for None), by one call of the decoder over them all."""
    try:
        return orjson.loads("[" + ",".join([t or "null" for t in texts]) + "]")  # type: ignore[no-any-return]
    except orjson.JSONDecodeError:  # what only the standard module reads (see `json_loads`)
        return [None if t is None else json_loads(t) for t in texts]


# Events that flag their lead as unreachable.
_FLAGS = {EventType.UNSUBSCRIBE.value: {"unsubscribed": True}, EventType.BOUNCE.value: {"bounced": True}}


class Events(Part):
    def record(
        self,
        conn: Connection,
        lead_id: int,
        type_: str,
        at: datetime,
        props: Mapping[str, Any] | None = None,
        external_id: str | None = None,
    ) -> bool:
        """Store an event (ignored when its external id was seen, or when it is dated before
        the `horizon`) and wake the lead's enrolments."""
        if not self.recent(at):
            horizon = self.horizon(conn)
            if horizon is not None and at < horizon:
                return False
        values = {
            "lead_id": lead_id,
            "type": str(type_),
            "at": at,
            "props": dict(props or {}),
            "external_id": external_id,
            "received_at": database_now(self.postgres),
        }
        if self.postgres:
            if external_id is not None and not self._claim(conn, [external_id]):
                return False
            conn.execute(insert(EVENTS).values(**values))
        # RETURNING tells a conflict apart on SQLite (psycopg reports no rowcount here).
        elif conn.execute(insert_ignore(False, EVENTS).values(**values).returning(EVENTS.c.id)).first() is None:
            return False
        flags = _FLAGS.get(str(type_))
        if flags:
            conn.execute(update(LEADS).where(LEADS.c.id == lead_id).values(updated_at=self.clock.now(), **flags))
        conn.execute(
            update(ENROLMENTS)
            .where(
                ENROLMENTS.c.lead_id == lead_id,
                ENROLMENTS.c.status == EnrolmentStatus.ACTIVE,
                ENROLMENTS.c.due_at > at,
            )
            .values(due_at=at)
        )
        return True

    def record_many(
        self, conn: Connection, rows: Sequence[tuple[int, str, datetime, Mapping[str, Any], str | None]]
    ) -> list[tuple[int, str]]:
        """Store events (lead id, type, at, props, external id) in one statement, skipping those
        whose external id was seen, and wake their leads' enrolments; returns (lead id, type)
        of each event stored. What `record` does per event, for a batch: a few statements
        whatever its size, instead of two or three per event. Events dated before the
        `horizon` are skipped."""
        if not all(self.recent(row[2]) for row in rows):
            horizon = self.horizon(conn)
            if horizon is not None:
                rows = [row for row in rows if row[2] >= horizon]
        if self.postgres:
            rows = self._first_of_new_ids(conn, rows)
        if not rows:
            return []
        statement = (
            (insert(EVENTS) if self.postgres else insert_ignore(False, EVENTS))
            .values(received_at=database_now(self.postgres))
            .returning(EVENTS.c.lead_id, EVENTS.c.type, EVENTS.c.at)
        )
        params = [
            {"lead_id": lead_id, "type": str(type_), "at": at, "props": dict(props or {}), "external_id": external_id}
            for lead_id, type_, at, props, external_id in rows
        ]
        stored = [(r.lead_id, r.type, r.at) for r in conn.execute(statement, params)]
        earliest: dict[int, datetime] = {}
        flags: dict[str, set[int]] = defaultdict(set)
        for lead_id, type_, at in stored:
            if lead_id not in earliest or at < earliest[lead_id]:
                earliest[lead_id] = at
            for flag in _FLAGS.get(type_, {}):
                flags[flag].add(lead_id)
        now = self.clock.now()
        for flag, lead_ids in sorted(flags.items()):
            conn.execute(update(LEADS).where(LEADS.c.id.in_(sorted(lead_ids))).values(updated_at=now, **{flag: True}))
        if earliest and self.postgres:
            woken = sorted(earliest.items())
            conn.execute(_WAKE_PG, {"ids": [i for i, _ in woken], "ats": [at for _, at in woken]})
        elif earliest:
            conn.execute(
                update(ENROLMENTS)
                .where(
                    ENROLMENTS.c.lead_id == bindparam("wake_lead"),
                    ENROLMENTS.c.status == EnrolmentStatus.ACTIVE,
                    ENROLMENTS.c.due_at > bindparam("wake_at"),
                )
                .values(due_at=bindparam("wake_at")),
                [{"wake_lead": lead_id, "wake_at": at} for lead_id, at in sorted(earliest.items())],
            )
        return [(lead_id, type_) for lead_id, type_, _at in stored]

    def recent(self, at: datetime) -> bool:
        """True when no prune can have reached `at`, so it needs no `horizon` (no read, no lock):
        a prune drops whole months before its cutoff, never the month it runs in, so the mark
        is at most the start of the current month; a day's margin covers the clocks of other
        processes."""
        return at >= month_start(self.clock.now() + _CLOCK_MARGIN)

    def horizon(self, conn: Connection) -> datetime | None:
        """Events dated before this moment are refused: their months were pruned into daily
        counts, which are final. None: nothing was pruned.

        Read in the writing transaction, before anything is written. On SQLite that
        transaction holds the write lock, so no prune commits before it ends. On PostgreSQL
        the writer first takes the lock every insert into `event` takes, which a prune's
        month (holding the table exclusively while it drops the month and moves the mark)
        waits for: the mark read here stays the mark until this transaction commits."""
        if self.postgres:
            conn.execute(_WRITER_LOCK_PG)
        return self.store.retention.pruned_before(conn)

    def _claim(self, conn: Connection, external_ids: Sequence[str]) -> set[str]:
        """PostgreSQL: take these external ids in `event_key`; returns those nobody had."""
        return set(conn.execute(_CLAIM_PG, {"ids": list(external_ids)}).scalars())

    def _first_of_new_ids(
        self, conn: Connection, rows: Sequence[tuple[int, str, datetime, Mapping[str, Any], str | None]]
    ) -> list[tuple[int, str, datetime, Mapping[str, Any], str | None]]:
        """The rows to store: those without an external id, and the first row of each new id."""
        wanted = sorted({row[4] for row in rows if row[4] is not None})
        new = self._claim(conn, wanted) if wanted else set()
        kept = []
        for row in rows:
            if row[4] is None:
                kept.append(row)
            elif row[4] in new:
                new.discard(row[4])
                kept.append(row)
        return kept

    def for_leads(self, conn: Connection, lead_ids: Sequence[int], since: datetime) -> dict[int, list[EventRecord]]:
        """Each lead's events at or after `since`, oldest first."""
        found: dict[int, list[EventRecord]] = defaultdict(list)
        if not lead_ids:
            return found
        if self.postgres:
            # The driver's rows as they come: its times are already UTC (every session speaks
            # UTC, see `nurture.store.db`) and its JSON decoder is the store's, so the rows need
            # no second pass through the column types (the qualify job reads millions).
            cursor = conn.connection.cursor()
            try:
                cursor.execute(_FOR_LEADS_PG, (list(lead_ids), since))
                rows = cursor.fetchall()
            finally:
                cursor.close()
            for (lead_id, type_, at, _, event_id), props in zip(rows, _json_each([r[3] for r in rows]), strict=True):
                if at.tzinfo is not UTC:  # a session that is not UTC after all
                    at = at.astimezone(UTC)
                found[lead_id].append(EventRecord(type_, at, props or {}, event_id))
            return found
        query = select(EVENTS.c.lead_id, EVENTS.c.type, EVENTS.c.at, EVENTS.c.props, EVENTS.c.id)
        query = query.where(EVENTS.c.lead_id.in_(lead_ids), EVENTS.c.at >= since)
        # One fetch of the whole result: the driver's row-by-row fetch costs more than the rows.
        rows = conn.execute(query.order_by(EVENTS.c.at)).all()
        for lead_id, type_, at, props, event_id in rows:
            found[lead_id].append(EventRecord(type_, at, props or {}, str(event_id)))
        return found

    def forget_addresses(self, before: datetime, batch: int = 1000) -> int:
        """Keep only the network part (/24, /48) of the client addresses of tracking events
        that happened before `before` (product time, like the events' own times); returns how
        many were shortened. Resumes where it stopped."""
        mark_key = "tracking:addresses_until"
        with self.store.reading() as conn:
            mark = self.store.settings.get(conn, mark_key)
        start = datetime.fromisoformat(mark) if mark else None
        tracked = (EventType.OPEN.value, EventType.CLICK.value, EventType.HONEYPOT.value)
        shortened = 0
        after_id = 0
        while True:
            with self.store.transaction() as conn:
                query = (
                    select(EVENTS.c.id, EVENTS.c.props)
                    .where(EVENTS.c.type.in_(tracked), EVENTS.c.at < before, EVENTS.c.id > after_id)
                    .order_by(EVENTS.c.id)
                    .limit(batch)
                )
                if start is not None:
                    query = query.where(EVENTS.c.at >= start)
                rows = conn.execute(query).all()
                for row in rows:
                    props = dict(row.props or {})
                    address = props.get("ip")
                    if isinstance(address, str) and address and network_part(address) != address:
                        props["ip"] = network_part(address)
                        conn.execute(update(EVENTS).where(EVENTS.c.id == row.id).values(props=props))
                        shortened += 1
            if len(rows) < batch:
                break
            after_id = rows[-1].id
        with self.store.transaction() as conn:
            self.store.settings.put(conn, mark_key, before.isoformat())
        return shortened
