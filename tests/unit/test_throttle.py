"""Login throttling per user and per address, on a timer the test moves."""

from __future__ import annotations

from nurture.throttle import LoginThrottle


class Timer:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_after_the_free_attempts_each_failure_blocks_longer_and_waiting_it_out_allows_one_more() -> None:
    timer = Timer()
    throttle = LoginThrottle(free_allowed=3, base=2, ceiling=60, timer=timer)
    for _ in range(3):
        assert throttle.wait_for("max", "10.0.0.1") == 0
        throttle.failed("max", "10.0.0.1")
    assert throttle.wait_for("max", "10.0.0.1") == 0
    throttle.failed("max", "10.0.0.1")
    assert throttle.wait_for("max", "10.0.0.1") == 2
    timer.now += 2
    throttle.failed("max", "10.0.0.1")
    assert throttle.wait_for("max", "10.0.0.1") == 4


def test_the_user_is_throttled_from_any_address_and_the_address_for_any_user() -> None:
    timer = Timer()
    throttle = LoginThrottle(free_allowed=1, base=10, timer=timer)
    throttle.failed("max", "10.0.0.1")
    throttle.failed("max", "10.0.0.2")
    assert throttle.wait_for("max", "10.0.0.9") > 0  # the user, from a new address
    throttle.failed("eve", "10.0.0.3")
    throttle.failed("bob", "10.0.0.3")
    assert throttle.wait_for("zoe", "10.0.0.3") > 0  # the address, guessing another user


def test_a_success_clears_the_user_but_not_a_guessing_address() -> None:
    timer = Timer()
    throttle = LoginThrottle(free_allowed=1, base=10, timer=timer)
    throttle.failed("max", "10.0.0.1")
    throttle.failed("max", "10.0.0.1")
    timer.now += 10
    throttle.succeeded("max", "10.0.0.2")
    assert throttle.wait_for("max", "10.0.0.2") == 0
    assert throttle.wait_for("max", "10.0.0.1") == 0  # the block ran out; the record remains
    throttle.failed("ann", "10.0.0.1")
    assert throttle.wait_for("ann", "10.0.0.1") > 0
