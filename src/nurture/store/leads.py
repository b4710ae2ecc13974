"""Leads and the suppression list: upserts by email, reads by id, changes scenarios make."""

from __future__ import annotations

import json
from collections import namedtuple
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from sqlalchemy import (
    Column,
    DateTime,
    MetaData,
    String,
    Table,
    Text,
    any_,
    bindparam,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateTable, DropTable

from nurture.runtime.engine import LeadView
from nurture.store.base import Connection, Part, among, insert_ignore, unnest
from nurture.store.tables import ACTIVITIES, ENROLMENTS, EVENTS, LEADS, LIFECYCLE_CHANGES, SCORE_HISTORY, SUPPRESSIONS
from nurture.store.types import UTCDateTime
from nurture.vocabulary import STANDARD_FIELDS, Stage

LEAD_COLUMNS = [c for c in STANDARD_FIELDS if c in LEADS.c]
# What stepping a lead reads: its fields and score, not the scorer's bookkeeping times.
STEP_LEAD = [c for c in LEADS.c if c.name not in ("engagement_since", "scored_at", "updated_at")]


# Indexes migration 0010 makes for search, per database, beside the model's own.
SEARCH_INDEXES = frozenset(
    {
        "ix_lead_search_email",
        "ix_lead_search_first_name",
        "ix_lead_search_last_name",
        "ix_lead_search_company",
        "ix_lead_search_trgm",
    }
)
# Searches this long or longer look inside names and companies where PostgreSQL has pg_trgm.
TRIGRAM_MIN = 3
SORTS = ("updated", "engagement", "email", "promoted")

# New scores of many leads in one statement (PostgreSQL): arrays, so the statement is the
# same whatever the batch's size and is prepared once.
_SCORES_PG = text(
    "UPDATE lead AS l SET score_fit = s.fit, score_engagement = s.engagement, grade = s.grade, scored_at = :now"
    " FROM unnest(CAST(:ids AS integer[]), CAST(:fits AS integer[]), CAST(:engagements AS integer[]),"
    " CAST(:grades AS varchar[])) AS s(id, fit, engagement, grade) WHERE l.id = s.id"
)


@dataclass(frozen=True)
class LeadQuery:
    """What a lead list shows: search text, filters, order and page (1-based)."""

    text: str = ""
    stage: str = ""
    grade: str = ""
    owner: str = ""
    scenario: str = ""
    sort: str = "updated"
    page: int = 1
    per_page: int = 50


@dataclass(frozen=True)
class LeadPage:
    rows: list[Any]  # lead rows, each with `promoted_at` (the latest move to hot, or None)
    page: int
    has_next: bool
    search: str  # how the text was matched, for the page to say


class LeadRow(Protocol):
    """A lead as the store reads it: its columns as attributes, all of them in `_mapping`.

    Rows are handed out as the database driver made them (no copy on the hot paths);
    this protocol is their type."""

    @property
    def _mapping(self) -> Mapping[str, Any]: ...

    id: int
    email: str
    first_name: str | None
    last_name: str | None
    company: str | None
    company_size: int | None
    industry: str | None
    job_title: str | None
    country: str | None
    timezone: str | None
    source: str | None
    lifecycle_stage: str
    owner: str | None
    tags: list[str]
    custom: dict[str, Any]
    unsubscribed: bool
    bounced: bool
    score_fit: int
    score_engagement: int
    grade: str
    engagement_since: datetime | None
    scored_at: datetime | None
    score_adjustment: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class StageChange:
    """A lead's move to a stage, with what a message to its owner names."""

    id: int
    email: str
    first_name: str | None
    last_name: str | None
    company: str | None
    owner: str | None
    at: datetime
    reason: str


class _LeadRecord(namedtuple("_LeadRecord", [column.name for column in LEADS.columns])):  # type: ignore[misc]
    """A lead row read through the driver, as `LeadRow` describes it: the columns as
    attributes and in `_mapping`, without SQLAlchemy's processing of each row."""

    __slots__ = ()

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._fields, self, strict=True))


_LEAD_TIMES = tuple(i for i, column in enumerate(LEADS.columns) if isinstance(column.type, UTCDateTime))
# The members of accounts by company, every column: the qualify job reads every member of
# each changed account, so tens of thousands of rows a run.
_ACCOUNT_MEMBERS_PG = (
    "SELECT " + ", ".join(f'"{column.name}"' for column in LEADS.columns) + " FROM lead WHERE lower(company) = ANY(%s)"
)


def _lead_record(values: tuple[Any, ...]) -> LeadRow:
    """A driver's row of every lead column as a `LeadRow`; its times in UTC, as the store's
    column type makes them (a session speaks UTC, see `nurture.store.db`, so they are already)."""
    for i in _LEAD_TIMES:
        if values[i] is not None and values[i].tzinfo is not UTC:
            values = tuple(v.astimezone(UTC) if j in _LEAD_TIMES and v is not None else v for j, v in enumerate(values))
            break
    return cast(LeadRow, _LeadRecord._make(values))


def lead_view(row: Mapping[Any, Any]) -> LeadView:
    """The runtime's view of a lead row (its `_mapping`): standard columns, custom fields, score."""
    fields: dict[str, Any] = dict(row["custom"] or {})
    for name in LEAD_COLUMNS:
        fields[name] = row[name]
    fields["id"] = row["id"]
    fit, engagement = row["score_fit"] or 0, row["score_engagement"] or 0
    score = {"fit": fit, "engagement": engagement, "total": fit + engagement, "grade": row["grade"] or "D"}
    return LeadView(row["email"], fields, score)


# The columns an import sets when its row has them (email is the key; tags and custom merge).
IMPORTED = (
    "first_name",
    "last_name",
    "company",
    "company_size",
    "industry",
    "job_title",
    "country",
    "timezone",
    "source",
    "lifecycle_stage",
    "owner",
)
_NEW_LEAD: dict[str, Any] = {"lifecycle_stage": Stage.COLD.value}
# Where an import saw each address so far: a temporary table of the import's connection, so
# a later row with the same address is named without holding the file's addresses in memory.
_IMPORT_SEEN = Table(
    "nurture_import_seen",
    MetaData(),
    Column("email", String(320), primary_key=True),
    Column("place", String(1000), nullable=False),
    prefixes=["TEMPORARY"],
)


_PG_LEADS = unnest(
    "v",
    [
        ("email", String()),
        *((name, LEADS.c[name].type) for name in IMPORTED),
        ("tags", Text()),  # JSON text, cast in the SQL
        ("custom", Text()),
        ("at", DateTime(timezone=True)),
    ],
)
_pg_upsert = postgresql.insert(LEADS).from_select(
    ["email", *IMPORTED, "tags", "custom", "created_at", "updated_at"],
    select(
        _PG_LEADS.c.email,
        *(_PG_LEADS.c[name] for name in IMPORTED),
        sql_cast(_PG_LEADS.c.tags, postgresql.JSONB),
        sql_cast(_PG_LEADS.c.custom, postgresql.JSONB),
        _PG_LEADS.c.at,
        _PG_LEADS.c.at,
    ),
)
_PG_UPSERT_LEADS = _pg_upsert.on_conflict_do_update(
    index_elements=[LEADS.c.email],
    set_={name: _pg_upsert.excluded[name] for name in (*IMPORTED, "custom", "tags", "updated_at")},
).returning(LEADS.c.id, LEADS.c.email)
_PG_SEEN = unnest("s", [("email", String()), ("place", String())])
_pg_seen = postgresql.insert(_IMPORT_SEEN).from_select(["email", "place"], select(_PG_SEEN.c.email, _PG_SEEN.c.place))
_PG_SEE = _pg_seen.on_conflict_do_update(index_elements=[_IMPORT_SEEN.c.email], set_={"place": _pg_seen.excluded.place})


_EMAILS = bindparam("emails", type_=postgresql.ARRAY(String()))


# What a suppression reason says about its lead; an imported or manual entry only blocks sends.
_SUPPRESSION_FLAGS: dict[str, dict[str, bool]] = {
    "bounce": {"bounced": True},
    "hard_bounce": {"bounced": True},
    "soft_bounces": {"bounced": True},
    "unsubscribe": {"unsubscribed": True},
    "unsubscribed": {"unsubscribed": True},
    "complaint": {"unsubscribed": True},
}


class Leads(Part):
    _trigram: bool | None = None  # whether PostgreSQL has the trigram search index (asked once)

    def upsert(self, conn: Connection, data: Mapping[str, Any]) -> tuple[int, bool]:
        """Insert or update one lead by email; returns (id, created)."""
        now = self.clock.now()
        email = str(data["email"]).strip().lower()
        existing = conn.execute(select(LEADS.c.id, LEADS.c.custom, LEADS.c.tags).where(LEADS.c.email == email)).first()
        columns = {k: v for k, v in data.items() if k in LEADS.c and k not in ("id", "email", "custom", "tags")}
        custom = dict(data.get("custom") or {})
        if existing is None:
            values = {
                "email": email,
                "custom": custom,
                "tags": list(data.get("tags") or []),
                "created_at": now,
                "updated_at": now,
                **columns,
            }
            lead_id = conn.execute(insert(LEADS).values(**values).returning(LEADS.c.id)).scalar_one()
            return int(lead_id), True
        merged_custom = {**(existing.custom or {}), **custom}
        tags = list(dict.fromkeys([*(existing.tags or []), *(data.get("tags") or [])]))
        conn.execute(
            update(LEADS)
            .where(LEADS.c.id == existing.id)
            .values(custom=merged_custom, tags=tags, updated_at=now, **columns)
        )
        return int(existing.id), False

    def upsert_many(
        self, conn: Connection, rows: Sequence[Mapping[str, Any]], now: datetime
    ) -> dict[str, tuple[int, bool]]:
        """Insert or update leads by email (each address once) as `upsert` does, in one
        `INSERT ... ON CONFLICT (email) DO UPDATE`; returns email → (id, created).

        The leads already there are read first (locked on PostgreSQL) for what an update
        keeps: the columns a row leaves out, and the tags and custom fields it merges with."""
        emails = [str(data["email"]).strip().lower() for data in rows]
        query = select(LEADS.c.email, LEADS.c.custom, LEADS.c.tags, *(LEADS.c[n] for n in IMPORTED))
        if self.postgres:  # one array parameter, not a placeholder per address
            found = conn.execute(query.where(LEADS.c.email == any_(_EMAILS)).with_for_update(), {"emails": emails})
        else:
            found = conn.execute(query.where(LEADS.c.email.in_(emails)))
        existing = {row.email: row for row in found}
        values = []
        for email, data in zip(emails, rows, strict=True):
            old = existing.get(email)
            kept: Mapping[Any, Any] = _NEW_LEAD
            if old is not None:
                kept = old._mapping
            row = {name: data[name] if data.get(name) is not None else kept.get(name) for name in IMPORTED}
            custom = dict(data.get("custom") or {})
            tags = list(data.get("tags") or [])
            if old is not None:
                custom = {**(old.custom or {}), **custom}
                tags = list(dict.fromkeys([*(old.tags or []), *tags]))
            values.append({**row, "email": email, "custom": custom, "tags": tags, "created_at": now, "updated_at": now})
        if self.postgres:
            arrays: dict[str, list[Any]] = {name: [row[name] for row in values] for name in ("email", *IMPORTED)}
            arrays["tags"] = [json.dumps(row["tags"]) for row in values]
            arrays["custom"] = [json.dumps(row["custom"]) for row in values]
            found = conn.execute(_PG_UPSERT_LEADS, {**arrays, "at": [now] * len(values)})
        else:
            upsert = sqlite.insert(LEADS)
            statement = upsert.on_conflict_do_update(
                index_elements=[LEADS.c.email],
                set_={name: upsert.excluded[name] for name in (*IMPORTED, "custom", "tags", "updated_at")},
            ).returning(LEADS.c.id, LEADS.c.email)
            found = conn.execute(statement, values)
        ids = {row.email: int(row.id) for row in found}
        return {email: (ids[email], email not in existing) for email in emails}

    @contextmanager
    def importing(self) -> Iterator[Connection]:
        """A connection for a bulk import (one transaction per chunk), which remembers where
        each address was seen (`seen_before`)."""
        with self.engine.connect() as conn:
            with conn.begin():
                conn.execute(DropTable(_IMPORT_SEEN, if_exists=True))
                conn.execute(CreateTable(_IMPORT_SEEN))
            try:
                yield conn
            finally:
                if conn.in_transaction():
                    conn.rollback()
                with conn.begin():
                    conn.execute(DropTable(_IMPORT_SEEN, if_exists=True))

    def seen_before(self, conn: Connection, places: Mapping[str, str]) -> dict[str, str]:
        """Where the import on `conn` saw these addresses before (email → place), and
        remember `places` as where they are now."""
        if not places:
            return {}
        if self.postgres:
            rows = conn.execute(
                select(_IMPORT_SEEN).where(_IMPORT_SEEN.c.email == any_(_EMAILS)), {"emails": list(places)}
            )
        else:
            rows = conn.execute(select(_IMPORT_SEEN).where(_IMPORT_SEEN.c.email.in_(list(places))))
        found = {row.email: row.place for row in rows}
        if self.postgres:
            conn.execute(_PG_SEE, {"email": list(places), "place": list(places.values())})
        else:
            upsert = sqlite.insert(_IMPORT_SEEN)
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=[_IMPORT_SEEN.c.email], set_={"place": upsert.excluded.place}
                ),
                [{"email": email, "place": place} for email, place in places.items()],
            )
        return found

    def by_email(self, email: str) -> LeadRow | None:
        with self.store.reading() as conn:
            row = conn.execute(select(LEADS).where(LEADS.c.email == email.strip().lower())).first()
        return cast(LeadRow | None, row)

    def by_id(self, lead_id: int) -> LeadRow | None:
        with self.store.reading() as conn:
            return cast(LeadRow | None, conn.execute(select(LEADS).where(LEADS.c.id == lead_id)).first())

    def in_(self, conn: Connection, lead_ids: Sequence[int]) -> list[LeadRow]:
        """The leads with these ids, in id order, read in the caller's transaction."""
        rows = conn.execute(select(LEADS).where(LEADS.c.id.in_(lead_ids)).order_by(LEADS.c.id)).all()
        return cast(list[LeadRow], rows)

    def by_ids(self, lead_ids: Sequence[int]) -> dict[int, LeadRow]:
        with self.store.reading() as conn:
            return {
                row.id: cast(LeadRow, row)
                for row in conn.execute(select(LEADS).where(among(self.postgres, LEADS.c.id, lead_ids)))
            }

    def step_rows(self, conn: Connection, lead_ids: Sequence[int]) -> dict[int, LeadRow]:
        """What a step reads of these leads (see STEP_LEAD), by id."""
        rows = conn.execute(select(*STEP_LEAD).where(LEADS.c.id.in_(lead_ids)))
        return {row.id: cast(LeadRow, row) for row in rows}

    def change(self, conn: Connection, lead_id: int, changes: Mapping[str, Any]) -> None:
        """Apply what a scenario step did to a lead: set fields, add or remove tags, adjust its score."""
        row = conn.execute(
            select(LEADS.c.custom, LEADS.c.tags, LEADS.c.score_engagement, LEADS.c.score_adjustment).where(
                LEADS.c.id == lead_id
            )
        ).first()
        if row is None:
            return
        values: dict[str, Any] = {"updated_at": self.clock.now()}
        custom = dict(row.custom or {})
        for key, value in (changes.get("set") or {}).items():
            if key in LEADS.c:
                values[key] = value
            else:
                custom[key] = value
        values["custom"] = custom
        tags = [t for t in row.tags or [] if t not in changes.get("remove_tags", ())]
        tags += [t for t in changes.get("add_tags", ()) if t not in tags]
        values["tags"] = tags
        if changes.get("score_delta"):
            # Kept apart as well, so that rescoring from events keeps what scenarios added.
            values["score_engagement"] = (row.score_engagement or 0) + int(changes["score_delta"])
            values["score_adjustment"] = (row.score_adjustment or 0) + int(changes["score_delta"])
        conn.execute(update(LEADS).where(LEADS.c.id == lead_id).values(**values))

    def suppress(self, conn: Connection, email: str, reason: str, detail: str | None = None) -> None:
        """Put an address on the suppression list and flag its lead (bounced or unsubscribed)."""
        email = email.strip().lower()
        conn.execute(
            insert_ignore(self.postgres, SUPPRESSIONS).values(
                email=email, reason=reason, detail=detail, created_at=self.clock.now()
            )
        )
        flag = _SUPPRESSION_FLAGS.get(reason)
        if flag:
            conn.execute(update(LEADS).where(LEADS.c.email == email).values(updated_at=self.clock.now(), **flag))

    def walk_active(
        self, conn: Connection, received_since: datetime | None, *, everyone: bool = False, chunk: int = 2000
    ) -> Iterator[LeadRow]:
        """id, company and email of the leads with events received (database clock) since
        `received_since` (with any event, for None; every lead, for `everyone`), in id order.

        The rows stream from one query (a server-side cursor on PostgreSQL), `chunk` at a time,
        so the caller's memory does not grow with their number."""
        query = select(LEADS.c.id, LEADS.c.company, LEADS.c.email).order_by(LEADS.c.id)
        if not everyone:
            active = select(EVENTS.c.lead_id)
            if received_since is not None:
                active = active.where(EVENTS.c.received_at >= received_since)
            query = query.where(LEADS.c.id.in_(active))
        result = conn.execute(query, execution_options={"stream_results": True, "yield_per": chunk})
        yield from cast(Iterator[LeadRow], result)

    def set_stage(
        self, conn: Connection, lead_id: int, old: str, new: str, reason: str, actor: str, now: datetime
    ) -> None:
        """Move a lead to stage `new`, recording the change with its reason and actor."""
        conn.execute(update(LEADS).where(LEADS.c.id == lead_id).values(lifecycle_stage=new, updated_at=now))
        conn.execute(
            insert(LIFECYCLE_CHANGES).values(
                lead_id=lead_id, at=now, from_stage=old, to_stage=new, reason=reason, actor=actor
            )
        )

    def set_stages(
        self, conn: Connection, moves: Sequence[tuple[int, str, str]], new: str, actor: str, now: datetime
    ) -> None:
        """`set_stage` for many leads moving to the same stage (lead id, old stage, reason): one
        UPDATE and one INSERT of the changes, whatever the number of leads."""
        if not moves:
            return
        conn.execute(
            update(LEADS)
            .where(LEADS.c.id.in_([lead_id for lead_id, _, _ in moves]))
            .values(lifecycle_stage=new, updated_at=now)
        )
        conn.execute(
            insert(LIFECYCLE_CHANGES),
            [
                {"lead_id": lead_id, "at": now, "from_stage": old, "to_stage": new, "reason": reason, "actor": actor}
                for lead_id, old, reason in moves
            ],
        )

    def times_reached(self, conn: Connection, lead_id: int, stage: str) -> int:
        """How many times a lead has been moved to `stage` (numbers each promotion)."""
        found = conn.execute(
            select(func.count()).where(LIFECYCLE_CHANGES.c.lead_id == lead_id, LIFECYCLE_CHANGES.c.to_stage == stage)
        ).scalar()
        return int(found or 0)

    def set_owner(self, conn: Connection, lead_id: int, owner: str) -> None:
        conn.execute(update(LEADS).where(LEADS.c.id == lead_id).values(owner=owner))

    def log_activity(self, conn: Connection, lead_id: int, kind: str, note: str, actor: str, now: datetime) -> None:
        conn.execute(insert(ACTIVITIES).values(lead_id=lead_id, at=now, kind=kind, note=note, actor=actor))

    def restart_engagement(self, conn: Connection, lead_id: int, now: datetime) -> None:
        """Engagement counts afresh from `now` (a recycled lead is not promoted again at once)."""
        conn.execute(
            update(LEADS)
            .where(LEADS.c.id == lead_id)
            .values(engagement_since=now, score_engagement=0, score_adjustment=0)
        )

    def record_score(
        self, conn: Connection, row: LeadRow, fit: int, engagement: int, grade: str, now: datetime
    ) -> None:
        """Store a lead's new score; a changed score is also added to its history."""
        changed = (row.score_fit, row.score_engagement, row.grade) != (fit, engagement, grade)
        conn.execute(
            update(LEADS)
            .where(LEADS.c.id == row.id)
            .values(score_fit=fit, score_engagement=engagement, grade=grade, scored_at=now)
        )
        if changed:
            conn.execute(
                insert(SCORE_HISTORY).values(lead_id=row.id, at=now, fit=fit, engagement=engagement, grade=grade)
            )

    def record_scores(self, conn: Connection, scores: Sequence[tuple[LeadRow, int, int, str]], now: datetime) -> None:
        """`record_score` for many leads at once (lead row, fit, engagement, grade), writing only
        the leads whose score changed (or that were never scored): one UPDATE (over arrays on
        PostgreSQL) and one INSERT of the changed scores into the history. A lead whose score
        came out the same keeps its row and its `scored_at` (when its stored score was made):
        rewriting it would add a version of the row to every index of the table for nothing."""
        changed = [
            (row, fit, engagement, grade)
            for row, fit, engagement, grade in scores
            if (row.score_fit, row.score_engagement, row.grade) != (fit, engagement, grade) or row.scored_at is None
        ]
        if not changed:
            return
        if self.postgres:
            conn.execute(
                _SCORES_PG,
                {
                    "ids": [row.id for row, *_ in changed],
                    "fits": [fit for _, fit, _, _ in changed],
                    "engagements": [engagement for _, _, engagement, _ in changed],
                    "grades": [grade for *_, grade in changed],
                    "now": now,
                },
            )
        else:
            conn.execute(
                update(LEADS)
                .where(LEADS.c.id == bindparam("score_lead"))
                .values(
                    score_fit=bindparam("score_fit"),
                    score_engagement=bindparam("score_engagement"),
                    grade=bindparam("score_grade"),
                    scored_at=now,
                ),
                [
                    {"score_lead": row.id, "score_fit": fit, "score_engagement": engagement, "score_grade": grade}
                    for row, fit, engagement, grade in changed
                ],
            )
        history = [
            {"lead_id": row.id, "at": now, "fit": fit, "engagement": engagement, "grade": grade}
            for row, fit, engagement, grade in changed
            if (row.score_fit, row.score_engagement, row.grade) != (fit, engagement, grade)
        ]
        if history:
            conn.execute(insert(SCORE_HISTORY), history)

    def accounts(self, conn: Connection, by_company: bool, wanted: set[str], *, whole: bool = False) -> list[LeadRow]:
        """The leads of some accounts (by lower-cased company name, or by email domain): id,
        company and email, or every column (`whole`)."""
        condition = (
            func.lower(LEADS.c.company).in_(wanted)
            if by_company
            else or_(*[LEADS.c.email.like(f"%@{domain}") for domain in wanted])
        )
        if whole and by_company and self.postgres:
            cursor = conn.connection.cursor()
            try:
                cursor.execute(_ACCOUNT_MEMBERS_PG, (list(wanted),))
                found = cursor.fetchall()
            finally:
                cursor.close()
            return [_lead_record(values) for values in found]
        columns = [LEADS] if whole else [LEADS.c.id, LEADS.c.company, LEADS.c.email]
        rows = conn.execute(select(*columns).where(condition)).all()
        return cast(list[LeadRow], rows)

    def stage_changes(self, conn: Connection, stage: str, since: datetime) -> list[StageChange]:
        """The moves of leads to `stage` since `since`, oldest first, with the lead's name and owner."""
        rows = conn.execute(
            select(
                LEADS.c.id,
                LEADS.c.email,
                LEADS.c.first_name,
                LEADS.c.last_name,
                LEADS.c.company,
                LEADS.c.owner,
                LIFECYCLE_CHANGES.c.at,
                LIFECYCLE_CHANGES.c.reason,
            )
            .join(LIFECYCLE_CHANGES, LIFECYCLE_CHANGES.c.lead_id == LEADS.c.id)
            .where(LIFECYCLE_CHANGES.c.to_stage == stage, LIFECYCLE_CHANGES.c.at >= since)
            .order_by(LIFECYCLE_CHANGES.c.at)
        ).all()
        return [StageChange(*row) for row in rows]

    def search(self, text: str = "", stage: str = "", limit: int = 100) -> list[LeadRow]:
        """Leads matching `text` (see `page`), in `stage` if given; latest changed first."""
        return cast(list[LeadRow], self.page(LeadQuery(text=text, stage=stage, per_page=limit)).rows)

    def page(self, query: LeadQuery) -> LeadPage:
        """One page of a lead list: matching, filtered, in the asked order.

        Every order ends with the id, so pages never overlap; the page is read with
        LIMIT/OFFSET over an indexed order (updated: the filter's own index; engagement;
        email), and one row more than shown tells whether there is a next page. Search text
        matches the start of the email, first name, last name or company (case-insensitive,
        through indexes on both databases); on PostgreSQL with pg_trgm, text of three or more
        characters also matches inside the name and company (a trigram index)."""
        promoted = (
            select(func.max(LIFECYCLE_CHANGES.c.at))
            .where(LIFECYCLE_CHANGES.c.lead_id == LEADS.c.id, LIFECYCLE_CHANGES.c.to_stage == Stage.HOT)
            .scalar_subquery()
            .label("promoted_at")
        )
        statement = select(LEADS, promoted)
        term = " ".join(query.text.split()).lower()
        how = ""
        with self.store.reading() as conn:
            if term:
                condition, how = self._matching(conn, term)
                statement = statement.where(condition)
            for column, value in (
                (LEADS.c.lifecycle_stage, query.stage),
                (LEADS.c.grade, query.grade),
                (LEADS.c.owner, query.owner.strip()),
            ):
                if value:
                    statement = statement.where(column == value)
            if query.scenario:
                statement = statement.where(
                    exists().where(ENROLMENTS.c.lead_id == LEADS.c.id, ENROLMENTS.c.scenario_id == query.scenario)
                )
            # SQLite would rather walk the order's index and test every lead against the search
            # (seconds for a rare match at a million leads) than range-scan the search indexes
            # and sort what matched: a search orders by the values (`+column`), not the index.
            sorted_by = (lambda c: literal_column(f"+lead.{c.name}")) if term and not self.postgres else (lambda c: c)
            order = {
                "engagement": (sorted_by(LEADS.c.score_engagement).desc(), LEADS.c.id.desc()),
                "email": (sorted_by(LEADS.c.email).asc(),),
            }.get(query.sort, (sorted_by(LEADS.c.updated_at).desc(), LEADS.c.id.desc()))
            if query.sort == "promoted" and query.stage:  # of a stage's few leads, not of every lead
                order = (promoted.desc().nulls_last(), LEADS.c.id.desc())
            page = max(1, query.page)
            per_page = max(1, min(query.per_page, 500))
            rows = conn.execute(statement.order_by(*order).limit(per_page + 1).offset((page - 1) * per_page)).all()
        return LeadPage(list(rows[:per_page]), page, len(rows) > per_page, how)

    def count_in_stage(self, stage: str) -> int:
        with self.store.reading() as conn:
            return int(conn.execute(select(func.count()).where(LEADS.c.lifecycle_stage == stage)).scalar_one())

    def decisions(self, stages: Sequence[str], limit: int = 20) -> list[Any]:
        """The latest moves of leads to `stages` (sales' decisions), newest first, with the email."""
        changes = LIFECYCLE_CHANGES
        found: list[Any] = []
        with self.store.reading() as conn:
            for stage in stages:  # each the newest few of one stage, along its (to_stage, at) index
                found += conn.execute(
                    select(changes, LEADS.c.email)
                    .join(LEADS, LEADS.c.id == changes.c.lead_id)
                    .where(changes.c.to_stage == stage)
                    .order_by(changes.c.at.desc(), changes.c.id.desc())
                    .limit(limit)
                ).all()
        return sorted(found, key=lambda r: (r.at, r.id), reverse=True)[:limit]

    def _matching(self, conn: Connection, term: str) -> tuple[Any, str]:
        """The search condition for lower-case `term`, and what it matches in words."""
        escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        names = [LEADS.c.first_name, LEADS.c.last_name, LEADS.c.company]
        if self.postgres:
            conditions: list[Any] = [LEADS.c.email.like(f"{escaped}%", escape="\\")]
            conditions += [func.lower(c).like(f"{escaped}%", escape="\\") for c in names]
            how = "start of email, first name, last name or company"
            if len(term) >= TRIGRAM_MIN and self._has_trigram_index(conn):
                # Literally the indexed expression (constants inline, not parameters), or the
                # planner would not match it to the index.
                empty: Any = literal_column("''")
                space: Any = literal_column("' '")
                whole = func.lower(
                    func.coalesce(LEADS.c.first_name, empty)
                    .op("||")(space)
                    .op("||")(func.coalesce(LEADS.c.last_name, empty))
                    .op("||")(space)
                    .op("||")(func.coalesce(LEADS.c.company, empty))
                )
                conditions.append(whole.like(f"%{escaped}%", escape="\\"))
                how = "start of email; name or company containing it"
            return or_(*conditions), how
        # SQLite: ranges on the (binary-ordered) values use the indexes where LIKE would not.
        upper = term + "\U0010ffff"
        ranges: list[Any] = [(LEADS.c.email >= term) & (LEADS.c.email < upper)]
        ranges += [(func.lower(c) >= term) & (func.lower(c) < upper) for c in names]
        return or_(*ranges), "start of email, first name, last name or company"

    def _has_trigram_index(self, conn: Connection) -> bool:
        found = self._trigram
        if found is None:
            found = (
                conn.execute(
                    text("SELECT 1 FROM pg_indexes WHERE indexname = 'ix_lead_search_trgm' AND tablename = 'lead'")
                ).first()
                is not None
            )
            self._trigram = found
        return bool(found)

    def ids_by_email(self, emails: Sequence[str]) -> dict[str, int]:
        """{email: id} of the leads among `emails` (as stored: lower case)."""
        with self.store.reading() as conn:
            rows = conn.execute(select(LEADS.c.email, LEADS.c.id).where(LEADS.c.email.in_(emails)))
            return {email: lead_id for email, lead_id in rows}
