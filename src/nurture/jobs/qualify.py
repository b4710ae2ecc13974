"""The qualify job: rescore leads whose behaviour changed (and their colleagues), move them
cold → warm → hot (the stage rules are `nurture.lifecycle`'s), hand hot leads and hot
accounts to their owners, at most as many at once as `promotion_limits` allow.

A run works account by account: the leads whose events arrived and every colleague in
their accounts are rescored together, with the account's aggregate computed once from
its members' events; so a 10,000-lead account costs about what 10,000 separate leads do,
and a colleague's score changes in the same run as the person who acted.

Promotions are decided after every lead is scored, so the per-run and per-owner limits
see the whole run: the strongest go through, the rest are held for review. A promotion and
its notifications commit in one transaction, keyed by the promotion's number, so a re-run
after a crash cannot notify twice and a crash cannot lose one.

Several daemons share one database: the job runs under a cluster lock, so one of them
qualifies at a time and no lead is scored and promoted by two at once. Its watermark is the
database's clock at the start of the previous run (events carry the database's
`received_at`), less `OVERLAP`: an event whose transaction committed just after a run
began is picked up by the next one. Rescoring a lead again changes nothing.
"""

from __future__ import annotations

import sys
import threading
from array import array
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from nurture.analytics.outcomes import catch_up
from nurture.clock import Clock
from nurture.jobs.catalog import Catalog
from nurture.lifecycle import (
    SCORED,
    account_hand_over,
    change_stage,
    change_stages,
    hand_over,
    needed_for,
    route_owner,
    scored_stage,
)
from nurture.scenario.expr import EventRecord
from nurture.scoring.engine import AccountAggregate, CompiledScoring, Engagement, ScoreResult, account_handoff
from nurture.scoring.explain import StoredScore, stored_score
from nurture.scoring.explain import reasons as explain
from nurture.scoring.limits import Candidate, ration
from nurture.scoring.model import Owner
from nurture.store import Connection, Store
from nurture.store.leads import LeadRow, lead_view
from nurture.timeutil import parse_duration
from nurture.vocabulary import PromotionStatus, Stage

CHUNK = 500
OUTCOMES_PER_RUN = 50_000  # leads named for the scenario report's counters, counted per run
ACCOUNTS_READ = 100  # accounts whose members are read at once while batches are made
OVERLAP = timedelta(minutes=5)  # longer than any transaction that records events
# How long the scoring thread may keep the interpreter while the reading and writing threads
# wait for it (Python's default is 5 ms; see `Qualifier._rescore`).
SWITCH_INTERVAL = 0.001


@dataclass
class QualifyStats:
    scored: int = 0
    warmed: int = 0
    promoted: int = 0
    held: int = 0
    accounts: int = 0
    accounts_hot: int = 0
    skipped: bool = False  # another daemon was qualifying


@dataclass
class _Wanted:
    """A promotion the scores ask for, waiting for the run's limits."""

    candidate: Candidate
    kind: str  # lead | account
    lead_id: int | None
    account: str | None
    detail: dict[str, Any]


@dataclass
class _Batch:
    accounts: dict[str, list[int]] = field(default_factory=dict)
    loners: list[int] = field(default_factory=list)
    rows: dict[int, LeadRow] = field(default_factory=dict)  # the accounts' members, read by account

    @property
    def size(self) -> int:
        return len(self.loners) + sum(len(m) for m in self.accounts.values())

    @property
    def ids(self) -> list[int]:
        """Every lead of the batch: those without an account, then each account's members."""
        return self.loners + [i for members in self.accounts.values() for i in members]


@dataclass
class _Loaded:
    """What scoring a batch reads: its leads, their recent events, its accounts' stages."""

    batch: _Batch
    rows: dict[int, LeadRow] = field(default_factory=dict)
    events: dict[int, list[EventRecord]] = field(default_factory=dict)
    stages: dict[str, str] = field(default_factory=dict)


@dataclass
class _Writes:
    """What scoring a batch changes: accounts that cooled, leads that warmed (id, old stage,
    reason), and every lead's new score (row, fit, engagement, grade), in id order."""

    cooled: list[tuple[str, AccountAggregate]] = field(default_factory=list)
    warmed: list[tuple[int, str, str]] = field(default_factory=list)
    scores: list[tuple[LeadRow, int, int, str]] = field(default_factory=list)


class _QuickSwitches:
    """Python's thread switch interval at most `SWITCH_INTERVAL` while any run in the process
    needs it; the process's own interval again once none does (runs on different databases
    may overlap in one process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs = 0
        self._saved = 0.0

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if not self._runs:
                self._saved = sys.getswitchinterval()
                sys.setswitchinterval(min(self._saved, SWITCH_INTERVAL))
            self._runs += 1
        try:
            yield
        finally:
            with self._lock:
                self._runs -= 1
                if not self._runs:
                    sys.setswitchinterval(self._saved)


_quick_switches = _QuickSwitches()


def _chunks(ids: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


class Qualifier:
    def __init__(self, store: Store, catalog: Catalog, clock: Clock) -> None:
        self.store = store
        self.catalog = catalog
        self.clock = clock
        self.overlap = OVERLAP  # a single writer that never records during a run may use 0

    def run_once(self, *, everyone: bool = False) -> QualifyStats:
        """Rescore leads with events received since the last run (or `everyone`), with their
        colleagues; then count what became of the emails and enrolments of leads whose
        activity changed, for the scenario report (see `nurture.analytics.outcomes`)."""
        scoring = self.catalog.scoring
        stats = QualifyStats()
        if scoring is None:
            catch_up(self.store, None, limit=OUTCOMES_PER_RUN)
            return stats
        with self.store.cluster_lock("qualify") as mine:
            if not mine:  # another daemon is qualifying: it takes these events too
                stats.skipped = True
                return stats
            now = self.clock.now()
            started = self.store.reports.database_time()
            with self.store.reading() as conn:
                mark = self.store.settings.get(conn, "qualify:watermark")
                since = datetime.fromisoformat(mark) - self.overlap if mark and not everyone else None
                keys, loners = self._changed(scoring, conn, since, everyone)
            wanted: list[_Wanted] = []
            self._rescore(scoring, self._batches(scoring, keys, loners), now, stats, wanted)
            self._decide(scoring, wanted, now, stats)
            with self.store.transaction() as conn:
                self.store.settings.put(conn, "qualify:watermark", started.isoformat())
            catch_up(self.store, scoring, limit=OUTCOMES_PER_RUN)
        return stats

    # -- which leads, grouped by account ---------------------------------------------------

    def _changed(
        self, scoring: CompiledScoring, conn: Connection, since: datetime | None, everyone: bool
    ) -> tuple[list[str], array[int]]:
        """The accounts (sorted keys) and the leads without one (ids, in order) whose leads had
        events received since `since`: a key or a machine integer per changed lead at most,
        never its colleagues' ids."""
        keys: set[str] = set()
        loners = array("q")
        for row in self.store.leads.walk_active(conn, since, everyone=everyone):
            key = scoring.account_of(row.company, row.email)
            if key is None:
                loners.append(row.id)
            else:
                keys.add(key)
        return sorted(keys), loners

    def _batches(self, scoring: CompiledScoring, keys: list[str], loners: array[int]) -> Iterator[_Batch]:
        """The leads to rescore in batches of whole accounts: every member of the changed
        accounts (an account bigger than a batch is a batch of its own), then the changed
        leads without one. Made one at a time: the run holds a few batches' leads, not all.
        The members' rows are read here, once, by account; the batch keeps them."""
        by_company = scoring.model.account.by == "company"
        batch = _Batch()
        for chunk in _chunks(keys, ACCOUNTS_READ):
            with self.store.reading() as conn:
                peers = self.store.leads.accounts(conn, by_company, set(chunk), whole=True)
            accounts: dict[str, dict[int, LeadRow]] = {key: {} for key in chunk}
            for peer in peers:
                key = scoring.account_of(peer.company, peer.email)
                if key in accounts:
                    accounts[key][peer.id] = peer
            del peers
            for key in chunk:
                members = accounts.pop(key)
                if batch.size and batch.size + len(members) > CHUNK:
                    yield batch
                    batch = _Batch()
                batch.accounts[key] = sorted(members)
                batch.rows.update(members)
        for chunk in _chunks(loners):
            if batch.size + len(chunk) > CHUNK:
                if batch.size:
                    yield batch
                batch = _Batch()
            batch.loners.extend(chunk)
        if batch.size:
            yield batch

    # -- one batch: aggregates once per account, then every member ------------------------

    def _rescore(
        self,
        scoring: CompiledScoring,
        batches: Iterator[_Batch],
        now: datetime,
        stats: QualifyStats,
        wanted: list[_Wanted],
    ) -> None:
        """Read, score and write each batch. On PostgreSQL the next batch is read and the last
        one written by two threads while this one scores, so the server's work (the reads, the
        score UPDATE and its index upkeep) runs beside the scoring instead of after it; each
        batch still commits in one transaction of its own, and at most three are in memory.

        Each reply from the server hands the reading thread back to Python, which waits until
        the scoring thread lets go of the interpreter: by default up to 5 ms, for each of the
        few round trips of every batch, which added up to most of a run. While the threads
        run, the interpreter switches threads every `SWITCH_INTERVAL` instead."""
        since = now - scoring.lookback

        def load_next() -> _Loaded | None:
            batch = next(batches, None)
            return None if batch is None else self._load(scoring, batch, since)

        if not self.store.postgres:  # one writer at a time anyway, and in-memory databases are per connection
            while (loaded := load_next()) is not None:
                self._write(scoring, self._score(scoring, loaded, now, stats, wanted), now)
            return
        with _quick_switches():
            self._rescore_beside(scoring, load_next, now, stats, wanted)

    def _rescore_beside(
        self,
        scoring: CompiledScoring,
        load_next: Callable[[], _Loaded | None],
        now: datetime,
        stats: QualifyStats,
        wanted: list[_Wanted],
    ) -> None:
        """`_rescore` with the reading and the writing in two threads beside the scoring."""
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="qualify") as pool:
            loading = pool.submit(load_next)
            writing: Future[None] | None = None
            try:
                while (loaded := loading.result()) is not None:
                    loading = pool.submit(load_next)
                    writes = self._score(scoring, loaded, now, stats, wanted)
                    if writing is not None:
                        writing.result()
                    writing = pool.submit(self._write, scoring, writes, now)
                if writing is not None:
                    writing.result()
            finally:
                loading.cancel()

    def _load(self, scoring: CompiledScoring, batch: _Batch, since: datetime) -> _Loaded:
        """A batch's leads, their events since `since`, and its accounts' stages."""
        loaded = _Loaded(batch)
        with self.store.reading() as conn:
            loaded.rows.update(batch.rows)
            for chunk in _chunks(batch.loners):
                loaded.rows.update({r.id: r for r in self.store.leads.in_(conn, chunk)})
            for chunk in _chunks(batch.ids):
                loaded.events.update(self.store.events.for_leads(conn, chunk, since))
            if scoring.model.account.hot is not None and batch.accounts:
                loaded.stages = self.store.accounts.stages(conn, sorted(batch.accounts))
        return loaded

    def _score(
        self, scoring: CompiledScoring, loaded: _Loaded, now: datetime, stats: QualifyStats, wanted: list[_Wanted]
    ) -> _Writes:
        """A batch's scores (each person's own engagement once, each account's aggregate
        once), the promotions they ask for, and what to write; no I/O."""
        batch, rows, events = loaded.batch, loaded.rows, loaded.events
        # The numbers only: what a hot lead's hand-off explains is worked out again for it alone.
        own = {i: scoring.own(events.get(i, []), now, row.engagement_since, explain=False) for i, row in rows.items()}
        aggregates = {
            key: scoring.aggregate_of(key, [(i, rows[i].email, own[i].points) for i in members if i in rows])
            for key, members in batch.accounts.items()
        }
        stats.accounts += len(aggregates)
        writes = _Writes()
        self._accounts(scoring, aggregates, loaded, writes, wanted)
        member_of = {i: key for key, members in batch.accounts.items() for i in members}
        for lead_id in batch.ids:
            row = rows.get(lead_id)
            if row is None:
                continue
            aggregate = aggregates.get(member_of.get(lead_id, ""))
            result = self.evaluate(scoring, row, events.get(lead_id, []), now, aggregate, own[lead_id], explain=False)
            stats.scored += 1
            writes.scores.append((row, result.fit, result.engagement, result.grade))
            moved = scored_stage(row.lifecycle_stage, result)
            if moved == Stage.HOT:
                result = self.evaluate(scoring, row, events.get(lead_id, []), now, aggregate)
                wanted.append(self._lead_wanted(scoring, row, result, events.get(lead_id, []), now))
            elif moved == Stage.WARM:
                reason = f"engagement {result.engagement} ≥ {scoring.model.hot.warm_engagement}"
                writes.warmed.append((row.id, row.lifecycle_stage, reason))
                stats.warmed += 1
        writes.scores.sort(key=lambda s: s[0].id)
        return writes

    def _write(self, scoring: CompiledScoring, writes: _Writes, now: datetime) -> None:
        """One batch's results in one transaction: accounts that cooled, leads that warmed, scores."""
        with self.store.transaction() as conn:
            for key, aggregate in writes.cooled:
                self.store.accounts.set_stage(conn, key, Stage.COLD, aggregate.total, _people(aggregate), None, now)
            change_stages(self.store, conn, writes.warmed, Stage.WARM, "scoring", now)
            self.store.leads.record_scores(conn, writes.scores, now)

    @staticmethod
    def evaluate(
        scoring: CompiledScoring,
        row: LeadRow,
        events: Sequence[EventRecord],
        now: datetime,
        aggregate: AccountAggregate | None,
        own: Engagement | None = None,
        *,
        explain: bool = True,
    ) -> ScoreResult:
        """The lead's score; `own` is its `scoring.own(events, now, row.engagement_since)` if
        known. Without `explain`, the numbers and the verdict only (see `CompiledScoring.evaluate`)."""
        return scoring.evaluate(
            lead_view(row._mapping).fields,
            events,
            now,
            engagement_since=row.engagement_since,
            adjustment=row.score_adjustment or 0,
            account=aggregate,
            member=row.id,
            own=own,
            explain=explain,
        )

    def score_lead(self, scoring: CompiledScoring, conn: Connection, row: LeadRow, now: datetime) -> ScoreResult:
        """One lead's score as the job computes it, with its whole account's aggregate."""
        since = now - scoring.lookback
        key = scoring.account_of(row.company, row.email)
        aggregate = None
        if key is not None:
            members = [
                p.id
                for p in self.store.leads.accounts(conn, scoring.model.account.by == "company", {key})
                if scoring.account_of(p.company, p.email) == key
            ]
            found: list[tuple[int, str, list[EventRecord], datetime | None]] = []
            for chunk in _chunks(members):
                peers = self.store.leads.in_(conn, chunk)
                peer_events = self.store.events.for_leads(conn, chunk, since)
                found += [(p.id, p.email, peer_events.get(p.id, []), p.engagement_since) for p in peers]
            aggregate = scoring.account_aggregate(key, found, now)
        own = self.store.events.for_leads(conn, [row.id], since).get(row.id, [])
        return self.evaluate(scoring, row, own, now, aggregate)

    def explain_stored(
        self, scoring: CompiledScoring, conn: Connection, row: LeadRow, current: ScoreResult, now: datetime
    ) -> StoredScore | None:
        """The lead's stored score with a breakdown that adds up to it, or a note saying why
        none does (`current` is its score as of `now`); None if it was never scored."""
        if row.scored_at is None:
            return None
        rebuilt = self.score_lead(scoring, conn, row, row.scored_at)
        return stored_score(row.score_fit, row.score_engagement, row.grade, row.scored_at, rebuilt, current, now)

    def _accounts(
        self,
        scoring: CompiledScoring,
        aggregates: dict[str, AccountAggregate],
        loaded: _Loaded,
        writes: _Writes,
        wanted: list[_Wanted],
    ) -> None:
        """Hot accounts ask for one hand-off each; accounts that fell below their line cool."""
        if scoring.model.account.hot is None or not aggregates:
            return
        for key, aggregate in aggregates.items():
            was_hot = loaded.stages.get(key) == Stage.HOT
            if was_hot and not aggregate.hot:
                writes.cooled.append((key, aggregate))
                continue
            handoff = account_handoff(aggregate, was_hot)
            if handoff is None:
                continue
            lead = loaded.rows[int(str(handoff.people[0].key))]
            wanted.append(
                _Wanted(
                    Candidate(f"account:{key}", "", handoff.engagement),
                    "account",
                    lead.id,
                    key,
                    {"engagement": round(handoff.engagement, 1), "size": handoff.size, "people": _people(aggregate)},
                )
            )

    def _lead_wanted(
        self, scoring: CompiledScoring, row: LeadRow, result: ScoreResult, events: Sequence[EventRecord], now: datetime
    ) -> _Wanted:
        reasons = explain(result)
        reason = (
            f"grade {result.grade} with engagement {result.engagement} "
            f"(needs {needed_for(scoring, result.grade)}): " + ", ".join(reasons[:4])
        )
        detail = {
            "reason": reason,
            "why": reasons,
            "score": {"fit": result.fit, "grade": result.grade, "engagement": result.engagement},
        }
        return _Wanted(Candidate(f"lead:{row.id}", "", float(result.engagement)), "lead", row.id, None, detail)

    # -- the run's promotions, within its limits --------------------------------------------

    def _decide(self, scoring: CompiledScoring, wanted: list[_Wanted], now: datetime, stats: QualifyStats) -> None:
        if not wanted:
            return
        limits = scoring.model.promotion_limits
        with self.store.transaction() as conn:
            held = self.store.accounts.held_keys(conn)
            wanted = [w for w in wanted if w.candidate.key not in held]
            turn = int(self.store.settings.get(conn, "owner:round_robin") or 0)
            rows = {
                r.id: r for chunk in _chunks([w.lead_id for w in wanted]) for r in self.store.leads.in_(conn, chunk)
            }
            owners: dict[str, Owner] = {}
            for item in wanted:
                owner, rotated = route_owner(scoring, rows[item.lead_id or 0], turn)
                turn += rotated
                owners[item.candidate.key] = owner
                item.candidate = Candidate(item.candidate.key, owner.email, item.candidate.strength)
            self.store.settings.put(conn, "owner:round_robin", str(turn))
            recent = self.store.accounts.released_per_owner(conn, now - parse_duration(limits.window))
        decided = ration([w.candidate for w in wanted], limits, recent)
        by_key = {w.candidate.key: w for w in wanted}
        for candidate in decided.released:
            item = by_key[candidate.key]
            with self.store.transaction() as conn:
                self.hand_over(scoring, conn, item, owners[candidate.key], now, "scoring")
                self.store.accounts.add_promotions(
                    conn, [_promotion_row(item, candidate, PromotionStatus.RELEASED, "", now, "scoring")]
                )
            if item.kind == "lead":
                stats.promoted += 1
            else:
                stats.accounts_hot += 1
        with self.store.transaction() as conn:
            self.store.accounts.add_promotions(
                conn,
                [
                    _promotion_row(by_key[h.candidate.key], h.candidate, PromotionStatus.HELD, h.reason, now)
                    for h in decided.held
                ],
            )
        stats.held += len(decided.held)

    def hand_over(
        self, scoring: CompiledScoring, conn: Connection, item: _Wanted, owner: Owner, now: datetime, by: str
    ) -> bool:
        """Hand one promotion to sales: the lead (or account) becomes hot and its owner is told.

        False when a lead is no longer where the score may move it (sales took it meanwhile).
        """
        if item.kind == "account":
            return self._hand_over_account(scoring, conn, item, owner, now)
        [row] = self.store.leads.in_(conn, [item.lead_id or 0])
        if row.lifecycle_stage not in SCORED:
            return False
        change_stage(self.store, conn, row.id, row.lifecycle_stage, Stage.HOT, item.detail["reason"], by, now)
        self.store.leads.set_owner(conn, row.id, owner.email)
        number = self.store.leads.times_reached(conn, row.id, Stage.HOT)
        events = self.store.events.for_leads(conn, [row.id], now - timedelta(days=30)).get(row.id, [])
        score = item.detail["score"]
        name = " ".join(p for p in (row.first_name, row.last_name) if p) or row.email
        subject = f"Hot lead: {name}, {row.company or 'unknown company'} ({score['grade']}/{score['engagement']})"
        notes = hand_over(
            scoring, row, owner, f"hot:{row.id}:{number}", subject, item.detail["why"], events, score, now, "lead.hot"
        )
        self.store.notifications.add(conn, notes)
        # Wake the lead's enrolments so scenarios that exit on "became_hot" do so now.
        self.store.enrolments.wake(conn, row.id, now)
        return True

    def _hand_over_account(
        self, scoring: CompiledScoring, conn: Connection, item: _Wanted, owner: Owner, now: datetime
    ) -> bool:
        key = item.account or ""
        detail = item.detail
        number = self.store.accounts.times_released(conn, item.candidate.key) + 1
        self.store.accounts.set_stage(conn, key, Stage.HOT, detail["engagement"], detail["people"], owner.email, now)
        self.store.notifications.add(
            conn, account_hand_over(scoring, key, owner, f"account-hot:{key}:{number}", detail, item.lead_id, now)
        )
        return True

    def release(self, ids: Sequence[int] | None, by: str) -> list[tuple[str, str]]:
        """Let held promotions through (all of them for None): (key, what happened) for each."""
        scoring = self.catalog.scoring
        if scoring is None:
            return []
        now = self.clock.now()
        wanted = set(ids) if ids is not None else None
        done: list[tuple[str, str]] = []
        for held in self.store.accounts.held():
            if wanted is not None and held.id not in wanted:
                continue
            owner = next((o for o in scoring.model.routing.owners if o.email == held.owner), None)
            owner = owner or Owner(name=held.owner, email=held.owner)
            item = _Wanted(
                Candidate(held.key, held.owner, held.strength), held.kind, held.lead_id, held.account, held.detail
            )
            with self.store.transaction() as conn:
                if not self.store.accounts.claim_held(conn, held.id, by, now):
                    continue
                handed = self.hand_over(scoring, conn, item, owner, now, by)
            done.append((held.key, f"handed to {owner.email}" if handed else "released; the lead had moved on"))
        return done


def _people(aggregate: AccountAggregate) -> list[dict[str, Any]]:
    people = aggregate.engaged or aggregate.members[:10]
    return [{"id": m.key, "email": m.label, "engagement": round(m.engagement, 1)} for m in people]


def _promotion_row(
    item: _Wanted, candidate: Candidate, status: str, reason: str, now: datetime, by: str | None = None
) -> dict[str, Any]:
    return {
        "key": candidate.key,
        "kind": item.kind,
        "lead_id": item.lead_id,
        "account": item.account,
        "owner": candidate.owner,
        "strength": candidate.strength,
        "status": status,
        "reason": reason,
        "detail": item.detail,
        "created_at": now,
        "released_at": now if status == PromotionStatus.RELEASED else None,
        "released_by": by,
    }
