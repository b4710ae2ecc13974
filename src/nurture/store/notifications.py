"""The notification outbox: messages to sales (owner emails, digests, signed webhooks).

Claimed, leased and finished through the same `Queue` as the email outbox."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import func, insert, select

from nurture.store.base import Connection, Part
from nurture.store.queue import Queue
from nurture.store.tables import NOTIFICATIONS
from nurture.vocabulary import NotificationKind, NotificationStatus

if TYPE_CHECKING:
    from nurture.store import Store


class ClaimedNotification(Protocol):
    """A leased notification row."""

    id: int
    key: str
    kind: str
    lead_id: int | None
    target: str
    subject: str
    payload: dict[str, Any]
    status: str
    attempts: int


class Notifications(Part):
    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.queue = Queue(self.postgres, NOTIFICATIONS, NOTIFICATIONS.c.id)

    def claim(self, worker: str, now: datetime, limit: int, lease: timedelta) -> list[ClaimedNotification]:
        with self.engine.begin() as conn:
            return cast(list[ClaimedNotification], self.queue.claim(conn, worker, now, limit, lease, (NOTIFICATIONS,)))

    def finish(
        self, worker: str, row_id: int, status: str, now: datetime, error: str | None, retry_at: datetime | None
    ) -> None:
        values: dict[str, Any] = {}
        if status == NotificationStatus.SENT:
            values["sent_at"] = now
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        with self.engine.begin() as conn:
            self.queue.finish(conn, worker, row_id, status, error, **values)

    def add(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Queue notifications (keys are unique: queueing one twice fails the transaction)."""
        if rows:
            conn.execute(insert(NOTIFICATIONS), list(rows))

    def exists(self, conn: Connection, key: str) -> bool:
        return conn.execute(select(NOTIFICATIONS.c.id).where(NOTIFICATIONS.c.key == key)).first() is not None

    def release(self, worker: str, row_ids: Sequence[int]) -> None:
        """Give leased, unsent rows back to the outbox (not counted as an attempt)."""
        with self.engine.begin() as conn:
            self.queue.release(conn, worker, row_ids)

    def emails_sent(self) -> int:
        """How many emails to sales (owner alerts and digests) went out."""
        with self.store.reading() as conn:
            found = conn.execute(
                select(func.count()).where(
                    NOTIFICATIONS.c.status == NotificationStatus.SENT, NOTIFICATIONS.c.kind != NotificationKind.WEBHOOK
                )
            ).scalar()
        return int(found or 0)
