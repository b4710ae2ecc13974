"""unsubscribes by lead and time (the reputation rates of /metrics and the scenario page)

The rates count each recent send's lead that unsubscribed after it. Unsubscribes are a
sliver of all events; without an index of their own PostgreSQL reads every month's partition
for them (about 1 s at 10M events on every /metrics scrape), with it a few index probes.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-26 07:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_ONLY = sa.text("type = 'unsubscribe'")


def upgrade() -> None:
    op.create_index("ix_event_unsubscribe", "event", ["lead_id", "at"], postgresql_where=_ONLY, sqlite_where=_ONLY)


def downgrade() -> None:
    op.drop_index("ix_event_unsubscribe", "event")
