"""a stage's leads by engagement (the inbox's hot leads, most engaged first)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26 03:20:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_lead_stage_engagement", "lead", ["lifecycle_stage", "score_engagement"])


def downgrade() -> None:
    op.drop_index("ix_lead_stage_engagement", "lead")
