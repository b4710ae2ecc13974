"""Read-only summaries: the daemon's status, scenario funnels, dashboards, analytics."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import String, any_, bindparam, case, exists, func, literal, select, text, union_all
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import SQLAlchemyError

from nurture.errors import NurtureError
from nurture.scenario.expr import EventRecord
from nurture.store.base import Connection, Part, Row, counts
from nurture.store.leads import LeadRow
from nurture.store.queue import database_now
from nurture.store.retention import Rolled
from nurture.store.tables import (
    ACTIVITIES,
    ENROLMENTS,
    EVENTS,
    LEADS,
    LIFECYCLE_CHANGES,
    NOTIFICATIONS,
    SCENARIO_VERSIONS,
    SCORE_HISTORY,
    SENDS,
    SETTINGS,
    STEP_VISITS,
)
from nurture.vocabulary import QUEUED, EnrolmentStatus, EventType, SendStatus, Stage

SQLITE_LIST = 30_000  # values in one IN list, under SQLite's limit on a statement's parameters
# The stages sales moves leads to.
SALES_STAGES = (Stage.ACCEPTED, Stage.REJECTED, Stage.RECYCLED, Stage.CUSTOMER)


@dataclass(frozen=True)
class Inbox:
    hot: list[Row[Any]]  # lead rows with `promoted_at`
    recent: list[Row[Any]]  # lifecycle changes with the lead's `email`


@dataclass(frozen=True, slots=True)
class StageMove:
    """One change of a lead's lifecycle stage."""

    lead_id: int
    at: datetime
    from_stage: str
    to_stage: str
    reason: str
    actor: str


@dataclass(frozen=True, slots=True)
class ActivityEnrolment:
    id: int
    lead_id: int
    status: str
    exit_reason: str | None
    enrolled_at: datetime


@dataclass(frozen=True, slots=True)
class ActivitySend:
    id: int
    lead_id: int
    step: str
    status: str
    sent_at: datetime | None
    enrollment_id: int | None


@dataclass(frozen=True)
class ScenarioActivity:
    enrolments: list[ActivityEnrolment]
    visits: list[tuple[str, int]]  # (step, times entered), all versions, all time
    sends: list[ActivitySend]
    events: dict[int, list[EventRecord]]  # by lead: opens, clicks, hidden-link requests, unsubscribes, bounces
    changes: dict[int, list[tuple[datetime, str]]]  # by lead: (when, new stage)
    rolled: dict[int, list[Rolled]] = field(default_factory=dict)  # by lead: the same, of pruned events


@dataclass(frozen=True)
class HistoryScope:
    """Which leads an analysis needs (their accounts come with them): those meeting every
    condition given. Nothing given: every lead."""

    events_from: datetime | None = None  # with an event in [events_from, events_until]
    events_until: datetime | None = None
    stages: tuple[str, ...] | None = None  # in one of these lifecycle stages
    reachable: bool = False  # neither unsubscribed nor bounced
    moved_to: str | None = None  # ever moved to this stage
    emails: frozenset[str] | None = None  # with one of these addresses


class StoreUnavailable(NurtureError):
    """The database did not answer."""


@dataclass(frozen=True)
class Counters:
    """What /metrics publishes: counts by status, stage and type, and daemons' heartbeats."""

    sends: dict[str, int]
    due_sends: int
    retrying: int
    notifications: dict[str, int]
    due_enrolments: int
    active_enrolments: int
    stages: dict[str, int]
    events: dict[str, int]
    heartbeats: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class ScoreCell:
    """How many reachable leads have this grade, engagement and lifecycle stage."""

    grade: str
    score_engagement: int
    lifecycle_stage: str
    leads: int


@dataclass(frozen=True)
class LeadRecord:
    lead: LeadRow
    sends: list[Row[Any]]
    events: list[Row[Any]]
    changes: list[Row[Any]]
    history: list[Row[Any]]
    activities: list[Row[Any]]


class Reports(Part):
    def status(self) -> dict[str, Any]:
        now = self.clock.now()
        self.store.tallies.fold()
        with self.store.reading() as conn:
            # Per scenario *version*: after an edit, leads still on an older version show as such.
            current = SCENARIO_VERSIONS.c.is_current.is_(True)
            enrolments = conn.execute(
                select(
                    ENROLMENTS.c.scenario_id,
                    ENROLMENTS.c.scenario_version,
                    func.coalesce(func.max(case((current, 1), else_=0)), 0),
                    ENROLMENTS.c.status,
                    ENROLMENTS.c.state,
                    func.count(),
                )
                .select_from(ENROLMENTS)
                .outerjoin(
                    SCENARIO_VERSIONS,
                    (SCENARIO_VERSIONS.c.scenario_id == ENROLMENTS.c.scenario_id)
                    & (SCENARIO_VERSIONS.c.version == ENROLMENTS.c.scenario_version),
                )
                .group_by(
                    ENROLMENTS.c.scenario_id, ENROLMENTS.c.scenario_version, ENROLMENTS.c.status, ENROLMENTS.c.state
                )
                .order_by(
                    ENROLMENTS.c.scenario_id, ENROLMENTS.c.scenario_version, ENROLMENTS.c.status, ENROLMENTS.c.state
                )
            ).all()
            sends = self.store.tallies.count(conn, "send", ("c",))
            oldest = conn.execute(select(func.min(SENDS.c.next_attempt_at)).where(SENDS.c.status.in_(QUEUED))).scalar()
            due = conn.execute(
                select(func.count()).where(ENROLMENTS.c.status == EnrolmentStatus.ACTIVE, ENROLMENTS.c.due_at <= now)
            ).scalar()
            failures = conn.execute(
                select(SENDS.c.id, SENDS.c.status, SENDS.c.step, SENDS.c.last_error, LEADS.c.email)
                .join(LEADS, LEADS.c.id == SENDS.c.lead_id)
                .where(SENDS.c.status.in_((SendStatus.FAILED, SendStatus.BOUNCED)))
                .order_by(SENDS.c.id.desc())
                .limit(10)
            ).all()
            retrying = conn.execute(
                select(func.count()).where(SENDS.c.status == SendStatus.PENDING, SENDS.c.attempts > 0)
            ).scalar()
            leads = self.store.tallies.total(conn, "lead")
            beats = conn.execute(select(SETTINGS.c.key, SETTINGS.c.value).where(SETTINGS.c.key.like("heartbeat:%")))
            paused = []
            for key, value in beats:
                try:
                    beat = json.loads(value)
                    fresh = now - datetime.fromisoformat(beat["at"]) < timedelta(minutes=15)
                except (ValueError, KeyError, TypeError):
                    continue
                if fresh and beat.get("paused"):
                    paused.append((key.removeprefix("heartbeat:"), str(beat["paused"].get("reason", ""))))
        return {
            "paused": paused,
            "enrolments": enrolments,
            "sends": sends,
            "oldest_pending": oldest,
            "due_now": due,
            "failures": failures,
            "retrying": retrying,
            "leads": leads,
        }

    def waiting(self, limit: int = 10) -> list[tuple[Row[Any], LeadRow]]:
        """Active enrolments not due yet, soonest first, each with its lead: for `status` to
        say what they wait for."""
        now = self.clock.now()
        with self.store.reading() as conn:
            rows = conn.execute(
                select(ENROLMENTS)
                .where(ENROLMENTS.c.status == EnrolmentStatus.ACTIVE, ENROLMENTS.c.due_at > now)
                .order_by(ENROLMENTS.c.due_at)
                .limit(limit)
            ).all()
            leads = {lead.id: lead for lead in self.store.leads.in_(conn, [r.lead_id for r in rows])}
        return [(row, leads[row.lead_id]) for row in rows if row.lead_id in leads]

    def database_time(self) -> datetime:
        """The database's clock now (what leases and `received_at` are measured in)."""
        with self.store.reading() as conn:
            value: datetime | str = conn.execute(select(database_now(self.postgres))).scalar_one()
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value  # SQLite: the text form
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    def next_due(self) -> datetime | None:
        """The earliest moment any job has work: an active enrolment due, or an email or a
        notification waiting to be sent (None when there is none)."""
        queries = (
            select(func.min(ENROLMENTS.c.due_at)).where(ENROLMENTS.c.status == EnrolmentStatus.ACTIVE),
            select(func.min(SENDS.c.next_attempt_at)).where(SENDS.c.status.in_(QUEUED)),
            select(func.min(NOTIFICATIONS.c.next_attempt_at)).where(NOTIFICATIONS.c.status.in_(QUEUED)),
        )
        found: list[datetime] = []
        with self.store.reading() as conn:
            for query in queries:
                value = conn.execute(query).scalar()
                if value is not None:
                    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
                    found.append(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
        return min(found, default=None)

    def funnel(self, scenario_id: str) -> dict[str, Any]:
        """Enrolled, emails sent by step and finished enrolments by exit reason (from the tallies)."""
        self.store.tallies.fold()
        tallies = self.store.tallies
        with self.store.reading() as conn:
            sent = tallies.count(conn, "send", ("b",), a=scenario_id, c=SendStatus.SENT.value)
            by_status = tallies.count(conn, "enrolment", ("b", "c"), a=scenario_id)
        finished: dict[str | None, int] = defaultdict(int)
        endings: list[tuple[str, str, int]] = []
        for (status, reason), n in sorted(by_status.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1] or ""))):
            if status not in (EnrolmentStatus.ACTIVE, EnrolmentStatus.PARKED):
                finished[reason or None] += n
            if n:
                endings.append((str(status), str(reason or ""), int(n)))
        enrolled = sum(by_status.values())
        return {"enrolled": enrolled, "sent_by_step": sent, "finished": dict(finished), "endings": endings}

    def inbox(self, hot_limit: int = 200, recent_limit: int = 20) -> Inbox:
        """Hot leads waiting for sales (newest promotion first) and sales' latest decisions."""
        changes = LIFECYCLE_CHANGES
        promoted = (
            select(changes.c.lead_id, func.max(changes.c.at).label("at"))
            .where(changes.c.to_stage == Stage.HOT)
            .group_by(changes.c.lead_id)
        ).subquery()
        with self.store.reading() as conn:
            hot = conn.execute(
                select(LEADS, promoted.c.at.label("promoted_at"))
                .outerjoin(promoted, promoted.c.lead_id == LEADS.c.id)
                .where(LEADS.c.lifecycle_stage == Stage.HOT)
                .order_by(promoted.c.at.desc().nulls_last(), LEADS.c.id)
                .limit(hot_limit)
            ).all()
            recent = conn.execute(
                select(changes, LEADS.c.email)
                .join(LEADS, LEADS.c.id == changes.c.lead_id)
                .where(changes.c.to_stage.in_(SALES_STAGES))
                .order_by(changes.c.at.desc(), changes.c.id.desc())
                .limit(recent_limit)
            ).all()
        return Inbox(list(hot), list(recent))

    def lead_record(self, conn: Connection, lead_id: int, event_limit: int = 300) -> LeadRecord | None:
        """Everything known about one lead, for its page: sends, events (newest first), stage
        changes, score history and sales activities (oldest first)."""
        lead = conn.execute(select(LEADS).where(LEADS.c.id == lead_id)).first()
        if lead is None:
            return None

        def of(table: Any, order: Any) -> list[Row[Any]]:
            return list(conn.execute(select(table).where(table.c.lead_id == lead_id).order_by(order)).all())

        events = conn.execute(
            select(EVENTS).where(EVENTS.c.lead_id == lead_id).order_by(EVENTS.c.at.desc()).limit(event_limit)
        ).all()
        return LeadRecord(
            cast(LeadRow, lead),
            of(SENDS, SENDS.c.id),
            list(events),
            of(LIFECYCLE_CHANGES, LIFECYCLE_CHANGES.c.at),
            of(SCORE_HISTORY, SCORE_HISTORY.c.at),
            of(ACTIVITIES, ACTIVITIES.c.at),
        )

    def score_spread(self) -> list[ScoreCell]:
        """How many reachable leads there are of each grade, engagement and stage."""
        self.store.tallies.fold()
        with self.store.reading() as conn:
            found = self.store.tallies.count(conn, "lead", ("b", "c", "a"), d="reachable")
        return [ScoreCell(grade, int(engagement), stage, n) for (grade, engagement, stage), n in sorted(found.items())]

    def counters(self, now: datetime, heartbeat_prefix: str) -> Counters:
        """The cluster's counters at `now`, read in one go (for /metrics): totals from the
        tallies, what is due from the outboxes' and enrolments' partial indexes."""
        self.store.tallies.fold()
        tallies = self.store.tallies
        with self.store.reading() as conn:
            sends = tallies.count(conn, "send", ("c",))
            due_sends = conn.execute(
                select(func.count()).where(SENDS.c.status == SendStatus.PENDING, SENDS.c.next_attempt_at <= now)
            ).scalar()
            retrying = conn.execute(
                select(func.count()).where(SENDS.c.status == SendStatus.PENDING, SENDS.c.attempts > 0)
            ).scalar()
            notes = counts(conn.execute(select(NOTIFICATIONS.c.status, func.count()).group_by(NOTIFICATIONS.c.status)))
            active = ENROLMENTS.c.status == EnrolmentStatus.ACTIVE
            due = conn.execute(select(func.count()).where(active, ENROLMENTS.c.due_at <= now)).scalar()
            enrolled = tallies.total(conn, "enrolment", b=EnrolmentStatus.ACTIVE.value)
            stages = tallies.count(conn, "lead", ("a",))
            events = tallies.count(conn, "event", ("a",))
            beats = conn.execute(
                select(SETTINGS.c.key, SETTINGS.c.value).where(SETTINGS.c.key.startswith(heartbeat_prefix))
            ).all()
        return Counters(
            sends,
            due_sends or 0,
            retrying or 0,
            notes,
            due or 0,
            enrolled,
            stages,
            events,
            [(key, value) for key, value in beats],
        )

    def stages(self) -> dict[str, int]:
        """How many leads are in each lifecycle stage."""
        self.store.tallies.fold()
        with self.store.reading() as conn:
            return self.store.tallies.count(conn, "lead", ("a",))

    def ping(self) -> None:
        """Ask the database something trivial; raises StoreUnavailable when it does not answer."""
        try:
            with self.store.reading() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StoreUnavailable(str(exc).splitlines()[0]) from exc

    # -- history (for analytics) -------------------------------------------------------------

    def every_lead(self, conn: Connection) -> Iterator[LeadRow]:
        """Every lead, in id order."""
        for row in conn.execute(select(LEADS).order_by(LEADS.c.id)):
            yield cast(LeadRow, row)

    @contextmanager
    def history_reading(self) -> Iterator[Connection]:
        """A connection for an analysis that reads the history in several queries: on
        PostgreSQL one repeatable-read snapshot, so a lead written meanwhile cannot appear in
        one query and be missing from the next."""
        with self.store.reading() as conn:
            if self.postgres:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            yield conn

    def account_key(self, by: str | None, lead: Any = LEADS) -> Any:
        """The database's grouping of leads into accounts, `by` company or email domain:
        lower(company), or what follows the email's '@' ('' for none). It agrees with the
        analyses' own account key except for company names with surrounding white space or
        letters the database lower-cases differently, and addresses with two '@'."""
        if by is None:
            return literal("")
        if by == "company":
            return func.coalesce(func.lower(lead.c.company), "")
        if self.postgres:
            return func.split_part(lead.c.email, "@", -1)
        return func.substr(lead.c.email, func.instr(lead.c.email, "@") + 1)

    def account_keys(self, conn: Connection, by: str, chunk: int = 5000) -> Iterator[tuple[int, str | None, str, str]]:
        """(id, company, email, account key) of every lead, streamed."""
        query = select(LEADS.c.id, LEADS.c.company, LEADS.c.email, self.account_key(by).label("account_key"))
        for row in conn.execution_options(yield_per=chunk).execute(query):
            yield row.id, row.company, row.email, row.account_key

    def history_leads(
        self, conn: Connection, scope: HistoryScope, by: str | None, chunk: int = 1000
    ) -> Iterator[LeadRow]:
        """The leads an analysis reads, streamed: those `scope` names and, when leads group
        into accounts `by` company or email domain, every member of their accounts, in
        account order (`account_key` on each row), then id."""
        if by is None:
            query = select(LEADS, literal("").label("account_key")).where(*self._scope(scope, LEADS))
            query = query.order_by(LEADS.c.id)
        else:
            # A join on the accounts' keys and a union with the leads in none, rather than
            # `key IN (...) OR ...`: PostgreSQL hashes a join, but rescans an IN list too
            # long to hash for every lead.
            key = self.account_key(by)
            member = LEADS.alias("member")
            member_key = self.account_key(by, member)
            accounts = (
                select(member_key.label("key")).where(*self._scope(scope, member), member_key != "").distinct()
            ).subquery("accounts")
            both = union_all(
                select(LEADS, key.label("account_key")).join(accounts, key == accounts.c.key),
                select(LEADS, literal("").label("account_key")).where(key == "", *self._scope(scope, LEADS)),
            ).subquery("scoped")
            query = select(both).order_by(both.c.account_key, both.c.id)
        for row in conn.execution_options(yield_per=chunk).execute(query):
            yield cast(LeadRow, row)

    def account_members(self, conn: Connection, by: str, key: str) -> list[LeadRow]:
        """The leads whose account key (as `account_key` groups them) is `key`."""
        found = self.account_key(by)
        return cast(list[LeadRow], conn.execute(select(LEADS, found.label("account_key")).where(found == key)).all())

    def leads_by_id(self, conn: Connection, lead_ids: Sequence[int]) -> list[LeadRow]:
        query = select(LEADS, literal("").label("account_key")).where(LEADS.c.id.in_(lead_ids))
        return cast(list[LeadRow], conn.execute(query).all())

    def _scope(self, scope: HistoryScope, lead: Any) -> list[Any]:
        conditions: list[Any] = []
        if scope.events_from is not None or scope.events_until is not None:
            window = [EVENTS.c.lead_id == lead.c.id]
            if scope.events_from is not None:
                window.append(EVENTS.c.at >= scope.events_from)
            if scope.events_until is not None:
                window.append(EVENTS.c.at <= scope.events_until)
            conditions.append(exists().where(*window))
        if scope.stages is not None:
            conditions.append(lead.c.lifecycle_stage.in_(scope.stages))
        if scope.reachable:
            conditions += [lead.c.unsubscribed.is_(False), lead.c.bounced.is_(False)]
        if scope.moved_to is not None:
            changes = LIFECYCLE_CHANGES
            conditions.append(exists().where(changes.c.lead_id == lead.c.id, changes.c.to_stage == scope.moved_to))
        if scope.emails is not None:
            emails = sorted(scope.emails)
            if self.postgres:
                conditions.append(lead.c.email == any_(bindparam("scope_emails", emails, type_=ARRAY(String))))
            elif len(emails) <= SQLITE_LIST:
                conditions.append(lead.c.email.in_(emails))
            # A longer list than SQLite binds in one statement: every lead is read, the analysis picks.
        return conditions

    def events_of(
        self, conn: Connection, lead_ids: Sequence[int], start: datetime | None, until: datetime | None
    ) -> Iterator[tuple[int, EventRecord]]:
        """(lead id, event) for the events of these leads within [start, until], oldest first."""
        query = select(EVENTS.c.lead_id, EVENTS.c.type, EVENTS.c.at, EVENTS.c.props, EVENTS.c.id).where(
            EVENTS.c.lead_id.in_(lead_ids)
        )
        if start is not None:
            query = query.where(EVENTS.c.at >= start)
        if until is not None:
            query = query.where(EVENTS.c.at <= until)
        for ev in conn.execute(query.order_by(EVENTS.c.at, EVENTS.c.id)):
            yield ev.lead_id, EventRecord(ev.type, ev.at, ev.props or {}, str(ev.id))

    def stage_changes_of(self, conn: Connection, lead_ids: Sequence[int]) -> Iterator[StageMove]:
        """Every lifecycle change of these leads, oldest first."""
        changes = LIFECYCLE_CHANGES
        query = select(changes).where(changes.c.lead_id.in_(lead_ids)).order_by(changes.c.at, changes.c.id)
        for ch in conn.execute(query):
            yield StageMove(ch.lead_id, ch.at, ch.from_stage, ch.to_stage, ch.reason, ch.actor)

    def step_visits(self, scenario_id: str) -> list[tuple[str, int]]:
        """(step, times entered) of a scenario, all versions, all time."""
        with self.store.reading() as conn:
            visits = conn.execute(
                select(STEP_VISITS.c.step, func.sum(STEP_VISITS.c.entered))
                .where(STEP_VISITS.c.scenario_id == scenario_id)
                .group_by(STEP_VISITS.c.step)
            ).all()
        return [(str(step), int(entered or 0)) for step, entered in visits]

    def scenario_activity(
        self, scenario_id: str, since: datetime | None = None, until: datetime | None = None, chunk: int = 2000
    ) -> Iterator[ScenarioActivity]:
        """What a scenario's report counts, for enrolments in [since, until), a few thousand
        leads at a time (lead id order), so a report's memory does not grow with the scenario:
        the enrolments, their emails, and the email events and stage changes of their leads.
        A lead's enrolments, sends and events are all in one chunk."""
        enrol_filter = [ENROLMENTS.c.scenario_id == scenario_id]
        if since is not None:
            enrol_filter.append(ENROLMENTS.c.enrolled_at >= since)
        if until is not None:
            enrol_filter.append(ENROLMENTS.c.enrolled_at < until)
        changes_t = LIFECYCLE_CHANGES
        email_events = (
            EventType.OPEN,
            EventType.CLICK,
            EventType.HONEYPOT,
            EventType.UNSUBSCRIBE,
            EventType.BOUNCE,
        )
        after = 0
        with self.store.reading() as conn:
            pruned = self.store.retention.pruned_before(conn) is not None
        while True:
            with self.store.reading() as conn:
                lead_ids = list(
                    conn.execute(
                        select(ENROLMENTS.c.lead_id)
                        .where(*enrol_filter, ENROLMENTS.c.lead_id > after)
                        .group_by(ENROLMENTS.c.lead_id)
                        .order_by(ENROLMENTS.c.lead_id)
                        .limit(chunk)
                    ).scalars()
                )
                if not lead_ids:
                    return
                after = lead_ids[-1]
                enrolments = conn.execute(
                    select(
                        ENROLMENTS.c.id,
                        ENROLMENTS.c.lead_id,
                        ENROLMENTS.c.status,
                        ENROLMENTS.c.exit_reason,
                        ENROLMENTS.c.enrolled_at,
                    ).where(*enrol_filter, ENROLMENTS.c.lead_id.in_(lead_ids))
                ).all()
                sends = conn.execute(
                    select(
                        SENDS.c.id,
                        SENDS.c.lead_id,
                        SENDS.c.step,
                        SENDS.c.status,
                        SENDS.c.sent_at,
                        SENDS.c.enrollment_id,
                    ).where(
                        SENDS.c.lead_id.in_(lead_ids),
                        SENDS.c.scenario_id == scenario_id,
                        SENDS.c.kind == "email",
                        SENDS.c.enrollment_id.in_([r.id for r in enrolments]),
                    )
                ).all()
                events: dict[int, list[EventRecord]] = defaultdict(list)
                changes: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
                for ev in conn.execute(
                    select(EVENTS.c.lead_id, EVENTS.c.type, EVENTS.c.at, EVENTS.c.props, EVENTS.c.id)
                    .where(EVENTS.c.lead_id.in_(lead_ids), EVENTS.c.type.in_(email_events))
                    .order_by(EVENTS.c.at)
                ):
                    events[ev.lead_id].append(EventRecord(ev.type, ev.at, ev.props or {}, str(ev.id)))
                for ch in conn.execute(
                    select(changes_t.c.lead_id, changes_t.c.at, changes_t.c.to_stage)
                    .where(changes_t.c.lead_id.in_(lead_ids))
                    .order_by(changes_t.c.at)
                ):
                    changes[ch.lead_id].append((ch.at, ch.to_stage))
                rolled = self.store.retention.rolled_of(conn, lead_ids, email_events) if pruned else {}
            yield ScenarioActivity(
                [ActivityEnrolment(*r) for r in enrolments],
                [],
                [ActivitySend(*r) for r in sends],
                events,
                changes,
                rolled,
            )
