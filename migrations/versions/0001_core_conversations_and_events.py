"""core: conversations and events

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[object]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=512), nullable=True),
        sa.Column("tags", _json(), nullable=False),
        sa.Column("agent", _json(), nullable=False),
        sa.Column("execution_status", sa.String(length=16), nullable=False),
        sa.Column("max_iterations", sa.Integer(), nullable=False),
        sa.Column("stats", _json(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
    )
    op.create_index("ix_conversations_created_at_id", "conversations", ["created_at", "id"])
    op.create_index("ix_conversations_updated_at_id", "conversations", ["updated_at", "id"])
    op.create_index(
        "ix_conversations_status_created_at_id",
        "conversations",
        ["execution_status", "created_at", "id"],
    )
    op.create_index(
        "ix_conversations_status_updated_at_id",
        "conversations",
        ["execution_status", "updated_at", "id"],
    )

    op.create_table(
        "events",
        sa.Column("conversation_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("timestamp", _utc(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_events_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("conversation_id", "seq", name=op.f("pk_events")),
        sa.UniqueConstraint("conversation_id", "id", name=op.f("uq_events_conversation_id_id")),
    )
    op.create_index(
        "ix_events_conversation_id_kind_seq", "events", ["conversation_id", "kind", "seq"]
    )
    op.create_index(
        "ix_events_conversation_id_source_seq", "events", ["conversation_id", "source", "seq"]
    )
    op.create_index(
        "ix_events_conversation_id_timestamp_seq",
        "events",
        ["conversation_id", "timestamp", "seq"],
    )


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("conversations")
