"""`nurture run`: APScheduler drives a few periodic jobs; per-lead timing lives in `due_at`.

Jobs: enrol (put matching leads into scenarios), advance (step due enrolments), send
(drain the outbox) and housekeeping (reload changed scenario files). Each job runs at
most once at a time; SIGTERM/SIGINT stop the scheduler, let running jobs finish their
batch, and close SMTP connections. All state is in the database, so a restart resumes.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from nurture.clock import Clock
from nurture.config import Settings
from nurture.consent.model import DEFAULT_TOPIC
from nurture.errors import NurtureError
from nurture.jobs.advance import Advancer, AdvanceStats
from nurture.jobs.catalog import Catalog
from nurture.jobs.enrol import Enroller
from nurture.jobs.experiments import Experimenter, ExperimentStats
from nurture.jobs.feedback import FeedbackHandler
from nurture.jobs.notify import Notifier, NotifyStats, queue_digests
from nurture.jobs.qualify import Qualifier, QualifyStats
from nurture.jobs.send import DrainStats, Outbox
from nurture.mail.sender import SmtpPool
from nurture.retention import prune_events
from nurture.runtime.engine import FrequencyCap
from nurture.store import Store
from nurture.store.db import make_engine

log = logging.getLogger("nurture.daemon")
HEARTBEAT = "heartbeat:"  # kv key prefix: one row per daemon, read by /metrics
# A job still running when its next interval comes is skipped by design (max_instances=1).
logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
# transitions logs every state change at INFO: far too much for thousands of leads a tick.
logging.getLogger("transitions").setLevel(logging.WARNING)


def worker_name(settings: Settings) -> str:
    return settings.worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Totals:
    enrolled: int = 0
    advanced: int = 0
    sent: int = 0
    failed: int = 0
    ticks: int = 0
    errors: list[str] = field(default_factory=list)


class Daemon:
    def __init__(self, settings: Settings, clock: Clock, store: Store | None = None) -> None:
        self._paused = ""  # the reason sending is paused, while it is
        self.settings = settings
        self.clock = clock
        self.store = store or Store(make_engine(settings.database_url), clock)
        self.worker = worker_name(settings)
        self.catalog = Catalog(self.store, settings.scenarios_dir, settings.templates_dir)
        cap = FrequencyCap(settings.frequency_cap, settings.frequency_period)
        lookback = timedelta(days=settings.events_lookback_days)
        self.advancer = Advancer(
            self.store,
            self.catalog,
            clock,
            worker=self.worker,
            batch_size=settings.batch_size,
            lease=settings.lease,
            cap=cap,
            events_lookback=lookback,
        )
        self.enroller = Enroller(self.store, self.catalog, clock, events_lookback=lookback)
        self.qualifier = Qualifier(self.store, self.catalog, clock)
        self.experimenter = Experimenter(self.store, self.catalog, clock, base_url=settings.base_url)
        self.pool: SmtpPool | None = None
        self.outbox: Outbox | None = None
        self.notifier: Notifier | None = None
        self.totals = Totals()
        self._stop = asyncio.Event()
        self._locks: dict[str, asyncio.Lock] = {}
        self.job_seconds: dict[str, float] = {}

    # -- jobs (each also callable directly, e.g. by tests and the demo) -----------------------

    def load(self) -> list[str]:
        return self.catalog.reload()

    async def enrol(self) -> int:
        counts = await asyncio.to_thread(self.enroller.run_once)
        self.totals.enrolled += sum(counts.values())
        return sum(counts.values())

    async def advance(self) -> AdvanceStats:
        stats = await asyncio.to_thread(self.advancer.run_until_idle, stopping=self._stop.is_set)
        self.totals.advanced += stats.applied
        return stats

    async def send(self) -> DrainStats:
        outbox = self._outbox()
        stats = await outbox.drain_until_idle(stopping=self._stop.is_set)
        if stats.paused and stats.paused != self._paused:
            log.warning("sending paused: %s", stats.paused)
        elif self._paused and not stats.paused:
            log.info("sending resumed")
        self._paused = stats.paused
        self.totals.sent += stats.sent
        self.totals.failed += stats.failed + stats.bounced
        self.totals.errors += stats.errors[-5:]
        return stats

    async def qualify(self) -> QualifyStats:
        return await asyncio.to_thread(self.qualifier.run_once)

    async def experiments(self) -> ExperimentStats:
        return await asyncio.to_thread(self.experimenter.run_once)

    async def notify(self) -> NotifyStats:
        self._outbox()
        assert self.notifier is not None
        return await self.notifier.drain_once()

    async def housekeeping(self) -> None:
        for note in await asyncio.to_thread(self.catalog.reload):
            log.info("scenario loaded: %s", note)
        # Keep the tallies' per-transaction rows few, so reading the counts stays cheap.
        await asyncio.to_thread(self.store.tallies.fold)
        await asyncio.to_thread(self._daily)

    def heartbeat(self) -> None:
        """Publish this daemon's liveness, last job durations and a pause of sending (the
        SMTP server refused us) for `/metrics` and `nurture status`."""
        beat: dict[str, Any] = {"at": self.clock.now().isoformat(), "jobs": self.job_seconds}
        if self.pool is not None and self.pool.paused:
            beat["paused"] = {"reason": self.pool.pause.reason, "seconds": round(self.pool.pause.remaining(), 1)}
        with self.store.transaction() as conn:
            self.store.settings.put(conn, f"{HEARTBEAT}{self.worker}", json.dumps(beat))

    def _daily(self) -> None:
        """Once a day, by one daemon of the cluster: rescore everyone (engagement decays),
        queue owners' digests, keep only the network part of old client addresses, make the
        coming months' event partitions (PostgreSQL) and prune events past their retention."""
        now = self.clock.now()
        with self.store.cluster_lock("daily") as mine:
            if not mine:
                return
            with self.store.reading() as conn:
                last = self.store.settings.get(conn, "daily:last")
            if last and datetime.fromisoformat(last) + timedelta(days=1) > now:
                return
            if self.qualifier.run_once(everyone=True).skipped:
                return  # another daemon was qualifying: the daily rescore comes at the next try
            if self.catalog.scoring is not None:
                queue_digests(self.store, self.catalog.scoring, now)
            if self.settings.tracking_address_days > 0:
                kept = timedelta(days=self.settings.tracking_address_days)
                self.store.events.forget_addresses(now - kept)
            try:
                self.store.retention.ensure_partitions()
            except Exception:  # months are made three ahead, and the default partition takes any
                # event meanwhile: tomorrow's run tries again, and today's rescore is not repeated
                log.exception("event partitions not made")
            if self.settings.event_retention_days:
                try:
                    pruned = prune_events(
                        self.store, self.settings, self.catalog.scoring, overlap=self.qualifier.overlap
                    )
                except NurtureError as exc:
                    log.warning("events not pruned: %s", exc)
                else:
                    log.info("pruned %d events before %s", pruned.events, f"{pruned.cutoff:%Y-%m-%d}")
            with self.store.transaction() as conn:
                self.store.settings.put(conn, "daily:last", now.isoformat())

    async def tick(self) -> None:
        """One round of every job, in order: what a scheduler would do, but deterministic."""
        await self.qualify()
        await self.enrol()
        await self.advance()
        await self.send()
        await self.experiments()
        await self.notify()
        self.totals.ticks += 1

    def _topic(self, scenario_id: str) -> str:
        """The topic a scenario mails under, as its current file says."""
        compiled = self.catalog.current.get(scenario_id)
        return compiled.scenario.topic if compiled is not None else DEFAULT_TOPIC

    def _outbox(self) -> Outbox:
        if self.outbox is None:
            self.pool = SmtpPool(self.settings)
            names = {sid: c.scenario.name for sid, c in self.catalog.current.items()}
            self.notifier = Notifier(
                self.store,
                self.settings,
                self.clock,
                self.pool,
                worker=self.worker,
                sender=self.settings.notify_sender,
            )
            self.outbox = Outbox(
                self.store,
                self.settings,
                self.clock,
                self.pool,
                worker=self.worker,
                templates_dir=self.settings.templates_dir,
                scenario_names=names,
                untracked_opens=frozenset(sid for sid, c in self.catalog.current.items() if not c.scenario.track_opens),
                scenario_utm={sid: c.utm for sid, c in self.catalog.current.items()},
                name_order=self.catalog.name_order,
                topic_of=self._topic,
                feedback=FeedbackHandler(self.store, self.settings, self.clock).handle,
            )
        return self.outbox

    async def close(self) -> None:
        """Close the SMTP connections and end the render processes (after `run`, or after
        driving the daemon with `tick`)."""
        if self.pool is not None:
            await self.pool.close()
        if self.outbox is not None:
            await self.outbox.close()

    # -- the scheduled daemon ----------------------------------------------------------------

    def stop(self) -> None:
        """Stop after the batches under way (SIGTERM, SIGINT)."""
        if not self._stop.is_set():
            log.info("daemon %s stopping: finishing the batches under way", self.worker)
        self._stop.set()

    @staticmethod
    def tune_gc() -> None:
        """Move start-up objects (compiled scenarios, SQLAlchemy metadata) out of the GC's way.

        The daemon allocates many short-lived rows per batch; without this, collections of
        the older generations walk the long-lived start-up heap again and again.
        """
        gc.collect()
        gc.freeze()

    async def run(
        self, *, install_signals: bool = True, on_tick: Callable[[], Awaitable[None]] | None = None
    ) -> Totals:
        self._stop = asyncio.Event()
        if not self.catalog.current:
            self.load()
        self.tune_gc()
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        scheduler = AsyncIOScheduler(
            event_loop=loop, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        s = self.settings
        jobs: list[tuple[str, Callable[[], Awaitable[object]], float]] = [
            ("qualify", self.qualify, s.tick_seconds),
            ("enrol", self.enrol, s.enrol_seconds),
            ("notify", self.notify, s.send_seconds),
            ("advance", self.advance, s.tick_seconds),
            ("send", self.send, s.send_seconds),
            ("experiments", self.experiments, s.tick_seconds),
            ("housekeeping", self.housekeeping, max(60.0, s.enrol_seconds)),
        ]
        if on_tick is not None:
            jobs.append(("progress", on_tick, s.tick_seconds))
        for name, job, seconds in jobs:
            scheduler.add_job(
                self._guarded(name, job),
                "interval",
                seconds=seconds,
                id=name,
                name=name,
                next_run_time=_now_for_scheduler(),
            )
        await self._outbox().start()
        scheduler.start()
        log.info("daemon %s running", self.worker)
        try:
            await self._stop.wait()
        finally:
            # Let running jobs finish their batch before the scheduler goes: shutting it down
            # first would cancel them mid-send.
            scheduler.pause()
            for lock in list(self._locks.values()):
                async with lock:
                    pass
            scheduler.shutdown(wait=False)
            await self.close()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
        log.info("daemon %s stopped", self.worker)
        return self.totals

    def _guarded(self, name: str, job: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
        lock = self._locks.setdefault(name, asyncio.Lock())

        async def run() -> None:
            if self._stop.is_set() or lock.locked():
                return
            async with lock:
                started = time.perf_counter()
                try:
                    await job()
                except Exception:  # a failed job is logged and retried on its next interval
                    log.exception("job %s failed", name)
                self.job_seconds[name] = time.perf_counter() - started
                if name == "advance":
                    await asyncio.to_thread(self.heartbeat)

        return run


def _now_for_scheduler() -> object:
    # APScheduler schedules in real time: the first run of each job is "now" on the wall
    # clock. This is the only wall-clock read outside SystemClock: the scheduler is the edge.
    from datetime import datetime

    return datetime.now().astimezone()
