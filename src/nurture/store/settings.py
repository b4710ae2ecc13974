"""Small named values the daemon keeps between runs (watermarks, the round-robin turn)."""

from __future__ import annotations

from sqlalchemy import insert, select, update

from nurture.store.base import Connection, Part
from nurture.store.tables import SETTINGS


class Settings(Part):
    def get(self, conn: Connection, key: str) -> str | None:
        value: str | None = conn.execute(select(SETTINGS.c.value).where(SETTINGS.c.key == key)).scalar_one_or_none()
        return value

    def put(self, conn: Connection, key: str, value: str) -> None:
        if conn.execute(update(SETTINGS).where(SETTINGS.c.key == key).values(value=value)).rowcount == 0:
            conn.execute(insert(SETTINGS).values(key=key, value=value))
