"""static and suppression lists

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 00:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import nurture.store.types

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "list_member",
        sa.Column("list_name", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("added_at", nurture.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("list_name", "email"),
    )
    op.create_index("ix_list_member_email", "list_member", ["email"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_list_member_email", table_name="list_member")
    op.drop_table("list_member")
