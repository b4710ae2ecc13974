"""The stored past, loaded once for analysis: leads, their events, lifecycle changes, outcomes.

Analyses replay the scoring model over this history. Lead fields are today's (the store
keeps no history of fields), events and lifecycle changes are as they happened.

Once old events are pruned (`nurture events prune`) only their daily counts remain, which
cannot say when within a day each event happened, so cannot replay its decay: a score is
replayed exactly only at moments whose whole lookback is still raw (`complete_from` on).
A window before that is refused; the analyses over all history (drift, learn) leave out
the moments before it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from nurture.scenario.expr import EventRecord
from nurture.scoring.engine import CompiledScoring, ScoreResult
from nurture.store import Store
from nurture.store.leads import lead_view
from nurture.store.retention import RetentionError
from nurture.vocabulary import Stage

GOOD = (Stage.ACCEPTED, Stage.CUSTOMER)  # what sales accepting or a deal closing means for a lead
CHUNK = 500


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


def load_history(
    store: Store, scoring: CompiledScoring, since: datetime | None = None, until: datetime | None = None
) -> History:
    """Every lead, with events in [since - lookback, until] and all lifecycle changes.

    Raises `RetentionError` when events that window needs were pruned."""
    start = since - scoring.lookback if since is not None else None
    leads: dict[int, LeadHistory] = {}
    with store.reading() as conn:
        pruned = store.retention.pruned_before(conn)
        complete_from = pruned + scoring.lookback if pruned is not None else None
        if complete_from is not None and since is not None and since < complete_from:
            raise RetentionError(
                f"events before {pruned:%Y-%m-%d} were pruned (only daily counts remain), and replaying scores "
                f"from {since:%Y-%m-%d} needs the {scoring.lookback.days} days before it: "
                f"start the window on {complete_from:%Y-%m-%d} or later"
            )
        for row in store.reports.every_lead(conn):
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


def engagement_series(
    scoring: CompiledScoring, history: History, lead: LeadHistory, since: datetime, until: datetime
) -> list[tuple[datetime, int]]:
    """The lead's engagement at each instant in [since, until] where it can reach a new high.

    Engagement only rises when an event arrives (between events it decays), so a threshold
    is first crossed at one of these instants or never.
    """
    colleagues = history.colleague_events(lead)
    times = {e.at for e in lead.events} | {e.at for e in colleagues}
    return [(t, score_at(scoring, lead, t, colleagues).engagement) for t in sorted(times) if since <= t <= until]


def first_at_or_above(series: Sequence[tuple[datetime, int]], threshold: int) -> datetime | None:
    return next((t for t, points in series if points >= threshold), None)
