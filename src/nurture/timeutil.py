"""Durations, weekday targets and send windows.

Internally every instant is a timezone-aware UTC datetime; local time appears only
here, where a weekday/time or a send window is interpreted in a lead's zone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nurture.errors import DurationError

_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"^(?:\d+[wdhms])+$")
_PART = re.compile(r"(\d+)([wdhms])")

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SHORT = {d[:3]: i for i, d in enumerate(WEEKDAYS)}


def parse_duration(text: str) -> timedelta:
    """Parse '3d', '36h', '1w2d', '90m' into a timedelta."""
    compact = str(text).strip().lower().replace(" ", "")
    if not _DURATION.match(compact):
        raise DurationError(f"bad duration {text!r}: use a number and a unit, e.g. '3d', '36h', '90m', '1w'")
    seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(compact))
    if seconds <= 0:
        raise DurationError(f"bad duration {text!r}: must be longer than zero")
    return timedelta(seconds=seconds)


def parse_weekday(name: str) -> int:
    key = name.strip().lower()[:3]
    if key not in _SHORT:
        raise DurationError(f"unknown weekday {name!r}: use monday … sunday")
    return _SHORT[key]


def parse_clock_time(text: str) -> time:
    match = re.fullmatch(r"(\d{1,2}):(\d{2})", str(text).strip())
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        raise DurationError(f"bad time of day {text!r}: use HH:MM, e.g. '09:30'")
    return time(int(match[1]), int(match[2]))


@dataclass(frozen=True)
class WeekdayTime:
    """'tuesday 10:00': the next such local moment strictly after a given instant."""

    weekday: int
    at: time

    @classmethod
    def parse(cls, text: str) -> WeekdayTime:
        parts = str(text).split()
        if len(parts) != 2:
            raise DurationError(f"bad 'until' {text!r}: use a weekday and a time, e.g. 'tuesday 10:00'")
        return cls(parse_weekday(parts[0]), parse_clock_time(parts[1]))

    def next_after(self, instant: datetime, tz: ZoneInfo) -> datetime:
        local = instant.astimezone(tz)
        days = (self.weekday - local.weekday()) % 7
        candidate = datetime.combine(local.date() + timedelta(days=days), self.at, tz)
        if candidate <= local:
            candidate += timedelta(days=7)
        return candidate.astimezone(UTC)


def zone(name: str | None, fallback: str = "UTC") -> ZoneInfo:
    """The zone called `name`, or `fallback` when the name is empty or unknown."""
    for candidate in (name, fallback, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def is_valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@dataclass(frozen=True)
class SendWindow:
    """Local days and hours in which email may go out; outside them sends wait."""

    days: frozenset[int]
    start: time
    end: time

    def contains(self, instant: datetime, tz: ZoneInfo) -> bool:
        local = instant.astimezone(tz)
        return local.weekday() in self.days and self.start <= local.time() < self.end

    def next_open(self, instant: datetime, tz: ZoneInfo) -> datetime:
        """`instant` itself when inside the window, else the next moment the window opens."""
        if self.contains(instant, tz):
            return instant
        local = instant.astimezone(tz)
        for offset in range(8):
            day = local.date() + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opening = datetime.combine(day, self.start, tz)
            if opening > local:
                return opening.astimezone(UTC)
        raise DurationError("send window has no open day")  # unreachable when days is non-empty


ALWAYS = SendWindow(frozenset(range(7)), time(0, 0), time(23, 59, 59, 999999))
