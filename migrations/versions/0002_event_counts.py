"""event_counts: per-conversation event counts by kind and source

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Backfills the counts of existing events, so it is safe on a populated database.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "event_counts",
        sa.Column("conversation_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_event_counts_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("conversation_id", "kind", "source", name=op.f("pk_event_counts")),
    )
    op.execute(
        "INSERT INTO event_counts (conversation_id, kind, source, count) "
        "SELECT conversation_id, kind, source, count(*) FROM events "
        "GROUP BY conversation_id, kind, source"
    )


def downgrade() -> None:
    op.drop_table("event_counts")
