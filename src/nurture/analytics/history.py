"""The stored past, for analysis: leads, their events, lifecycle changes, outcomes.

Analyses replay the scoring model over this history. Lead fields are today's (the store
keeps no history of fields), events and lifecycle changes are as they happened.

An analysis folds the history a chunk at a time (`StoredHistory`): a chunk holds a thousand
or so leads with their events and changes, and every member of each account it touches, so
a colleague's events are always at hand and memory does not grow with the store. Only the
leads an analysis can use are read (`HistoryScope`, decided by the database), with their
accounts. `load_history` reads everything at once, as one chunk.

Once old events are pruned (`nurture events prune`) only their daily counts remain, which
cannot say when within a day each event happened, so cannot replay its decay: a score is
replayed exactly only at moments whose whole lookback is still raw (`complete_from` on).
A window before that is refused; the analyses over all history (drift, learn) leave out
the moments before it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby
from typing import Any, NamedTuple

from nurture.scenario.expr import EventRecord
from nurture.scoring.engine import CompiledScoring, ScoreResult
from nurture.scoring.replay import EngagementReplay, Verdicts
from nurture.store import Store
from nurture.store.base import Connection
from nurture.store.leads import LeadRow, lead_view
from nurture.store.reports import HistoryScope
from nurture.store.retention import RetentionError
from nurture.vocabulary import Stage

GOOD = (Stage.ACCEPTED, Stage.CUSTOMER)  # what sales accepting or a deal closing means for a lead
CHUNK = 500  # leads per query for their events and changes
LEADS_PER_CHUNK = 1000  # leads per chunk of a streamed history (a bigger account is a chunk of its own)


class Change(NamedTuple):
    at: datetime
    from_stage: str
    to_stage: str
    reason: str
    actor: str


@dataclass
class LeadHistory:
    id: int
    email: str
    fields: dict[str, Any]
    account: str | None
    created_at: datetime
    stage: str
    reachable: bool = True  # neither unsubscribed nor bounced
    events: list[EventRecord] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    @property
    def converted(self) -> bool:
        """Accepted by sales or became a customer, at any time."""
        return any(c.to_stage in GOOD for c in self.changes)

    @property
    def rejected(self) -> bool:
        return any(c.to_stage == Stage.REJECTED for c in self.changes)

    def engagement_since(self, at: datetime) -> datetime | None:
        """When engagement last started afresh (sales recycled the lead) before `at`."""
        starts = [c.at for c in self.changes if c.to_stage == Stage.RECYCLED and c.at <= at]
        return starts[-1] if starts else None


@dataclass
class History:
    leads: dict[int, LeadHistory]
    by_account: dict[str, list[int]]
    complete_from: datetime | None = None  # scores replay exactly from here on (None: always)
    # Verdicts of its events classified together, shared by the replays of its leads.
    verdicts: Verdicts = field(default_factory=dict, compare=False, repr=False)

    def replayable(self, at: datetime) -> bool:
        return self.complete_from is None or at >= self.complete_from

    def colleague_events(self, lead: LeadHistory) -> list[EventRecord]:
        if lead.account is None:
            return []
        found = [
            e for other in self.by_account.get(lead.account, []) if other != lead.id for e in self.leads[other].events
        ]
        return sorted(found, key=lambda e: e.at)


def account_of(scoring: CompiledScoring, company: str | None, email: str) -> str | None:
    if scoring.model.account.weight <= 0:
        return None
    if scoring.model.account.by == "company":
        return (company or "").strip().lower() or None
    return email.rpartition("@")[2]


def grouped_by(scoring: CompiledScoring) -> str | None:
    """How leads group into accounts for the analyses: "company", "email", or not at all."""
    if scoring.model.account.weight <= 0:
        return None
    return "company" if scoring.model.account.by == "company" else "email"


def chunks(history: History | Iterable[History]) -> Iterable[History]:
    """The chunks of a history: a `History` is one chunk."""
    return [history] if isinstance(history, History) else history


def _history_of(
    store: Store,
    conn: Connection,
    scoring: CompiledScoring,
    rows: Iterable[LeadRow],
    start: datetime | None,
    until: datetime | None,
    complete_from: datetime | None,
) -> History:
    leads: dict[int, LeadHistory] = {}
    for row in sorted(rows, key=lambda r: r.id):
        leads[row.id] = LeadHistory(
            row.id,
            row.email,
            dict(lead_view(row._mapping).fields),
            account_of(scoring, row.company, row.email),
            row.created_at,
            row.lifecycle_stage,
            not (row.unsubscribed or row.bounced),
        )
    ids = list(leads)
    for offset in range(0, len(ids), CHUNK):
        chunk = ids[offset : offset + CHUNK]
        for lead_id, event in store.reports.events_of(conn, chunk, start, until):
            leads[lead_id].events.append(event)
        for ch in store.reports.stage_changes_of(conn, chunk):
            leads[ch.lead_id].changes.append(Change(ch.at, ch.from_stage, ch.to_stage, ch.reason, ch.actor))
    by_account: dict[str, list[int]] = defaultdict(list)
    for lead in leads.values():
        if lead.account:
            by_account[lead.account].append(lead.id)
    return History(leads, dict(by_account), complete_from)


def load_history(
    store: Store, scoring: CompiledScoring, since: datetime | None = None, until: datetime | None = None
) -> History:
    """Every lead, with events in [since - lookback, until] and all lifecycle changes, in memory.

    Raises `RetentionError` when events that window needs were pruned."""
    start = since - scoring.lookback if since is not None else None
    with store.reading() as conn:
        complete_from = _complete_from(store, conn, scoring, since)
        return _history_of(store, conn, scoring, list(store.reports.every_lead(conn)), start, until, complete_from)


def _complete_from(store: Store, conn: Connection, scoring: CompiledScoring, since: datetime | None) -> datetime | None:
    """From when scores replay exactly (None: always); raises `RetentionError` when a window
    from `since` needs events that were pruned."""
    pruned = store.retention.pruned_before(conn)
    complete_from = pruned + scoring.lookback if pruned is not None else None
    if complete_from is not None and since is not None and since < complete_from:
        raise RetentionError(
            f"events before {pruned:%Y-%m-%d} were pruned (only daily counts remain), and replaying scores "
            f"from {since:%Y-%m-%d} needs the {scoring.lookback.days} days before it: "
            f"start the window on {complete_from:%Y-%m-%d} or later"
        )
    return complete_from


class StoredHistory:
    """The history an analysis needs, read a chunk at a time each time it is iterated.

    The leads `scope` names, with every member of their accounts; events in
    [since - lookback, until] (all when not given) and all lifecycle changes. Each chunk
    holds whole accounts, so replaying a lead inside its chunk sees what `load_history`
    would show it.
    """

    def __init__(
        self,
        store: Store,
        scoring: CompiledScoring,
        scope: HistoryScope,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        leads_per_chunk: int = LEADS_PER_CHUNK,
    ) -> None:
        self.store, self.scoring, self.scope, self.since = store, scoring, scope, since
        self.start = since - scoring.lookback if since is not None else None
        self.until = until
        self.leads_per_chunk = leads_per_chunk

    def __iter__(self) -> Iterator[History]:
        store, scoring = self.store, self.scoring
        by = grouped_by(scoring)
        with store.reports.history_reading() as conn:
            complete_from = _complete_from(store, conn, scoring, self.since)

            def history(rows: list[LeadRow]) -> History:
                return _history_of(store, conn, scoring, rows, self.start, self.until, complete_from)

            if by is None:
                batch: list[LeadRow] = []
                for row in store.reports.history_leads(conn, self.scope, None):
                    batch.append(row)
                    if len(batch) >= self.leads_per_chunk:
                        yield history(batch)
                        batch = []
                if batch:
                    yield history(batch)
                return
            # The database groups accounts by a key that agrees with `account_of` for nearly
            # every lead; the few it does not (strays: "  Acme", two '@') are found first and
            # read with their account, so each account stays whole.
            strays: dict[str, list[int]] = defaultdict(list)
            stray_ids: set[int] = set()
            for lead_id, company, email, stored in store.reports.account_keys(conn, by):
                key = account_of(scoring, company, email)
                if key and key != stored:
                    strays[key].append(lead_id)
                    stray_ids.add(lead_id)
            done: set[str] = set()
            batch = []
            for stored, rows in groupby(
                store.reports.history_leads(conn, self.scope, by), key=lambda r: str(r._mapping["account_key"])
            ):
                members = []
                for row in rows:
                    if row.id in stray_ids:
                        continue  # read with its own account
                    if account_of(scoring, row.company, row.email):
                        members.append(row)
                    else:  # in no account: may go in any chunk
                        batch.append(row)
                        if len(batch) >= self.leads_per_chunk:
                            yield history(batch)
                            batch = []
                if stored in strays:
                    members += store.reports.leads_by_id(conn, strays[stored])
                    done.add(stored)
                if batch and len(batch) + len(members) > self.leads_per_chunk:
                    yield history(batch)
                    batch = []
                batch += members
            if batch:
                yield history(batch)
            for key in sorted(set(strays) - done):
                regular = [r for r in store.reports.account_members(conn, by, key) if r.id not in stray_ids]
                yield history(regular + store.reports.leads_by_id(conn, strays[key]))


def score_at(
    scoring: CompiledScoring,
    lead: LeadHistory,
    at: datetime,
    colleagues: Sequence[EventRecord] = (),
) -> ScoreResult:
    """The lead's score as the model would have computed it at `at`, from what was known then."""
    own = [e for e in lead.events if e.at <= at]
    before = [e for e in colleagues if e.at <= at]
    return scoring.evaluate(lead.fields, own, at, before, lead.engagement_since(at))


def series_times(history: History, lead: LeadHistory, since: datetime, until: datetime) -> list[datetime]:
    """The instants in [since, until] where the lead's engagement can reach a new high: its
    events' and (with account roll-up) its colleagues', in order."""
    times = {e.at for e in lead.events} | {e.at for e in history.colleague_events(lead)}
    return [t for t in sorted(times) if since <= t <= until]


def engagement_series(
    scoring: CompiledScoring, history: History, lead: LeadHistory, since: datetime, until: datetime
) -> list[tuple[datetime, int]]:
    """The lead's engagement at each instant in [since, until] where it can reach a new high.

    Engagement only rises when an event arrives (between events it decays), so a threshold
    is first crossed at one of these instants or never. Each is `score_at(...).engagement`,
    replayed without classifying the same events at every instant (`EngagementReplay`).
    """
    colleagues = history.colleague_events(lead)
    times = {e.at for e in lead.events} | {e.at for e in colleagues}
    replay = EngagementReplay(scoring, lead.events, colleagues, history.verdicts)
    return [(t, replay.at(t, lead.engagement_since(t))) for t in sorted(times) if since <= t <= until]


class Ceilings:
    """The most engagement each lead of a chunk can have at any moment of its loaded events,
    its own and its colleagues' (`CompiledScoring.engagement_ceiling`, then the account
    part's weight and caps): a lead whose ceiling is below a line never crosses it, and
    need not be replayed."""

    def __init__(self, scoring: CompiledScoring, history: History) -> None:
        self.scoring = scoring
        self.own = {lead.id: scoring.engagement_ceiling(lead.events) for lead in history.leads.values()}
        self.accounts = {
            account: sum(self.own[member] for member in members) for account, members in history.by_account.items()
        }

    def of(self, lead: LeadHistory) -> int:
        own = self.own[lead.id]
        colleagues = max(self.accounts.get(lead.account, 0.0) - own, 0.0) if lead.account else 0.0
        return _ceiling(self.scoring, own, colleagues)


def _ceiling(scoring: CompiledScoring, own: float, colleagues: float) -> int:
    """The most engagement from events worth at most `own` points of the lead's and
    `colleagues` points of its colleagues'."""
    account = scoring.model.account
    given = 0.0
    if account.weight > 0:
        if account.person_cap is not None:
            colleagues = min(colleagues, account.person_cap)
        given = colleagues * account.weight
        if account.cap is not None:
            given = min(given, account.cap)
    # Engagement is round(own + given); one point more covers rounding and float sums.
    return math.floor(own + given + 0.5) + 1


def deciding_series(
    scoring: CompiledScoring,
    history: History,
    lead: LeadHistory,
    since: datetime,
    until: datetime,
    lowest: int,
    highest: int,
) -> tuple[datetime, list[tuple[datetime, int]]]:
    """The first instant of `engagement_series`, and the part of it that decides where the
    lead first reaches each line from `lowest` to `highest`: instants where the engagement's
    ceiling so far (the events up to then at full points) is below `lowest` are not replayed,
    and the series stops at the first instant that reaches `highest`. Each point is
    `score_at(...).engagement`, replayed with `EngagementReplay`."""
    colleagues = history.colleague_events(lead)
    times = sorted({e.at for e in lead.events} | {e.at for e in colleagues})
    times = [t for t in times if since <= t <= until]
    replay = EngagementReplay(scoring, lead.events, colleagues, history.verdicts)
    own = sorted((e.at, scoring.engagement_ceiling((e,))) for e in lead.events)
    theirs = sorted((e.at, scoring.engagement_ceiling((e,))) for e in colleagues)
    series: list[tuple[datetime, int]] = []
    own_sum = their_sum = 0.0
    i = j = 0
    for t in times:
        while i < len(own) and own[i][0] <= t:
            own_sum += own[i][1]
            i += 1
        while j < len(theirs) and theirs[j][0] <= t:
            their_sum += theirs[j][1]
            j += 1
        if _ceiling(scoring, own_sum, their_sum) < lowest:
            continue
        points = replay.at(t, lead.engagement_since(t))
        series.append((t, points))
        if points >= highest:
            break
    return times[0], series


def first_at_or_above(series: Sequence[tuple[datetime, int]], threshold: int) -> datetime | None:
    return next((t for t, points in series if points >= threshold), None)
