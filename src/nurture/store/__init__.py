"""The store: the only package that speaks SQL.

`Store` is the facade the rest of nurture holds. Its parts, one per family of tables:

    store.leads          leads, suppressions, stage changes        (store/leads.py)
    store.lists          static and suppression lists               (store/lists.py)
    store.events         behaviour events                           (store/events.py)
    store.retention      event partitions, pruning, daily rollups   (store/retention.py)
    store.enrolments     enrolments; the advance job's claim/apply  (store/enrolments.py)
    store.sends          the email outbox                           (store/sends.py)
    store.notifications  the notification outbox                   (store/notifications.py)
    store.versions       scenario versions                          (store/versions.py)
    store.experiments    experiments, arms, decisions, goal inputs  (store/experiments.py)
    store.settings       small named values                         (store/settings.py)
    store.reports        read-only summaries                        (store/reports.py)
    store.tallies        counts kept by triggers, for the summaries (store/tallies.py)
    store.outcomes       what became of each email and enrolment, for the scenario
                         report's counters                          (store/outcomes.py)
    store.access         API keys and dashboard users               (store/access.py)
    store.consents       consent records, person exports, erasures  (store/consents.py)
    store.accounts       accounts as accounts; promotions, released or held (store/accounts.py)
    store.feedback       bounces, complaints, ESP events; the suppression list as a
                         whole; scenario pauses and reputation      (store/feedback.py)

Both outboxes are leased work queues over one implementation (store/queue.py). Reads
use `store.reading()`; a write spanning several parts runs in `store.transaction()` and
passes its connection to each part's method.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from nurture.clock import Clock
from nurture.store.base import Connection
from nurture.store.db import is_postgres, make_engine


class Store:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        from nurture.store.access import Access
        from nurture.store.accounts import Accounts
        from nurture.store.consents import Consents
        from nurture.store.enrolments import Enrolments
        from nurture.store.events import Events
        from nurture.store.experiments import Experiments
        from nurture.store.feedback import Feedback
        from nurture.store.leads import Leads
        from nurture.store.lists import Lists
        from nurture.store.notifications import Notifications
        from nurture.store.outcomes import Outcomes
        from nurture.store.reports import Reports
        from nurture.store.retention import Retention
        from nurture.store.sends import Sends
        from nurture.store.settings import Settings
        from nurture.store.tallies import Tallies
        from nurture.store.versions import Versions

        self.engine = engine
        self.clock = clock
        self.postgres = is_postgres(engine)
        self.leads = Leads(self)
        self.lists = Lists(self)
        self.events = Events(self)
        self.enrolments = Enrolments(self)
        self.sends = Sends(self)
        self.notifications = Notifications(self)
        self.versions = Versions(self)
        self.experiments = Experiments(self)
        self.settings = Settings(self)
        self.tallies = Tallies(self)
        self.outcomes = Outcomes(self)
        self.reports = Reports(self)
        self.retention = Retention(self)
        self.access = Access(self)
        self.consents = Consents(self)
        self.accounts = Accounts(self)
        self.feedback = Feedback(self)

    @classmethod
    def open(cls, url: str, clock: Clock) -> Store:
        """A store on the database at `url` (SQLite path URL or PostgreSQL)."""
        return cls(make_engine(url), clock)

    def reading(self) -> Connection:
        """A connection for reads only: on SQLite it does not take the write lock."""
        return self.engine.connect().execution_options(read_only=True)

    def transaction(self) -> AbstractContextManager[Connection]:
        """One transaction, committed when the block ends without an exception."""
        return self.engine.begin()

    @contextmanager
    def cluster_lock(self, name: str) -> Iterator[bool]:
        """Whether this worker may run the cluster-wide job `name` now.

        PostgreSQL: a session advisory lock, held for the block, so one daemon of many runs
        it. SQLite serves one host, where the database's write lock already serialises jobs.
        """
        if not self.postgres:
            yield True
            return
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        with self.engine.connect() as conn:
            got = bool(conn.execute(select(func.pg_try_advisory_lock(key))).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(select(func.pg_advisory_unlock(key)))
                    conn.commit()


__all__ = ["Connection", "Store"]
