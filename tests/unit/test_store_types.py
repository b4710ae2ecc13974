"""Timestamps read back from SQLite text are always timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.dialects import sqlite

from nurture.store.types import UTCDateTime


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-02 10:00:00.000000", datetime(2026, 3, 2, 10, 0, tzinfo=UTC)),  # as nurture writes it
        ("2026-03-02 10:00:00", datetime(2026, 3, 2, 10, 0, tzinfo=UTC)),
        ("2026-03-02", datetime(2026, 3, 2, tzinfo=UTC)),  # date only: naive text is UTC too
        ("2026-03-02T10:00:00+01:00", datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),  # an offset is honoured
    ],
)
def test_stored_text_reads_back_as_utc(text: str, expected: datetime) -> None:
    value = UTCDateTime().process_result_value(text, sqlite.dialect())
    assert value == expected
    assert value is not None and value.tzinfo is UTC
