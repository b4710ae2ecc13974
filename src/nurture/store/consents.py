"""Consent records, person exports and erasures: the store's side of data rights.

Consent statements are only ever added. An erasure follows the plan in
`nurture.consent.erasure`, which classifies every column of every table; a table the plan
does not know stops the erasure before anything is changed, rather than leave data behind.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, Text, cast, delete, func, insert, or_, select, text, update
from sqlalchemy import column as column_clause
from sqlalchemy import table as table_clause

from nurture.consent.erasure import PLAN_BY_TABLE, Column, Identity, redact, unclassified
from nurture.consent.model import ConsentRecord, ConsentSource, ConsentStatus, current
from nurture.errors import NurtureError
from nurture.store.base import Connection, Part, among, insert_ignore
from nurture.store.tables import (
    ACTIVITIES,
    AUDIT_LOG,
    CONSENT_RECORDS,
    ENROLMENTS,
    ERASURE_LOG,
    EVENTS,
    LEADS,
    LIFECYCLE_CHANGES,
    NOTIFICATIONS,
    SCORE_HISTORY,
    SENDS,
    SUPPRESSIONS,
)
from nurture.vocabulary import SendKind, SendStatus

# PostgreSQL only (migration 0014): the external ids of events, claimed before an event is stored.
_EVENT_KEY = table_clause("event_key", column_clause("external_id"))


class ErasureRefused(NurtureError):
    """The erasure plan does not cover the schema: nothing was erased."""


@dataclass(frozen=True)
class Erasure:
    """What an erasure did: rows deleted and rows redacted, per table; the log entry's id."""

    log_id: int
    found: bool  # whether a lead with the address existed
    deleted: dict[str, int]
    redacted: dict[str, int]


def _record(row: Any) -> ConsentRecord:
    return ConsentRecord(
        row.topic, ConsentStatus(row.status), ConsentSource(row.source), row.at, row.wording, row.ip,
        row.user_agent, row.detail,
    )  # fmt: skip


class Consents(Part):
    def add(self, conn: Connection, lead_id: int, records: Iterable[ConsentRecord]) -> int:
        rows = [
            {
                "lead_id": lead_id,
                "topic": r.topic,
                "status": r.status.value,
                "source": r.source.value,
                "at": r.at,
                "wording": r.wording,
                "ip": r.ip,
                "user_agent": (r.user_agent or "")[:500] or None,
                "detail": (r.detail or "")[:300] or None,
            }
            for r in records
        ]
        if rows:
            conn.execute(insert(CONSENT_RECORDS), rows)
        return len(rows)

    def for_leads(self, conn: Connection, lead_ids: Sequence[int]) -> dict[int, list[ConsentRecord]]:
        """Every statement of these leads, oldest first, by lead id."""
        found: dict[int, list[ConsentRecord]] = defaultdict(list)
        if not lead_ids:
            return found
        rows = conn.execute(
            select(CONSENT_RECORDS)
            .where(among(self.postgres, CONSENT_RECORDS.c.lead_id, lead_ids))
            .order_by(CONSENT_RECORDS.c.at, CONSENT_RECORDS.c.id)
        )
        for row in rows:
            found[row.lead_id].append(_record(row))
        return found

    def of_lead(self, lead_id: int) -> list[ConsentRecord]:
        with self.store.reading() as conn:
            return self.for_leads(conn, [lead_id]).get(lead_id, [])

    def suppressed_entries(self, conn: Connection, entries: Sequence[str]) -> set[str]:
        """Which of these suppression entries (keyed hashes of erased addresses) exist."""
        if not entries:
            return set()
        rows = conn.execute(select(SUPPRESSIONS.c.email).where(among(self.postgres, SUPPRESSIONS.c.email, entries)))
        return {row.email for row in rows}

    # -- access requests ---------------------------------------------------------------------

    def person(self, email: str) -> dict[str, Any] | None:
        """Every row held about the person with this address, by table; None if unknown."""
        address = email.strip().lower()
        with self.store.reading() as conn:
            lead = conn.execute(select(LEADS).where(LEADS.c.email == address)).first()
            if lead is None:
                return None

            def rows(table: Table, *order: Any) -> list[dict[str, Any]]:
                result = conn.execute(select(table).where(table.c.lead_id == lead.id).order_by(*order))
                return [dict(r._mapping) for r in result]

            return {
                "lead": dict(lead._mapping),
                "consent": rows(CONSENT_RECORDS, CONSENT_RECORDS.c.at, CONSENT_RECORDS.c.id),
                "suppressed": [
                    dict(r._mapping) for r in conn.execute(select(SUPPRESSIONS).where(SUPPRESSIONS.c.email == address))
                ],
                "enrolments": rows(ENROLMENTS, ENROLMENTS.c.enrolled_at, ENROLMENTS.c.id),
                "sends": rows(SENDS, SENDS.c.created_at, SENDS.c.id),
                "events": rows(EVENTS, EVENTS.c.at, EVENTS.c.id),
                "scores": rows(SCORE_HISTORY, SCORE_HISTORY.c.at, SCORE_HISTORY.c.id),
                "lifecycle": rows(LIFECYCLE_CHANGES, LIFECYCLE_CHANGES.c.at, LIFECYCLE_CHANGES.c.id),
                "activities": rows(ACTIVITIES, ACTIVITIES.c.at, ACTIVITIES.c.id),
                "notifications": rows(NOTIFICATIONS, NOTIFICATIONS.c.created_at, NOTIFICATIONS.c.id),
                "audit": rows(AUDIT_LOG, AUDIT_LOG.c.at, AUDIT_LOG.c.id),
            }

    # -- erasure -----------------------------------------------------------------------------

    def erase(self, email: str, suppression_entry: str, actor: str, now: datetime) -> Erasure:
        """Remove the person with this address from every table in one transaction (see
        `nurture.consent.erasure`), keep `suppression_entry` (the address's keyed hash) on
        the suppression list, and log the erasure without personal data."""
        tables = list(LEADS.metadata.sorted_tables)
        missing = unclassified({t.name: [c.name for c in t.columns] for t in tables})
        if missing:
            raise ErasureRefused("the erasure plan does not classify " + ", ".join(missing) + ": nothing was erased")
        address = email.strip().lower()
        deleted: dict[str, int] = {}
        redacted: dict[str, int] = {}
        with self.store.transaction() as conn:
            lead = conn.execute(
                select(LEADS.c.id, LEADS.c.first_name, LEADS.c.last_name).where(LEADS.c.email == address)
            ).first()
            identity = Identity(address, lead.first_name if lead else None, lead.last_name if lead else None)
            if self.postgres:
                self._erase_event_keys(conn, lead.id if lead else None, identity)
            for table in reversed(tables):  # rows that refer to others first
                plan = PLAN_BY_TABLE[table.name]
                if plan.belongs_by is None:
                    continue
                column = table.c[plan.belongs_by]
                if plan.by_address:
                    count = conn.execute(delete(table).where(func.lower(column) == address)).rowcount
                elif lead is not None:
                    count = conn.execute(delete(table).where(column == lead.id)).rowcount
                else:
                    count = 0
                if count:
                    deleted[table.name] = count
            for table in tables:
                count = self._redact(conn, table, identity)
                if count:
                    redacted[table.name] = count
            conn.execute(
                insert_ignore(self.postgres, SUPPRESSIONS).values(
                    email=suppression_entry, reason="erased", detail=None, created_at=now
                )
            )
            log_id = conn.execute(
                insert(ERASURE_LOG)
                .values(at=now, actor=actor, rows={"deleted": deleted, "redacted": redacted})
                .returning(ERASURE_LOG.c.id)
            ).scalar_one()
        return Erasure(int(log_id), lead is not None, deleted, redacted)

    def _erase_event_keys(self, conn: Connection, lead_id: int | None, identity: Identity) -> None:
        """PostgreSQL: the external ids of the person's events, which `event_key` holds beside
        the events (see `store/events.py`), go with them; an id that mentions the person (of
        an event pruned, or of someone else's event) is redacted as the event's own copy is.
        Ids of the person's pruned events that do not mention them stay: nothing ties them
        to the person any more, and they keep late deliveries of those events out."""
        if lead_id is not None:
            conn.execute(
                text(
                    "DELETE FROM event_key WHERE external_id IN"
                    " (SELECT external_id FROM event WHERE lead_id = :lead AND external_id IS NOT NULL)"
                ),
                {"lead": lead_id},
            )
        key_of = func.lower(_EVENT_KEY.c.external_id)
        found = or_(*(key_of.contains(needle.lower(), autoescape=True) for needle in identity.needles()))
        keys = conn.execute(select(_EVENT_KEY.c.external_id).where(found)).scalars().all()
        for key in keys:
            conn.execute(text("DELETE FROM event_key WHERE external_id = :key"), {"key": key})
            conn.execute(
                text("INSERT INTO event_key (external_id) VALUES (:key) ON CONFLICT DO NOTHING"),
                {"key": redact(key, identity)},
            )

    def _redact(self, conn: Connection, table: Table, identity: Identity) -> int:
        plan = PLAN_BY_TABLE[table.name]
        columns = [table.c[name] for name in plan.of(Column.MENTIONS)]
        if not columns:
            return 0
        needles: set[str] = set()
        for needle in identity.needles():
            needles |= {needle.lower(), json.dumps(needle.lower())[1:-1]}  # as written, and as escaped in JSON
        found = or_(
            *(
                func.lower(cast(column, Text)).contains(needle, autoescape=True)
                for column in columns
                for needle in needles
            )
        )
        key = list(table.primary_key.columns)
        changed = 0
        for row in conn.execute(select(*key, *columns).where(found)).fetchall():
            values = {c.name: redact(row._mapping[c.name], identity) for c in columns}
            values = {name: value for name, value in values.items() if value != row._mapping[name]}
            if not values:
                continue
            conn.execute(update(table).where(*(k == row._mapping[k.name] for k in key)).values(**values))
            changed += 1
        return changed

    def erasures(self) -> list[Mapping[str, Any]]:
        with self.store.reading() as conn:
            return [dict(r._mapping) for r in conn.execute(select(ERASURE_LOG).order_by(ERASURE_LOG.c.id))]

    # -- the preference centre ---------------------------------------------------------------

    def scenario_of_send(self, send_id: int, lead_id: int) -> str | None:
        """The scenario of a lead's email (whose topic a one-click unsubscribe leaves)."""
        with self.store.reading() as conn:
            return conn.execute(
                select(SENDS.c.scenario_id).where(SENDS.c.id == send_id, SENDS.c.lead_id == lead_id)
            ).scalar()

    def leave_topic(self, lead_id: int, record: ConsentRecord) -> bool:
        """Withdraw consent to one topic, unless it is withdrawn already (a mail client may
        send its one-click POST more than once); returns whether anything changed."""
        with self.store.transaction() as conn:
            in_force = current(self.for_leads(conn, [lead_id]).get(lead_id, []), record.topic)
            if in_force is not None and in_force.status is ConsentStatus.WITHDRAWN:
                return False
            self.add(conn, lead_id, [record])
            return True

    def leave_all(self, lead_id: int, email: str, record: ConsentRecord, send_id: int | None = None) -> None:
        """Withdraw from every topic: the record, the suppression list, and the unsubscribe
        event (which ends enrolments that exit on `unsubscribed`; with the email the link came
        from, so reports count it on that email's step); idempotent."""
        props: dict[str, Any] = {"via": record.source.value, "detail": record.detail}
        if send_id is not None:
            props["send"] = send_id
        with self.store.transaction() as conn:
            self.add(conn, lead_id, [record])
            self.store.leads.suppress(conn, email, "unsubscribe", "preference centre")
            key = f"unsubscribe:{lead_id}"
            self.store.events.record(conn, lead_id, "unsubscribe", record.at, props, external_id=key)

    def choose(self, lead_id: int, email: str, records: Sequence[ConsentRecord], resubscribe: bool) -> None:
        """Topics chosen again on the preference page. Choosing any topic after leaving
        everything lifts the person's own unsubscribe (never a bounce, complaint or erasure)."""
        with self.store.transaction() as conn:
            self.add(conn, lead_id, records)
            self._touch(conn, lead_id)
            if resubscribe:
                address = email.strip().lower()
                conn.execute(
                    delete(SUPPRESSIONS).where(SUPPRESSIONS.c.email == address, SUPPRESSIONS.c.reason == "unsubscribe")
                )
                still = conn.execute(select(SUPPRESSIONS.c.reason).where(SUPPRESSIONS.c.email == address)).first()
                if still is None:
                    conn.execute(update(LEADS).where(LEADS.c.id == lead_id).values(unsubscribed=False))

    def confirm(self, lead_id: int, record: ConsentRecord) -> bool:
        """Record a double opt-in confirmation unless the topic's statement in force is one."""
        with self.store.transaction() as conn:
            now_in_force = current(self.for_leads(conn, [lead_id]).get(lead_id, []), record.topic)
            if now_in_force is not None and now_in_force.confirmed and now_in_force.topic == record.topic:
                return False
            self.add(conn, lead_id, [record])
            self._touch(conn, lead_id)
            return True

    def _touch(self, conn: Connection, lead_id: int) -> None:
        """Mark the lead changed, so the enrol job's next run (which reads the leads changed
        since its last one) looks at it again: consent given on a page may open scenarios
        that need it, now rather than at the next daily full sweep."""
        conn.execute(update(LEADS).where(LEADS.c.id == lead_id).values(updated_at=self.store.clock.now()))

    def request_confirmation(self, conn: Connection, lead_id: int, topic: str, sender: str, now: datetime) -> None:
        """Queue the double opt-in email for a pending statement (one per statement: the key
        counts the lead's pending statements about the topic)."""
        pending = conn.execute(
            select(func.count())
            .select_from(CONSENT_RECORDS)
            .where(
                CONSENT_RECORDS.c.lead_id == lead_id,
                CONSENT_RECORDS.c.topic == topic,
                CONSENT_RECORDS.c.status == ConsentStatus.PENDING.value,
            )
        ).scalar_one()
        conn.execute(
            insert_ignore(self.postgres, SENDS).values(
                idempotency_key=f"confirm:{lead_id}:{topic}:{pending}",
                kind=SendKind.CONFIRMATION,
                lead_id=lead_id,
                scenario_id="",
                scenario_version="",
                step=topic,
                template="",
                subject="",
                sender=sender,
                status=SendStatus.PENDING,
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
        )
