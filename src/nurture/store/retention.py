"""Event retention: monthly partitions on PostgreSQL, and pruning old events into daily rollups.

On PostgreSQL `event` is partitioned by RANGE(at), one partition per UTC month
(`event_YYYY_MM`, made by migration 0014 and then ahead of time by `ensure_partitions`)
and a default partition that takes any moment without a month of its own, so no event is
refused for want of a partition. Pruning works in whole months, one transaction each:
every month before the cutoff is first rolled into `event_daily` (per lead, UTC day, type,
email referred to and machine verdict), then its partition is dropped, which is cheap and
leaves no dead rows. SQLite keeps one table and deletes the rows.

Tallies count events ever recorded and must not change on a prune: dropping a partition
fires no trigger, rows leave PostgreSQL's default partition by a statement on the partition
itself (the tally triggers are the parent's, statement-level), and on SQLite the delete
runs with the tally trigger lifted inside the same transaction.

External ids live as long as their events (the dedup window is the retention, in whole
months): a prune forgets a month's ids from `event_key` on PostgreSQL in the transaction
that drops the month, as SQLite's delete takes the id with its row. A redelivery cannot be
stored twice for all that: an event dated before the prune's mark is refused at ingest on
both databases (`Events.horizon`), its month's rollups being final. An erasure takes the
person's keys on both.

A prune only takes events the qualify job has seen (received before its watermark), so
whatever the job derives from events (scores, hand-offs) has been derived first.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import and_, func, select, text
from sqlalchemy.dialects import sqlite

from nurture.errors import NurtureError
from nurture.scenario.expr import EventRecord
from nurture.store.base import Connection, Part
from nurture.store.tables import EVENT_DAILY, EVENTS
from nurture.vocabulary import EventType

PRUNED_KEY = "events:pruned_before"
MONTHS_AHEAD = 3
ROLL_LEADS = 2000  # leads rolled up per write of rollups
# What the scenario report reads of a lead's events, and so what the machine filter judges.
EMAIL_EVENTS = (EventType.OPEN, EventType.CLICK, EventType.HONEYPOT, EventType.UNSUBSCRIBE, EventType.BOUNCE)
_MONTH_TABLE = re.compile(r"^event_(\d{4})_(\d{2})$")
# Events other than email events, counted per lead, UTC day and type by the database.
_EMAIL_LIST = ", ".join(f"'{t}'" for t in EMAIL_EVENTS)
_ROLL_OTHERS_SQLITE = text(
    "INSERT INTO event_daily (lead_id, day, type, send_id, verdict, n)"
    " SELECT lead_id, substr(at, 1, 10), type, 0, 'human', count(*) FROM event"
    f" WHERE at < :cutoff AND type NOT IN ({_EMAIL_LIST}) GROUP BY 1, 2, 3"
    " ON CONFLICT (lead_id, day, type, send_id, verdict) DO UPDATE SET n = event_daily.n + excluded.n"
)
# PostgreSQL: one statement (one snapshot) counts them, writes them and says how many rows
# and events, so the events rolled up are exactly the events counted.
_ROLL_OTHERS_PG = text(
    "WITH counted AS (SELECT lead_id, CAST(timezone('UTC', at) AS date) AS day, type, count(*) AS n FROM event"
    f" WHERE at < :cutoff AND type NOT IN ({_EMAIL_LIST}) GROUP BY 1, 2, 3),"
    " written AS (INSERT INTO event_daily (lead_id, day, type, send_id, verdict, n)"
    " SELECT lead_id, day, type, 0, 'human', n FROM counted"
    " ON CONFLICT (lead_id, day, type, send_id, verdict) DO UPDATE SET n = event_daily.n + excluded.n"
    " RETURNING 1)"
    " SELECT (SELECT count(*) FROM written), (SELECT sum(n) FROM counted)"
)
# PostgreSQL: the external ids of the events about to be dropped leave `event_key` with them.
_FORGET_KEYS_PG = text(
    "DELETE FROM event_key WHERE external_id IN"
    " (SELECT external_id FROM event WHERE at < :end AND external_id IS NOT NULL)"
)
_ROLL_PG = text(
    "INSERT INTO event_daily (lead_id, day, type, send_id, verdict, n)"
    " SELECT * FROM unnest(CAST(:lead AS integer[]), CAST(:day AS date[]), CAST(:type AS varchar[]),"
    " CAST(:send AS integer[]), CAST(:verdict AS varchar[]), CAST(:n AS integer[]))"
    " ON CONFLICT (lead_id, day, type, send_id, verdict) DO UPDATE SET n = event_daily.n + excluded.n"
)

Classify = Callable[[Sequence[EventRecord]], list[str]]


def partitioning_only(name: str | None, kind: str, table: str | None) -> bool:
    """Whether a schema object is one the PostgreSQL partitioning of events adds to the
    models' schema, or one it replaces: the month and default partitions (and their
    indexes), `event_key`, and the unique external id that `event_key` stands for."""
    if kind == "table":
        return name in ("event_key", "event_default") or bool(_MONTH_TABLE.match(name or ""))
    if kind == "index":
        return table == "event_default" or bool(_MONTH_TABLE.match(table or ""))
    return kind == "unique_constraint" and table == "event"


class RetentionError(NurtureError):
    """A prune that would change what scores, hand-offs or reports see."""


@dataclass(frozen=True)
class Rolled:
    """Events of one type a lead had on one day, about one email, with one verdict."""

    lead_id: int
    day: date
    type: str
    send_id: int
    verdict: str
    n: int


@dataclass(frozen=True)
class PruneResult:
    cutoff: datetime  # events before this moment are gone (or would be, in a dry run)
    events: int
    rollups: int
    partitions: list[str]
    dry_run: bool = False


def month_start(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def _next_month(start: datetime) -> datetime:
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


def _months(first: datetime, last: datetime) -> list[datetime]:
    found = []
    while first <= last:
        found.append(first)
        first = _next_month(first)
    return found


class Retention(Part):
    # -- partitions (PostgreSQL) -----------------------------------------------------------

    def partitions(self, conn: Connection) -> dict[str, datetime]:
        """The month partitions of `event`: name → first moment of its month."""
        if not self.postgres:
            return {}
        names = conn.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'event'::regclass"
            )
        ).scalars()
        found = {}
        for name in names:
            match = _MONTH_TABLE.match(name)
            if match:
                found[name] = datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)
        return found

    def ensure_partitions(self, through: datetime | None = None) -> list[str]:
        """Make the month partitions from this month through `through` (default: three
        months ahead) that are missing, moving any events of those months out of the
        default partition. Returns the partitions made."""
        if not self.postgres:
            return []
        now = self.clock.now()
        last = month_start(through or now + timedelta(days=31 * MONTHS_AHEAD))
        with self.store.transaction() as conn:
            have = set(self.partitions(conn).values())
            if all(m in have for m in _months(month_start(now), last)):
                return []
            # Writers to the default partition wait until the partitions are attached (an event
            # of a month committed there after its rows moved would make the attach fail), and
            # so does another process making partitions, which then finds them made.
            conn.execute(text("LOCK TABLE event_default IN SHARE ROW EXCLUSIVE MODE"))
            have = set(self.partitions(conn).values())
            made = [self._add_partition(conn, start) for start in _months(month_start(now), last) if start not in have]
        return made

    def _add_partition(self, conn: Connection, start: datetime) -> str:
        name = f"event_{start:%Y_%m}"
        bounds = {"lo": start, "hi": _next_month(start)}
        conn.execute(text(f"CREATE TABLE {name} (LIKE event INCLUDING DEFAULTS)"))
        moved = "FROM event_default WHERE at >= :lo AND at < :hi"
        conn.execute(text(f"INSERT INTO {name} SELECT * {moved}"), bounds)
        conn.execute(text(f"DELETE {moved}"), bounds)
        lo, hi = (bounds[k].isoformat() for k in ("lo", "hi"))
        conn.execute(text(f"ALTER TABLE event ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}')"))
        return name

    # -- pruning ---------------------------------------------------------------------------

    def pruned_before(self, conn: Connection) -> datetime | None:
        """Events before this moment were pruned (only their rollups remain); None: none were."""
        mark = self.store.settings.get(conn, PRUNED_KEY)
        return datetime.fromisoformat(mark) if mark else None

    def prune(
        self,
        before: datetime,
        *,
        keep: timedelta,
        processed_before: datetime | None,
        classify: Classify | None = None,
        dry_run: bool = False,
        on_month: Callable[[PruneResult], None] | None = None,
    ) -> PruneResult:
        """Roll up and drop the events of the whole months before `before`, a month per
        transaction, oldest first.

        `keep` is the least history anything still replays (the scoring lookback, the
        scenarios' event lookback): a cutoff later than now − keep is refused, so no score
        can change. `processed_before` is the qualify job's watermark (database clock): an
        event before the cutoff that arrived later is refused too, until the job has seen it.
        `classify` gives the machine filter's verdict (human, suspect, machine) for a lead's
        email events, as the scenario report judges them; without it every event is human.

        Each month is rolled up, deleted (or its partition dropped), its events' external ids
        forgotten and the mark moved past it in one transaction; `on_month` hears of it once
        committed. Writers wait for one month at most, never for the whole prune, and a prune
        stopped between months (a crash, a refusal) leaves the months before it pruned and
        the others whole: running it again finishes the job.
        """
        now = self.clock.now()
        if before > now - keep:
            raise RetentionError(
                f"events before {before:%Y-%m-%d} cannot be pruned: scores and scenarios still read "
                f"{keep.days} days of events (prune before {now - keep:%Y-%m-%d} at the latest); "
                "keep NURTURE_EVENT_RETENTION_DAYS at least the scoring lookback"
            )
        cutoff = month_start(before)
        with self.store.reading() as conn:
            done = self.pruned_before(conn)
            if done is not None and cutoff <= done:
                return PruneResult(cutoff, 0, 0, [], dry_run)
            self._refuse_unseen(conn, cutoff, processed_before, None)
            if dry_run:
                count = int(conn.execute(select(func.count()).where(EVENTS.c.at < cutoff)).scalar_one())
                dropped = sorted(n for n, start in self.partitions(conn).items() if _next_month(start) <= cutoff)
                return PruneResult(cutoff, count, 0, dropped, True)
            months = self._months_with_events(conn, cutoff)
        total = PruneResult(cutoff, 0, 0, [])
        for start in months:
            month = self._prune_month(start, processed_before, classify)
            total = PruneResult(
                cutoff, total.events + month.events, total.rollups + month.rollups, total.partitions + month.partitions
            )
            if on_month is not None:
                on_month(month)
        with self.store.transaction() as conn:  # the months without events: only the mark moves
            if self.postgres:
                conn.execute(text("LOCK TABLE event IN ACCESS EXCLUSIVE MODE"))
            if conn.execute(select(EVENTS.c.id).where(EVENTS.c.at < cutoff).limit(1)).first() is not None:
                raise RetentionError(
                    f"events before {cutoff:%Y-%m-%d} arrived during the prune: pruned before "
                    f"{self.pruned_before(conn) or cutoff:%Y-%m-%d} only; let the daemon qualify them, then prune again"
                )
            done = self.pruned_before(conn)
            if done is None or done < cutoff:  # the mark only moves forward (another prune may be past it)
                self.store.settings.put(conn, PRUNED_KEY, cutoff.isoformat())
        return total

    def _refuse_unseen(
        self, conn: Connection, end: datetime, processed_before: datetime | None, start: datetime | None
    ) -> None:
        """Refuse to prune events before `end` that the qualify job has not seen yet."""
        old = EVENTS.c.at < end
        unseen = old if processed_before is None else and_(old, EVENTS.c.received_at >= processed_before)
        late = int(conn.execute(select(func.count()).where(unseen)).scalar_one())
        if late:
            done = "nothing pruned" if start is None else f"pruned before {start:%Y-%m-%d} only"
            raise RetentionError(
                f"{late} events before {end:%Y-%m-%d} arrived after the qualify job's last run (or it never "
                f"ran): {done}; let the daemon qualify them first"
            )

    def _months_with_events(self, conn: Connection, cutoff: datetime) -> list[datetime]:
        """The months before `cutoff` to prune, oldest first: on PostgreSQL those with a
        partition (empty or not) or with events in the default partition; on SQLite those
        with events."""
        if self.postgres:
            months = {start for start in self.partitions(conn).values() if _next_month(start) <= cutoff}
            stray = conn.execute(
                text("SELECT DISTINCT date_trunc('month', timezone('UTC', at)) FROM event_default WHERE at < :cutoff"),
                {"cutoff": cutoff},
            ).scalars()
            months |= {datetime(m.year, m.month, 1, tzinfo=UTC) for m in stray}
        else:
            found = conn.execute(
                text("SELECT DISTINCT substr(at, 1, 7) FROM event WHERE at < :cutoff"), {"cutoff": cutoff}
            ).scalars()
            months = {datetime(int(m[:4]), int(m[5:7]), 1, tzinfo=UTC) for m in found}
        return sorted(months)

    def _prune_month(
        self, start: datetime, processed_before: datetime | None, classify: Classify | None
    ) -> PruneResult:
        """One transaction: roll up the events before the end of `start`'s month, forget
        their external ids, drop them, and move the mark there."""
        end = _next_month(start)
        old = EVENTS.c.at < end
        with self.store.transaction() as conn:
            self._refuse_unseen(conn, end, processed_before, start)
            events, rollups = self._roll_up(conn, end, classify)
            dropped = []
            if self.postgres:
                # No event may be dropped unrolled: one committed for this month since the
                # roll-up read it (an old moment arriving late) is in the partitions now.
                # Writers wait from here to the commit; the count reads the month to drop.
                conn.execute(text("LOCK TABLE event IN ACCESS EXCLUSIVE MODE"))
                now_old = int(conn.execute(select(func.count()).where(old)).scalar_one())
                if now_old != events:
                    raise RetentionError(
                        f"{now_old - events} events before {end:%Y-%m-%d} arrived during the prune: pruned before "
                        f"{start:%Y-%m-%d} only; let the daemon qualify them, then prune again"
                    )
                conn.execute(_FORGET_KEYS_PG, {"end": end})
                dropped = sorted(n for n, s in self.partitions(conn).items() if _next_month(s) <= end)
                for name in dropped:
                    conn.execute(text(f"DROP TABLE {name}"))
                conn.execute(text("DELETE FROM event_default WHERE at < :end"), {"end": end})
            else:
                self._delete_untallied(conn, end)
            done = self.pruned_before(conn)
            if done is None or done < end:
                self.store.settings.put(conn, PRUNED_KEY, end.isoformat())
        return PruneResult(end, events, rollups, dropped)

    def _roll_up(self, conn: Connection, cutoff: datetime, classify: Classify | None) -> tuple[int, int]:
        """Add the events before `cutoff` to `event_daily`; returns (events rolled up, rollup
        rows written). Email events are judged by `classify` a lead at a time (the verdict is
        Python's), a few thousand leads per write; the others are counted by the database."""
        if self.postgres:
            written, events = conn.execute(_ROLL_OTHERS_PG, {"cutoff": cutoff}).one()
            written, events = int(written), int(events or 0)
        else:  # the only writer: the transaction holds the database's write lock
            written = int(conn.execute(_ROLL_OTHERS_SQLITE, {"cutoff": cutoff}).rowcount or 0)
            events = int(
                conn.execute(
                    select(func.count()).where(EVENTS.c.at < cutoff, EVENTS.c.type.not_in(EMAIL_EVENTS))
                ).scalar_one()
            )
        rows = conn.execute(
            select(EVENTS.c.lead_id, EVENTS.c.type, EVENTS.c.at, EVENTS.c.props, EVENTS.c.id)
            .where(EVENTS.c.at < cutoff, EVENTS.c.type.in_(EMAIL_EVENTS))
            .order_by(EVENTS.c.lead_id, EVENTS.c.at, EVENTS.c.id)
            .execution_options(stream_results=True, yield_per=10_000)
        )
        counts: dict[tuple[int, date, str, int, str], int] = defaultdict(int)
        lead: int | None = None
        mine: list[EventRecord] = []
        leads = 0

        def add(lead_id: int, evs: list[EventRecord]) -> None:
            verdicts = classify(evs) if classify else ["human"] * len(evs)
            for e, verdict in zip(evs, verdicts, strict=True):
                ref = e.props.get("send")
                send = ref if isinstance(ref, int) and not isinstance(ref, bool) else 0
                counts[(lead_id, e.at.astimezone(UTC).date(), e.type, send, verdict)] += 1

        for row in rows:
            events += 1
            if row.lead_id != lead:
                if lead is not None:
                    add(lead, mine)
                    leads += 1
                    if leads % ROLL_LEADS == 0:
                        written += self._write_rollups(conn, counts)
                        counts.clear()
                lead, mine = row.lead_id, []
            mine.append(EventRecord(row.type, row.at, row.props or {}, str(row.id)))
        if lead is not None:
            add(lead, mine)
        written += self._write_rollups(conn, counts)
        return events, written

    def _write_rollups(self, conn: Connection, counts: dict[tuple[int, date, str, int, str], int]) -> int:
        if not counts:
            return 0
        if self.postgres:  # one statement with an array per column, whatever the number of rows
            columns = list(zip(*counts, strict=True))
            conn.execute(
                _ROLL_PG,
                {
                    "lead": list(columns[0]),
                    "day": list(columns[1]),
                    "type": list(columns[2]),
                    "send": list(columns[3]),
                    "verdict": list(columns[4]),
                    "n": list(counts.values()),
                },
            )
            return len(counts)
        statement = sqlite.insert(EVENT_DAILY)
        statement = statement.on_conflict_do_update(
            index_elements=[EVENT_DAILY.c[c] for c in ("lead_id", "day", "type", "send_id", "verdict")],
            set_={"n": EVENT_DAILY.c.n + statement.excluded.n},
        )
        params = [
            {"lead_id": k[0], "day": k[1], "type": k[2], "send_id": k[3], "verdict": k[4], "n": n}
            for k, n in counts.items()
        ]
        conn.execute(statement, params)
        return len(params)

    def _delete_untallied(self, conn: Connection, cutoff: datetime) -> None:
        """SQLite: delete the events before `cutoff` without taking them off the tallies
        (the trigger is lifted and put back inside this transaction; no other writer sees it)."""
        trigger = conn.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'tally_event_delete'")
        ).scalar_one_or_none()
        if trigger:
            conn.execute(text("DROP TRIGGER tally_event_delete"))
        conn.execute(EVENTS.delete().where(EVENTS.c.at < cutoff))
        if trigger:
            conn.execute(text(trigger))

    # -- reading rollups -------------------------------------------------------------------

    def rolled_of(self, conn: Connection, lead_ids: Sequence[int], types: Sequence[str]) -> dict[int, list[Rolled]]:
        """The rollups of these leads' pruned events of these types, by lead, oldest day first."""
        found: dict[int, list[Rolled]] = defaultdict(list)
        if not lead_ids:
            return found
        t = EVENT_DAILY
        for r in conn.execute(
            select(t.c.lead_id, t.c.day, t.c.type, t.c.send_id, t.c.verdict, t.c.n)
            .where(t.c.lead_id.in_(lead_ids), t.c.type.in_([str(x) for x in types]))
            .order_by(t.c.lead_id, t.c.day)
        ):
            found[r.lead_id].append(Rolled(r.lead_id, r.day, r.type, r.send_id, r.verdict, r.n))
        return found

    # -- storage ---------------------------------------------------------------------------

    def storage(self) -> dict[str, int]:
        """PostgreSQL: bytes (tables, indexes, TOAST) of the events, their keys and rollups."""
        if not self.postgres:
            return {}
        with self.store.reading() as conn:
            events = conn.execute(
                text(
                    "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits "
                    "WHERE inhparent = 'event'::regclass"
                )
            ).scalar_one()
            keys = conn.execute(text("SELECT pg_total_relation_size('event_key')")).scalar_one()
            daily = conn.execute(text("SELECT pg_total_relation_size('event_daily')")).scalar_one()
        return {"event": int(events), "event_key": int(keys), "event_daily": int(daily)}
