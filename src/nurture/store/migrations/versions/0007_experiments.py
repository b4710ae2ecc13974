"""experiments, their assignments, and the timing of each send

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 00:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import nurture.store.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiment",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("scenario_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("step", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=12), nullable=False),
        sa.Column("started_at", nurture.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("checked_at", nurture.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("decided_at", nurture.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("winner", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("route_to", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("effect", sa.Float(), nullable=True),
        sa.Column("interval_low", sa.Float(), nullable=True),
        sa.Column("interval_high", sa.Float(), nullable=True),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("statistic", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(op.f("ix_experiment_scenario_id"), "experiment", ["scenario_id"], unique=False)
    op.create_table(
        "experiment_assignment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("enrollment_id", sa.Integer(), nullable=True),
        sa.Column("arm", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("randomised", sa.Boolean(), nullable=False),
        sa.Column("assigned_at", nurture.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reached_at", nurture.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("settled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["experiment_key"], ["experiment.key"]),
        sa.ForeignKeyConstraint(["lead_id"], ["lead.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("experiment_key", "lead_id"),
    )
    op.create_index("ix_assignment_open", "experiment_assignment", ["experiment_key", "settled"], unique=False)
    op.create_index(op.f("ix_experiment_assignment_lead_id"), "experiment_assignment", ["lead_id"], unique=False)
    with op.batch_alter_table("send") as batch:
        batch.add_column(
            sa.Column("timing", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False, server_default="window")
        )


def downgrade() -> None:
    with op.batch_alter_table("send") as batch:
        batch.drop_column("timing")
    op.drop_index(op.f("ix_experiment_assignment_lead_id"), table_name="experiment_assignment")
    op.drop_index("ix_assignment_open", table_name="experiment_assignment")
    op.drop_table("experiment_assignment")
    op.drop_index(op.f("ix_experiment_scenario_id"), table_name="experiment")
    op.drop_table("experiment")
