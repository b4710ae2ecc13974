"""report outcomes: what became of each email and enrolment, counted by step and enrolment day

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-26 06:00:00

The scenario report reads tallies of kind 'outcome' instead of scanning sends and events:

    a scenario   b step   c metric   d detail   day  the UTC day of the enrolment

`sent` and `refused` (sends the server took or refused, by their enrolment's day) are kept
by the send trigger; the other metrics are rows of `outcome`, written by the report's
catch-up for the leads `outcome_pending` names, and tallied by a trigger on `outcome`.
The triggers that name leads to recount ride on the tally functions of migration 0009
(replaced here with the same counting plus the naming), so a table that is made again with
those functions keeps them.

Existing sends are counted here; every lead with email events or a conversion is named
for a recount, which `nurture report --recount` (or the daemon's qualify job) performs.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

EMAIL_EVENTS = "('open', 'click', 'honeypot', 'unsubscribe', 'bounce')"
CONVERTED = "('hot', 'accepted', 'customer')"
_COLUMNS = "kind, a, b, c, d, day"
_CONFLICT = "ON CONFLICT (kind, a, b, c, d, day, part) DO UPDATE SET n = tally.n + excluded.n"

# The keys of migration 0009, as there: (kind, a, b, c, d, day) over row alias `r`.
_KEYS: dict[str, Callable[[str, Callable[[str], str]], tuple[str, ...]]] = {
    "event": lambda r, day: ("'event'", f"{r}.type", "''", "''", "''", day(f"{r}.at")),
    "send": lambda r, day: (
        "'send'",
        f"{r}.scenario_id",
        f"{r}.step",
        f"{r}.status",
        f"{r}.kind",
        day(f"COALESCE({r}.sent_at, {r}.created_at)"),
    ),
    "enrollment": lambda r, day: (
        "'enrolment'",
        f"{r}.scenario_id",
        f"{r}.status",
        f"COALESCE({r}.exit_reason, '')",
        "''",
        day(f"{r}.enrolled_at"),
    ),
}


def _pg_day(x: str) -> str:
    return f"to_char(({x}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def _sqlite_day(x: str) -> str:
    return f"substr({x}, 1, 10)"


def _pg_keys(table: str) -> str:
    keys = _KEYS[table]("r", _pg_day)
    return ", ".join(f"{k} AS {name}" for k, name in zip(keys, _COLUMNS.split(", "), strict=True))


def _sent_keys(r: str, e: str, day: Callable[[str], str]) -> tuple[str, ...]:
    """A send's step count: sent or refused, by its enrolment's day."""
    status = f"CASE WHEN {r}.status = 'sent' THEN 'sent' ELSE 'refused' END"
    return ("'outcome'", f"{r}.scenario_id", f"{r}.step", status, "''", day(f"{e}.enrolled_at"))


_SENT_JOIN = (
    "JOIN enrollment e ON e.id = r.enrollment_id AND e.scenario_id = r.scenario_id "
    "WHERE r.kind = 'email' AND r.status IN ('sent', 'bounced')"
)
_CONVERTED_SINCE = (
    "EXISTS (SELECT 1 FROM lifecycle_change c WHERE c.lead_id = r.lead_id "
    f"AND c.to_stage IN {CONVERTED} AND c.at >= r.sent_at)"
)
_HOT_SINCE = (
    "EXISTS (SELECT 1 FROM lifecycle_change c WHERE c.lead_id = r.lead_id "
    "AND c.to_stage = 'hot' AND c.at >= r.enrolled_at)"
)


def _pg_name(rows: str, where: str = "true") -> str:
    return f"INSERT INTO outcome_pending (lead_id) SELECT DISTINCT r.lead_id FROM {rows} r WHERE {where};"


def _pg_extras(table: str) -> tuple[str, str, str]:
    """(after insert, after update, after delete) statements of the table's tally function."""
    if table == "event":
        return _pg_name("new_rows", f"r.type IN {EMAIL_EVENTS}"), "", ""
    if table == "enrollment":
        return _pg_name("new_rows", _HOT_SINCE), "", _pg_name("old_rows")
    keys = _sent_keys("r", "e", _pg_day)
    named = ", ".join(f"{k} AS {n}" for k, n in zip(keys, _COLUMNS.split(", "), strict=True))

    def counted(*parts: tuple[str, int]) -> str:
        rows = " UNION ALL ".join(f"SELECT r.*, {n} AS sign FROM {name} r" for name, n in parts)
        return (
            f"INSERT INTO tally ({_COLUMNS}, part, n) SELECT {_COLUMNS}, txid_current(), sum(sign) FROM "
            f"(SELECT {named}, r.sign FROM ({rows}) r {_SENT_JOIN}) x "
            f"GROUP BY {_COLUMNS} HAVING sum(sign) <> 0 {_CONFLICT};"
        )

    sent = "r.kind = 'email' AND r.status = 'sent' AND r.sent_at IS NOT NULL AND " + _CONVERTED_SINCE
    return (
        counted(("new_rows", 1)) + " " + _pg_name("new_rows", sent),
        counted(("new_rows", 1), ("old_rows", -1)) + " " + _pg_name("new_rows", sent),
        counted(("old_rows", -1)) + " " + _pg_name("old_rows", "r.kind = 'email'"),
    )


def _pg_tally_function(table: str, extras: tuple[str, str, str]) -> str:
    keys = _pg_keys(table)
    insert = f"INSERT INTO tally ({_COLUMNS}, part, n) SELECT {_COLUMNS}, txid_current(), sum(n) FROM ("
    tail = f") x GROUP BY {_COLUMNS} HAVING sum(n) <> 0 {_CONFLICT};"
    on_insert, on_update, on_delete = extras
    return f"""
CREATE OR REPLACE FUNCTION tally_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    {insert} SELECT {keys}, 1 AS n FROM new_rows r {tail}
    {on_insert}
  ELSIF TG_OP = 'UPDATE' THEN
    {insert} SELECT {keys}, 1 AS n FROM new_rows r UNION ALL SELECT {keys}, -1 FROM old_rows r {tail}
    {on_update}
  ELSE
    {insert} SELECT {keys}, -1 AS n FROM old_rows r {tail}
    {on_delete}
  END IF;
  RETURN NULL;
END $$"""


_OUTCOME_KEYS = "'outcome', r.scenario_id, r.step, r.metric, r.detail, r.day"
_PG_OUTCOME = f"""
CREATE FUNCTION tally_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO tally ({_COLUMNS}, part, n) SELECT {_COLUMNS}, txid_current(), sum(n) FROM (
      SELECT {_OUTCOME_KEYS}, r.n FROM new_rows r
    ) x ({_COLUMNS}, n) GROUP BY {_COLUMNS} HAVING sum(n) <> 0 {_CONFLICT};
  ELSIF TG_OP = 'UPDATE' THEN
    INSERT INTO tally ({_COLUMNS}, part, n) SELECT {_COLUMNS}, txid_current(), sum(n) FROM (
      SELECT {_OUTCOME_KEYS}, r.n FROM new_rows r UNION ALL SELECT {_OUTCOME_KEYS}, -r.n FROM old_rows r
    ) x ({_COLUMNS}, n) GROUP BY {_COLUMNS} HAVING sum(n) <> 0 {_CONFLICT};
  ELSE
    INSERT INTO tally ({_COLUMNS}, part, n) SELECT {_COLUMNS}, txid_current(), sum(n) FROM (
      SELECT {_OUTCOME_KEYS}, -r.n FROM old_rows r
    ) x ({_COLUMNS}, n) GROUP BY {_COLUMNS} HAVING sum(n) <> 0 {_CONFLICT};
  END IF;
  RETURN NULL;
END $$"""
_PG_LIFECYCLE = f"""
CREATE FUNCTION outcome_lifecycle() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    {_pg_name("new_rows", f"r.to_stage IN {CONVERTED}")}
  ELSE
    {_pg_name("old_rows")}
  END IF;
  RETURN NULL;
END $$"""
_REFERENCING = {
    "INSERT": "NEW TABLE AS new_rows",
    "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
    "DELETE": "OLD TABLE AS old_rows",
}


def _pg_triggers(table: str, function: str, events: tuple[str, ...]) -> list[str]:
    return [
        f"CREATE TRIGGER {function}_{event.lower()} AFTER {event} ON {table} "
        f"REFERENCING {_REFERENCING[event]} FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        for event in events
    ]


def _sqlite_add(keys: str, n: str, source: str = "WHERE true") -> str:
    return f"INSERT INTO tally ({_COLUMNS}, part, n) SELECT {keys}, 0, {n} {source} {_CONFLICT};"


def _sqlite_name(row: str, where: str) -> str:
    return f"INSERT INTO outcome_pending (lead_id) SELECT {row}.lead_id WHERE {where};"


def _sqlite_sent(row: str, n: int) -> str:
    source = (
        f"FROM enrollment e WHERE e.id = {row}.enrollment_id AND e.scenario_id = {row}.scenario_id "
        f"AND {row}.kind = 'email' AND {row}.status IN ('sent', 'bounced')"
    )
    return _sqlite_add(", ".join(_sent_keys(row, "e", _sqlite_day)), str(n), source)


EMAIL_SEND = "OLD.kind = 'email'"


def _sqlite_triggers() -> list[str]:
    def outcome(row: str) -> str:
        return f"'outcome', {row}.scenario_id, {row}.step, {row}.metric, {row}.detail, {row}.day"

    converted = (
        "NEW.kind = 'email' AND NEW.status = 'sent' AND NEW.sent_at IS NOT NULL AND "
        + _CONVERTED_SINCE.replace("r.", "NEW.")
    )
    hot = _HOT_SINCE.replace("r.", "NEW.")
    return [
        f"CREATE TRIGGER tally_outcome_insert AFTER INSERT ON outcome BEGIN {_sqlite_add(outcome('NEW'), 'NEW.n')} END",
        "CREATE TRIGGER tally_outcome_delete AFTER DELETE ON outcome "
        f"BEGIN {_sqlite_add(outcome('OLD'), '-OLD.n')} END",
        "CREATE TRIGGER tally_outcome_update AFTER UPDATE ON outcome BEGIN "
        f"{_sqlite_add(outcome('OLD'), '-OLD.n')} {_sqlite_add(outcome('NEW'), 'NEW.n')} END",
        f"CREATE TRIGGER outcome_send_insert AFTER INSERT ON send BEGIN {_sqlite_sent('NEW', 1)} "
        f"{_sqlite_name('NEW', converted)} END",
        "CREATE TRIGGER outcome_send_update AFTER UPDATE ON send "
        "WHEN OLD.status IS NOT NEW.status OR OLD.sent_at IS NOT NEW.sent_at "
        f"BEGIN {_sqlite_sent('OLD', -1)} {_sqlite_sent('NEW', 1)} {_sqlite_name('NEW', converted)} END",
        f"CREATE TRIGGER outcome_send_delete AFTER DELETE ON send BEGIN {_sqlite_sent('OLD', -1)} "
        f"{_sqlite_name('OLD', EMAIL_SEND)} END",
        "CREATE TRIGGER outcome_event_insert AFTER INSERT ON event "
        f"BEGIN {_sqlite_name('NEW', f'NEW.type IN {EMAIL_EVENTS}')} END",
        f"CREATE TRIGGER outcome_enrollment_insert AFTER INSERT ON enrollment BEGIN {_sqlite_name('NEW', hot)} END",
        f"CREATE TRIGGER outcome_enrollment_delete AFTER DELETE ON enrollment BEGIN {_sqlite_name('OLD', 'true')} END",
        "CREATE TRIGGER outcome_lifecycle_insert AFTER INSERT ON lifecycle_change "
        f"BEGIN {_sqlite_name('NEW', f'NEW.to_stage IN {CONVERTED}')} END",
        "CREATE TRIGGER outcome_lifecycle_delete AFTER DELETE ON lifecycle_change "
        f"BEGIN {_sqlite_name('OLD', 'true')} END",
    ]


_SQLITE_TRIGGERS = (
    "tally_outcome_insert",
    "tally_outcome_delete",
    "tally_outcome_update",
    "outcome_send_insert",
    "outcome_send_update",
    "outcome_send_delete",
    "outcome_event_insert",
    "outcome_enrollment_insert",
    "outcome_enrollment_delete",
    "outcome_lifecycle_insert",
    "outcome_lifecycle_delete",
)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "outcome",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("send_id", sa.Integer(), nullable=True),
        sa.Column("enrollment_id", sa.Integer(), nullable=True),
        sa.Column("scenario_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("step", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("metric", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("day", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_outcome_lead", "outcome", ["lead_id"], unique=False)
    op.create_table(
        "outcome_pending",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    day = _pg_day if postgres else _sqlite_day
    op.execute(
        f"INSERT INTO tally ({_COLUMNS}, part, n) SELECT {', '.join(_sent_keys('r', 'e', day))}, 0, count(*) "
        f"FROM send r {_SENT_JOIN} GROUP BY 1, 2, 3, 4, 5, 6"
    )
    op.execute(
        "INSERT INTO outcome_pending (lead_id) SELECT lead_id FROM ("
        f"SELECT lead_id FROM event WHERE type IN {EMAIL_EVENTS} "
        f"UNION SELECT lead_id FROM lifecycle_change WHERE to_stage IN {CONVERTED}) x ORDER BY lead_id"
    )
    if postgres:
        for table in _KEYS:
            op.execute(_pg_tally_function(table, _pg_extras(table)))
        op.execute(_PG_OUTCOME)
        for statement in _pg_triggers("outcome", "tally_outcome", ("INSERT", "UPDATE", "DELETE")):
            op.execute(statement)
        op.execute(_PG_LIFECYCLE)
        for statement in _pg_triggers("lifecycle_change", "outcome_lifecycle", ("INSERT", "DELETE")):
            op.execute(statement)
    else:
        for statement in _sqlite_triggers():
            op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        for table in _KEYS:
            op.execute(_pg_tally_function(table, ("", "", "")))
        for event in ("insert", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS outcome_lifecycle_{event} ON lifecycle_change")
        op.execute("DROP FUNCTION IF EXISTS outcome_lifecycle()")
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS tally_outcome_{event} ON outcome")
        op.execute("DROP FUNCTION IF EXISTS tally_outcome()")
    else:
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DELETE FROM tally WHERE kind = 'outcome'")
    op.drop_table("outcome_pending")
    op.drop_index("ix_outcome_lead", table_name="outcome")
    op.drop_table("outcome")
