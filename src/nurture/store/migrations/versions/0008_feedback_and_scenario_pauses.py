"""feedback (bounces, complaints, ESP events) and scenario pauses

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 00:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import nurture.store.types

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", nurture.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("occurred_at", nurture.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
        sa.Column("lead_id", sa.Integer(), nullable=True),
        sa.Column("send_id", sa.Integer(), nullable=True),
        sa.Column("scenario_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=True),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("diagnostic", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("authenticated", sa.Boolean(), nullable=False),
        sa.Column("decision", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["lead.id"]),
        sa.ForeignKeyConstraint(["send_id"], ["send.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "event_id"),
    )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.create_index("ix_feedback_email_kind", ["email", "kind", "received_at"], unique=False)
        batch_op.create_index("ix_feedback_lead", ["lead_id", "received_at"], unique=False)
        batch_op.create_index("ix_feedback_send", ["send_id"], unique=False)
    op.create_table(
        "scenario_pause",
        sa.Column("scenario_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("paused_at", nurture.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("resumed_at", nurture.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("resumed_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.PrimaryKeyConstraint("scenario_id"),
    )


def downgrade() -> None:
    op.drop_table("scenario_pause")
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_index("ix_feedback_send")
        batch_op.drop_index("ix_feedback_lead")
        batch_op.drop_index("ix_feedback_email_kind")
    op.drop_table("feedback")
