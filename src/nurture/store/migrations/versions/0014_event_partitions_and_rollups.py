"""events partitioned by month on PostgreSQL, deduplicated through event_key; event_daily rollups

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-26 06:00:00

On PostgreSQL `event` becomes a table partitioned by RANGE(at), one partition per UTC
month (`event_YYYY_MM`) and a default partition for moments outside them, so pruning old
events drops whole months instead of deleting rows. A partitioned table's unique indexes
must contain the partition key, so the external-id dedup moves to `event_key`, written in
the same transaction as the event. Rows are moved, then the indexes every query relies on
and the tally triggers are made again on the new table (statement-level triggers with
transition tables are allowed on a partitioned table; they fire for rows routed to any
partition, and not when a partition is dropped). SQLite keeps one table.

`event_daily` (both databases) holds the rollups of pruned events. A downgrade is refused
once it holds any (a prune happened): the release before it reads raw events only.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_TRIGGERS = (
    ("insert", "INSERT", "NEW TABLE AS new_rows"),
    ("update", "UPDATE", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("delete", "DELETE", "OLD TABLE AS old_rows"),
)
MONTHS_AHEAD = 3


def _month(year: int, month: int) -> datetime:
    return datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1, tzinfo=UTC)


def _partition_sql(table: str, start: datetime) -> str:
    end = _month(start.year, start.month + 1)
    return (
        f"CREATE TABLE {table}_{start:%Y_%m} PARTITION OF {table} "
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
    )


def _tally_triggers(table: str) -> None:
    for name, event, referencing in _TRIGGERS:
        op.execute(
            f"CREATE TRIGGER tally_event_{name} AFTER {event} ON {table} "
            f"REFERENCING {referencing} FOR EACH STATEMENT EXECUTE FUNCTION tally_event()"
        )


def _other_indexes(conn: sa.Connection) -> list[str]:
    """Definitions of the plain (non-unique) indexes on `event`, whoever made them."""
    rows = conn.execute(
        sa.text(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "WHERE i.indrelid = 'event'::regclass AND NOT i.indisunique AND NOT i.indisprimary"
        )
    ).scalars()
    return list(rows)


def _partition() -> None:
    conn = op.get_bind()
    indexes = _other_indexes(conn)
    op.execute(
        "CREATE TABLE event_key (external_id VARCHAR(200) NOT NULL,"
        " CONSTRAINT event_key_pkey PRIMARY KEY (external_id))"
    )
    op.execute("INSERT INTO event_key (external_id) SELECT external_id FROM event WHERE external_id IS NOT NULL")
    op.execute("CREATE TABLE event_p (LIKE event INCLUDING DEFAULTS) PARTITION BY RANGE (at)")
    now = conn.execute(sa.text("SELECT now()")).scalar_one()
    months = {
        _month(m.year, m.month)
        for m in conn.execute(
            sa.text(
                "SELECT DISTINCT date_trunc('month', at AT TIME ZONE 'UTC') FROM event "
                "WHERE at >= now() - interval '20 years' AND at < now() + interval '2 years'"
            )
        ).scalars()
    }
    months |= {_month(now.year, now.month + ahead) for ahead in range(MONTHS_AHEAD + 1)}
    for start in sorted(months):
        op.execute(_partition_sql("event_p", start))
    op.execute("CREATE TABLE event_p_default PARTITION OF event_p DEFAULT")
    op.execute("INSERT INTO event_p SELECT * FROM event")
    for name, _, _ in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS tally_event_{name} ON event")
    op.execute("ALTER SEQUENCE event_id_seq OWNED BY event_p.id")
    op.execute("DROP TABLE event")
    op.execute("ALTER TABLE event_p RENAME TO event")
    for start in sorted(months):
        op.execute(f"ALTER TABLE event_p_{start:%Y_%m} RENAME TO event_{start:%Y_%m}")
    op.execute("ALTER TABLE event_p_default RENAME TO event_default")
    op.execute("ALTER TABLE event ADD CONSTRAINT event_pkey PRIMARY KEY (id, at)")
    op.execute("ALTER TABLE event ADD CONSTRAINT event_lead_id_fkey FOREIGN KEY (lead_id) REFERENCES lead (id)")
    for definition in indexes:
        op.execute(definition.replace(" ON public.event ", " ON event "))
    _tally_triggers("event")


def _unpartition() -> None:
    op.execute("CREATE TABLE event_u (LIKE event INCLUDING DEFAULTS)")
    op.execute("INSERT INTO event_u SELECT * FROM event")
    for name, _, _ in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS tally_event_{name} ON event")
    op.execute("ALTER SEQUENCE event_id_seq OWNED BY event_u.id")
    op.execute("DROP TABLE event")
    op.execute("DROP TABLE event_key")
    op.execute("ALTER TABLE event_u RENAME TO event")
    op.execute("ALTER TABLE event ADD CONSTRAINT event_pkey PRIMARY KEY (id)")
    op.execute("ALTER TABLE event ADD CONSTRAINT event_external_id_key UNIQUE (external_id)")
    op.execute("ALTER TABLE event ADD CONSTRAINT event_lead_id_fkey FOREIGN KEY (lead_id) REFERENCES lead (id)")
    op.execute("CREATE INDEX ix_event_lead_at ON event (lead_id, at)")
    _tally_triggers("event")


def upgrade() -> None:
    op.create_table(
        "event_daily",
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("send_id", sa.Integer(), nullable=False),
        sa.Column("verdict", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("lead_id", "day", "type", "send_id", "verdict"),
    )
    if op.get_bind().dialect.name == "postgresql":
        _partition()


def downgrade() -> None:
    rolled = op.get_bind().execute(sa.text("SELECT count(*) FROM event_daily")).scalar_one()
    if rolled:
        raise RuntimeError(
            f"events were pruned into {rolled} daily rollups (event_daily): below 0014 nothing reads them and "
            "every figure would lose the pruned events; nothing was downgraded past 0014. Restore a backup "
            "taken before the first prune to go back further"
        )
    if op.get_bind().dialect.name == "postgresql":
        _unpartition()
    op.drop_table("event_daily")
