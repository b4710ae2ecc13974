"""indexes for the dashboard's lead lists and search at a million leads

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 02:50:00.000000

Both databases: lists filtered by stage, owner or grade in order of the latest change, the
sort by engagement, leads by scenario, and sales' latest decisions. Search, per database (see nurture.store.leads):
- PostgreSQL: email prefix (`text_pattern_ops`, any collation), name and company prefixes of
  their lower case, and with the pg_trgm extension (when the server has it) a trigram GIN
  index for "contains" on name and company;
- SQLite: email prefix (the unique index; emails are stored lower case) and expression
  indexes on the lower case of first name and last name (and 0009's of company) for their
  prefixes.
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

NAME_COMPANY = "lower(coalesce(first_name, '') || ' ' || coalesce(last_name, '') || ' ' || coalesce(company, ''))"


def upgrade() -> None:
    op.create_index("ix_lead_stage_updated", "lead", ["lifecycle_stage", "updated_at"])
    op.create_index("ix_lead_owner_updated", "lead", ["owner", "updated_at"])
    op.create_index("ix_lead_grade_updated", "lead", ["grade", "updated_at"])
    op.create_index("ix_lead_engagement", "lead", ["score_engagement"])
    op.create_index("ix_enrollment_lead_scenario", "enrollment", ["lead_id", "scenario_id"])
    op.create_index("ix_lifecycle_stage_at", "lifecycle_change", ["to_stage", "at"])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("CREATE INDEX ix_lead_search_email ON lead (email text_pattern_ops)")
        for column in ("first_name", "last_name", "company"):
            op.execute(f"CREATE INDEX ix_lead_search_{column} ON lead (lower({column}) text_pattern_ops)")
        available = bind.execute(text("SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'")).first()
        if available is not None:
            # A role that may not create extensions still gets the prefix search.
            try:
                with bind.begin_nested():
                    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            except Exception:  # permission denied: searched by prefix instead
                return
            op.execute(f"CREATE INDEX ix_lead_search_trgm ON lead USING gin (({NAME_COMPANY}) gin_trgm_ops)")
    else:
        for column in ("first_name", "last_name"):
            op.execute(f"CREATE INDEX ix_lead_search_{column} ON lead (lower({column}))")


def downgrade() -> None:
    for name in ("trgm", "email", "first_name", "last_name", "company"):
        op.execute(f"DROP INDEX IF EXISTS ix_lead_search_{name}")
    op.drop_index("ix_lifecycle_stage_at", "lifecycle_change")
    op.drop_index("ix_enrollment_lead_scenario", "enrollment")
    for name in ("ix_lead_engagement", "ix_lead_grade_updated", "ix_lead_owner_updated", "ix_lead_stage_updated"):
        op.drop_index(name, "lead")
