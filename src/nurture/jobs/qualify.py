"""The qualify job: rescore leads whose behaviour changed, move them cold → warm → hot
(the stage rules are `nurture.lifecycle`'s), assign an owner to each new hot lead and
queue its notifications to sales.

Promotion and its notifications commit in one transaction, keyed by the promotion's
number, so a re-run after a crash cannot notify twice and a crash cannot lose one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from nurture.clock import Clock
from nurture.jobs.catalog import Catalog
from nurture.lifecycle import assign_owner, change_stage, explain, hand_over, needed_for, scored_stage
from nurture.scenario.expr import EventRecord
from nurture.scoring.engine import CompiledScoring, ScoreResult
from nurture.store import Connection, Store
from nurture.store.leads import LeadRow, lead_view
from nurture.vocabulary import Stage

CHUNK = 500


@dataclass
class QualifyStats:
    scored: int = 0
    warmed: int = 0
    promoted: int = 0


class Qualifier:
    def __init__(self, store: Store, catalog: Catalog, clock: Clock) -> None:
        self.store = store
        self.catalog = catalog
        self.clock = clock

    def run_once(self, *, everyone: bool = False) -> QualifyStats:
        """Rescore leads with events received since the last run (or `everyone`)."""
        scoring = self.catalog.scoring
        stats = QualifyStats()
        if scoring is None:
            return stats
        now = self.clock.now()
        with self.store.reading() as conn:
            mark = self.store.settings.get(conn, "qualify:watermark")
            since = datetime.fromisoformat(mark) if mark and not everyone else None
            lead_ids = self.store.events.leads_since(conn, since)
            if everyone:
                lead_ids = sorted(set(lead_ids) | set(self.store.leads.ids(conn)))
        for start in range(0, len(lead_ids), CHUNK):
            self._chunk(scoring, lead_ids[start : start + CHUNK], now, stats)
        with self.store.transaction() as conn:
            self.store.settings.put(conn, "qualify:watermark", now.isoformat())
        return stats

    def score_lead(self, scoring: CompiledScoring, conn: Connection, row: LeadRow, now: datetime) -> ScoreResult:
        own, colleagues = self._events(scoring, conn, [row], now)
        return scoring.evaluate(
            lead_view(dict(row._mapping)).fields,
            own.get(row.id, []),
            now,
            colleagues.get(row.id, []),
            row.engagement_since,
            row.score_adjustment or 0,
        )

    def _events(
        self, scoring: CompiledScoring, conn: Connection, rows: Sequence[LeadRow], now: datetime
    ) -> tuple[dict[int, list[EventRecord]], dict[int, list[EventRecord]]]:
        since = now - scoring.lookback
        ids = [r.id for r in rows]
        own = self.store.events.for_leads(conn, ids, since)
        colleagues: dict[int, list[EventRecord]] = defaultdict(list)
        if scoring.model.account.weight <= 0:
            return own, colleagues
        key = _account_key(scoring)
        accounts = {r.id: key(r) for r in rows if key(r)}
        if not accounts:
            return own, colleagues
        wanted = {account for account in accounts.values() if account}
        peers = self.store.leads.accounts(conn, scoring.model.account.by == "company", wanted)
        members: dict[str, list[int]] = defaultdict(list)
        for peer in peers:
            account = key(peer)
            if account:
                members[account].append(peer.id)
        peer_events = self.store.events.for_leads(conn, [p.id for p in peers], since)
        for lead_id, account in accounts.items():
            for peer_id in members.get(account, []):
                if peer_id != lead_id:
                    colleagues[lead_id] += peer_events.get(peer_id, [])
        return own, colleagues

    def _chunk(self, scoring: CompiledScoring, lead_ids: Sequence[int], now: datetime, stats: QualifyStats) -> None:
        with self.store.transaction() as conn:
            rows = self.store.leads.in_(conn, lead_ids)
            own, colleagues = self._events(scoring, conn, rows, now)
            for row in rows:
                result = scoring.evaluate(
                    lead_view(row._mapping).fields,
                    own.get(row.id, []),
                    now,
                    colleagues.get(row.id, []),
                    row.engagement_since,
                    row.score_adjustment or 0,
                )
                stats.scored += 1
                self._record(conn, row, result, now)
                stage = row.lifecycle_stage
                moved = scored_stage(stage, result)
                if moved == Stage.HOT:
                    self._promote(conn, scoring, row, result, now)
                    stats.promoted += 1
                elif moved == Stage.WARM:
                    change_stage(
                        self.store,
                        conn,
                        row.id,
                        stage,
                        Stage.WARM,
                        f"engagement {result.engagement} ≥ {scoring.model.hot.warm_engagement}",
                        "scoring",
                        now,
                    )
                    stats.warmed += 1

    def _record(self, conn: Connection, row: LeadRow, result: ScoreResult, now: datetime) -> None:
        self.store.leads.record_score(conn, row, result.fit, result.engagement, result.grade, now)

    def _promote(
        self, conn: Connection, scoring: CompiledScoring, row: LeadRow, result: ScoreResult, now: datetime
    ) -> None:
        owner = assign_owner(self.store, conn, scoring, row)
        reasons = explain(result)
        reason = (
            f"grade {result.grade} with engagement {result.engagement} "
            f"(needs {needed_for(scoring, result.grade)}): " + ", ".join(reasons[:4])
        )
        change_stage(self.store, conn, row.id, row.lifecycle_stage, Stage.HOT, reason, "scoring", now)
        self.store.leads.set_owner(conn, row.id, owner.email)
        number = self.store.leads.times_reached(conn, row.id, Stage.HOT)
        events = self.store.events.for_leads(conn, [row.id], now - timedelta(days=30)).get(row.id, [])
        name = " ".join(p for p in (row.first_name, row.last_name) if p) or row.email
        subject = f"Hot lead: {name}, {row.company or 'unknown company'} ({result.grade}/{result.engagement})"
        score = {"fit": result.fit, "grade": result.grade, "engagement": result.engagement}
        rows = hand_over(
            scoring, row, owner, f"hot:{row.id}:{number}", subject, reasons, events, score, now, "lead.hot"
        )
        self.store.notifications.add(conn, rows)
        # Wake the lead's enrolments so scenarios that exit on "became_hot" do so now.
        self.store.enrolments.wake(conn, row.id, now)


def _account_key(scoring: CompiledScoring) -> Any:
    if scoring.model.account.by == "company":
        return lambda r: (r.company or "").strip().lower() or None
    return lambda r: r.email.rpartition("@")[2]
