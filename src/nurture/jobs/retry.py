"""The retry policy of both outboxes, as a pure function of a failed attempt."""

from __future__ import annotations

from datetime import datetime, timedelta


def retry_at(attempts: int, max_attempts: int, base_seconds: float, now: datetime) -> datetime | None:
    """When to try again after the `attempts`-th attempt failed, or None to give up.

    Delays double from `base_seconds` (base, 2×base, 4×base, ...); after `max_attempts`
    attempts the row is given up on. A permanent failure is never retried: callers do
    not ask."""
    if attempts >= max_attempts:
        return None
    return now + timedelta(seconds=base_seconds * 2 ** max(attempts - 1, 0))
