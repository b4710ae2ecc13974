"""One leased work queue over a table: the email outbox and the notification outbox are two.

Contract (every queue table has `id`, `status`, `attempts`, `next_attempt_at`,
`lease_owner`, `lease_until`, `last_error`):

- `claim` takes up to `limit` rows that are queued (`pending`, or `sending` under a lease
  that ran out), due (`next_attempt_at <= now`), and that nobody holds a live lease on; it
  marks them `sending`, counts an attempt and leases them to `worker` until the database's
  clock plus `lease`. On PostgreSQL the candidates are locked with SKIP LOCKED, so
  concurrent workers take disjoint batches without waiting for each other; on SQLite the
  claiming transaction holds the database's write lock, which serialises claims.
- Lease times are the database's clock, never a worker's: workers on hosts whose clocks
  drift agree on when a lease has run out. Whether a row is due is product time (`now`),
  the clock retries and scenario waits are measured in.
- A worker stops starting work on its batch once half the lease has passed (measured on
  its own monotonic clock; see `Lease`), so work it starts ends while it still holds it.
- `finish` and `release` write only rows `worker` still holds: once another worker has
  claimed a row (after the lease ran out), the first worker's outcome is dropped. An email
  marked sent keeps its `lease_owner`, the worker that sent it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, func, or_, select, update

from nurture.store.base import Connection
from nurture.vocabulary import QUEUED, SendStatus


def database_now(postgres: bool, plus: timedelta | None = None) -> ColumnElement[Any]:
    """The database's current time (plus `plus`), as the store writes timestamps there."""
    if postgres:
        return func.now() if plus is None else func.now() + plus
    # SQLite: the text form of UTCDateTime ("YYYY-MM-DD HH:MM:SS.ffffff"), so it compares as time.
    modifiers = () if plus is None else (f"{plus.total_seconds():+.6f} seconds",)
    return func.strftime("%Y-%m-%d %H:%M:%f000", "now", *modifiers)


def lease_statement(
    postgres: bool,
    table: Table,
    ready: Sequence[ColumnElement[bool]],
    order_by: Any,
    worker: str,
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
        .where(*ready, or_(table.c.lease_until.is_(None), table.c.lease_until < database_now(postgres)))
        .order_by(order_by)
        .limit(limit)
    )
    if postgres:
        due = due.with_for_update(skip_locked=True)
    return (
        update(table)
        .where(table.c.id.in_(due.scalar_subquery()))
        .values(lease_owner=worker, lease_until=database_now(postgres, lease), **values)
        .returning(*returning)
    )


@dataclass
class Lease:
    """A worker's hold on a claimed batch, timed on its monotonic clock (`timer`; tests pass
    their own) from the claim."""

    length: timedelta
    timer: Callable[[], float] = time.monotonic
    started: float = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.timer()

    def past_half(self) -> bool:
        """Whether half the lease has passed: from then on, no new work is started."""
        return self.timer() - self.started >= self.length.total_seconds() / 2


class Queue:
    """The queue over `table`, oldest `order_by` first."""

    def __init__(self, postgres: bool, table: Table, order_by: Any) -> None:
        self.postgres = postgres
        self.table = table
        self.order_by = order_by

    def claim(
        self, conn: Connection, worker: str, now: datetime, limit: int, lease: timedelta, returning: Sequence[Any]
    ) -> list[Any]:
        t = self.table
        statement = lease_statement(
            self.postgres,
            t,
            (t.c.status.in_(QUEUED), t.c.next_attempt_at <= now),
            self.order_by,
            worker,
            limit,
            lease,
            returning,
            status=SendStatus.SENDING,
            attempts=t.c.attempts + 1,
        )
        return list(conn.execute(statement))

    def finish(self, conn: Connection, worker: str, row_id: int, status: str, error: str | None, **values: Any) -> bool:
        """Record a row's outcome, if `worker` still holds it; returns whether it did."""
        t = self.table
        result = conn.execute(
            update(t)
            .where(t.c.id == row_id, t.c.lease_owner == worker)
            .values(status=status, lease_owner=None, lease_until=None, last_error=error, **values)
        )
        return bool(result.rowcount)

    def release(self, conn: Connection, worker: str, row_ids: Sequence[int]) -> None:
        """Give leased rows back to the queue, not counted as an attempt."""
        t = self.table
        conn.execute(
            update(t)
            .where(t.c.id.in_(row_ids), t.c.lease_owner == worker, t.c.status == SendStatus.SENDING)
            .values(status=SendStatus.PENDING, lease_owner=None, lease_until=None, attempts=t.c.attempts - 1)
        )
