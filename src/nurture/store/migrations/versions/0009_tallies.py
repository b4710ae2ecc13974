"""tallies kept by triggers (counts for reports, /metrics and the dashboard); leads by lower(company)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 02:45:00

Every insert, update and delete of events, sends, enrolments and leads adds to (or takes
from) `tally` in the same transaction, so the counts are exact whichever code path wrote
the rows. Existing rows are counted once here.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# What each counted table is tallied by: (kind, a, b, c, d, day), as SQL over row alias `r`,
# with `day(x)` the UTC day of a moment as text and `num(x)` a number as text.
_KEYS: dict[str, Callable[[str, Callable[[str], str], Callable[[str], str]], tuple[str, ...]]] = {
    "event": lambda r, day, num: ("'event'", f"{r}.type", "''", "''", "''", day(f"{r}.at")),
    "send": lambda r, day, num: (
        "'send'",
        f"{r}.scenario_id",
        f"{r}.step",
        f"{r}.status",
        f"{r}.kind",
        day(f"COALESCE({r}.sent_at, {r}.created_at)"),
    ),
    "enrollment": lambda r, day, num: (
        "'enrolment'",
        f"{r}.scenario_id",
        f"{r}.status",
        f"COALESCE({r}.exit_reason, '')",
        "''",
        day(f"{r}.enrolled_at"),
    ),
    "lead": lambda r, day, num: (
        "'lead'",
        f"{r}.lifecycle_stage",
        f"{r}.grade",
        num(f"{r}.score_engagement"),
        f"CASE WHEN {r}.unsubscribed OR {r}.bounced THEN 'unreachable' ELSE 'reachable' END",
        "''",
    ),
}
_COLUMNS = "kind, a, b, c, d, day"
_CONFLICT = "ON CONFLICT (kind, a, b, c, d, day, part) DO UPDATE SET n = tally.n + excluded.n"


def _keys(table: str, alias: str, postgres: bool) -> str:
    if postgres:
        keys = _KEYS[table](
            alias, lambda x: f"to_char(({x}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')", lambda x: f"({x})::text"
        )
        return ", ".join(f"{k} AS {name}" for k, name in zip(keys, _COLUMNS.split(", "), strict=True))
    return ", ".join(_KEYS[table](alias, lambda x: f"substr({x}, 1, 10)", lambda x: f"CAST({x} AS TEXT)"))


def _pg_function(table: str) -> str:
    new, old = _keys(table, "r", True), _keys(table, "r", True)
    insert = f"INSERT INTO tally ({_COLUMNS}, part, n) SELECT {_COLUMNS}, txid_current(), sum(n) FROM ("
    tail = f") x GROUP BY {_COLUMNS} HAVING sum(n) <> 0 {_CONFLICT};"
    return f"""
CREATE FUNCTION tally_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    {insert} SELECT {new}, 1 AS n FROM new_rows r {tail}
  ELSIF TG_OP = 'UPDATE' THEN
    {insert} SELECT {new}, 1 AS n FROM new_rows r UNION ALL SELECT {old}, -1 FROM old_rows r {tail}
  ELSE
    {insert} SELECT {old}, -1 AS n FROM old_rows r {tail}
  END IF;
  RETURN NULL;
END $$"""


def _sqlite_triggers(table: str) -> list[str]:
    def add(alias: str, n: int) -> str:
        keys = _keys(table, alias, False)
        return f"INSERT INTO tally ({_COLUMNS}, part, n) SELECT {keys}, 0, {n} WHERE true {_CONFLICT};"

    return [
        f"CREATE TRIGGER tally_{table}_insert AFTER INSERT ON {table} BEGIN {add('NEW', 1)} END",
        f"CREATE TRIGGER tally_{table}_delete AFTER DELETE ON {table} BEGIN {add('OLD', -1)} END",
        f"CREATE TRIGGER tally_{table}_update AFTER UPDATE ON {table} "
        f"WHEN ({_keys(table, 'OLD', False)}) IS NOT ({_keys(table, 'NEW', False)}) "
        f"BEGIN {add('OLD', -1)} {add('NEW', 1)} END",
    ]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "tally",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("a", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("b", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("c", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("d", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("day", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("part", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ux_tally", "tally", ["kind", "a", "b", "c", "d", "day", "part"], unique=True)
    op.create_index("ix_lead_company_lower", "lead", [sa.text("lower(company)")], unique=False)
    for table in _KEYS:
        op.execute(
            f"INSERT INTO tally ({_COLUMNS}, part, n) SELECT {_keys(table, 'r', postgres)}, 0, count(*) "
            f"FROM {table} r GROUP BY {', '.join(str(i) for i in range(1, 7))}"
        )
        if postgres:
            op.execute(_pg_function(table))
            for event, referencing in (
                ("INSERT", "NEW TABLE AS new_rows"),
                ("UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
                ("DELETE", "OLD TABLE AS old_rows"),
            ):
                op.execute(
                    f"CREATE TRIGGER tally_{table}_{event.lower()} AFTER {event} ON {table} "
                    f"REFERENCING {referencing} FOR EACH STATEMENT EXECUTE FUNCTION tally_{table}()"
                )
        else:
            for statement in _sqlite_triggers(table):
                op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in _KEYS:
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS tally_{table}_{event}" + (f" ON {table}" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION IF EXISTS tally_{table}()")
    op.drop_index("ix_lead_company_lower", table_name="lead")
    op.drop_index("ux_tally", table_name="tally")
    op.drop_table("tally")
