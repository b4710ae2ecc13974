"""Column types shared by SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in Python; `timestamptz` on PostgreSQL, UTC text on SQLite.

    On SQLite the text is SQLAlchemy's own DATETIME format (so it sorts and compares as
    time), but converted here with the C-implemented `fromisoformat` rather than the
    generic regex parser: timestamps are on every hot path of the daemon.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return sqlite_text(value)
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime
        if isinstance(value, str):
            try:  # stored as naive UTC text; parsing with the offset is faster than replace()
                moment = datetime.fromisoformat(value + "+00:00")
            except ValueError:  # text that carries its own offset
                moment = datetime.fromisoformat(value)
        else:
            moment = value
        if moment.tzinfo is UTC:
            return moment
        # Naive (including date-only text, whose appended offset Python ignores) is UTC.
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def sqlite_text(value: datetime) -> str:
    """How a timezone-aware moment is stored on SQLite: naive UTC text, to the microsecond."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; use timezone-aware UTC")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def json_type() -> Any:
    """JSONB on PostgreSQL, JSON elsewhere."""
    return JSON().with_variant(JSONB(), "postgresql")
