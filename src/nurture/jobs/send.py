"""The send job: drain the outbox through the SMTP pool, exactly once per idempotency key.

A row is leased (status `sending`) before its message goes out and marked `sent` right
after the server accepts it. Marks are written by one task in group commits. Each sender
waits for the mark of its previous message to commit before it lets the body of its next
one go out (the envelope of the next one is exchanged meanwhile), so the only window for a
duplicate is a crash between the server's acceptance and that commit: at most one message
per sender, and there are as many senders as pooled connections. The Message-ID is derived
from the idempotency key, so even such a resend carries the same Message-ID and receivers
can recognise it.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from nurture.clock import Clock
from nurture.config import Settings
from nurture.consent.erasure import keyed_hash
from nurture.consent.model import DEFAULT_TOPIC, decide_send, regime_for
from nurture.feedback.events import FeedbackEvent, FeedbackKind
from nurture.jobs.retry import retry_at
from nurture.mail.compose import Composed, Composer, compose_in_worker, start_worker
from nurture.mail.dkim import signer_from_settings
from nurture.mail.message import BuiltMessage
from nurture.mail.sender import BOUNCE, FAIL, RETRY, SOFT_BOUNCE, Outcome, SmtpPool, classify
from nurture.mail.verp import return_path_from_settings
from nurture.scenario.templates import TemplateError, TemplateLimitError
from nurture.store import Store
from nurture.store.leads import LeadRow
from nurture.store.queue import Lease
from nurture.store.sends import ClaimedSend, SendMarks
from nurture.vocabulary import SendKind, SendStatus

RENDER_CHUNK = 50  # messages a render process composes per call
Ahead = tuple["asyncio.Future[list[Composed]]", int]  # a chunk being composed, and a row's place in it


class Marks:
    """`sent` marks waiting for their commit.

    A commit is made when a sender needs one (the body of its next message is about to go
    out) and at the end of the drain, and it takes every mark gathered by then: the other
    senders' marks ride along, so there are fewer commits than messages, and no sender
    ever waits for more than the commit of its own previous message. (Starting a commit as
    soon as a mark waits halves the marks per commit and, against a local PostgreSQL, sends
    fewer messages a second: each commit costs the server more than the wait it hides.)
    """

    def __init__(self) -> None:
        self.pending: list[tuple[int, str, asyncio.Future[None]]] = []
        self.wanted = asyncio.Event()
        self.closing = False
        self.broken: Exception | None = None

    def add(self, send_id: int, message_id: str) -> asyncio.Future[None]:
        committed = asyncio.get_running_loop().create_future()
        if self.broken is not None:
            committed.set_exception(self.broken)
            return committed
        self.pending.append((send_id, message_id, committed))
        return committed

    def fail(self, error: Exception) -> None:
        """The marker cannot commit (its connection failed): every mark fails with `error`."""
        self.broken = error
        items, self.pending = self.pending, []
        for _, _, committed in items:
            if not committed.done():
                committed.set_exception(error)

    async def committed(self, mark: asyncio.Future[None]) -> None:
        if not mark.done():
            self.wanted.set()
        await mark

    async def flush(self, marks: list[asyncio.Future[None]]) -> None:
        """Until these marks are committed (or their commit failed: the senders raise that)."""
        waiting = [mark for mark in marks if not mark.done()]
        if waiting:
            self.wanted.set()
            await asyncio.wait(waiting)

    def close(self) -> None:
        self.closing = True
        self.wanted.set()

    async def write(self, writer: SendMarks, clock: Clock) -> None:
        """The marker task: commit on demand until closed, then commit what is left."""
        while not (self.closing and not self.pending):
            await self.wanted.wait()
            self.wanted.clear()
            items, self.pending = self.pending, []
            if not items:
                continue
            pairs = [(send_id, message_id) for send_id, message_id, _ in items]
            try:
                await writer.commit(pairs, clock.now())
            except Exception as exc:  # the senders stop; unmarked rows stay leased and are retried
                for _, _, committed in items:
                    committed.set_exception(exc)
                continue
            for _, _, committed in items:
                committed.set_result(None)


@dataclass
class DrainStats:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    bounced: int = 0
    failed: int = 0
    suppressed: int = 0
    held: int = 0  # sends of paused scenarios, deferred
    skipped: int = 0  # no consent to the topic
    errors: list[str] = field(default_factory=list)
    paused: str = ""  # why sending is paused (the server refused us), if it is


PAUSE_RECHECK = timedelta(hours=1)


@dataclass(eq=False)
class _Batch:
    """A claimed batch on its way through the senders."""

    lease: Lease
    stats: DrainStats
    rows: list[ClaimedSend] = field(default_factory=list)  # the rows to compose and send
    leads: dict[int, LeadRow] = field(default_factory=dict)
    composed: dict[int, Ahead] = field(default_factory=dict)
    unsent: list[int] = field(default_factory=list)  # to give back untried
    left: int = 0  # messages queued and not yet through a sender
    queued: bool = False  # every message of the batch is queued
    started: bool = False  # a sender has taken one of its messages
    taken: set[int] = field(default_factory=set)  # rows a sender took to deliver
    marks: list[asyncio.Future[None]] = field(default_factory=list)  # of its messages delivered
    done: asyncio.Event = field(default_factory=asyncio.Event)  # every queued message through a sender
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # marks committed, the rest given back


def _add(total: DrainStats, stats: DrainStats) -> None:
    for name in ("claimed", "sent", "retried", "bounced", "failed", "suppressed", "held", "skipped"):
        setattr(total, name, getattr(total, name) + getattr(stats, name))
    total.errors += stats.errors


class Outbox:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        clock: Clock,
        pool: SmtpPool,
        *,
        worker: str,
        templates_dir: Path | None = None,
        scenario_names: dict[str, str] | None = None,
        untracked_opens: frozenset[str] = frozenset(),
        scenario_utm: dict[str, dict[str, str]] | None = None,
        name_order: str = "auto",
        topic_of: Callable[[str], str] | None = None,
        feedback: Callable[[list[FeedbackEvent]], object] | None = None,
    ) -> None:
        self.store = store
        # Where a soft bounce heard during the SMTP session goes to be counted (the daemon
        # passes the feedback handler, which also counts the ones reported later).
        self.feedback = feedback
        self.topic_of = topic_of or (lambda _scenario_id: DEFAULT_TOPIC)
        self.settings = settings
        self.clock = clock
        self.pool = pool
        self.worker = worker
        self.composer = Composer(
            templates_dir or settings.templates_dir,
            settings.base_url,
            settings.secret_key,
            settings.mail_domain,
            settings.unsubscribe_mailto,
            scenario_names or {},
            untracked_opens=untracked_opens,
            list_domain=settings.list_domain,
            signer=signer_from_settings(settings),
            return_path=return_path_from_settings(settings),
            sender=settings.sender_identity,
            scenario_utm=scenario_utm or {},
            name_order=name_order,
            confirmation_valid_hours=settings.confirmation_valid_hours,
        )
        self._renderers: ProcessPoolExecutor | None = None
        # A send starts before half the lease has passed and lasts at most one SMTP timeout,
        # so with a lease of at least three timeouts it ends while the lease still holds.
        self.lease = timedelta(seconds=max(settings.lease_seconds, settings.smtp_timeout * 3))
        self.timer: Callable[[], float] = time.monotonic  # what the lease is timed on (tests pass their own)

    async def _hold_paused(self, rows: list[ClaimedSend], now: datetime, stats: DrainStats) -> list[ClaimedSend]:
        """Sends of scenarios the reputation guard paused wait (an hour at a time, or until
        the scenario is resumed): deferred, never dropped."""
        paused = await asyncio.to_thread(self.store.feedback.paused)
        held = [r.id for r in rows if r.scenario_id in paused]
        if not held:
            return rows
        await asyncio.to_thread(self.store.feedback.hold, self.worker, held, now + PAUSE_RECHECK)
        stats.held += len(held)
        return [r for r in rows if r.scenario_id not in paused]

    async def drain_once(self, limit: int | None = None) -> DrainStats:
        """Send one batch."""
        return await self._drain(limit or self.settings.batch_size, max_batches=1)

    async def drain_until_idle(self, max_batches: int = 1000, stopping: Callable[[], bool] | None = None) -> DrainStats:
        """Send batch after batch until none is due; when `stopping` turns true, after the
        batch under way (a stopping daemon finishes its batch, not the whole outbox)."""
        return await self._drain(self.settings.batch_size, max_batches, stopping)

    async def _drain(self, limit: int, max_batches: int, stopping: Callable[[], bool] | None = None) -> DrainStats:
        """Claim, compose and send batches through one set of senders and one marker.

        The next batch is claimed (and its lead rows read, and its rendering started) while
        the second half of the one before is being composed and sent, and its messages join
        the same queue: the senders never wait for a claim, nor idle through a batch's last
        messages. At most two batches are out at once: a batch is claimed ahead only once
        every batch before the current one has settled (each of its messages tried, their
        marks committed, what was not tried given back), so a row is never claimed again by
        the worker still holding it. The drain stops claiming when the outbox is empty, when
        `stopping` turns true, when the server refuses us (the pool is paused), and after a
        batch that made no progress (its rows all retried later, held, or given back), as
        batch by batch it would. A batch claimed ahead that is not to be sent goes back untried.
        """
        total = DrainStats()
        if self.pool.paused:  # the server refuses us: leave the outbox alone until the pause ends
            total.paused = self.pool.pause.reason
            return total
        senders = self.pool.size
        # One task composes messages a little ahead while the senders' connections wait on
        # the server's replies, so composing the next message costs no time on the wire.
        ready: asyncio.Queue[tuple[_Batch, ClaimedSend, BuiltMessage] | None] = asyncio.Queue(maxsize=senders * 2)
        marks = Marks()
        marker: asyncio.Task[None] | None = None  # the connection for marks, opened once there is a row to send
        batches: list[_Batch] = []  # every batch claimed, in order
        idle = asyncio.Event()  # a batch made no progress: claim no more
        failures: list[Exception] = []  # raised once the sends under way have finished

        def asked_to_stop() -> bool:
            return stopping is not None and stopping()

        def go_on() -> bool:
            return not (asked_to_stop() or self.pool.paused or idle.is_set())

        def may_start(batch: _Batch) -> bool:
            return not (batch.lease.past_half() or self.pool.paused or (not batch.started and asked_to_stop()))

        async def give_back(batch: _Batch) -> None:
            try:
                await self._give_back(batch)
            except Exception as exc:  # the sends under way go on; the rows' leases run out instead
                failures.append(exc)

        async def settle(batch: _Batch) -> None:
            try:
                await batch.done.wait()
                await marks.flush(batch.marks)
                await give_back(batch)
                _add(total, batch.stats)
                s = batch.stats
                if not (s.sent or s.suppressed or s.skipped or s.bounced or s.failed):
                    idle.set()
            finally:
                batch.settled.set()

        async def claim() -> _Batch | None:
            try:
                batch = await self._claim(limit)
            except Exception as exc:  # the batches under way finish first; then it is raised
                failures.append(exc)
                return None
            batches.append(batch)
            return batch

        async def feed(tasks: asyncio.TaskGroup) -> None:
            nonlocal marker
            batch = await self._claim(limit)
            batch.started = True  # the first batch is sent even if a stop is already asked for
            batches.append(batch)
            while batch.stats.claimed:
                following: asyncio.Task[_Batch | None] | None = None

                def claim_next(batch: _Batch = batch) -> None:
                    nonlocal following
                    earlier = batches[: batches.index(batch)]
                    settled = all(b.settled.is_set() for b in earlier)
                    if following is None and len(batches) < max_batches and go_on() and settled:
                        following = tasks.create_task(claim())

                if batch.rows and marker is None:
                    marker = asyncio.create_task(self._mark_sent(marks))
                await self._queue(batch, ready, claim_next)
                tasks.create_task(settle(batch))
                if following is None and len(batches) < max_batches:
                    for earlier in batches[: batches.index(batch)]:
                        await earlier.settled.wait()
                    claim_next()  # a batch too small to reach its half-way point, or one that waited
                if following is None:
                    break
                claimed = await following
                if claimed is None:
                    break
                batch = claimed
                if batch.rows and not go_on():  # claimed ahead, not to be sent: back, untried
                    for chunk, _ in {id(f): (f, i) for f, i in batch.composed.values()}.values():
                        chunk.cancel()
                    batch.unsent, batch.rows = [row.id for row in batch.rows], []
                    batch.stats.claimed -= len(batch.unsent)
                    await give_back(batch)
                    _add(total, batch.stats)
                    batch.settled.set()
                    break
            for _ in range(senders):
                await ready.put(None)

        async def send() -> None:
            previous: asyncio.Future[None] | None = None  # the mark of this sender's last message
            while (item := await ready.get()) is not None:
                batch, row, message = item
                # Past half the lease, or once the server refused us, the rest of the batch
                # goes back untried (not counted as an attempt), and so does a batch claimed
                # ahead and not yet started when a stop is asked for. Asked again after the
                # rate limit's wait: however slow the pace, a send starts before half the lease.
                if may_start(batch):
                    await self.pool.limiter.acquire()
                if not may_start(batch):
                    batch.unsent.append(row.id)
                else:
                    batch.started = True
                    batch.taken.add(row.id)
                    mark = await self._deliver(row, message, marks, batch.stats, previous)
                    if mark is not previous and mark is not None:
                        batch.marks.append(mark)
                    previous = mark
                batch.left -= 1
                if batch.queued and not batch.left:
                    batch.done.set()
            if previous is not None:
                await marks.committed(previous)

        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(feed(tasks))
                for _ in range(senders):
                    tasks.create_task(send())
        except BaseException:
            # What no sender took goes back now rather than when its lease runs out; a row a
            # sender took may have been delivered, and stays leased (the crash bound).
            for batch in batches:
                batch.unsent += [row.id for row in batch.rows if row.id not in batch.taken]
            raise
        finally:
            marks.close()
            if marker is not None:
                try:
                    await marker
                except Exception as exc:  # its failure reached the senders through their marks
                    failures.append(exc)
            for batch in batches:
                await give_back(batch)
        if failures:
            raise failures[0]
        if self.pool.paused:
            total.paused = self.pool.pause.reason
        return total

    async def _claim(self, limit: int) -> _Batch:
        """Lease a batch, hold what a paused scenario sends, read its leads, record the rows
        not to send (erased, no consent) and start rendering the rest."""
        claimed_at = self.clock.now()
        # Never start a send on a lease that may have run out: past half the lease, the
        # rest of the batch goes back to the outbox for whoever claims it next.
        lease = Lease(self.lease, self.timer)
        rows = await asyncio.to_thread(self.store.sends.claim, self.worker, claimed_at, limit, self.lease)
        batch = _Batch(lease, DrainStats(claimed=len(rows)))
        if rows:
            rows = await self._hold_paused(rows, claimed_at, batch.stats)
        if not rows:
            return batch
        self.composer.templates.refresh()
        batch.leads = await asyncio.to_thread(self.store.leads.by_ids, sorted({r.lead_id for r in rows}))
        withheld = await asyncio.to_thread(self._withheld, rows, batch.leads)
        if withheld:
            for row in rows:
                if row.id in withheld:
                    status, reason = withheld[row.id]
                    await self._finish(row.id, status, reason)
                    batch.stats.skipped += status == SendStatus.SKIPPED
                    batch.stats.suppressed += status == SendStatus.SUPPRESSED
            rows = [row for row in rows if row.id not in withheld]
        batch.rows = rows
        batch.composed = self._compose_ahead(rows, batch.leads, claimed_at)
        return batch

    async def _queue(
        self,
        batch: _Batch,
        ready: asyncio.Queue[tuple[_Batch, ClaimedSend, BuiltMessage] | None],
        halfway: Callable[[], None],
    ) -> None:
        """Compose the batch's messages into `ready`; `halfway()` is called half-way through."""
        middle = len(batch.rows) // 2
        for index, row in enumerate(batch.rows):
            if index == middle:
                halfway()
            if batch.lease.past_half():
                batch.unsent.append(row.id)
                continue
            message = await self._prepare(row, batch.leads.get(row.lead_id), batch.composed, batch.stats)
            if message is not None:
                batch.left += 1
                await ready.put((batch, row, message))
            await asyncio.sleep(0)  # read the replies that arrived meanwhile
        batch.queued = True
        if not batch.left:
            batch.done.set()

    async def _give_back(self, batch: _Batch) -> None:
        unsent, batch.unsent = batch.unsent, []
        if unsent:
            await asyncio.to_thread(self.store.sends.release, self.worker, unsent)

    def _withheld(self, rows: list[ClaimedSend], leads: dict[int, LeadRow]) -> dict[int, tuple[SendStatus, str]]:
        """The rows not to send, with their outcome and why: an address erased on request
        (kept only as a keyed hash on the suppression list), or no consent to the topic of
        the row's scenario under the lead's regime. Confirmation emails ask for consent and
        need none."""
        key = self.settings.suppression_hash_key
        setting, countries = self.settings.consent_regime, self.settings.opt_in_countries  # parsed once a batch
        entries = {row.id: keyed_hash(key, row.lead_email) for row in rows}
        with self.store.reading() as conn:
            records = self.store.consents.for_leads(conn, sorted({row.lead_id for row in rows}))
            erased = self.store.consents.suppressed_entries(conn, sorted(set(entries.values())))
        withheld: dict[int, tuple[SendStatus, str]] = {}
        for row in rows:
            lead = leads.get(row.lead_id)
            if entries[row.id] in erased:
                withheld[row.id] = (SendStatus.SUPPRESSED, "the address was erased on request")
            elif lead is not None and row.kind != SendKind.CONFIRMATION:
                regime = regime_for(lead.country, setting, countries)
                decision = decide_send(records.get(row.lead_id, []), self.topic_of(row.scenario_id), regime)
                if not decision.send:
                    withheld[row.id] = (SendStatus.SKIPPED, decision.reason)
        return withheld

    async def _mark_sent(self, marks: Marks) -> None:
        try:
            async with self.store.sends.marks(self.worker) as writer:
                await marks.write(writer, self.clock)
        except Exception as exc:  # no connection for marks: the senders stop at their next mark
            marks.fail(exc)
            raise

    async def start(self) -> None:
        """Start the render processes now instead of at the first batch: each one imports
        nurture and loads the templates, which takes a moment."""
        count = self.settings.render_processes
        if count > 0:
            loop = asyncio.get_running_loop()
            renderers = self._render_pool()
            await asyncio.gather(
                *(loop.run_in_executor(renderers, compose_in_worker, [], self.clock.now()) for _ in range(count))
            )

    def _render_pool(self) -> ProcessPoolExecutor:
        if self._renderers is None:
            self._renderers = ProcessPoolExecutor(
                self.settings.render_processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=start_worker,
                initargs=(self.composer,),
            )
        return self._renderers

    def _compose_ahead(self, rows: list[ClaimedSend], leads: dict[int, LeadRow], now: datetime) -> dict[int, Ahead]:
        """With render processes: start composing every deliverable row of the batch now, in
        chunks, so the next messages render while earlier ones are on the wire."""
        if self.settings.render_processes <= 0:
            return {}
        renderers = self._render_pool()
        loop = asyncio.get_running_loop()
        deliverable = [r for r in rows if _deliverable(r, leads.get(r.lead_id))]
        ahead: dict[int, Ahead] = {}
        for start in range(0, len(deliverable), RENDER_CHUNK):
            chunk = deliverable[start : start + RENDER_CHUNK]
            items = [(dict(r._mapping), dict(leads[r.lead_id]._mapping)) for r in chunk]
            future = loop.run_in_executor(renderers, compose_in_worker, items, now)
            for index, row in enumerate(chunk):
                ahead[row.id] = (future, index)
        return ahead

    async def close(self) -> None:
        if self._renderers is not None:
            renderers, self._renderers = self._renderers, None
            await asyncio.to_thread(renderers.shutdown, True, cancel_futures=True)

    async def _prepare(
        self, row: ClaimedSend, lead: LeadRow | None, composed: dict[int, Ahead], stats: DrainStats
    ) -> BuiltMessage | None:
        """The message for `row`, or None when it is not to be sent (its outcome is recorded)."""
        if lead is None or not _deliverable(row, lead):
            await self._finish(row.id, SendStatus.SUPPRESSED, "recipient is unsubscribed, bounced or suppressed")
            stats.suppressed += 1
            return None
        message: Composed | None = None
        ahead = composed.get(row.id)
        if ahead is not None:
            chunk, index = ahead
            try:
                message = (await chunk)[index]
            except BrokenProcessPool:  # a render process died: render here; a new pool next batch
                self._renderers = None
        if message is None:
            message = self.composer.compose_one(row._mapping, lead._mapping, self.clock.now())
        if not isinstance(message, BuiltMessage):
            await self._after_error(row, _action_for(message), str(message), stats)
            return None
        return message

    async def _deliver(
        self,
        row: ClaimedSend,
        message: BuiltMessage,
        marks: Marks,
        stats: DrainStats,
        previous: asyncio.Future[None] | None,
    ) -> asyncio.Future[None] | None:
        """Send `row`'s message, its body only once `previous` (a mark) has committed; returns
        the mark still to be committed: this message's, or `previous` if this one failed."""
        wait = None if previous is None else functools.partial(marks.committed, previous)
        try:
            await self.pool.send(message, before_data=wait, paced=True)
        except Exception as exc:  # classified below: every SMTP or network failure has a next step
            if previous is not None and previous.done() and not previous.cancelled() and previous.exception() is exc:
                raise  # the previous mark failed: stop; unmarked rows stay leased and are retried
            outcome = classify(exc)
            await self._after_error(row, outcome.action, outcome.text, stats, outcome)
            return previous
        stats.sent += 1
        return marks.add(row.id, message.message_id)

    async def _after_error(
        self, row: ClaimedSend, action: str, error: str, stats: DrainStats, outcome: Outcome | None = None
    ) -> None:
        stats.errors.append(f"{row.lead_email}: {error}")
        if action == BOUNCE:
            stats.bounced += 1
            await self._finish(row.id, SendStatus.BOUNCED, error, suppress=(row.lead_email, "bounce"))
            return
        if action == SOFT_BOUNCE:
            # The mailbox refuses for now (full): this send fails, and the soft bounce is
            # counted with the ones reported later; several within a period suppress.
            stats.failed += 1
            await self._finish(row.id, SendStatus.FAILED, error)
            if self.feedback is not None:
                event = FeedbackEvent(
                    FeedbackKind.SOFT_BOUNCE,
                    "smtp",
                    recipient=row.lead_email,
                    send_id=row.id,
                    status=outcome.status if outcome else None,
                    code=outcome.code if outcome else None,
                    diagnostic=error,
                    occurred_at=self.clock.now(),
                )
                await asyncio.to_thread(self.feedback, [event])
            return
        policy = (self.settings.max_attempts, self.settings.retry_base_seconds)
        again = retry_at(row.attempts, *policy, self.clock.now()) if action == RETRY else None
        if again is not None:
            stats.retried += 1
            await self._finish(row.id, SendStatus.PENDING, error, retry_at=again)
        else:
            stats.failed += 1
            await self._finish(row.id, SendStatus.FAILED, error)

    async def _finish(self, send_id: int, status: str, error: str | None, **kwargs: Any) -> None:
        await asyncio.to_thread(
            self.store.sends.finish, self.worker, send_id, status, self.clock.now(), error=error, **kwargs
        )


def _action_for(error: Exception) -> str:
    """What to do after a message could not be built. A template error may be fixed by the
    marketer before the next attempt, so it is retried; a render over the sandbox's bounds
    and an unbuildable message would fail the same way again, so they fail at once."""
    if isinstance(error, TemplateError) and not isinstance(error, TemplateLimitError):
        return RETRY
    return FAIL


def _deliverable(row: ClaimedSend, lead: LeadRow | None) -> bool:
    return lead is not None and not (row.unsubscribed or row.bounced or row.suppressed)
