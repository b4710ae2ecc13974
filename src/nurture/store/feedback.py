"""Feedback after the SMTP session (bounces, complaints, ESP events), the suppression list
as a whole, scenario pauses, and the sending reputation read from them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, case, func, literal, select, update
from sqlalchemy.exc import IntegrityError

from nurture.feedback.events import FeedbackEvent, FeedbackKind
from nurture.feedback.reputation import Outcomes
from nurture.feedback.suppressions import Suppression
from nurture.store.base import Connection, Part, insert_ignore
from nurture.store.tables import EVENTS, FEEDBACK, LEADS, SCENARIO_PAUSES, SENDS, SUPPRESSIONS
from nurture.vocabulary import SendStatus

if TYPE_CHECKING:
    from nurture.store import Store

# A sent email (or one the server refused at once) counts towards its scenario's reputation.
_DONE = (SendStatus.SENT, SendStatus.BOUNCED)
PAUSED_NOTE = "held back: the scenario is paused"


@dataclass(frozen=True)
class SendTarget:
    """The send a report is about, and whom it went to."""

    send_id: int
    lead_id: int
    email: str
    scenario_id: str


@dataclass(frozen=True)
class Pause:
    scenario_id: str
    paused_at: datetime
    reason: str


@dataclass(frozen=True)
class FeedbackEntry:
    """One recorded report, for a lead's timeline."""

    at: datetime
    kind: str
    source: str
    status: str | None
    diagnostic: str
    decision: str
    scenario_id: str | None


class Feedback(Part):
    def __init__(self, store: Store) -> None:
        super().__init__(store)

    # -- reports ---------------------------------------------------------------------------------

    def target(self, conn: Connection, send_id: int | None, message_id: str | None) -> SendTarget | None:
        """The send a report names: by id (from a verified return path or signed metadata),
        else by the Message-ID nurture gave it."""
        query = select(SENDS.c.id, SENDS.c.lead_id, LEADS.c.email, SENDS.c.scenario_id).join(
            LEADS, LEADS.c.id == SENDS.c.lead_id
        )
        if send_id is not None:
            row = conn.execute(query.where(SENDS.c.id == send_id)).first()
        elif message_id:
            row = conn.execute(query.where(SENDS.c.message_id == message_id)).first()
        else:
            row = None
        return SendTarget(*row) if row else None

    def lead_id(self, conn: Connection, email: str) -> int | None:
        found = conn.execute(select(LEADS.c.id).where(LEADS.c.email == email.strip().lower())).scalar()
        return int(found) if found is not None else None

    def soft_bounces(self, conn: Connection, email: str, since: datetime) -> int:
        """Soft bounces recorded for an address since `since` (authenticated ones only)."""
        found = conn.execute(
            select(func.count()).where(
                FEEDBACK.c.email == email.strip().lower(),
                FEEDBACK.c.kind == FeedbackKind.SOFT_BOUNCE,
                FEEDBACK.c.authenticated.is_(True),
                FEEDBACK.c.received_at >= since,
            )
        ).scalar()
        return int(found or 0)

    def record(
        self,
        conn: Connection,
        event: FeedbackEvent,
        *,
        target: SendTarget | None,
        lead_id: int | None,
        authenticated: bool,
        decision: str,
        now: datetime,
    ) -> bool:
        """Keep one report; False when the provider sent this event before (same id)."""
        values: dict[str, Any] = dict(
            received_at=now,
            occurred_at=event.occurred_at,
            source=event.source,
            kind=str(event.kind),
            email=(target.email if target else (event.recipient or "").strip().lower() or None),
            lead_id=target.lead_id if target else lead_id,
            send_id=target.send_id if target else None,
            scenario_id=target.scenario_id if target else None,
            status=event.status,
            code=event.code,
            diagnostic=event.diagnostic[:4000],
            event_id=event.event_id[:200] if event.event_id else None,
            authenticated=authenticated,
            decision=decision,
        )
        if event.event_id is None:
            conn.execute(FEEDBACK.insert().values(**values))
            return True
        # RETURNING tells a skipped row apart on both databases (rowcount does not, with
        # the implicit RETURNING PostgreSQL's dialect adds).
        inserted = conn.execute(insert_ignore(self.postgres, FEEDBACK).values(**values).returning(FEEDBACK.c.id))
        return inserted.first() is not None

    def of_lead(self, lead_id: int, limit: int = 100) -> list[FeedbackEntry]:
        with self.store.reading() as conn:
            rows = conn.execute(
                select(
                    func.coalesce(FEEDBACK.c.occurred_at, FEEDBACK.c.received_at),
                    FEEDBACK.c.kind,
                    FEEDBACK.c.source,
                    FEEDBACK.c.status,
                    FEEDBACK.c.diagnostic,
                    FEEDBACK.c.decision,
                    FEEDBACK.c.scenario_id,
                )
                .where(FEEDBACK.c.lead_id == lead_id)
                .order_by(FEEDBACK.c.id.desc())
                .limit(limit)
            ).all()
        return [FeedbackEntry(*row) for row in rows]

    # -- suppression list ------------------------------------------------------------------------

    def suppressions(self) -> list[Suppression]:
        with self.store.reading() as conn:
            rows = conn.execute(
                select(
                    SUPPRESSIONS.c.email, SUPPRESSIONS.c.reason, SUPPRESSIONS.c.created_at, SUPPRESSIONS.c.detail
                ).order_by(SUPPRESSIONS.c.created_at, SUPPRESSIONS.c.email)
            ).all()
        return [Suppression(r.email, r.reason, r.created_at, r.detail or "") for r in rows]

    def import_suppressions(self, rows: Sequence[Suppression], now: datetime) -> int:
        """Add addresses to the suppression list in one transaction (their leads are flagged
        as suppress() does); addresses already on it are kept as they are. Returns how many
        were new."""
        added = 0
        with self.store.transaction() as conn:
            known = (
                set(
                    conn.execute(select(SUPPRESSIONS.c.email).where(SUPPRESSIONS.c.email.in_([r.email for r in rows])))
                    .scalars()
                    .all()
                )
                if rows
                else set()
            )
            for row in rows:
                if row.email in known:
                    continue
                self.store.leads.suppress(conn, row.email, row.reason, row.source or "import")
                if row.created_at is not None:
                    conn.execute(
                        update(SUPPRESSIONS).where(SUPPRESSIONS.c.email == row.email).values(created_at=row.created_at)
                    )
                added += 1
        return added

    # -- pauses ----------------------------------------------------------------------------------

    def pause(self, conn: Connection, scenario_id: str, reason: str, now: datetime) -> bool:
        """Pause a scenario; False when it already is."""
        current = conn.execute(
            select(SCENARIO_PAUSES.c.resumed_at).where(SCENARIO_PAUSES.c.scenario_id == scenario_id)
        ).first()
        if current is not None and current.resumed_at is None:
            return False
        if current is None:
            try:
                with conn.begin_nested():
                    conn.execute(SCENARIO_PAUSES.insert().values(scenario_id=scenario_id, paused_at=now, reason=reason))
            except IntegrityError:  # another daemon paused it at the same moment
                return False
            return True
        changed = conn.execute(
            update(SCENARIO_PAUSES)
            .where(SCENARIO_PAUSES.c.scenario_id == scenario_id, SCENARIO_PAUSES.c.resumed_at.is_not(None))
            .values(paused_at=now, reason=reason, resumed_at=None, resumed_by=None)
        )
        return bool(changed.rowcount)

    def resume(self, scenario_id: str, actor: str, now: datetime) -> bool:
        """Resume a paused scenario: its held-back sends become due now. False if not paused."""
        with self.store.transaction() as conn:
            changed = conn.execute(
                update(SCENARIO_PAUSES)
                .where(SCENARIO_PAUSES.c.scenario_id == scenario_id, SCENARIO_PAUSES.c.resumed_at.is_(None))
                .values(resumed_at=now, resumed_by=actor)
            )
            if not changed.rowcount:
                return False
            conn.execute(
                update(SENDS)
                .where(
                    SENDS.c.scenario_id == scenario_id,
                    SENDS.c.status == SendStatus.PENDING,
                    SENDS.c.next_attempt_at > now,
                    SENDS.c.last_error == PAUSED_NOTE,
                )
                .values(next_attempt_at=now, last_error=None)
            )
        return True

    def paused(self) -> dict[str, Pause]:
        with self.store.reading() as conn:
            rows = conn.execute(
                select(SCENARIO_PAUSES.c.scenario_id, SCENARIO_PAUSES.c.paused_at, SCENARIO_PAUSES.c.reason).where(
                    SCENARIO_PAUSES.c.resumed_at.is_(None)
                )
            ).all()
        return {r.scenario_id: Pause(*r) for r in rows}

    def hold(self, worker: str, send_ids: Sequence[int], until: datetime) -> None:
        """Give leased sends of a paused scenario back, due again at `until` (no attempt spent)."""
        if not send_ids:
            return
        with self.store.transaction() as conn:
            conn.execute(
                update(SENDS)
                .where(SENDS.c.id.in_(send_ids), SENDS.c.lease_owner == worker)
                .values(
                    status=SendStatus.PENDING,
                    lease_owner=None,
                    lease_until=None,
                    next_attempt_at=until,
                    last_error=PAUSED_NOTE,
                )
            )

    # -- reputation ------------------------------------------------------------------------------

    def outcomes(self, conn: Connection, scenario_id: str, window: int) -> Outcomes:
        """What became of a scenario's last `window` sent emails."""
        return self._outcomes(conn, [SENDS.c.scenario_id == scenario_id], window)

    def outcomes_by(self, group: str, window: int) -> dict[str, Outcomes]:
        """Outcomes of the last `window` sends per scenario (`group="scenario"`) or per
        recipient domain (`group="domain"`)."""
        with self.store.reading() as conn:
            if group == "scenario":
                # The scenarios that have sends, from the tallies: not a scan of the outbox.
                keys = sorted(self.store.tallies.count(conn, "send", ("a",)))
                return {k: self._outcomes(conn, [SENDS.c.scenario_id == k], window) for k in keys}
            domain = func.lower(func.substr(LEADS.c.email, func.instr(LEADS.c.email, "@") + 1))
            if self.postgres:
                domain = func.lower(func.split_part(LEADS.c.email, "@", 2))
            recent = (
                select(SENDS.c.id, domain.label("domain"))
                .join(LEADS, LEADS.c.id == SENDS.c.lead_id)
                .where(SENDS.c.status.in_(_DONE))
                .order_by(SENDS.c.id.desc())
                .limit(window)
                .subquery()
            )
            return self._grouped(conn, recent, recent.c.domain)

    def _outcomes(self, conn: Connection, where: list[Any], window: int) -> Outcomes:
        recent = (
            select(SENDS.c.id, literal("all").label("key"))
            .where(SENDS.c.status.in_(_DONE), *where)
            .order_by(SENDS.c.id.desc())
            .limit(window)
            .subquery()
        )
        return self._grouped(conn, recent, recent.c.key).get("all", Outcomes(0))

    def _grouped(self, conn: Connection, recent: Any, key: Any) -> dict[str, Outcomes]:
        def kind_count(*kinds: str) -> Any:
            return func.count(func.distinct(case((FEEDBACK.c.kind.in_(kinds), FEEDBACK.c.send_id))))

        authentic = and_(FEEDBACK.c.send_id == recent.c.id, FEEDBACK.c.authenticated.is_(True))
        rows = conn.execute(
            select(
                key,
                func.count(func.distinct(recent.c.id)),
                kind_count(FeedbackKind.DELIVERED),
                kind_count(FeedbackKind.HARD_BOUNCE),
                kind_count(FeedbackKind.SOFT_BOUNCE),
                kind_count(FeedbackKind.COMPLAINT),
            )
            .select_from(recent.outerjoin(FEEDBACK, authentic))
            .group_by(key)
        ).all()
        unsubscribes: dict[Any, int] = dict(
            conn.execute(
                select(key, func.count(func.distinct(EVENTS.c.lead_id)))
                .select_from(recent.join(SENDS, SENDS.c.id == recent.c.id))
                .join(EVENTS, and_(EVENTS.c.lead_id == SENDS.c.lead_id, EVENTS.c.type == "unsubscribe"))
                .where(EVENTS.c.at >= SENDS.c.sent_at)
                .group_by(key)
            ).all()
        )
        bounced: dict[Any, int] = dict(
            conn.execute(
                select(key, func.count())
                .select_from(recent.join(SENDS, SENDS.c.id == recent.c.id))
                .where(SENDS.c.status == SendStatus.BOUNCED)
                .group_by(key)
            ).all()
        )
        return {
            str(k): Outcomes(
                int(sends),
                delivered=int(delivered),
                hard_bounces=int(hard) + int(bounced.get(k, 0)),
                soft_bounces=int(soft),
                complaints=int(complaints),
                unsubscribes=int(unsubscribes.get(k, 0)),
            )
            for k, sends, delivered, hard, soft, complaints in rows
        }

    def daily(self, scenario_id: str, since: datetime) -> list[tuple[str, int, int, int]]:
        """(day, hard bounces, soft bounces, complaints) per UTC day since `since`, authenticated
        reports only, for the dashboard's chart."""
        with self.store.reading() as conn:
            rows = conn.execute(
                select(FEEDBACK.c.received_at, FEEDBACK.c.kind).where(
                    FEEDBACK.c.scenario_id == scenario_id,
                    FEEDBACK.c.received_at >= since,
                    FEEDBACK.c.authenticated.is_(True),
                    FEEDBACK.c.kind.in_((FeedbackKind.HARD_BOUNCE, FeedbackKind.SOFT_BOUNCE, FeedbackKind.COMPLAINT)),
                )
            ).all()
        days: dict[str, list[int]] = {}
        order = {FeedbackKind.HARD_BOUNCE: 0, FeedbackKind.SOFT_BOUNCE: 1, FeedbackKind.COMPLAINT: 2}
        for at, kind in rows:
            days.setdefault(at.date().isoformat(), [0, 0, 0])[order[FeedbackKind(kind)]] += 1
        return [(day, *counts) for day, counts in sorted(days.items())]  # type: ignore[misc]

    def counts(self) -> dict[tuple[str, str], int]:
        """Reports received, by source and kind (for /metrics)."""
        with self.store.reading() as conn:
            rows = conn.execute(
                select(FEEDBACK.c.source, FEEDBACK.c.kind, func.count()).group_by(FEEDBACK.c.source, FEEDBACK.c.kind)
            ).all()
        return {(source, kind): int(n) for source, kind, n in rows}

    def since(self, when: datetime) -> Iterable[str]:
        """Scenarios with authenticated bounces or complaints recorded since `when`."""
        with self.store.reading() as conn:
            return list(
                conn.execute(
                    select(FEEDBACK.c.scenario_id)
                    .where(
                        FEEDBACK.c.received_at >= when,
                        FEEDBACK.c.scenario_id.is_not(None),
                        FEEDBACK.c.kind.in_((FeedbackKind.HARD_BOUNCE, FeedbackKind.COMPLAINT)),
                    )
                    .distinct()
                ).scalars()
            )
