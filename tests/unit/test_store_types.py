"""Stored values read back as they were written: timestamps as timezone-aware UTC, JSON
columns whatever the standard `json` module wrote."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.dialects import sqlite

from nurture.clock import FakeClock
from nurture.store import Store
from nurture.store.db import make_engine
from nurture.store.migrate import upgrade
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


def test_custom_fields_read_back_whole_even_where_only_the_standard_json_module_can(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'json.db'}")
    upgrade(engine)
    store = Store(engine, FakeClock(datetime(2026, 3, 2, tzinfo=UTC)))
    custom = {"ratio": float("nan"), "budget": float("inf"), "名前": "テスト", "nested": {"a": [1, 2.5, None]}}
    with engine.begin() as conn:
        store.leads.upsert(conn, {"email": "a@x.example", "custom": custom})
    row = store.leads.by_email("a@x.example")
    assert row is not None
    assert math.isnan(row.custom["ratio"])
    assert row.custom["budget"] == float("inf")
    assert {k: v for k, v in row.custom.items() if k != "ratio"} == {k: v for k, v in custom.items() if k != "ratio"}
