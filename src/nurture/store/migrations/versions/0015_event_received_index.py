"""events by the time they were received (the qualify job's changed leads)

Every qualify run (each daemon tick) asks which leads had events received since its
watermark; without this index that is a scan of the whole event table (1.5 s at 10M
events), with it a range scan of the new events.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-26 06:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_event_received_lead", "event", ["received_at", "lead_id"])


def downgrade() -> None:
    op.drop_index("ix_event_received_lead", "event")
