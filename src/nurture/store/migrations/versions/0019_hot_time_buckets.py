"""times to hot also counted in buckets of 1,000 seconds, for the scenario's median

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-26 09:00:00

Each hot enrolment's time to hot is a tally row of its own (kind 'outcome', c 'hot', d its
microseconds in 18 digits, by enrolment day), so the median over a whole scenario read one
row per hot enrolment (50,000 hot enrolments: about 250 ms). The outcome trigger now also
adds each time to a bucket without a day:

    a scenario   b ''   c 'hot_bucket'   d the first 9 of the 18 digits   day ''

(buckets of 10^9 microseconds, 1,000 s). The median over a whole scenario finds the bucket
of the middle among the buckets, then the exact time among that bucket's own rows only.
Existing times are bucketed here from their tally rows.
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_COLUMNS = "kind, a, b, c, d, day"
_CONFLICT = "ON CONFLICT (kind, a, b, c, d, day, part) DO UPDATE SET n = tally.n + excluded.n"
DIGITS = 9  # of the 18 digits of a time to hot: buckets of 10^9 microseconds


def _keys(r: str) -> str:
    return f"'outcome', {r}.scenario_id, {r}.step, {r}.metric, {r}.detail, {r}.day"


def _bucket(r: str) -> str:
    return f"'outcome', {r}.scenario_id, '', 'hot_bucket', substr({r}.detail, 1, {DIGITS}), ''"


def _pg_rows(table: str, sign: str, buckets: bool) -> str:
    rows = f"SELECT {_keys('r')}, {sign}r.n FROM {table} r"
    if buckets:
        rows += f" UNION ALL SELECT {_bucket('r')}, {sign}r.n FROM {table} r WHERE r.metric = 'hot'"
    return rows


def _pg_function(buckets: bool) -> str:
    def add(rows: str) -> str:
        return (
            f"INSERT INTO tally ({_COLUMNS}, part, n) SELECT {_COLUMNS}, txid_current(), sum(n) FROM ({rows}) "
            f"x ({_COLUMNS}, n) GROUP BY {_COLUMNS} HAVING sum(n) <> 0 {_CONFLICT};"
        )

    new, old = _pg_rows("new_rows", "", buckets), _pg_rows("old_rows", "-", buckets)
    return f"""
CREATE OR REPLACE FUNCTION tally_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    {add(new)}
  ELSIF TG_OP = 'UPDATE' THEN
    {add(new + " UNION ALL " + old)}
  ELSE
    {add(old)}
  END IF;
  RETURN NULL;
END $$"""


def _sqlite_add(keys: str, n: str, where: str = "true") -> str:
    return f"INSERT INTO tally ({_COLUMNS}, part, n) SELECT {keys}, 0, {n} WHERE {where} {_CONFLICT};"


def _sqlite_triggers(buckets: bool) -> list[str]:
    def add(r: str, n: str) -> str:
        statement = _sqlite_add(_keys(r), n)
        if buckets:
            statement += " " + _sqlite_add(_bucket(r), n, f"{r}.metric = 'hot'")
        return statement

    return [
        "DROP TRIGGER IF EXISTS tally_outcome_insert",
        "DROP TRIGGER IF EXISTS tally_outcome_delete",
        "DROP TRIGGER IF EXISTS tally_outcome_update",
        f"CREATE TRIGGER tally_outcome_insert AFTER INSERT ON outcome BEGIN {add('NEW', 'NEW.n')} END",
        f"CREATE TRIGGER tally_outcome_delete AFTER DELETE ON outcome BEGIN {add('OLD', '-OLD.n')} END",
        "CREATE TRIGGER tally_outcome_update AFTER UPDATE ON outcome BEGIN "
        f"{add('OLD', '-OLD.n')} {add('NEW', 'NEW.n')} END",
    ]


def _install(buckets: bool) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_pg_function(buckets))
    else:
        for statement in _sqlite_triggers(buckets):
            op.execute(statement)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Daemons running through the upgrade wait here for the new trigger: a time to hot
        # counted by the old one after the backfill read would have no bucket.
        op.execute("LOCK TABLE outcome IN SHARE ROW EXCLUSIVE MODE")
    op.execute(
        f"INSERT INTO tally ({_COLUMNS}, part, n) SELECT 'outcome', a, '', 'hot_bucket', substr(d, 1, {DIGITS}), '', "
        f"0, sum(n) FROM tally WHERE kind = 'outcome' AND b = '' AND c = 'hot' GROUP BY a, substr(d, 1, {DIGITS}) "
        f"HAVING sum(n) <> 0 {_CONFLICT}"
    )
    _install(buckets=True)


def downgrade() -> None:
    _install(buckets=False)
    op.execute("DELETE FROM tally WHERE kind = 'outcome' AND c = 'hot_bucket'")
