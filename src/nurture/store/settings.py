"""Small named values the daemon keeps between runs (watermarks, the round-robin turn)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from nurture.store.base import Connection, Part
from nurture.store.tables import SETTINGS


class Settings(Part):
    def get(self, conn: Connection, key: str) -> str | None:
        value: str | None = conn.execute(select(SETTINGS.c.value).where(SETTINGS.c.key == key)).scalar_one_or_none()
        return value

    def put(self, conn: Connection, key: str, value: str) -> None:
        """Set `key` to `value`, in one statement: daemons that write the same key at once
        (their first runs of a job, say) do not collide."""
        statement = (postgresql if self.postgres else sqlite).insert(SETTINGS).values(key=key, value=value)
        conn.execute(statement.on_conflict_do_update(index_elements=[SETTINGS.c.key], set_={"value": value}))
