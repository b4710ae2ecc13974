"""Injected time: every component asks a Clock, never the system directly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that only moves when told to, for tests and simulation."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, when: datetime) -> None:
        self._now = when


class AcceleratedClock:
    """Real time sped up by a factor, anchored at a start instant (for demos)."""

    def __init__(self, start: datetime, factor: float, origin: Clock | None = None) -> None:
        self._origin = origin or SystemClock()
        self._anchor_real = self._origin.now()
        self._anchor_virtual = start
        self.factor = factor

    def now(self) -> datetime:
        elapsed = self._origin.now() - self._anchor_real
        return self._anchor_virtual + elapsed * self.factor


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)
