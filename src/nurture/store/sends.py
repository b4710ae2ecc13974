"""The email outbox: one row per email a step asked for, unique by idempotency key.

The send job claims rows through the leased `Queue`, renders and delivers them, and
marks each `sent` right after the server accepts it (`SendMarks`)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import Integer, String, bindparam, column, func, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

from nurture.store.base import Connection, Part, Row, among, insert_ignore
from nurture.store.db import SQLITE_BUSY_TIMEOUT_MS
from nurture.store.queue import Queue
from nurture.store.tables import LEADS, SENDS, SUPPRESSIONS
from nurture.store.types import sqlite_text
from nurture.vocabulary import QUEUED, SendStatus

# Built once: the sender marks a few rows at a time, many times a second. A sent row keeps
# its `lease_owner`: the worker that sent it (which daemon of a cluster sent what).
_MARK_SENT = (
    update(SENDS)
    .where(SENDS.c.id == bindparam("s_id"), SENDS.c.lease_owner == bindparam("worker"))
    .values(
        status=SendStatus.SENT.value,  # plain text: the driver binds a str subclass more slowly
        sent_at=bindparam("at"),
        message_id=bindparam("mid"),
        lease_until=None,
        last_error=None,
    )
)
# PostgreSQL: the marks of a commit as one statement with array parameters, on a held
# asynchronous driver connection in autocommit mode (one statement is atomic): one round
# trip per commit, awaited on the event loop.
_PG_MARKS = (
    func.unnest(
        bindparam("ids", type_=postgresql.ARRAY(Integer)),
        bindparam("mids", type_=postgresql.ARRAY(String)),
    )
    .table_valued(column("s_id", Integer), column("mid", String))
    .render_derived(name="m")
)
_MARK_SENT_PG = (
    update(SENDS)
    .where(SENDS.c.id == _PG_MARKS.c.s_id, SENDS.c.lease_owner == bindparam("worker"))
    .values(
        status=SendStatus.SENT.value,
        sent_at=bindparam("at"),
        message_id=_PG_MARKS.c.mid,
        lease_until=None,
        last_error=None,
    )
)
# The same, as SQLite text for the driver (see SendMarks.now).
_MARK_SENT_SQLITE = (
    "UPDATE send SET status = 'sent', sent_at = ?, message_id = ?,"
    " lease_until = NULL, last_error = NULL WHERE id = ? AND lease_owner = ?"
)


if TYPE_CHECKING:
    import psycopg

    from nurture.store import Store


class ClaimedSend(Protocol):
    """A leased outbox row with what rendering it needs: the send's columns, its lead's
    address and whether that address may be written to."""

    @property
    def _mapping(self) -> Mapping[str, Any]: ...

    id: int
    idempotency_key: str
    kind: str
    lead_id: int
    enrollment_id: int | None
    scenario_id: str
    scenario_version: str
    step: str
    template: str
    subject: str
    sender: str
    reply_to: str | None
    status: str
    attempts: int
    lead_email: str
    unsubscribed: bool
    bounced: bool
    suppressed: str | None


@dataclass(frozen=True, slots=True)
class TrackedSend:
    """A sent email as its tracking links see it."""

    id: int
    lead_id: int
    sent_at: datetime | None
    scenario_id: str
    step: str
    email: str


@dataclass(frozen=True, slots=True)
class SentEmail:
    id: int
    lead_id: int
    template: str
    sent_at: datetime  # set on every sent row
    idempotency_key: str
    scenario_id: str = ""
    step: str = ""
    message_id: str | None = None
    subject: str = ""


class SendMarks:
    """Marks delivered sends `sent` (with their Message-ID), each `commit` one short transaction.

    On SQLite a commit takes less time than handing the call to a thread, so `commit`
    first tries `now` on the event loop, on a held driver connection that never waits for
    the write lock: when another writer holds it, `now` says so at once and `commit` calls
    `wait` from a thread instead. `now` speaks to the driver directly, because at a few rows
    per commit SQLAlchemy's own work per statement costs more than SQLite's.
    On PostgreSQL a commit's marks are one statement on a held asynchronous driver
    connection in autocommit mode: one round trip whatever their number, awaited on the
    event loop, so no thread takes the interpreter lock from the loop while it renders.
    """

    def __init__(
        self,
        engine: Engine,
        worker: str,
        driver: sqlite3.Connection | None,
        pg: psycopg.AsyncConnection[Any] | None = None,
    ) -> None:
        self.engine = engine
        self.worker = worker
        self.driver = driver
        self.pg = pg
        self._pg_sql = ""
        self._pg_params: dict[str, Any] = {}
        if pg is not None:
            compiled = _MARK_SENT_PG.compile(dialect=engine.dialect)
            self._pg_sql = str(compiled)
            self._pg_params = {**compiled.params, "worker": worker}

    async def commit(self, items: Sequence[tuple[int, str]], at: datetime) -> None:
        """Commit the marks; the event loop goes on with other work while the database answers."""
        if self.pg is not None:
            ids, mids = [i for i, _ in items], [m for _, m in items]
            await self.pg.execute(self._pg_sql, {**self._pg_params, "ids": ids, "mids": mids, "at": at})
            return
        if not self.now(items, at):  # the database is busy: wait off the loop
            await asyncio.to_thread(self.wait, items, at)

    def now(self, items: Sequence[tuple[int, str]], at: datetime) -> bool:
        """SQLite: commit without waiting; False (nothing written) if the database is busy."""
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
            conn.execute(_MARK_SENT, [{"s_id": i, "mid": m, "worker": self.worker, "at": at} for i, m in items])


class Sends(Part):
    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.queue = Queue(self.postgres, SENDS, SENDS.c.next_attempt_at)

    def claim(self, worker: str, now: datetime, limit: int, lease: timedelta) -> list[ClaimedSend]:
        """Lease pending sends that are due, with what is needed to render them."""
        with self.engine.begin() as conn:
            ids = [r.id for r in self.queue.claim(conn, worker, now, limit, lease, (SENDS.c.id,))]
            if not ids:
                return []
            rows = conn.execute(
                select(
                    SENDS,
                    LEADS.c.email.label("lead_email"),
                    LEADS.c.unsubscribed,
                    LEADS.c.bounced,
                    SUPPRESSIONS.c.email.label("suppressed"),
                )
                .join(LEADS, LEADS.c.id == SENDS.c.lead_id)
                .outerjoin(SUPPRESSIONS, SUPPRESSIONS.c.email == LEADS.c.email)
                .where(among(self.postgres, SENDS.c.id, ids))
                .order_by(SENDS.c.id)
            )
            return cast(list[ClaimedSend], list(rows))

    def finish(
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
        """Record a send's outcome (while `worker` holds it); a bounce also suppresses the address."""
        values: dict[str, Any] = {}
        if status == SendStatus.SENT:
            values.update(sent_at=now, message_id=message_id)
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        with self.engine.begin() as conn:
            self.queue.finish(conn, worker, send_id, status, error, **values)
            if suppress is not None:
                self.store.leads.suppress(conn, suppress[0], suppress[1], error)

    def release(self, worker: str, send_ids: Sequence[int]) -> None:
        """Give leased, unsent rows back to the outbox (not counted as an attempt)."""
        with self.engine.begin() as conn:
            self.queue.release(conn, worker, send_ids)

    @asynccontextmanager
    async def marks(self, worker: str) -> AsyncIterator[SendMarks]:
        """For the sender while it drains the outbox: see `SendMarks`."""
        if self.postgres:
            # The engine's own connection arguments, for a connection of the driver's
            # asynchronous kind, held for the drain.
            import psycopg  # only PostgreSQL deployments load the driver

            args, kwargs = self.engine.dialect.create_connect_args(self.engine.url)
            async with await psycopg.AsyncConnection.connect(*args, **kwargs, autocommit=True) as pg:
                # A mark's commit does not wait for the WAL flush (this connection only): SQLite's
                # synchronous=NORMAL. A daemon that crashes loses no mark (the server has it);
                # only a crash of the database server itself may lose the marks of its last
                # moments, and those emails go again with the same Message-ID.
                await pg.execute("SET synchronous_commit = off")
                yield SendMarks(self.engine, worker, None, pg)
            return
        with self.engine.connect() as conn:
            # The pooled connection is held for the drain and used through its driver only:
            # through SQLAlchemy the PRAGMA would begin a transaction, and on this engine a
            # transaction takes the write lock.
            driver = conn.connection.dbapi_connection
            assert isinstance(driver, sqlite3.Connection)
            driver.execute("PRAGMA busy_timeout=0")
            try:
                yield SendMarks(self.engine, worker, driver)
            finally:
                driver.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")

    def recent(self, conn: Connection, lead_ids: Sequence[int], since: datetime) -> dict[int, list[datetime]]:
        """When each lead was last emailed (queued, being sent or sent) since `since`: for frequency caps."""
        found: dict[int, list[datetime]] = defaultdict(list)
        if not lead_ids:
            return found
        when = func.coalesce(SENDS.c.sent_at, SENDS.c.created_at)
        rows = conn.execute(
            select(SENDS.c.lead_id, when.label("at")).where(
                SENDS.c.lead_id.in_(lead_ids),
                SENDS.c.kind == "email",
                when >= since,
                SENDS.c.status.in_((*QUEUED, SendStatus.SENT)),
            )
        )
        for row in rows:
            found[row.lead_id].append(row.at)
        return found

    def tracked(self, send_id: int, lead_id: int) -> TrackedSend | None:
        """The send a tracking link names (with its lead's email), or None when either is gone."""
        with self.store.reading() as conn:
            row = conn.execute(
                select(
                    SENDS.c.id,
                    SENDS.c.lead_id,
                    SENDS.c.sent_at,
                    SENDS.c.scenario_id,
                    SENDS.c.step,
                    LEADS.c.email,
                )
                .join(LEADS, LEADS.c.id == SENDS.c.lead_id)
                .where(SENDS.c.id == send_id, SENDS.c.lead_id == lead_id)
            ).first()
        return None if row is None else TrackedSend(*row)

    def of_lead(self, lead_id: int) -> list[Row[Any]]:
        """Every email queued for a lead, oldest first."""
        with self.store.reading() as conn:
            return list(conn.execute(select(SENDS).where(SENDS.c.lead_id == lead_id).order_by(SENDS.c.id)).all())

    def sent_after(self, conn: Connection, send_id: int) -> list[SentEmail]:
        """The emails sent with ids above `send_id`, in id order."""
        rows = conn.execute(
            select(
                SENDS.c.id,
                SENDS.c.lead_id,
                SENDS.c.template,
                SENDS.c.sent_at,
                SENDS.c.idempotency_key,
                SENDS.c.scenario_id,
                SENDS.c.step,
            )
            .where(SENDS.c.status == SendStatus.SENT, SENDS.c.id > send_id)
            .order_by(SENDS.c.id)
        ).all()
        return [SentEmail(*row) for row in rows]

    def sent_since(self, conn: Connection, since: datetime) -> list[SentEmail]:
        """The emails sent at or after `since` (a retried one too, whatever its id), in id order."""
        rows = conn.execute(
            select(
                SENDS.c.id,
                SENDS.c.lead_id,
                SENDS.c.template,
                SENDS.c.sent_at,
                SENDS.c.idempotency_key,
                SENDS.c.scenario_id,
                SENDS.c.step,
                SENDS.c.message_id,
                SENDS.c.subject,
            )
            .where(SENDS.c.status == SendStatus.SENT, SENDS.c.sent_at >= since)
            .order_by(SENDS.c.id)
        ).all()
        return [SentEmail(*row) for row in rows]

    def add(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Queue emails; a row whose idempotency key is already queued is skipped."""
        if rows:
            conn.execute(insert_ignore(self.postgres, SENDS), list(rows))
