"""What became of each email and enrolment, kept as rows and counted by the tallies, so the
scenario report reads counters instead of scanning sends and events.

Triggers (migrations 0016, 0017) name in `outcome_pending`, in the same transaction, every
lead whose outcomes may have changed: an email event recorded, a stage change to hot or
beyond, an enrolment after a promotion already recorded, a deletion. `catch_up` reads a batch of those names, reads the
leads' emails, email events, conversions and enrolments, lets the caller compute the rows
(the bot classifier is Python), writes the difference and removes the names it read (by
id: a name added meanwhile stays for the next batch). One catch-up runs at a time
(an advisory lock on PostgreSQL, the write lock on SQLite).

An email is marked sent with the moment the server took it, a little before the mark
commits; a conversion recorded in between is after the email, yet the catch-up that counts
it may not see the email sent. So the catch-up reads a converted lead's emails `FOR SHARE`
(which waits for a mark in progress and then sees it), and names the lead again while one
of its emails is still being sent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, cast, delete, func, insert, select, union

from nurture.scenario.expr import EventRecord
from nurture.store.base import Connection, Part
from nurture.store.retention import Rolled
from nurture.store.tables import ENROLMENTS, EVENTS, LIFECYCLE_CHANGES, OUTCOME_PENDING, OUTCOMES, SENDS, TALLIES
from nurture.vocabulary import EventType, SendKind, SendStatus, Stage

EMAIL_EVENTS = (EventType.OPEN, EventType.CLICK, EventType.HONEYPOT, EventType.UNSUBSCRIBE, EventType.BOUNCE)
CONVERTING = (Stage.HOT, Stage.ACCEPTED, Stage.CUSTOMER)
_LOCK = 0x6E75_7274_0016  # pg_advisory_xact_lock key: one catch-up at a time
HOT_DIGITS = 18  # a time to hot: its microseconds as text of 18 digits (31,000 years), sorting as numbers

# (send id, enrolment id, scenario, step, metric, detail, enrolment day) → n
OutcomeKey = tuple[int | None, int | None, str, str, str, str, str]


@dataclass(frozen=True, slots=True)
class OutcomeSend:
    id: int
    scenario_id: str
    step: str
    status: str
    sent_at: datetime | None
    day: str  # UTC day of its enrolment


@dataclass(frozen=True, slots=True)
class OutcomeEnrolment:
    id: int
    scenario_id: str
    enrolled_at: datetime
    day: str


@dataclass
class LeadActivity:
    """One lead's emails (of enrolments), email events (oldest first), stage changes to
    hot or beyond (oldest first), enrolments, and the rollups of its pruned email events."""

    lead_id: int
    sends: list[OutcomeSend] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    changes: list[tuple[datetime, str]] = field(default_factory=list)
    enrolments: list[OutcomeEnrolment] = field(default_factory=list)
    rolled: list[Rolled] = field(default_factory=list)  # email events pruned, as their daily rollups
    sending: bool = False  # converted, with an email being sent now: to be counted again


Compute = Callable[[LeadActivity], dict[OutcomeKey, int]]


class Outcomes(Part):
    def _day(self, column: Any) -> Any:
        if self.postgres:
            return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
        return func.substr(column, 1, 10)

    def pending(self, conn: Connection) -> int:
        """How many names wait for a catch-up."""
        return int(conn.execute(select(func.count()).select_from(OUTCOME_PENDING)).scalar() or 0)

    def name_everyone(self) -> int:
        """Name every lead with email events, emails or stage changes for a recount (after
        the bot rules changed); returns how many were named."""
        with self.store.transaction() as conn:
            leads = union(
                select(EVENTS.c.lead_id).where(EVENTS.c.type.in_(EMAIL_EVENTS)),
                select(SENDS.c.lead_id).where(SENDS.c.kind == SendKind.EMAIL),
                select(LIFECYCLE_CHANGES.c.lead_id).where(LIFECYCLE_CHANGES.c.to_stage.in_(CONVERTING)),
            ).subquery()
            found = conn.execute(
                insert(OUTCOME_PENDING).from_select(["lead_id"], select(leads.c.lead_id).order_by(leads.c.lead_id))
            )
            return int(found.rowcount or 0)

    def catch_up_batch(self, compute: Compute, batch: int = 1000) -> int:
        """Recount the leads of up to `batch` names; returns how many names were handled."""
        with self.store.transaction() as conn:
            if self.postgres:
                conn.execute(select(func.pg_advisory_xact_lock(_LOCK)))
            names = conn.execute(
                select(OUTCOME_PENDING.c.id, OUTCOME_PENDING.c.lead_id).order_by(OUTCOME_PENDING.c.id).limit(batch)
            ).all()
            if not names:
                return 0
            lead_ids = sorted({lead for _, lead in names})
            activities = self._activities(conn, lead_ids)
            wanted = {lead: compute(activities[lead]) for lead in lead_ids}
            self._write(conn, lead_ids, wanted)
            ids = [i for i, _ in names]
            for start in range(0, len(ids), 5000):
                conn.execute(delete(OUTCOME_PENDING).where(OUTCOME_PENDING.c.id.in_(ids[start : start + 5000])))
            sending = [lead for lead in lead_ids if activities[lead].sending]
            if sending:
                conn.execute(insert(OUTCOME_PENDING), [{"lead_id": lead} for lead in sending])
            return len(names)

    def _activities(self, conn: Connection, lead_ids: Sequence[int]) -> dict[int, LeadActivity]:
        found = {lead: LeadActivity(lead) for lead in lead_ids}
        changes = LIFECYCLE_CHANGES.c
        converted: set[int] = set()
        for row in conn.execute(
            select(changes.lead_id, changes.at, changes.to_stage)
            .where(changes.lead_id.in_(lead_ids), changes.to_stage.in_(CONVERTING))
            .order_by(changes.lead_id, changes.at, changes.id)
        ):
            found[row.lead_id].changes.append((row.at, row.to_stage))
            converted.add(row.lead_id)
        s, e = SENDS.c, ENROLMENTS.c
        query = (
            select(s.id, s.lead_id, s.scenario_id, s.step, s.status, s.sent_at, self._day(e.enrolled_at))
            .join(ENROLMENTS, (e.id == s.enrollment_id) & (e.scenario_id == s.scenario_id))
            .where(s.kind == SendKind.EMAIL)
        )
        plain = [lead for lead in lead_ids if lead not in converted]
        parts: list[Any] = [query.where(s.lead_id.in_(plain))] if plain else []
        if converted:
            locked = query.where(s.lead_id.in_(sorted(converted)))
            parts.append(locked.with_for_update(read=True, of=SENDS) if self.postgres else locked)
        for part in parts:
            for send in conn.execute(part):
                if send.status == SendStatus.SENDING and send.lead_id in converted:
                    found[send.lead_id].sending = True
                found[send.lead_id].sends.append(
                    OutcomeSend(send.id, send.scenario_id, send.step, send.status, send.sent_at, send[6])
                )
        for ev in conn.execute(
            select(EVENTS.c.lead_id, EVENTS.c.type, EVENTS.c.at, EVENTS.c.props, EVENTS.c.id)
            .where(EVENTS.c.lead_id.in_(lead_ids), EVENTS.c.type.in_(EMAIL_EVENTS))
            .order_by(EVENTS.c.lead_id, EVENTS.c.at, EVENTS.c.id)
        ):
            found[ev.lead_id].events.append(EventRecord(ev.type, ev.at, ev.props or {}, str(ev.id)))
        if self.store.retention.pruned_before(conn) is not None:
            for lead, rolled in self.store.retention.rolled_of(conn, lead_ids, EMAIL_EVENTS).items():
                found[lead].rolled.extend(rolled)
        hot = [lead for lead, activity in found.items() if any(stage == Stage.HOT for _, stage in activity.changes)]
        if hot:
            for enrolment in conn.execute(
                select(e.id, e.lead_id, e.scenario_id, e.enrolled_at, self._day(e.enrolled_at)).where(
                    e.lead_id.in_(hot)
                )
            ):
                found[enrolment.lead_id].enrolments.append(
                    OutcomeEnrolment(enrolment.id, enrolment.scenario_id, enrolment.enrolled_at, enrolment[4])
                )
        return found

    def _write(self, conn: Connection, lead_ids: Sequence[int], wanted: dict[int, dict[OutcomeKey, int]]) -> None:
        o = OUTCOMES.c
        stale: list[int] = []
        kept: dict[int, set[OutcomeKey]] = defaultdict(set)
        for row in conn.execute(
            select(
                o.id, o.lead_id, o.send_id, o.enrollment_id, o.scenario_id, o.step, o.metric, o.detail, o.day, o.n
            ).where(o.lead_id.in_(lead_ids))
        ):
            key: OutcomeKey = (
                row.send_id,
                row.enrollment_id,
                row.scenario_id,
                row.step,
                row.metric,
                row.detail,
                row.day,
            )
            if wanted[row.lead_id].get(key) == row.n and key not in kept[row.lead_id]:
                kept[row.lead_id].add(key)
            else:
                stale.append(row.id)
        for start in range(0, len(stale), 5000):
            conn.execute(delete(OUTCOMES).where(o.id.in_(stale[start : start + 5000])))
        rows = [
            {
                "lead_id": lead,
                "send_id": key[0],
                "enrollment_id": key[1],
                "scenario_id": key[2],
                "step": key[3],
                "metric": key[4],
                "detail": key[5],
                "day": key[6],
                "n": n,
            }
            for lead, keys in wanted.items()
            for key, n in keys.items()
            if n and key not in kept[lead]
        ]
        if rows:
            conn.execute(insert(OUTCOMES), rows)

    def counts(
        self, conn: Connection, scenario_id: str, days: tuple[str, str] | None
    ) -> dict[tuple[str, str, str], int]:
        """{(step, metric, detail): n} of a scenario's outcome tallies, for enrolments on
        days in [first, last) when `days` is given; without the times to hot (see `hot`)."""
        t = TALLIES.c
        by_step = select(t.b, t.c, t.d, func.sum(t.n)).where(t.kind == "outcome", t.a == scenario_id, t.b > "")
        per_lead = select(t.b, t.c, t.d, func.sum(t.n)).where(
            t.kind == "outcome", t.a == scenario_id, t.b == "", t.c == "converted_lead"
        )
        found: dict[tuple[str, str, str], int] = {}
        for query in (by_step, per_lead):
            if days is not None:
                query = query.where(t.day >= days[0], t.day < days[1])
            for row in conn.execute(query.group_by(t.b, t.c, t.d)):
                if row[3]:
                    found[(row[0], row[1], row[2])] = int(row[3])
        return found

    def hot(self, conn: Connection, scenario_id: str, days: tuple[str, str] | None) -> tuple[int, timedelta | None]:
        """(enrolments that became hot, their median time to hot), the median found by the
        database over the counted times. Each time to hot is a tally row by enrolment day
        (its microseconds in 18 digits); for a whole scenario also a row of its bucket of
        1,000 s (the first 9 digits, migration 0019), so the middle is first found among the
        buckets, then among the rows of its bucket only: a few thousand rows whatever the
        number of hot enrolments. A window of days reads its days' rows."""
        t = TALLIES.c
        times = [t.kind == "outcome", t.a == scenario_id, t.b == "", t.c == "hot"]
        buckets = [t.kind == "outcome", t.a == scenario_id, t.b == "", t.c == "hot_bucket", t.day == ""]
        if days is not None:
            times += [t.day >= days[0], t.day < days[1]]
        total = int(
            conn.execute(
                select(func.coalesce(func.sum(t.n), 0)).where(*(times if days is not None else buckets))
            ).scalar()
            or 0
        )
        if not total:
            return 0, None

        def first_past(count: int) -> tuple[int, int]:
            """(the first time with at least `count` times up to it, how many are up to it)."""
            if days is not None:
                d, upto = _first_past(conn, times, count)
                return int(d), upto
            bucket, upto = _first_past(conn, buckets, count)
            inside = int(conn.execute(select(func.sum(t.n)).where(*buckets, t.d == bucket)).scalar() or 0)
            before = upto - inside
            low, high = bucket.ljust(HOT_DIGITS, "0"), bucket.ljust(HOT_DIGITS, "9")
            d, upto = _first_past(conn, [*times, t.d >= low, t.d <= high], count - before)
            return int(d), upto + before

        middle = total // 2 if total % 2 == 0 else total // 2 + 1
        first, upto = first_past(middle)
        if total % 2:
            return total, timedelta(microseconds=first)
        second = first if upto >= middle + 1 else first_past(middle + 1)[0]
        return total, (timedelta(microseconds=first) + timedelta(microseconds=second)) / 2


def _first_past(conn: Connection, where: list[Any], count: int) -> tuple[str, int]:
    """(the first tally `d` in order whose running total of `n` reaches `count`, that total):
    a window over the rows `where` selects with each `d`'s rows (by day, by writer) as peers,
    in integers (a window over the default numeric sums costs several times)."""
    t = TALLIES.c
    running = select(t.d, func.sum(cast(t.n, Integer)).over(order_by=t.d).label("upto")).where(*where).subquery()
    row = conn.execute(
        select(running.c.d, running.c.upto).where(running.c.upto >= count).order_by(running.c.d).limit(1)
    ).one()
    return str(row.d), int(row.upto)
