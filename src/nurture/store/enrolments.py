"""Enrolments: a lead's place in a scenario, and the advance job's claim and apply.

Hot paths (claiming due enrolments, applying a batch of step results) use SQLAlchemy
Core, written so a tick costs O(due rows) and so that several daemons can share one
PostgreSQL database.
"""

from __future__ import annotations

import typing
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, Integer, String, bindparam, column, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from nurture.runtime.reentry import NO_HISTORY, REENTERED, EntryHistory
from nurture.scenario.expr import EventRecord
from nurture.store.base import Connection, Part, Row, insert_ignore
from nurture.store.leads import STEP_LEAD, LeadRow
from nurture.store.queue import lease_statement
from nurture.store.tables import AUDIT_LOG, ENROLMENTS, LEADS, NOTIFICATIONS, SENDS, STEP_VISITS
from nurture.store.types import UTCDateTime
from nurture.vocabulary import EnrolmentStatus

_APPLY_CHUNK = 1000
# Enrolments a lead is still in: stepping, or parked until an operator resumes them.
_IN_SCENARIO = (EnrolmentStatus.ACTIVE.value, EnrolmentStatus.PARKED.value)
_GUARDED_UPDATE = (
    update(ENROLMENTS)
    .where(ENROLMENTS.c.id == bindparam("e_id"), ENROLMENTS.c.seq == bindparam("e_old_seq"))
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


def _array(name: str, item: Any) -> Any:
    # Typed, so the SQL casts it: a list of nothing but NULLs (no enrolment finished) has no type of its own.
    return bindparam(name, type_=postgresql.ARRAY(item))


# PostgreSQL: a batch of step results is one statement with one array parameter per column,
# compiled once and cached (a VALUES list of the batch's rows would be a new statement, with
# thousands of parameters, for every batch). Guarded by the lease and the step counter.
_PG_ROWS = (
    func.unnest(
        _array("ids", Integer),
        _array("old_seqs", Integer),
        _array("states", String),
        _array("statuses", String),
        _array("seqs", Integer),
        _array("entered", DateTime(timezone=True)),
        _array("due", DateTime(timezone=True)),
        _array("finished", DateTime(timezone=True)),
        _array("reasons", String),
    )
    .table_valued(
        column("e_id", Integer),
        column("e_old_seq", Integer),
        column("n_state", String),
        column("n_status", String),
        column("n_seq", Integer),
        column("n_entered", UTCDateTime()),
        column("n_due", UTCDateTime()),
        column("n_finished", UTCDateTime()),
        column("n_reason", String),
    )
    .render_derived(name="v")
)
_PG_APPLY = (
    update(ENROLMENTS)
    .where(
        ENROLMENTS.c.id == _PG_ROWS.c.e_id,
        ENROLMENTS.c.seq == _PG_ROWS.c.e_old_seq,
        ENROLMENTS.c.lease_owner == bindparam("worker"),
    )
    .values(
        state=_PG_ROWS.c.n_state,
        status=_PG_ROWS.c.n_status,
        seq=_PG_ROWS.c.n_seq,
        entered_at=_PG_ROWS.c.n_entered,
        due_at=_PG_ROWS.c.n_due,
        finished_at=_PG_ROWS.c.n_finished,
        exit_reason=_PG_ROWS.c.n_reason,
        lease_owner=None,
        lease_until=None,
    )
    .returning(ENROLMENTS.c.id)
)
# SQLite: most steps move an active enrolment on to its next wait. Its status stays and
# SQLite never leases enrolments (the write lock is the lease), so only these change.
_MOVE = (
    update(ENROLMENTS)
    .where(ENROLMENTS.c.id == bindparam("e_id"), ENROLMENTS.c.seq == bindparam("e_old_seq"))
    .values(
        state=bindparam("state"),
        seq=bindparam("seq"),
        entered_at=bindparam("entered_at"),
        due_at=bindparam("due_at"),
    )
)


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
    assignments: list[dict[str, Any]] = field(default_factory=list)  # arms of experiments given


_CLAIMED = (
    ENROLMENTS.c.id,
    ENROLMENTS.c.lead_id,
    ENROLMENTS.c.scenario_id,
    ENROLMENTS.c.scenario_version,
    ENROLMENTS.c.state,
    ENROLMENTS.c.status,
    ENROLMENTS.c.seq,
    ENROLMENTS.c.entered_at,
    ENROLMENTS.c.due_at,
)
# SQLite claims enrolments together with their leads: the enrolment's columns come first,
# under names of their own, so that each row also reads as its lead's row.
_CLAIM_WITH_LEAD = [*(c.label(f"enrollment_{c.name}") for c in _CLAIMED), *STEP_LEAD]

# Per claimed enrolment: whether its scenario reads the lead's (events, recent sends), and
# the keys of its experiments (whose arms the lead may already have).
Reads = Callable[[Claimed], tuple[bool, bool, Collection[str]]]
Arms = dict[int, dict[str, str]]  # lead id → experiment key → arm
StepBatch = Callable[
    [list[Claimed], dict[int, LeadRow], dict[int, list[EventRecord]], dict[int, list[datetime]], Arms],
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


class Enrolments(Part):
    def candidates(self, conn: Connection, since: datetime | None, after_id: int, limit: int) -> list[int]:
        """Ids of reachable leads after `after_id` (changed since `since`, when given)."""
        query = select(LEADS.c.id).where(
            LEADS.c.unsubscribed.is_(False), LEADS.c.bounced.is_(False), LEADS.c.id > after_id
        )
        if since is not None:
            query = query.where(LEADS.c.updated_at >= since)
        return list(conn.execute(query.order_by(LEADS.c.id).limit(limit)).scalars())

    def history(self, conn: Connection, scenario_id: str, lead_ids: Sequence[int]) -> dict[int, EntryHistory]:
        """lead id → its enrolments in one scenario, as the re-entry decision reads them
        (leads never enrolled there are absent)."""
        history: dict[int, EntryHistory] = {}
        # Filter by lead only and check the scenario here: with both in the WHERE clause, a
        # planner without statistics may walk the (scenario, status, state) index over every
        # enrolment of the scenario, once per chunk.
        rows = conn.execute(
            select(
                ENROLMENTS.c.lead_id,
                ENROLMENTS.c.scenario_id,
                ENROLMENTS.c.status,
                ENROLMENTS.c.enrolled_at,
                ENROLMENTS.c.finished_at,
            ).where(ENROLMENTS.c.lead_id.in_(lead_ids))
        )
        for row in rows:
            if row.scenario_id != scenario_id:
                continue
            seen = history.get(row.lead_id, NO_HISTORY)
            running = row.enrolled_at if row.status in _IN_SCENARIO else None
            history[row.lead_id] = EntryHistory(
                running_since=running or seen.running_since,
                last_entered=_latest(seen.last_entered, row.enrolled_at),
                last_finished=_latest(seen.last_finished, row.finished_at),
            )
        return history

    def end_for_reentry(self, conn: Connection, scenario_id: str, lead_ids: Sequence[int], now: datetime) -> None:
        """End the running enrolments of these leads in one scenario, so that they can start
        over (re-entry `always`). A worker stepping one of them at this moment loses its step:
        its write needs the step counter this bumps."""
        if not lead_ids:
            return
        conn.execute(
            update(ENROLMENTS)
            .where(
                ENROLMENTS.c.scenario_id == scenario_id,
                ENROLMENTS.c.lead_id.in_(lead_ids),
                ENROLMENTS.c.status.in_(_IN_SCENARIO),
            )
            .values(
                status=EnrolmentStatus.EXITED,
                exit_reason=REENTERED,
                finished_at=now,
                due_at=None,
                seq=ENROLMENTS.c.seq + 1,
                lease_owner=None,
                lease_until=None,
            )
        )

    def enrol(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        if not rows:
            return 0
        # RETURNING counts what was inserted on both databases (psycopg reports no rowcount
        # for a multi-row INSERT ... ON CONFLICT DO NOTHING).
        result = conn.execute(insert_ignore(self.postgres, ENROLMENTS).returning(ENROLMENTS.c.id), rows)
        return len(result.all())

    # -- advancing -------------------------------------------------------------------------

    def claim(self, worker: str, now: datetime, limit: int, lease: timedelta) -> list[Claimed]:
        """Lease up to `limit` due enrolments."""
        statement = lease_statement(
            self.postgres,
            ENROLMENTS,
            (ENROLMENTS.c.status == EnrolmentStatus.ACTIVE, ENROLMENTS.c.due_at <= now),
            ENROLMENTS.c.due_at,
            worker,
            limit,
            lease,
            _CLAIMED,
        )
        with self.engine.begin() as conn:
            return [Claimed(*row) for row in conn.execute(statement).all()]

    def load_context(
        self, claimed: Sequence[Claimed], reads: Reads, events_since: datetime, sends_since: datetime
    ) -> tuple[dict[int, LeadRow], dict[int, list[EventRecord]], dict[int, list[datetime]], Arms]:
        with self.store.reading() as conn:
            return self._load(conn, claimed, reads, events_since, sends_since)

    def _load(
        self, conn: Connection, claimed: Sequence[Claimed], reads: Reads, events_since: datetime, sends_since: datetime
    ) -> tuple[dict[int, LeadRow], dict[int, list[EventRecord]], dict[int, list[datetime]], Arms]:
        """The claimed enrolments' leads, and what `_recent` loads."""
        lead_ids = sorted({item.lead_id for item in claimed})
        leads = self.store.leads.step_rows(conn, lead_ids)
        return (leads, *self._recent(conn, claimed, reads, events_since, sends_since))

    def _recent(
        self, conn: Connection, claimed: Sequence[Claimed], reads: Reads, events_since: datetime, sends_since: datetime
    ) -> tuple[dict[int, list[EventRecord]], dict[int, list[datetime]], Arms]:
        """The recent events and sends of the claimed enrolments' leads whose scenario can
        look at them, and their arms in their scenarios' experiments (`reads` says, per enrolment)."""
        event_ids, send_ids, arm_ids = set(), set(), set()
        keys: set[str] = set()
        for item in claimed:
            events, sends, experiments = reads(item)
            if events:
                event_ids.add(item.lead_id)
            if sends:
                send_ids.add(item.lead_id)
            if experiments:
                arm_ids.add(item.lead_id)
                keys.update(experiments)
        return (
            self.store.events.for_leads(conn, sorted(event_ids), events_since),
            self.store.sends.recent(conn, sorted(send_ids), sends_since),
            self.store.experiments.arms_of(conn, sorted(arm_ids), keys),
        )

    def advance(
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
            claimed = self.claim(worker, now, limit, lease)
            if not claimed:
                return 0, 0, 0
            updates = step_batch(claimed, *self.load_context(claimed, reads, events_since, sends_since))
            applied, lost = self.apply(worker, updates)
            return len(claimed), applied, lost
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(*_CLAIM_WITH_LEAD)
                .join_from(ENROLMENTS, LEADS, LEADS.c.id == ENROLMENTS.c.lead_id)
                .where(ENROLMENTS.c.status == EnrolmentStatus.ACTIVE, ENROLMENTS.c.due_at <= now)
                .order_by(ENROLMENTS.c.due_at)
                .limit(limit)
            ).all()
            if not rows:
                return 0, 0, 0
            claimed = [Claimed(*row[: len(_CLAIMED)]) for row in rows]
            leads = typing.cast(dict[int, LeadRow], {row.id: row for row in rows})
            updates = step_batch(claimed, leads, *self._recent(conn, claimed, reads, events_since, sends_since))
            moves = [i for i in updates if i.status == EnrolmentStatus.ACTIVE]
            if moves:
                conn.execute(_MOVE, [_move_params(i) for i in moves])
            if len(moves) < len(updates):
                conn.execute(
                    _GUARDED_UPDATE, [_position_params(i) for i in updates if i.status != EnrolmentStatus.ACTIVE]
                )
            self._write_effects(conn, updates)
        return len(claimed), len(updates), 0

    def apply(self, worker: str, updates: Iterable[EnrollmentUpdate]) -> tuple[int, int]:
        """Write a batch of step results in one transaction; returns (applied, lost leases).

        Each enrolment is updated only if this worker still holds its lease at the same
        `seq` (one UPDATE ... FROM unnest(arrays) RETURNING per 1,000 rows); outbox rows
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
            conn.execute(insert_ignore(self.postgres, SENDS), sends)
        for item in kept:
            if item.lead_changes:
                self.store.leads.change(conn, item.lead_id, item.lead_changes)
        notes = [row for item in kept for row in item.notifications]
        if notes:
            conn.execute(insert_ignore(self.postgres, NOTIFICATIONS), notes)
        audits = [item.audit for item in kept if item.audit]
        if audits:
            conn.execute(insert(AUDIT_LOG), audits)
        assigned = [row for item in kept for row in item.assignments]
        if assigned:
            self.store.experiments.assign(conn, assigned)
        visits = Counter((*item.scenario, step) for item in kept for step in item.entered)
        if visits:
            # Sorted, so that concurrent workers take the counter rows' locks in one order.
            rows = [
                {"scenario_id": s, "scenario_version": v, "step": step, "entered": n}
                for (s, v, step), n in sorted(visits.items())
            ]
            dialect = postgresql if self.postgres else sqlite
            upsert = dialect.insert(STEP_VISITS)
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=[STEP_VISITS.c.scenario_id, STEP_VISITS.c.scenario_version, STEP_VISITS.c.step],
                    set_={"entered": STEP_VISITS.c.entered + upsert.excluded.entered},
                ),
                rows,
            )

    def _apply_positions(self, conn: Connection, worker: str, items: Sequence[EnrollmentUpdate]) -> set[int]:
        if not items:
            return set()
        if not self.postgres:
            return self._apply_positions_sqlite(conn, worker, items)
        params = {
            "worker": worker,
            "ids": [i.id for i in items],
            "old_seqs": [i.old_seq for i in items],
            "states": [i.state for i in items],
            "statuses": [str(i.status) for i in items],
            "seqs": [i.seq for i in items],
            "entered": [i.entered_at for i in items],
            "due": [i.due_at for i in items],
            "finished": [i.finished_at for i in items],
            "reasons": [i.exit_reason for i in items],
        }
        return {row.id for row in conn.execute(_PG_APPLY, params)}

    def _apply_positions_sqlite(self, conn: Connection, worker: str, items: Sequence[EnrollmentUpdate]) -> set[int]:
        # SQLite has no column list on VALUES. The transaction began IMMEDIATE and so holds
        # the write lock: the leases read here cannot change before the executemany below.
        held = {
            (row.id, row.seq)
            for row in conn.execute(
                select(ENROLMENTS.c.id, ENROLMENTS.c.seq).where(
                    ENROLMENTS.c.id.in_([i.id for i in items]), ENROLMENTS.c.lease_owner == worker
                )
            )
        }
        kept = [i for i in items if (i.id, i.old_seq) in held]
        if kept:
            conn.execute(_GUARDED_UPDATE, [_position_params(i) for i in kept])
        return {i.id for i in kept}

    def wake(self, conn: Connection, lead_id: int, now: datetime) -> None:
        """Make a lead's active enrolments due now, so their scenarios see a change at once."""
        conn.execute(
            update(ENROLMENTS)
            .where(ENROLMENTS.c.lead_id == lead_id, ENROLMENTS.c.status == EnrolmentStatus.ACTIVE)
            .values(due_at=now)
        )

    def active_in(self, conn: Connection, lead_ids: Sequence[int], scenario_ids: Sequence[str]) -> dict[int, set[str]]:
        """lead id → which of `scenario_ids` it is in, active or parked (for programs that
        exclude each other)."""
        found: dict[int, set[str]] = {}
        if not lead_ids or not scenario_ids:
            return found
        rows = conn.execute(
            select(ENROLMENTS.c.lead_id, ENROLMENTS.c.scenario_id).where(
                ENROLMENTS.c.lead_id.in_(lead_ids),
                ENROLMENTS.c.status.in_(_IN_SCENARIO),
                ENROLMENTS.c.scenario_id.in_(scenario_ids),
            )
        )
        for lead_id, scenario_id in rows:
            found.setdefault(lead_id, set()).add(scenario_id)
        return found

    def leave(self, conn: Connection, lead_id: int, scenario_ids: Sequence[str], reason: str, now: datetime) -> int:
        """End a lead's active or parked enrolments in `scenario_ids` (it entered a
        higher-priority program).

        The step counter moves on and the lease is dropped, so a worker stepping one of them
        right now cannot write its result over this."""
        result = conn.execute(
            update(ENROLMENTS)
            .where(
                ENROLMENTS.c.lead_id == lead_id,
                ENROLMENTS.c.scenario_id.in_(scenario_ids),
                ENROLMENTS.c.status.in_(_IN_SCENARIO),
            )
            .values(
                status=EnrolmentStatus.EXITED,
                exit_reason=reason[:200],
                finished_at=now,
                due_at=None,
                seq=ENROLMENTS.c.seq + 1,
                lease_owner=None,
                lease_until=None,
            )
        )
        return max(result.rowcount, 0)

    def resume(self, lead_id: int, scenario_id: str | None, actor: str, now: datetime) -> list[Row[Any]]:
        """Step a lead's parked enrolments (in one scenario, or all) again from where each
        stopped, due now, with an audit entry each; returns the enrolments resumed."""
        with self.store.transaction() as conn:
            query = select(ENROLMENTS).where(
                ENROLMENTS.c.lead_id == lead_id, ENROLMENTS.c.status == EnrolmentStatus.PARKED
            )
            if scenario_id is not None:
                query = query.where(ENROLMENTS.c.scenario_id == scenario_id)
            parked = list(conn.execute(query.order_by(ENROLMENTS.c.id)).all())
            for row in parked:
                conn.execute(
                    update(ENROLMENTS)
                    .where(ENROLMENTS.c.id == row.id, ENROLMENTS.c.seq == row.seq)
                    .values(
                        status=EnrolmentStatus.ACTIVE,
                        exit_reason=None,
                        due_at=row.due_at or now,
                        seq=row.seq + 1,
                        lease_owner=None,
                        lease_until=None,
                    )
                )
                conn.execute(
                    insert(AUDIT_LOG).values(
                        at=now,
                        lead_id=lead_id,
                        enrollment_id=row.id,
                        kind="step_resumed",
                        detail={
                            "scenario": row.scenario_id,
                            "at_step": row.state,
                            "by": actor,
                            "error": row.exit_reason,
                        },
                    )
                )
        return parked

    def parked(self, limit: int = 10, scenario_id: str | None = None) -> tuple[int, list[Row[Any]]]:
        """How many enrolments are parked (in one scenario, or all), and the latest `limit`
        of them with their lead's id and address."""
        where = [ENROLMENTS.c.status == EnrolmentStatus.PARKED]
        if scenario_id is not None:
            where.append(ENROLMENTS.c.scenario_id == scenario_id)
        with self.store.reading() as conn:
            total = conn.execute(select(func.count()).select_from(ENROLMENTS).where(*where)).scalar_one()
            rows = conn.execute(
                select(
                    ENROLMENTS.c.scenario_id, ENROLMENTS.c.state, ENROLMENTS.c.exit_reason, LEADS.c.id, LEADS.c.email
                )
                .join(LEADS, LEADS.c.id == ENROLMENTS.c.lead_id)
                .where(*where)
                .order_by(ENROLMENTS.c.id.desc())
                .limit(limit)
            ).all()
        return int(total), typing.cast("list[Row[Any]]", list(rows))

    def of_lead(self, lead_id: int) -> list[Row[Any]]:
        """Every enrolment of a lead, oldest first."""
        with self.store.reading() as conn:
            query = select(ENROLMENTS).where(ENROLMENTS.c.lead_id == lead_id).order_by(ENROLMENTS.c.id)
            return list(conn.execute(query).all())


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)
