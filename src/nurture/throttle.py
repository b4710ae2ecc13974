"""Login throttling: after a few wrong passwords for a user, or from an address, further
attempts are refused for a while, growing with the failures. Pure: time comes from a
monotonic timer the caller passes (tests pass their own)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Record:
    failures: int = 0
    blocked_until: float = 0.0
    last: float = 0.0


class LoginThrottle:
    """`free_allowed` wrong passwords per user and per address are free; each one after that
    blocks that key for `base` seconds, doubling up to `ceiling`. A success clears the
    user's record (not the address's: one address guessing many users stays throttled).
    Records idle for `forget_after` seconds are dropped."""

    def __init__(
        self,
        free_allowed: int = 5,
        base: float = 2.0,
        ceiling: float = 900.0,
        forget_after: float = 3600.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_allowed, self.base, self.ceiling, self.forget_after = free_allowed, base, ceiling, forget_after
        self.timer = timer
        self._records: dict[str, _Record] = {}

    def _keys(self, user: str, address: str) -> tuple[str, str]:
        return f"user:{user.strip().lower()}", f"addr:{address}"

    def wait_for(self, user: str, address: str) -> float:
        """Seconds until an attempt for `user` from `address` may be made (0: now)."""
        now = self.timer()
        self._forget(now)
        waits = [self._records[k].blocked_until - now for k in self._keys(user, address) if k in self._records]
        return max([0.0, *waits])

    def failed(self, user: str, address: str) -> None:
        now = self.timer()
        for key in self._keys(user, address):
            record = self._records.setdefault(key, _Record())
            record.failures += 1
            record.last = now
            extra = record.failures - self.free_allowed
            if extra > 0:
                record.blocked_until = now + min(self.ceiling, self.base * 2 ** (extra - 1))

    def succeeded(self, user: str, address: str) -> None:
        self._records.pop(self._keys(user, address)[0], None)

    def _forget(self, now: float) -> None:
        if len(self._records) > 10_000 or any(now - r.last > self.forget_after for r in self._records.values()):
            self._records = {k: r for k, r in self._records.items() if now - r.last <= self.forget_after}
