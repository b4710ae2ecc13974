"""a lighter send trigger: one statement a send update, as before the report's outcomes

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-26 06:50:00

Migration 0016 made each statement that writes sends run two more statements (the report's
sent / refused counts, and naming a lead when an email is marked sent after a conversion),
about 0.5 ms more for each email marked sent. Here the counts join the send tallies' own
statement, and no lead is named on sending: the report's catch-up instead reads a converted
lead's emails `FOR SHARE` (waiting for one being marked) and names the lead again while one
of its emails is still being sent (see `nurture.store.outcomes`).
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_COLUMNS = "kind, a, b, c, d, day"
_CONFLICT = "ON CONFLICT (kind, a, b, c, d, day, part) DO UPDATE SET n = tally.n + excluded.n"


def _day(x: str) -> str:
    return f"to_char(({x}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


_SEND_KEYS = (
    f"'send' AS kind, r.scenario_id AS a, r.step AS b, r.status AS c, r.kind AS d, "
    f"{_day('COALESCE(r.sent_at, r.created_at)')} AS day"
)
_SENT_KEYS = (
    "'outcome', r.scenario_id, r.step, CASE WHEN r.status = 'sent' THEN 'sent' ELSE 'refused' END, '', "
    + _day("e.enrolled_at")
)
_SENT_JOIN = (
    "JOIN enrollment e ON e.id = r.enrollment_id AND e.scenario_id = r.scenario_id "
    "WHERE r.kind = 'email' AND r.status IN ('sent', 'bounced')"
)


def _statement(*parts: tuple[str, int]) -> str:
    rows = " UNION ALL ".join(f"SELECT {_SEND_KEYS}, {n} AS n FROM {name} r" for name, n in parts)
    sent = " UNION ALL ".join(f"SELECT {_SENT_KEYS}, {n} FROM {name} r {_SENT_JOIN}" for name, n in parts)
    return (
        f"INSERT INTO tally ({_COLUMNS}, part, n) SELECT {_COLUMNS}, txid_current(), sum(n) FROM "
        f"({rows} UNION ALL {sent}) x GROUP BY {_COLUMNS} HAVING sum(n) <> 0 {_CONFLICT};"
    )


_PG_SEND = f"""
CREATE OR REPLACE FUNCTION tally_send() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    {_statement(("new_rows", 1))}
  ELSIF TG_OP = 'UPDATE' THEN
    {_statement(("new_rows", 1), ("old_rows", -1))}
  ELSE
    {_statement(("old_rows", -1))}
    INSERT INTO outcome_pending (lead_id) SELECT DISTINCT r.lead_id FROM old_rows r WHERE r.kind = 'email';
  END IF;
  RETURN NULL;
END $$"""


def _sqlite_sent(row: str, n: int) -> str:
    status = f"CASE WHEN {row}.status = 'sent' THEN 'sent' ELSE 'refused' END"
    keys = f"'outcome', {row}.scenario_id, {row}.step, {status}, '', substr(e.enrolled_at, 1, 10)"
    return (
        f"INSERT INTO tally ({_COLUMNS}, part, n) SELECT {keys}, 0, {n} FROM enrollment e "
        f"WHERE e.id = {row}.enrollment_id AND e.scenario_id = {row}.scenario_id "
        f"AND {row}.kind = 'email' AND {row}.status IN ('sent', 'bounced') {_CONFLICT};"
    )


def _sqlite_update(named: bool) -> list[str]:
    converted = (
        "INSERT INTO outcome_pending (lead_id) SELECT NEW.lead_id WHERE NEW.kind = 'email' AND NEW.status = 'sent' "
        "AND NEW.sent_at IS NOT NULL AND EXISTS (SELECT 1 FROM lifecycle_change c WHERE c.lead_id = NEW.lead_id "
        "AND c.to_stage IN ('hot', 'accepted', 'customer') AND c.at >= NEW.sent_at);"
    )
    name = converted if named else ""
    return [
        "DROP TRIGGER IF EXISTS outcome_send_insert",
        "DROP TRIGGER IF EXISTS outcome_send_update",
        f"CREATE TRIGGER outcome_send_insert AFTER INSERT ON send BEGIN {_sqlite_sent('NEW', 1)} {name} END",
        "CREATE TRIGGER outcome_send_update AFTER UPDATE ON send "
        "WHEN OLD.status IS NOT NEW.status OR OLD.sent_at IS NOT NEW.sent_at "
        f"BEGIN {_sqlite_sent('OLD', -1)} {_sqlite_sent('NEW', 1)} {name} END",
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_SEND)
    else:
        for statement in _sqlite_update(named=False):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        from importlib.util import module_from_spec, spec_from_file_location
        from pathlib import Path

        spec = spec_from_file_location("report_outcomes", Path(__file__).with_name("0016_report_outcomes.py"))
        assert spec is not None and spec.loader is not None
        previous = module_from_spec(spec)
        spec.loader.exec_module(previous)
        op.execute(previous._pg_tally_function("send", previous._pg_extras("send")))
    else:
        for statement in _sqlite_update(named=True):
            op.execute(statement)
