"""Static and suppression lists: members by email, imported from files."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update

from nurture.store.base import Connection, Part, counts, insert_ignore
from nurture.store.tables import LEADS, LIST_MEMBERS


class Lists(Part):
    def add(self, conn: Connection, name: str, emails: Iterable[str], now: datetime) -> int:
        """Add addresses to list `name`; returns how many were new to it. The leads with these
        addresses count as changed, so the next enrol run looks at them again."""
        rows = [{"list_name": name, "email": e.strip().lower(), "added_at": now} for e in emails if e.strip()]
        if not rows:
            return 0
        result = conn.execute(insert_ignore(self.postgres, LIST_MEMBERS), rows)
        addresses = [r["email"] for r in rows]
        for start in range(0, len(addresses), 1000):
            conn.execute(update(LEADS).where(LEADS.c.email.in_(addresses[start : start + 1000])).values(updated_at=now))
        return max(result.rowcount, 0)

    def clear(self, conn: Connection, name: str) -> int:
        """Empty list `name` (before an import that replaces it)."""
        return max(conn.execute(delete(LIST_MEMBERS).where(LIST_MEMBERS.c.list_name == name)).rowcount, 0)

    def of(self, conn: Connection, emails: Sequence[str]) -> dict[str, set[str]]:
        """email → the lists it is on, for the given addresses (lower-cased)."""
        found: dict[str, set[str]] = defaultdict(set)
        if not emails:
            return found
        rows = conn.execute(
            select(LIST_MEMBERS.c.email, LIST_MEMBERS.c.list_name).where(
                LIST_MEMBERS.c.email.in_([e.lower() for e in emails])
            )
        )
        for email, name in rows:
            found[email].add(name)
        return found

    def sizes(self) -> dict[str, int]:
        """list name → members."""
        with self.store.reading() as conn:
            return counts(
                conn.execute(select(LIST_MEMBERS.c.list_name, func.count()).group_by(LIST_MEMBERS.c.list_name))
            )
