"""conversations.last_event_at: the last event's timestamp, read by the append UPDATE

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

Backfilled from the events, so it is safe on a populated database.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.add_column(sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE conversations SET last_event_at = (SELECT max(events.timestamp) FROM events "
        "WHERE events.conversation_id = conversations.id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("last_event_at")
