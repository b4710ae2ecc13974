"""The login throttle's policy, on times the test chooses (the counts live in the database:
tests/integration/test_web_guards.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nurture.throttle import ThrottlePolicy, throttle_keys

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def test_after_the_free_attempts_each_failure_blocks_longer_and_waiting_it_out_allows_one_more() -> None:
    policy = ThrottlePolicy(free_allowed=3, base=2 * S, ceiling=60 * S)
    record = None
    for _ in range(3):
        record = policy.after_failure(record, T0)
        assert policy.wait([record], T0) == 0
    record = policy.after_failure(record, T0)
    assert policy.wait([record], T0) == 2
    record = policy.after_failure(record, T0 + 2 * S)
    assert policy.wait([record], T0 + 2 * S) == 4
    for _ in range(10):
        record = policy.after_failure(record, T0 + 2 * S)
    assert policy.wait([record], T0 + 2 * S) == 60  # the ceiling


def test_the_longest_block_of_the_user_and_the_address_counts() -> None:
    policy = ThrottlePolicy(free_allowed=1, base=10 * S)
    user = policy.after_failure(policy.after_failure(None, T0), T0)
    address = policy.after_failure(None, T0)
    assert policy.wait([address], T0) == 0 and policy.wait([user, address], T0) == 10


def test_failures_idle_past_forget_after_start_again_from_zero() -> None:
    policy = ThrottlePolicy(free_allowed=1, base=10 * S, forget_after=timedelta(hours=1))
    record = policy.after_failure(policy.after_failure(None, T0), T0)
    assert record.count == 2
    later = T0 + timedelta(hours=2)
    again = policy.after_failure(record, later)
    assert again.count == 1 and policy.wait([again], later) == 0


def test_user_names_count_whatever_their_case_and_spacing() -> None:
    assert throttle_keys(" Max ", "10.0.0.1") == ("user:max", "addr:10.0.0.1")
