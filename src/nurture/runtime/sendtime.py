"""Send-time optimisation: send each lead's email at the hour it engages most, inside the window.

Pure. The hour is learned from the lead's own bot-free opens and clicks (local hour of day in
the zone the send window is read in); with too few of them, from its account's (colleagues
at the same company), then from the scenario's whole audience; with none, the email goes as
soon as the window allows, as without the option. The chosen hour is always one the send
window allows, and the email goes at its first occurrence at or after the moment the lead
reached the step, so a lead waits at most about a week (a window with one day a week).

The caller builds the profiles (`hour_profile`) from events it has already judged: machine
activity (scanners, privacy proxies) says nothing about when a person reads email.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from nurture.scenario.expr import EventRecord
from nurture.timeutil import SendWindow

ENGAGEMENT = ("open", "click")
# Fewest events a profile needs before its best hour is trusted.
MIN_OWN, MIN_ACCOUNT, MIN_AUDIENCE = 3, 5, 20


@dataclass(frozen=True, slots=True)
class HourProfile:
    """Opens and clicks per local hour of day (24 counts) and whose they are."""

    counts: tuple[float, ...] = (0.0,) * 24
    source: str = ""

    @property
    def total(self) -> float:
        return sum(self.counts)


@dataclass(frozen=True, slots=True)
class SendTimeView:
    """The profiles a send step with `send_time: optimal` may learn from."""

    own: HourProfile | None = None
    account: HourProfile | None = None
    audience: HourProfile | None = None


@dataclass(frozen=True, slots=True)
class SendTime:
    at: datetime
    hour: int | None  # the learned local hour, None when nothing was learned
    why: str


def hour_profile(
    events: Iterable[EventRecord], tz: ZoneInfo, source: str, *, before: datetime | None = None
) -> HourProfile:
    """Local-hour histogram of the (already bot-free) opens and clicks in `events`."""
    counts = [0.0] * 24
    for event in events:
        if event.type in ENGAGEMENT and (before is None or event.at < before):
            counts[event.at.astimezone(tz).hour] += 1
    return HourProfile(tuple(counts), source)


def merge(profiles: Iterable[HourProfile], source: str) -> HourProfile:
    counts = [0.0] * 24
    for profile in profiles:
        for hour, count in enumerate(profile.counts):
            counts[hour] += count
    return HourProfile(tuple(counts), source)


def window_hours(window: SendWindow) -> list[int]:
    """Local hours of day that overlap the window."""
    start = window.start.hour
    end = window.end.hour + (1 if window.end.minute or window.end.second else 0)
    return list(range(start, min(end, 24)))


def best_hour(profile: HourProfile, hours: list[int]) -> int:
    """The allowed hour with most engagement, each hour counting half of each neighbour's
    (so one stray event does not win over a busy pair of hours); ties go to the earlier hour."""
    counts = profile.counts

    def smoothed(hour: int) -> float:
        return counts[hour] + 0.5 * counts[(hour - 1) % 24] + 0.5 * counts[(hour + 1) % 24]

    return max(hours, key=lambda h: (smoothed(h), -h))


def _pick(view: SendTimeView) -> tuple[HourProfile | None, str]:
    for profile, needed, whose in (
        (view.own, MIN_OWN, "the lead's own"),
        (view.account, MIN_ACCOUNT, "its account's"),
        (view.audience, MIN_AUDIENCE, "the scenario audience's"),
    ):
        if profile is not None and profile.total >= needed:
            return profile, f"{whose} {int(profile.total)} opens and clicks" + (
                f" ({profile.source})" if profile.source else ""
            )
    own = int(view.own.total) if view.own else 0
    return None, f"too little history (the lead has {own} opens and clicks; needs {MIN_OWN})"


def choose_send_time(arrived: datetime, window: SendWindow, tz: ZoneInfo, view: SendTimeView) -> SendTime:
    """When to send to a lead that reached the send step at `arrived`."""
    profile, source = _pick(view)
    if profile is None:
        at = window.next_open(arrived, tz)
        return SendTime(at, None, f"{source}: as soon as the send window allows")
    hour = best_hour(profile, window_hours(window))
    local = arrived.astimezone(tz)
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        if day.weekday() not in window.days:
            continue
        opens = max(datetime.combine(day, time(hour), tz), datetime.combine(day, window.start, tz))
        closes = datetime.combine(day, window.end, tz)
        if hour + 1 < 24:
            closes = min(closes, datetime.combine(day, time(hour + 1), tz))
        if local < closes:
            at = max(opens, local).astimezone(UTC)
            return SendTime(at, hour, f"best hour {hour:02d}:00 {tz.key} from {source}")
    at = window.next_open(arrived, tz)  # the window has no such hour this week (cannot happen)
    return SendTime(at, None, f"{source}: no window hour found; as soon as the window allows")


def at_window_start(arrived: datetime, window: SendWindow, tz: ZoneInfo) -> datetime:
    """When the email would go without the option, for comparisons (the report's lift)."""
    return window.next_open(arrived, tz)
