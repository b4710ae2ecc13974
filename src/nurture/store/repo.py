"""The repository: every read and write the daemon, the CLI and the API make.

Hot paths (claiming due enrolments, applying a batch of step results, claiming and
marking sends) use SQLAlchemy Core on the SQLModel tables; they are written so a
tick costs O(due rows) and so that several daemons can share one PostgreSQL database.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Integer,
    String,
    bindparam,
    cast,
    column,
    func,
    insert,
    or_,
    select,
    update,
    values,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Row

from nurture.clock import Clock
from nurture.leadfields import STANDARD_FIELDS
from nurture.runtime.engine import LeadView
from nurture.scenario.expr import EventRecord
from nurture.store.db import SQLITE_BUSY_TIMEOUT_MS, is_postgres
from nurture.store.tables import (
    AuditLog,
    Enrollment,
    Event,
    Lead,
    Notification,
    ScenarioVersion,
    Send,
    Setting,
    StepVisit,
    Suppression,
)
from nurture.store.types import UTCDateTime, sqlite_text

L = Lead.__table__  # type: ignore[attr-defined]
E = Enrollment.__table__  # type: ignore[attr-defined]
EV = Event.__table__  # type: ignore[attr-defined]
S = Send.__table__  # type: ignore[attr-defined]
SV = ScenarioVersion.__table__  # type: ignore[attr-defined]
SUP = Suppression.__table__  # type: ignore[attr-defined]
A = AuditLog.__table__  # type: ignore[attr-defined]
KV = Setting.__table__  # type: ignore[attr-defined]
NOTE = Notification.__table__  # type: ignore[attr-defined]
VISIT = StepVisit.__table__  # type: ignore[attr-defined]

_APPLY_CHUNK = 1000
_GUARDED_UPDATE = (
    update(E)
    .where(E.c.id == bindparam("e_id"), E.c.seq == bindparam("e_old_seq"))
    .values(
        state=bindparam("state"),
        status=bindparam("status"),
        seq=bindparam("seq"),
        entered_at=bindparam("entered_at"),
        due_at=bindparam("due_at"),
        finished_at=bindparam("finished_at"),
        exit_reason=bindparam("exit_reason"),
        lease_owner=None,
        lease_until=None,
    )
)
# Built once: the sender marks a few rows at a time, many times a second.
_MARK_SENT = (
    update(S)
    .where(S.c.id == bindparam("s_id"), S.c.lease_owner == bindparam("worker"))
    .values(
        status="sent",
        sent_at=bindparam("at"),
        message_id=bindparam("mid"),
        lease_owner=None,
        lease_until=None,
        last_error=None,
    )
)
# The same, as SQLite text for the driver (see SendMarks.now).
_MARK_SENT_SQLITE = (
    "UPDATE send SET status = 'sent', sent_at = ?, message_id = ?, lease_owner = NULL,"
    " lease_until = NULL, last_error = NULL WHERE id = ? AND lease_owner = ?"
)
# SQLite: most steps move an active enrolment on to its next wait. Its status stays and
# SQLite never leases enrolments (the write lock is the lease), so only these change.
_MOVE = (
    update(E)
    .where(E.c.id == bindparam("e_id"), E.c.seq == bindparam("e_old_seq"))
    .values(
        state=bindparam("state"),
        seq=bindparam("seq"),
        entered_at=bindparam("entered_at"),
        due_at=bindparam("due_at"),
    )
)
LEAD_COLUMNS = [c for c in STANDARD_FIELDS if c in L.c]
# What stepping a lead reads: its fields and score, not the scorer's bookkeeping times.
_STEP_LEAD = [c for c in L.c if c.name not in ("engagement_since", "scored_at", "updated_at")]


def lead_view(row: Any) -> LeadView:
    """The runtime's view of a lead row: standard columns, custom fields, score."""
    fields: dict[str, Any] = dict(row["custom"] or {})
    for name in LEAD_COLUMNS:
        fields[name] = row[name]
    fields["id"] = row["id"]
    fit, engagement = row["score_fit"] or 0, row["score_engagement"] or 0
    score = {"fit": fit, "engagement": engagement, "total": fit + engagement, "grade": row["grade"] or "D"}
    return LeadView(row["email"], fields, score)


@dataclass(slots=True)  # not frozen: made per enrolment per batch, and frozen init is slow
class Claimed:
    """An enrolment this worker holds a lease on."""

    id: int
    lead_id: int
    scenario_id: str
    scenario_version: str
    state: str
    status: str
    seq: int
    entered_at: datetime
    due_at: datetime | None


@dataclass(slots=True)  # as Claimed
class EnrollmentUpdate:
    """The new position of an enrolment plus what the step produced, applied atomically."""

    id: int
    old_seq: int
    state: str
    status: str
    seq: int
    entered_at: datetime
    due_at: datetime | None
    finished_at: datetime | None
    exit_reason: str | None
    sends: list[dict[str, Any]]
    lead_changes: dict[str, Any] | None
    audit: dict[str, Any] | None
    lead_id: int
    notifications: list[dict[str, Any]] = field(default_factory=list)
    scenario: tuple[str, str] = ("", "")  # (id, version)
    entered: Sequence[str] = ()


_CLAIMED = (
    E.c.id,
    E.c.lead_id,
    E.c.scenario_id,
    E.c.scenario_version,
    E.c.state,
    E.c.status,
    E.c.seq,
    E.c.entered_at,
    E.c.due_at,
)
# SQLite claims enrolments together with their leads: the enrolment's columns come first,
# under names of their own, so that each row also reads as its lead's row.
_CLAIM_WITH_LEAD = [*(c.label(f"enrollment_{c.name}") for c in _CLAIMED), *_STEP_LEAD]

# Per claimed enrolment: whether its scenario reads the lead's (events, recent sends).
Reads = Callable[[Claimed], tuple[bool, bool]]
StepBatch = Callable[
    [list[Claimed], dict[int, Row[Any]], dict[int, list[EventRecord]], dict[int, list[datetime]]],
    list[EnrollmentUpdate],
]


def _position_params(item: EnrollmentUpdate) -> dict[str, Any]:
    return {
        "e_id": item.id,
        "e_old_seq": item.old_seq,
        "state": item.state,
        "status": item.status,
        "seq": item.seq,
        "entered_at": item.entered_at,
        "due_at": item.due_at,
        "finished_at": item.finished_at,
        "exit_reason": item.exit_reason,
    }


def _move_params(item: EnrollmentUpdate) -> dict[str, Any]:
    return {
        "e_id": item.id,
        "e_old_seq": item.old_seq,
        "state": item.state,
        "seq": item.seq,
        "entered_at": item.entered_at,
        "due_at": item.due_at,
    }


def counts(result: Any) -> dict[Any, int]:
    """{key: count} from rows of (key, count)."""
    return {key: int(count) for key, count in result}


def _insert_ignore(engine: Engine, table: Any) -> Any:
    dialect = postgresql if is_postgres(engine) else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


class SendMarks:
    """Marks delivered sends `sent` (with their Message-ID), each call one short transaction.

    On SQLite a commit takes less time than handing the call to a thread, so the sender
    first tries `now` in its own thread, on a held driver connection that never waits for
    the write lock: when another writer holds it, `now` says so at once and the sender
    calls `wait` from a thread instead. `now` speaks to the driver directly, because at a
    few rows per commit SQLAlchemy's own work per statement costs more than SQLite's.
    On PostgreSQL every mark is a round trip: `wait` only.
    """

    def __init__(self, engine: Engine, worker: str, driver: sqlite3.Connection | None) -> None:
        self.engine = engine
        self.worker = worker
        self.driver = driver

    def _params(self, items: Sequence[tuple[int, str]], at: datetime) -> list[dict[str, Any]]:
        return [{"s_id": i, "mid": m, "worker": self.worker, "at": at} for i, m in items]

    def now(self, items: Sequence[tuple[int, str]], at: datetime) -> bool:
        """Commit without waiting; False (nothing written) if the database is busy."""
        if self.driver is None:
            return False
        sent_at = sqlite_text(at)
        try:
            self.driver.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return False
            raise
        try:
            self.driver.executemany(_MARK_SENT_SQLITE, [(sent_at, m, i, self.worker) for i, m in items])
            self.driver.execute("COMMIT")
        except BaseException:
            self.driver.execute("ROLLBACK")
            raise
        return True

    def wait(self, items: Sequence[tuple[int, str]], at: datetime) -> None:
        """Commit, waiting for the write lock like any writer (call it from a thread)."""
        with self.engine.begin() as conn:
            conn.execute(_MARK_SENT, self._params(items, at))


class Store:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self.postgres = is_postgres(engine)

    @contextmanager
    def cluster_lock(self, name: str) -> Iterator[bool]:
        """Whether this worker may run the cluster-wide job `name` now.

        PostgreSQL: a session advisory lock, held for the block, so one daemon of many runs
        it. SQLite serves one host, where the database's write lock already serialises jobs.
        """
        if not self.postgres:
            yield True
            return
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        with self.engine.connect() as conn:
            got = bool(conn.execute(select(func.pg_try_advisory_lock(key))).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(select(func.pg_advisory_unlock(key)))
                    conn.commit()

    def reading(self) -> Connection:
        """A connection for reads only: on SQLite it does not take the write lock."""
        return self.engine.connect().execution_options(read_only=True)

    # -- leads -----------------------------------------------------------------------------

    def upsert_lead(self, conn: Connection, data: Mapping[str, Any]) -> tuple[int, bool]:
        """Insert or update one lead by email; returns (id, created)."""
        now = self.clock.now()
        email = str(data["email"]).strip().lower()
        existing = conn.execute(select(L.c.id, L.c.custom, L.c.tags).where(L.c.email == email)).first()
        columns = {k: v for k, v in data.items() if k in L.c and k not in ("id", "email", "custom", "tags")}
        custom = dict(data.get("custom") or {})
        if existing is None:
            values = {
                "email": email,
                "custom": custom,
                "tags": list(data.get("tags") or []),
                "created_at": now,
                "updated_at": now,
                **columns,
            }
            lead_id = conn.execute(insert(L).values(**values).returning(L.c.id)).scalar_one()
            return int(lead_id), True
        merged_custom = {**(existing.custom or {}), **custom}
        tags = list(dict.fromkeys([*(existing.tags or []), *(data.get("tags") or [])]))
        conn.execute(
            update(L).where(L.c.id == existing.id).values(custom=merged_custom, tags=tags, updated_at=now, **columns)
        )
        return int(existing.id), False

    def lead_by_email(self, email: str) -> Row[Any] | None:
        with self.reading() as conn:
            return conn.execute(select(L).where(L.c.email == email.strip().lower())).first()

    # -- events ----------------------------------------------------------------------------

    def record_event(
        self,
        conn: Connection,
        lead_id: int,
        type_: str,
        at: datetime,
        props: Mapping[str, Any] | None = None,
        external_id: str | None = None,
    ) -> bool:
        """Store an event (ignored when its external id was seen) and wake the lead's enrolments."""
        values = {
            "lead_id": lead_id,
            "type": type_,
            "at": at,
            "props": dict(props or {}),
            "external_id": external_id,
            "received_at": self.clock.now(),
        }
        # RETURNING tells a conflict apart on both databases (psycopg reports no rowcount here).
        inserted = conn.execute(_insert_ignore(self.engine, EV).values(**values).returning(EV.c.id)).first()
        if inserted is None:
            return False
        flags = {"unsubscribe": {"unsubscribed": True}, "bounce": {"bounced": True}}.get(type_)
        if flags:
            conn.execute(update(L).where(L.c.id == lead_id).values(updated_at=self.clock.now(), **flags))
        conn.execute(update(E).where(E.c.lead_id == lead_id, E.c.status == "active", E.c.due_at > at).values(due_at=at))
        return True

    def events_for(self, conn: Connection, lead_ids: Sequence[int], since: datetime) -> dict[int, list[EventRecord]]:
        found: dict[int, list[EventRecord]] = defaultdict(list)
        if not lead_ids:
            return found
        rows = conn.execute(
            select(EV.c.lead_id, EV.c.type, EV.c.at, EV.c.props, EV.c.id)
            .where(EV.c.lead_id.in_(lead_ids), EV.c.at >= since)
            .order_by(EV.c.at)
        )
        for row in rows:
            found[row.lead_id].append(EventRecord(row.type, row.at, row.props or {}, str(row.id)))
        return found

    def recent_sends(self, conn: Connection, lead_ids: Sequence[int], since: datetime) -> dict[int, list[datetime]]:
        found: dict[int, list[datetime]] = defaultdict(list)
        if not lead_ids:
            return found
        when = func.coalesce(S.c.sent_at, S.c.created_at)
        rows = conn.execute(
            select(S.c.lead_id, when.label("at")).where(
                S.c.lead_id.in_(lead_ids),
                S.c.kind == "email",
                when >= since,
                S.c.status.in_(("pending", "sending", "sent")),
            )
        )
        for row in rows:
            found[row.lead_id].append(row.at)
        return found

    # -- suppression -----------------------------------------------------------------------

    def suppress(self, conn: Connection, email: str, reason: str, detail: str | None = None) -> None:
        email = email.strip().lower()
        conn.execute(
            _insert_ignore(self.engine, SUP).values(
                email=email, reason=reason, detail=detail, created_at=self.clock.now()
            )
        )
        flag = {"bounce": {"bounced": True}}.get(reason, {"unsubscribed": True})
        conn.execute(update(L).where(L.c.email == email).values(updated_at=self.clock.now(), **flag))

    # -- scenario versions -----------------------------------------------------------------

    def register_version(
        self, scenario_id: str, version: str, path: str, source: str, migrate: Mapping[str, str]
    ) -> int:
        """Record the current version of a scenario; move leads per its migration map.

        Returns how many enrolments were migrated.
        """
        now = self.clock.now()
        moved = 0
        with self.engine.begin() as conn:
            known = conn.execute(
                select(SV.c.version).where(SV.c.scenario_id == scenario_id, SV.c.version == version)
            ).first()
            conn.execute(update(SV).where(SV.c.scenario_id == scenario_id).values(is_current=False))
            if known is None:
                conn.execute(
                    insert(SV).values(
                        scenario_id=scenario_id,
                        version=version,
                        path=path,
                        source=source,
                        loaded_at=now,
                        is_current=True,
                    )
                )
            else:
                conn.execute(
                    update(SV).where(SV.c.scenario_id == scenario_id, SV.c.version == version).values(is_current=True)
                )
            for old_state, new_state in migrate.items():
                result = conn.execute(
                    update(E)
                    .where(
                        E.c.scenario_id == scenario_id,
                        E.c.scenario_version != version,
                        E.c.status == "active",
                        E.c.state == old_state,
                    )
                    .values(scenario_version=version, state=new_state, entered_at=now, due_at=now, seq=E.c.seq + 1)
                )
                moved += result.rowcount
            if moved:
                conn.execute(
                    insert(A).values(
                        at=now,
                        kind="migrated",
                        detail={"scenario": scenario_id, "version": version, "enrollments": moved},
                    )
                )
        return moved

    def version_source(self, scenario_id: str, version: str) -> tuple[str, str] | None:
        with self.reading() as conn:
            row = conn.execute(
                select(SV.c.path, SV.c.source).where(SV.c.scenario_id == scenario_id, SV.c.version == version)
            ).first()
        return (row.path, row.source) if row else None

    # -- enrolment -------------------------------------------------------------------------

    def get_setting(self, conn: Connection, key: str) -> str | None:
        return conn.execute(select(KV.c.value).where(KV.c.key == key)).scalar_one_or_none()

    def put_setting(self, conn: Connection, key: str, value: str) -> None:
        if conn.execute(update(KV).where(KV.c.key == key).values(value=value)).rowcount == 0:
            conn.execute(insert(KV).values(key=key, value=value))

    def enrolment_candidates(self, conn: Connection, since: datetime | None, after_id: int, limit: int) -> list[int]:
        """Ids of reachable leads after `after_id` (changed since `since`, when given)."""
        query = select(L.c.id).where(L.c.unsubscribed.is_(False), L.c.bounced.is_(False), L.c.id > after_id)
        if since is not None:
            query = query.where(L.c.updated_at >= since)
        return list(conn.execute(query.order_by(L.c.id).limit(limit)).scalars())

    def enrolment_history(
        self, conn: Connection, scenario_id: str, lead_ids: Sequence[int]
    ) -> dict[int, tuple[bool, datetime | None]]:
        """lead id → (has an active enrolment, latest finish time) for one scenario."""
        history: dict[int, tuple[bool, datetime | None]] = {}
        # Filter by lead only and check the scenario here: with both in the WHERE clause, a
        # planner without statistics may walk the (scenario, status, state) index over every
        # enrolment of the scenario, once per chunk.
        rows = conn.execute(
            select(E.c.lead_id, E.c.scenario_id, E.c.status, E.c.finished_at).where(E.c.lead_id.in_(lead_ids))
        )
        for row in rows:
            if row.scenario_id != scenario_id:
                continue
            active, last = history.get(row.lead_id, (False, None))
            finished = row.finished_at
            if finished is not None and (last is None or finished > last):
                last = finished
            history[row.lead_id] = (active or row.status == "active", last)
        return history

    def enrol(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        if not rows:
            return 0
        result = conn.execute(_insert_ignore(self.engine, E), rows)
        return max(result.rowcount, 0)

    # -- advancing -------------------------------------------------------------------------

    def lease_statement(
        self,
        table: Any,
        ready: Sequence[Any],
        order_by: Any,
        worker: str,
        now: datetime,
        limit: int,
        lease: timedelta,
        returning: Sequence[Any],
        **values: Any,
    ) -> Any:
        """UPDATE that leases up to `limit` ready rows nobody holds a live lease on.

        On PostgreSQL the candidate rows are locked with SKIP LOCKED, so concurrent workers
        take disjoint batches instead of waiting for each other.
        """
        due = (
            select(table.c.id)
            .where(*ready, or_(table.c.lease_until.is_(None), table.c.lease_until < now))
            .order_by(order_by)
            .limit(limit)
        )
        if self.postgres:
            due = due.with_for_update(skip_locked=True)
        return (
            update(table)
            .where(table.c.id.in_(due.scalar_subquery()))
            .values(lease_owner=worker, lease_until=now + lease, **values)
            .returning(*returning)
        )

    def claim_due(self, worker: str, now: datetime, limit: int, lease: timedelta) -> list[Claimed]:
        """Lease up to `limit` due enrolments."""
        statement = self.lease_statement(
            E, (E.c.status == "active", E.c.due_at <= now), E.c.due_at, worker, now, limit, lease, _CLAIMED
        )
        with self.engine.begin() as conn:
            return [Claimed(*row) for row in conn.execute(statement).all()]

    def load_context(
        self, claimed: Sequence[Claimed], reads: Reads, events_since: datetime, sends_since: datetime
    ) -> tuple[dict[int, Row[Any]], dict[int, list[EventRecord]], dict[int, list[datetime]]]:
        with self.reading() as conn:
            return self._load(conn, claimed, reads, events_since, sends_since)

    def _load(
        self, conn: Connection, claimed: Sequence[Claimed], reads: Reads, events_since: datetime, sends_since: datetime
    ) -> tuple[dict[int, Row[Any]], dict[int, list[EventRecord]], dict[int, list[datetime]]]:
        """The claimed enrolments' leads, and what `_recent` loads."""
        lead_ids = sorted({item.lead_id for item in claimed})
        leads = {row.id: row for row in conn.execute(select(*_STEP_LEAD).where(L.c.id.in_(lead_ids)))}
        return (leads, *self._recent(conn, claimed, reads, events_since, sends_since))

    def _recent(
        self, conn: Connection, claimed: Sequence[Claimed], reads: Reads, events_since: datetime, sends_since: datetime
    ) -> tuple[dict[int, list[EventRecord]], dict[int, list[datetime]]]:
        """The recent events and sends of the claimed enrolments' leads whose scenario can
        look at them (`reads` says, per enrolment)."""
        event_ids, send_ids = set(), set()
        for item in claimed:
            events, sends = reads(item)
            if events:
                event_ids.add(item.lead_id)
            if sends:
                send_ids.add(item.lead_id)
        return self.events_for(conn, sorted(event_ids), events_since), self.recent_sends(
            conn, sorted(send_ids), sends_since
        )

    def advance_due(
        self,
        worker: str,
        now: datetime,
        limit: int,
        lease: timedelta,
        events_since: datetime,
        sends_since: datetime,
        reads: Reads,
        step_batch: StepBatch,
    ) -> tuple[int, int, int]:
        """Step up to `limit` due enrolments; returns (claimed, applied, lost).

        PostgreSQL: lease the rows (SKIP LOCKED) in a short transaction, step them, then
        write results guarded by the lease, so several daemons share the work and a dead
        one's rows come back when its lease expires. SQLite: one IMMEDIATE transaction
        for the whole batch; the database's single write lock is the lease, and a crash
        rolls the batch back whole.
        """
        if self.postgres:
            claimed = self.claim_due(worker, now, limit, lease)
            if not claimed:
                return 0, 0, 0
            updates = step_batch(claimed, *self.load_context(claimed, reads, events_since, sends_since))
            applied, lost = self.apply(worker, updates)
            return len(claimed), applied, lost
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(*_CLAIM_WITH_LEAD)
                .join_from(E, L, L.c.id == E.c.lead_id)
                .where(E.c.status == "active", E.c.due_at <= now)
                .order_by(E.c.due_at)
                .limit(limit)
            ).all()
            if not rows:
                return 0, 0, 0
            claimed = [Claimed(*row[: len(_CLAIMED)]) for row in rows]
            leads = {row.id: row for row in rows}
            updates = step_batch(claimed, leads, *self._recent(conn, claimed, reads, events_since, sends_since))
            moves = [i for i in updates if i.status == "active"]
            if moves:
                conn.execute(_MOVE, [_move_params(i) for i in moves])
            if len(moves) < len(updates):
                conn.execute(_GUARDED_UPDATE, [_position_params(i) for i in updates if i.status != "active"])
            self._write_effects(conn, updates)
        return len(claimed), len(updates), 0

    def apply(self, worker: str, updates: Iterable[EnrollmentUpdate]) -> tuple[int, int]:
        """Write a batch of step results in one transaction; returns (applied, lost leases).

        Each enrolment is updated only if this worker still holds its lease at the same
        `seq` (one UPDATE ... FROM (VALUES ...) RETURNING for the whole batch); outbox rows
        and lead changes are written only for the enrolments that statement returned, and
        sends are unique by idempotency key, so a step re-run after a crash or a lost lease
        cannot queue an email twice.
        """
        items = list(updates)
        applied: set[int] = set()
        with self.engine.begin() as conn:
            for start in range(0, len(items), _APPLY_CHUNK):
                applied |= self._apply_positions(conn, worker, items[start : start + _APPLY_CHUNK])
            self._write_effects(conn, [item for item in items if item.id in applied])
        return len(applied), len(items) - len(applied)

    def _write_effects(self, conn: Connection, kept: Sequence[EnrollmentUpdate]) -> None:
        sends = [row for item in kept for row in item.sends]
        if sends:
            conn.execute(_insert_ignore(self.engine, S), sends)
        for item in kept:
            if item.lead_changes:
                self._change_lead(conn, item.lead_id, item.lead_changes)
        notes = [row for item in kept for row in item.notifications]
        if notes:
            conn.execute(_insert_ignore(self.engine, NOTE), notes)
        audits = [item.audit for item in kept if item.audit]
        if audits:
            conn.execute(insert(A), audits)
        visits = Counter((*item.scenario, step) for item in kept for step in item.entered)
        if visits:
            # Sorted, so that concurrent workers take the counter rows' locks in one order.
            rows = [
                {"scenario_id": s, "scenario_version": v, "step": step, "entered": n}
                for (s, v, step), n in sorted(visits.items())
            ]
            dialect = postgresql if self.postgres else sqlite
            upsert = dialect.insert(VISIT)
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=[VISIT.c.scenario_id, VISIT.c.scenario_version, VISIT.c.step],
                    set_={"entered": VISIT.c.entered + upsert.excluded.entered},
                ),
                rows,
            )

    def _apply_positions(self, conn: Connection, worker: str, items: Sequence[EnrollmentUpdate]) -> set[int]:
        if not items:
            return set()
        if not self.postgres:
            return self._apply_positions_sqlite(conn, worker, items)
        rows = [
            (i.id, i.old_seq, i.state, i.status, i.seq, i.entered_at, i.due_at, i.finished_at, i.exit_reason)
            for i in items
        ]
        v = values(
            column("e_id", Integer),
            column("e_old_seq", Integer),
            column("n_state", String),
            column("n_status", String),
            column("n_seq", Integer),
            column("n_entered", UTCDateTime()),
            column("n_due", UTCDateTime()),
            column("n_finished", UTCDateTime()),
            column("n_reason", String),
            name="v",
        ).data(rows)
        statement = (
            update(E)
            .where(E.c.id == v.c.e_id, E.c.seq == v.c.e_old_seq, E.c.lease_owner == worker)
            .values(
                state=v.c.n_state,
                status=v.c.n_status,
                seq=v.c.n_seq,
                entered_at=cast(v.c.n_entered, UTCDateTime()),
                due_at=cast(v.c.n_due, UTCDateTime()),
                finished_at=cast(v.c.n_finished, UTCDateTime()),
                exit_reason=v.c.n_reason,
                lease_owner=None,
                lease_until=None,
            )
            .returning(E.c.id)
        )
        return {row.id for row in conn.execute(statement)}

    def _apply_positions_sqlite(self, conn: Connection, worker: str, items: Sequence[EnrollmentUpdate]) -> set[int]:
        # SQLite has no column list on VALUES. The transaction began IMMEDIATE and so holds
        # the write lock: the leases read here cannot change before the executemany below.
        held = {
            (row.id, row.seq)
            for row in conn.execute(
                select(E.c.id, E.c.seq).where(E.c.id.in_([i.id for i in items]), E.c.lease_owner == worker)
            )
        }
        kept = [i for i in items if (i.id, i.old_seq) in held]
        if kept:
            conn.execute(_GUARDED_UPDATE, [_position_params(i) for i in kept])
        return {i.id for i in kept}

    def _change_lead(self, conn: Connection, lead_id: int, changes: Mapping[str, Any]) -> None:
        row = conn.execute(
            select(L.c.custom, L.c.tags, L.c.score_engagement, L.c.score_adjustment).where(L.c.id == lead_id)
        ).first()
        if row is None:
            return
        values: dict[str, Any] = {"updated_at": self.clock.now()}
        custom = dict(row.custom or {})
        for key, value in (changes.get("set") or {}).items():
            if key in L.c:
                values[key] = value
            else:
                custom[key] = value
        values["custom"] = custom
        tags = [t for t in row.tags or [] if t not in changes.get("remove_tags", ())]
        tags += [t for t in changes.get("add_tags", ()) if t not in tags]
        values["tags"] = tags
        if changes.get("score_delta"):
            # Kept apart as well, so that rescoring from events keeps what scenarios added.
            values["score_engagement"] = (row.score_engagement or 0) + int(changes["score_delta"])
            values["score_adjustment"] = (row.score_adjustment or 0) + int(changes["score_delta"])
        conn.execute(update(L).where(L.c.id == lead_id).values(**values))

    # -- sending ---------------------------------------------------------------------------

    def claim_sends(self, worker: str, now: datetime, limit: int, lease: timedelta) -> list[Row[Any]]:
        """Lease pending sends that are due, with what is needed to render them."""
        statement = self.lease_statement(
            S,
            (S.c.status.in_(("pending", "sending")), S.c.next_attempt_at <= now),
            S.c.next_attempt_at,
            worker,
            now,
            limit,
            lease,
            (S.c.id,),
            status="sending",
            attempts=S.c.attempts + 1,
        )
        with self.engine.begin() as conn:
            ids = [r.id for r in conn.execute(statement)]
            if not ids:
                return []
            return list(
                conn.execute(
                    select(
                        S,
                        L.c.email.label("lead_email"),
                        L.c.unsubscribed,
                        L.c.bounced,
                        SUP.c.email.label("suppressed"),
                    )
                    .join(L, L.c.id == S.c.lead_id)
                    .outerjoin(SUP, SUP.c.email == L.c.email)
                    .where(S.c.id.in_(ids))
                    .order_by(S.c.id)
                )
            )

    def leads_in(self, conn: Connection, lead_ids: Sequence[int]) -> list[Row[Any]]:
        return list(conn.execute(select(L).where(L.c.id.in_(lead_ids)).order_by(L.c.id)))

    def leads_by_id(self, lead_ids: Sequence[int]) -> dict[int, Row[Any]]:
        with self.reading() as conn:
            return {row.id: row for row in conn.execute(select(L).where(L.c.id.in_(lead_ids)))}

    def finish_send(
        self,
        worker: str,
        send_id: int,
        status: str,
        now: datetime,
        *,
        message_id: str | None = None,
        error: str | None = None,
        retry_at: datetime | None = None,
        suppress: tuple[str, str] | None = None,
    ) -> None:
        values: dict[str, Any] = {
            "status": status,
            "lease_owner": None,
            "lease_until": None,
            "last_error": error,
        }
        if status == "sent":
            values.update(sent_at=now, message_id=message_id)
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        with self.engine.begin() as conn:
            conn.execute(update(S).where(S.c.id == send_id, S.c.lease_owner == worker).values(**values))
            if suppress is not None:
                self.suppress(conn, suppress[0], suppress[1], error)

    def release_sends(self, worker: str, send_ids: Sequence[int]) -> None:
        """Give leased, unsent rows back to the outbox (not counted as an attempt)."""
        with self.engine.begin() as conn:
            conn.execute(
                update(S)
                .where(S.c.id.in_(send_ids), S.c.lease_owner == worker, S.c.status == "sending")
                .values(status="pending", lease_owner=None, lease_until=None, attempts=S.c.attempts - 1)
            )

    @contextmanager
    def send_marks(self, worker: str) -> Iterator[SendMarks]:
        """For the sender while it drains a batch: see `SendMarks`."""
        if self.postgres:
            yield SendMarks(self.engine, worker, None)
            return
        with self.engine.connect() as conn:
            # The pooled connection is held for the batch and used through its driver only:
            # through SQLAlchemy the PRAGMA would begin a transaction, and on this engine a
            # transaction takes the write lock.
            driver = conn.connection.dbapi_connection
            assert isinstance(driver, sqlite3.Connection)
            driver.execute("PRAGMA busy_timeout=0")
            try:
                yield SendMarks(self.engine, worker, driver)
            finally:
                driver.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")

    # -- reporting -------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = self.clock.now()
        with self.reading() as conn:
            enrolments = conn.execute(
                select(E.c.scenario_id, E.c.status, E.c.state, func.count())
                .group_by(E.c.scenario_id, E.c.status, E.c.state)
                .order_by(E.c.scenario_id, E.c.status, E.c.state)
            ).all()
            sends = counts(conn.execute(select(S.c.status, func.count()).group_by(S.c.status)).all())
            oldest = conn.execute(
                select(func.min(S.c.next_attempt_at)).where(S.c.status.in_(("pending", "sending")))
            ).scalar()
            due = conn.execute(select(func.count()).where(E.c.status == "active", E.c.due_at <= now)).scalar()
            failures = conn.execute(
                select(S.c.id, S.c.status, S.c.step, S.c.last_error, L.c.email)
                .join(L, L.c.id == S.c.lead_id)
                .where(S.c.status.in_(("failed", "bounced")))
                .order_by(S.c.id.desc())
                .limit(10)
            ).all()
            retrying = conn.execute(select(func.count()).where(S.c.status == "pending", S.c.attempts > 0)).scalar()
            leads = conn.execute(select(func.count()).select_from(L)).scalar()
        return {
            "enrolments": enrolments,
            "sends": sends,
            "oldest_pending": oldest,
            "due_now": due,
            "failures": failures,
            "retrying": retrying,
            "leads": leads,
        }

    def funnel(self, scenario_id: str) -> dict[str, Any]:
        with self.reading() as conn:
            sent = counts(
                conn.execute(
                    select(S.c.step, func.count())
                    .where(S.c.scenario_id == scenario_id, S.c.status == "sent")
                    .group_by(S.c.step)
                ).all()
            )
            finished = counts(
                conn.execute(
                    select(E.c.exit_reason, func.count())
                    .where(E.c.scenario_id == scenario_id, E.c.status != "active")
                    .group_by(E.c.exit_reason)
                ).all()
            )
            enrolled = conn.execute(select(func.count()).where(E.c.scenario_id == scenario_id)).scalar()
        return {"enrolled": enrolled, "sent_by_step": sent, "finished": finished}


__all__ = ["Claimed", "EnrollmentUpdate", "Store", "lead_view"]
