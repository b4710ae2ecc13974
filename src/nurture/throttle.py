"""Login throttling: after a few wrong passwords for a user, or from an address, further
attempts are refused for a while, growing with the failures.

The counts live in the database (`store.access`), so every `serve` and `run` process on it,
and a restarted one, sees the same failures: a guesser gains nothing by spreading attempts
over processes or waiting for a restart. Times are the database's clock, like leases, so
hosts whose clocks drift agree on when a block ends. This module is the pure policy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Failures:
    """The wrong passwords counted for one key (a user name or a client address)."""

    count: int
    blocked_until: datetime | None
    last: datetime


@dataclass(frozen=True)
class ThrottlePolicy:
    """`free_allowed` wrong passwords per user and per address are free; each one after that
    blocks that key for `base`, doubling up to `ceiling`. A success clears the user's count
    (not the address's: one address guessing many users stays throttled). Counts idle for
    `forget_after` start again from zero."""

    free_allowed: int = 5
    base: timedelta = timedelta(seconds=2)
    ceiling: timedelta = timedelta(minutes=15)
    forget_after: timedelta = timedelta(hours=1)

    def after_failure(self, before: Failures | None, now: datetime) -> Failures:
        """The key's record after one more wrong password at `now`."""
        if before is None or now - before.last > self.forget_after:
            before = Failures(0, None, now)
        count = before.count + 1
        extra = count - self.free_allowed
        blocked_until = before.blocked_until
        if extra > 0:
            blocked_until = now + min(self.ceiling, self.base * 2 ** (extra - 1))
        return Failures(count, blocked_until, now)

    @staticmethod
    def wait(records: list[Failures], now: datetime) -> float:
        """Seconds until an attempt may be made (0: now), given the records of its keys."""
        ends = [r.blocked_until for r in records if r.blocked_until is not None]
        return max([0.0, *((end - now).total_seconds() for end in ends)])


def throttle_keys(user: str, address: str) -> tuple[str, str]:
    """The two keys a login attempt counts against: its user name and its client address."""
    return f"user:{user.strip().lower()}"[:300], f"addr:{address}"[:300]
