"""Durations, weekday targets and send windows.

Internally every instant is a timezone-aware UTC datetime; local time appears only
here, where a weekday/time or a send window is interpreted in a lead's zone.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

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


@dataclass(frozen=True)
class Wait:
    """A wait as marketers mean it: days and weeks are calendar days that keep the lead's
    local clock time (`2d` from Friday 09:00 is Sunday 09:00 also across a daylight-saving
    change), hours, minutes and seconds are absolute time added after them."""

    days: int
    exact: timedelta

    def after(self, instant: datetime, tz: ZoneInfo) -> datetime:
        """The moment this wait started at `instant` ends, for a lead in zone `tz`.

        A local time that a change skips (02:30 on a spring-forward night) moves forward by
        the gap; one that happens twice takes the first.
        """
        if self.days:
            local = instant.astimezone(tz).replace(tzinfo=None) + timedelta(days=self.days)
            instant = local.replace(tzinfo=tz).astimezone(UTC)
        return instant + self.exact

    @property
    def nominal(self) -> timedelta:
        return timedelta(days=self.days) + self.exact


def parse_wait(text: str) -> Wait:
    """Parse '2d', '1w2d', '36h', '1d12h' into calendar days and absolute time."""
    total = parse_duration(text)  # validates and gives the clear error
    compact = str(text).strip().lower().replace(" ", "")
    days = sum(int(n) * (7 if u == "w" else 1) for n, u in _PART.findall(compact) if u in "wd")
    return Wait(days, total - timedelta(days=days))


class TimeError(DurationError):
    """A moment in time given by a user could not be understood."""


def parse_instant(text: str, now: datetime, where: str = "time") -> datetime:
    """A user's moment in time as an aware UTC datetime: '+2d3h' (after `now`), 'now', or
    ISO 8601 ('2026-03-02T10:00:00+09:00'; UTC when it has no offset)."""
    value = str(text).strip()
    hint = "use '+2d', 'now' or an ISO 8601 time such as '2026-03-02T10:00:00Z'"
    try:
        if value.lower() == "now":
            return now.astimezone(UTC)
        if value.startswith("+"):
            return (now + parse_duration(value[1:])).astimezone(UTC)
        parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
        parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except DurationError as exc:
        raise TimeError(f"{where}: bad time {value!r}: {exc}") from exc
    except OverflowError as exc:
        raise TimeError(f"{where}: time {value!r} is out of range") from exc
    except ValueError as exc:
        raise TimeError(f"{where}: bad time {value!r}: {exc}; {hint}") from exc


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


def parse_month_day(text: str) -> tuple[int, int]:
    """'04-29' → (4, 29)."""
    match = re.fullmatch(r"(\d{1,2})-(\d{1,2})", str(text).strip())
    if not match:
        raise DurationError(f"bad day {text!r}: use MM-DD, e.g. '12-28'")
    month, day = int(match[1]), int(match[2])
    try:
        date(2024, month, day)  # a leap year, so 02-29 is a day
    except ValueError as exc:
        raise DurationError(f"bad day {text!r}: no such day") from exc
    return month, day


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


def suggest_zone(name: str) -> str:
    """A did-you-mean hint for a misspelt IANA zone (`Asia/Tokio`, `tokyo`, `JST`)."""
    aliases = {"JST": "Asia/Tokyo", "CET": "Europe/Berlin", "EST": "America/New_York", "PST": "America/Los_Angeles"}
    if name.upper() in aliases:
        return f"did you mean '{aliases[name.upper()]}'?"
    zones = sorted(available_timezones())
    by_city = {z.rsplit("/", 1)[-1].lower(): z for z in zones}
    key = name.strip().replace(" ", "_").lower()
    if key in by_city:
        return f"did you mean '{by_city[key]}'?"
    close = difflib.get_close_matches(name, zones, n=1, cutoff=0.6) or [
        by_city[c] for c in difflib.get_close_matches(key.rsplit("/", 1)[-1], list(by_city), n=1, cutoff=0.75)
    ]
    return f"did you mean '{close[0]}'?" if close else "use an IANA name like 'Asia/Tokyo' or 'Europe/Berlin'"


def local_text(instant: datetime, tz: ZoneInfo) -> str:
    """An instant as a lead reads it: 'Tue 2026-03-03 09:00 JST'."""
    local = instant.astimezone(tz)
    return f"{local:%a %Y-%m-%d %H:%M} {local.tzname() or tz.key}"


def is_valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@lru_cache(maxsize=64)
def _holidays(country: str, year: int) -> dict[date, str]:
    import holidays

    try:
        calendar = holidays.country_holidays(country.upper(), years=year)
        if calendar.default_language:  # names in the country's own language: 元日, not New Year's Day
            calendar = holidays.country_holidays(country.upper(), years=year, language=calendar.default_language)
    except NotImplementedError:
        return {}
    return {day: str(name) for day, name in calendar.items()}


def holiday_calendar(country: str) -> dict[date, str] | None:
    """This year's public holidays of `country` (ISO code such as JP), or None when unknown."""
    import holidays

    if country.upper() not in holidays.list_supported_countries():
        return None
    return _holidays(country, datetime.now(UTC).year)


@dataclass(frozen=True)
class ClosedDays:
    """Days a send window stays shut: public holidays of some countries and yearly blackouts
    (Golden Week, お盆, 年末年始), as local dates."""

    countries: tuple[str, ...] = ()
    blackouts: tuple[tuple[str, tuple[int, int], tuple[int, int]], ...] = ()

    def reason(self, day: date) -> str | None:
        """Why `day` is closed ('public holiday: 憲法記念日', 'blackout: Golden Week'), or None."""
        for country in self.countries:
            name = _holidays(country, day.year).get(day)
            if name:
                return f"public holiday ({country.upper()}): {name}"
        key = (day.month, day.day)
        for name, first, last in self.blackouts:
            inside = first <= key <= last if first <= last else (key >= first or key <= last)
            if inside:
                return f"blackout: {name}"
        return None

    def __bool__(self) -> bool:
        return bool(self.countries or self.blackouts)


@dataclass(frozen=True)
class SendWindow:
    """Local days and hours in which email may go out; outside them sends wait."""

    days: frozenset[int]
    start: time
    end: time
    closed: ClosedDays = ClosedDays()

    def contains(self, instant: datetime, tz: ZoneInfo) -> bool:
        local = instant.astimezone(tz)
        if not (local.weekday() in self.days and self.start <= local.time() < self.end):
            return False
        return not self.closed or self.closed.reason(local.date()) is None

    def next_open(self, instant: datetime, tz: ZoneInfo) -> datetime:
        """`instant` itself when inside the window, else the next moment the window opens."""
        if self.contains(instant, tz):
            return instant
        local = instant.astimezone(tz)
        for offset in range(400 if self.closed else 8):
            day = local.date() + timedelta(days=offset)
            if day.weekday() not in self.days or (self.closed and self.closed.reason(day)):
                continue
            opening = datetime.combine(day, self.start, tz)
            if opening > local:
                return opening.astimezone(UTC)
        raise DurationError("send window has no open day within a year")

    def why_closed(self, instant: datetime, tz: ZoneInfo) -> str:
        """Why nothing may be sent at `instant`: the day, the hours, a holiday or a blackout."""
        local = instant.astimezone(tz)
        if self.closed and (reason := self.closed.reason(local.date())):
            return reason
        if local.weekday() not in self.days:
            return f"{WEEKDAYS[local.weekday()].capitalize()} is not a sending day"
        return f"outside sending hours {self.start:%H:%M}–{self.end:%H:%M}"


ALWAYS = SendWindow(frozenset(range(7)), time(0, 0), time(23, 59, 59, 999999))
