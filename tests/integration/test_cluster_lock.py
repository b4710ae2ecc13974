"""Once-a-day jobs run on one daemon of a cluster."""

from __future__ import annotations

import pytest

from nurture.clock import SystemClock
from nurture.store import Store
from nurture.store.db import make_engine


@pytest.mark.postgres
def test_only_one_holder_of_a_cluster_lock_at_a_time(pg_url: str) -> None:
    first, second = Store(make_engine(pg_url), SystemClock()), Store(make_engine(pg_url), SystemClock())
    with first.cluster_lock("daily") as mine:
        assert mine
        with second.cluster_lock("daily") as theirs:
            assert not theirs
        with second.cluster_lock("other job") as other:
            assert other
    with second.cluster_lock("daily") as after:
        assert after


def test_sqlite_needs_no_cluster_lock(sqlite_url: str) -> None:
    store = Store(make_engine(sqlite_url), SystemClock())
    with store.cluster_lock("daily") as mine, store.cluster_lock("daily") as again:
        assert mine and again
