"""Accounts as accounts (hot or not) and the promotions the scores asked for, released or held."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import func, insert, select, update

from nurture.store.base import Connection, Part, counts
from nurture.store.tables import ACCOUNTS, PROMOTIONS


class AccountRow(Protocol):
    key: str
    stage: str
    engagement: float
    people: list[Any]
    owner: str | None
    changed_at: datetime


class PromotionRow(Protocol):
    id: int
    key: str
    kind: str
    lead_id: int | None
    account: str | None
    owner: str
    strength: float
    status: str
    reason: str
    detail: dict[str, Any]
    created_at: datetime
    released_at: datetime | None
    released_by: str | None


class Accounts(Part):
    # -- accounts --------------------------------------------------------------------------

    def stages(self, conn: Connection, keys: Sequence[str]) -> dict[str, str]:
        """{account: stage} of the accounts among `keys` that have one."""
        found: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            rows = conn.execute(select(ACCOUNTS.c.key, ACCOUNTS.c.stage).where(ACCOUNTS.c.key.in_(chunk)))
            found.update({key: stage for key, stage in rows})
        return found

    def set_stage(
        self,
        conn: Connection,
        key: str,
        stage: str,
        engagement: float,
        people: list[dict[str, Any]],
        owner: str | None,
        now: datetime,
    ) -> None:
        values = {"stage": stage, "engagement": engagement, "people": people, "owner": owner, "changed_at": now}
        done = conn.execute(update(ACCOUNTS).where(ACCOUNTS.c.key == key).values(**values))
        if not done.rowcount:
            conn.execute(insert(ACCOUNTS).values(key=key, **values))

    def hot(self, limit: int = 100) -> list[AccountRow]:
        """Hot accounts, latest first."""
        with self.store.reading() as conn:
            rows = conn.execute(
                select(ACCOUNTS).where(ACCOUNTS.c.stage == "hot").order_by(ACCOUNTS.c.changed_at.desc()).limit(limit)
            ).all()
        return cast(list[AccountRow], rows)

    def by_key(self, key: str) -> AccountRow | None:
        with self.store.reading() as conn:
            row = conn.execute(select(ACCOUNTS).where(ACCOUNTS.c.key == key)).first()
        return cast(AccountRow | None, row)

    # -- promotions ------------------------------------------------------------------------

    def add_promotions(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            conn.execute(insert(PROMOTIONS), list(rows))

    def times_released(self, conn: Connection, key: str) -> int:
        found = conn.execute(
            select(func.count()).where(PROMOTIONS.c.key == key, PROMOTIONS.c.status == "released")
        ).scalar()
        return int(found or 0)

    def held_keys(self, conn: Connection) -> set[str]:
        """Keys of the promotions waiting for review."""
        return set(conn.execute(select(PROMOTIONS.c.key).where(PROMOTIONS.c.status == "held")).scalars())

    def released_per_owner(self, conn: Connection, since: datetime) -> dict[str, int]:
        """How many promotions each owner was handed since `since`."""
        rows = conn.execute(
            select(PROMOTIONS.c.owner, func.count())
            .where(PROMOTIONS.c.status == "released", PROMOTIONS.c.released_at >= since)
            .group_by(PROMOTIONS.c.owner)
        )
        return counts(rows)

    def held(self, limit: int | None = None) -> list[PromotionRow]:
        """Promotions waiting for review, strongest first."""
        query = (
            select(PROMOTIONS)
            .where(PROMOTIONS.c.status == "held")
            .order_by(PROMOTIONS.c.strength.desc(), PROMOTIONS.c.id)
        )
        if limit is not None:
            query = query.limit(limit)
        with self.store.reading() as conn:
            return cast(list[PromotionRow], conn.execute(query).all())

    def held_count(self) -> int:
        with self.store.reading() as conn:
            found = conn.execute(select(func.count()).where(PROMOTIONS.c.status == "held")).scalar()
        return int(found or 0)

    def claim_held(self, conn: Connection, promotion_id: int, by: str, now: datetime) -> bool:
        """Mark a held promotion released; False when it was not held any more."""
        done = conn.execute(
            update(PROMOTIONS)
            .where(PROMOTIONS.c.id == promotion_id, PROMOTIONS.c.status == "held")
            .values(status="released", released_at=now, released_by=by)
        )
        return bool(done.rowcount)
