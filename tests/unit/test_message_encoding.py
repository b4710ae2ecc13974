"""The message builder's shortcuts give exactly what the standard library's encoders give."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from nurture.mail.message import clean_header, date_header


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from([" ", "a", "\t", "\n", "\x7f", "\u00a0", "\u2028", "é", "\x1c", "\x85"])))
def test_clean_header_collapses_exactly_as_before(value: str) -> None:
    assert clean_header(value) == " ".join(re.sub(r"[\x00-\x1f\x7f]+", " ", value).split())


def test_the_date_header_is_format_datetime_whatever_the_zone_and_microsecond() -> None:
    base = datetime(2026, 3, 2, 10, 0, 0, 123, tzinfo=UTC)
    dates = [
        base,
        base + timedelta(microseconds=500_000),
        base.astimezone(timezone(timedelta(hours=9))),  # the same instant, another offset
        base.astimezone(timezone(timedelta(hours=-5, minutes=-30))),
        base.replace(tzinfo=None),  # naive
        base + timedelta(seconds=1),
    ]
    for date in dates * 2:
        assert date_header(date) == format_datetime(date)
