"""The qualify job: rescore leads whose behaviour changed, move them cold → warm → hot,
assign an owner to each new hot lead and queue its notifications to sales.

Promotion and its notifications commit in one transaction, keyed by the promotion's
number, so a re-run after a crash cannot notify twice and a crash cannot lose one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.engine import Connection

from nurture.catalog import Catalog
from nurture.clock import Clock
from nurture.scenario.expr import EventRecord
from nurture.scoring.engine import CompiledScoring, ScoreResult
from nurture.scoring.model import Owner
from nurture.store.repo import EV, L, Store, lead_view
from nurture.store.tables import LifecycleChange, Notification, ScoreHistory

LC = LifecycleChange.__table__  # type: ignore[attr-defined]
N = Notification.__table__  # type: ignore[attr-defined]
SH = ScoreHistory.__table__  # type: ignore[attr-defined]

SCORED_STAGES = ("cold", "warm", "recycled")  # stages the score may change; sales owns the rest
CHUNK = 500


@dataclass
class QualifyStats:
    scored: int = 0
    warmed: int = 0
    promoted: int = 0


def change_stage(
    store: Store, conn: Connection, lead_id: int, old: str, new: str, reason: str, actor: str, now: datetime
) -> None:
    conn.execute(update(L).where(L.c.id == lead_id).values(lifecycle_stage=new, updated_at=now))
    conn.execute(insert(LC).values(lead_id=lead_id, at=now, from_stage=old, to_stage=new, reason=reason, actor=actor))


def needed_for(scoring: CompiledScoring, grade: str) -> int | None:
    """Engagement a lead of `grade` needs to be hot; None when that grade never is."""
    return {str(g): n for g, n in scoring.model.hot.engagement.items()}.get(grade)


def explain(result: ScoreResult) -> list[str]:
    """The reasons a score is what it is, strongest first."""
    parts = sorted(result.contributions, key=lambda c: -c.points)
    return [f"{c.rule} (+{c.points:g}{', ' + c.note if c.note else ''})" for c in parts if c.points]


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
            mark = self.store.get_setting(conn, "qualify:watermark")
            query = select(func.distinct(EV.c.lead_id))
            if mark and not everyone:
                query = query.where(EV.c.received_at >= datetime.fromisoformat(mark))
            lead_ids = sorted(conn.execute(query).scalars())
            if everyone:
                lead_ids = sorted(set(lead_ids) | set(conn.execute(select(L.c.id)).scalars()))
        for start in range(0, len(lead_ids), CHUNK):
            self._chunk(scoring, lead_ids[start : start + CHUNK], now, stats)
        with self.store.engine.begin() as conn:
            self.store.put_setting(conn, "qualify:watermark", now.isoformat())
        return stats

    def score_lead(self, scoring: CompiledScoring, conn: Connection, row: Any, now: datetime) -> ScoreResult:
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
        self, scoring: CompiledScoring, conn: Connection, rows: Sequence[Any], now: datetime
    ) -> tuple[dict[int, list[EventRecord]], dict[int, list[EventRecord]]]:
        since = now - scoring.lookback
        ids = [r.id for r in rows]
        own = self.store.events_for(conn, ids, since)
        colleagues: dict[int, list[EventRecord]] = defaultdict(list)
        if scoring.model.account.weight <= 0:
            return own, colleagues
        key = _account_key(scoring)
        accounts = {r.id: key(r) for r in rows if key(r)}
        if not accounts:
            return own, colleagues
        wanted = set(accounts.values())
        condition = (
            func.lower(L.c.company).in_(wanted)
            if scoring.model.account.by == "company"
            else or_(*[L.c.email.like(f"%@{domain}") for domain in wanted])
        )
        peers = conn.execute(select(L.c.id, L.c.company, L.c.email).where(condition)).all()
        members: dict[str, list[int]] = defaultdict(list)
        for peer in peers:
            account = key(peer)
            if account:
                members[account].append(peer.id)
        peer_events = self.store.events_for(conn, [p.id for p in peers], since)
        for lead_id, account in accounts.items():
            for peer_id in members.get(account, []):
                if peer_id != lead_id:
                    colleagues[lead_id] += peer_events.get(peer_id, [])
        return own, colleagues

    def _chunk(self, scoring: CompiledScoring, lead_ids: Sequence[int], now: datetime, stats: QualifyStats) -> None:
        with self.store.engine.begin() as conn:
            rows = self.store.leads_in(conn, lead_ids)
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
                if stage not in SCORED_STAGES:
                    continue
                if result.hot:
                    self._promote(conn, scoring, row, result, now)
                    stats.promoted += 1
                elif result.warm and stage == "cold":
                    change_stage(
                        self.store,
                        conn,
                        row.id,
                        stage,
                        "warm",
                        f"engagement {result.engagement} ≥ {scoring.model.hot.warm_engagement}",
                        "scoring",
                        now,
                    )
                    stats.warmed += 1

    def _record(self, conn: Connection, row: Any, result: ScoreResult, now: datetime) -> None:
        changed = (row.score_fit, row.score_engagement, row.grade) != (
            result.fit,
            result.engagement,
            result.grade,
        )
        conn.execute(
            update(L)
            .where(L.c.id == row.id)
            .values(score_fit=result.fit, score_engagement=result.engagement, grade=result.grade, scored_at=now)
        )
        if changed:
            conn.execute(
                insert(SH).values(
                    lead_id=row.id, at=now, fit=result.fit, engagement=result.engagement, grade=result.grade
                )
            )

    def _promote(
        self, conn: Connection, scoring: CompiledScoring, row: Any, result: ScoreResult, now: datetime
    ) -> None:
        owner = self._assign(conn, scoring, row)
        reasons = explain(result)
        reason = (
            f"grade {result.grade} with engagement {result.engagement} "
            f"(needs {needed_for(scoring, result.grade)}): " + ", ".join(reasons[:4])
        )
        change_stage(self.store, conn, row.id, row.lifecycle_stage, "hot", reason, "scoring", now)
        conn.execute(update(L).where(L.c.id == row.id).values(owner=owner.email))
        number = conn.execute(select(func.count()).where(LC.c.lead_id == row.id, LC.c.to_stage == "hot")).scalar()
        events = self.store.events_for(conn, [row.id], now - timedelta(days=30)).get(row.id, [])
        name = " ".join(p for p in (row.first_name, row.last_name) if p) or row.email
        subject = f"Hot lead: {name}, {row.company or 'unknown company'} ({result.grade}/{result.engagement})"
        score = {"fit": result.fit, "grade": result.grade, "engagement": result.engagement}
        rows = hand_over(
            scoring, row, owner, f"hot:{row.id}:{number}", subject, reasons, events, score, now, "lead.hot"
        )
        conn.execute(insert(N), rows)
        # Wake the lead's enrolments so scenarios that exit on "became_hot" do so now.
        from nurture.store.repo import E

        conn.execute(update(E).where(E.c.lead_id == row.id, E.c.status == "active").values(due_at=now))

    def _assign(self, conn: Connection, scoring: CompiledScoring, row: Any) -> Owner:
        turn = int(self.store.get_setting(conn, "owner:round_robin") or 0)
        owner, rotated = route_owner(scoring, row, turn)
        if rotated:
            self.store.put_setting(conn, "owner:round_robin", str(turn + 1))
        return owner


def route_owner(scoring: CompiledScoring, row: Any, turn: int) -> tuple[Owner, bool]:
    """The owner for a lead: a territory (country/industry) match, else the `turn`-th owner
    of the general pool; the flag says whether the round-robin was used."""
    owners = scoring.model.routing.owners
    for owner in owners:
        in_country = not owner.countries or (row.country or "") in owner.countries
        in_industry = not owner.industries or (row.industry or "") in owner.industries
        if (owner.countries or owner.industries) and in_country and in_industry:
            return owner, False
    pool = [o for o in owners if not o.countries and not o.industries] or list(owners)
    return pool[turn % len(pool)], True


def hand_over(
    scoring: CompiledScoring,
    row: Any,
    owner: Owner,
    key: str,
    subject: str,
    why: list[str],
    events: list[EventRecord],
    score: dict[str, Any],
    now: datetime,
    event: str,
) -> list[dict[str, Any]]:
    """Notification rows (email to the owner, webhook when configured) that hand a lead to sales."""
    payload = {
        "event": event,
        "lead": {
            "id": row.id,
            "email": row.email,
            "name": " ".join(p for p in (row.first_name, row.last_name) if p),
            "company": row.company,
            "job_title": row.job_title,
            "country": row.country,
            "company_size": row.company_size,
            "industry": row.industry,
        },
        "score": score,
        "why": why,
        "last_activities": [
            {
                "type": e.type,
                "at": e.at.isoformat(),
                **{k: str(v) for k, v in e.props.items() if k in ("url", "link", "asset")},
            }
            for e in sorted(events, key=lambda e: e.at)[-5:]
        ],
        "owner": {"name": owner.name, "email": owner.email},
        "link": f"{scoring.model.routing.dashboard_url.rstrip('/')}/leads/{row.id}",
        "at": now.isoformat(),
    }
    rows = [
        {
            "key": f"{key}:email",
            "kind": "email",
            "lead_id": row.id,
            "target": owner.email,
            "subject": subject,
            "payload": payload,
            "status": "pending",
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
        }
    ]
    if scoring.model.routing.webhook_url:
        rows.append(
            {
                **rows[0],
                "key": f"{key}:webhook",
                "kind": "webhook",
                "target": scoring.model.routing.webhook_url,
                "subject": "",
            }
        )
    return rows


def _account_key(scoring: CompiledScoring) -> Any:
    if scoring.model.account.by == "company":
        return lambda r: (r.company or "").strip().lower() or None
    return lambda r: r.email.rpartition("@")[2]
