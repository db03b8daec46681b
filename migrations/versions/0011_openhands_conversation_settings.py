"""conversations: confirmation_policy, security_analyzer, options; a wider execution_status

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01

What an OpenHands client sets on a conversation besides its agent: the confirmation policy
(`{"kind": "NeverConfirm"}` for every existing row), the security analyzer (null), and the
other creation settings it reads back (`options`: workspace, client tools, tool modules,
hooks, ...). `execution_status` widens to 32 characters for `waiting_for_confirmation`.
The downgrade drops the three columns and turns a waiting conversation `paused`.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.alter_column("execution_status", existing_type=sa.String(16), type_=sa.String(32))
        batch.add_column(
            sa.Column(
                "confirmation_policy",
                JSON,
                nullable=False,
                server_default=sa.text('\'{"kind": "NeverConfirm"}\''),
            )
        )
        batch.add_column(sa.Column("security_analyzer", JSON, nullable=True))
        batch.add_column(sa.Column("options", JSON, nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    op.execute(
        "UPDATE conversations SET execution_status = 'paused' "
        "WHERE execution_status = 'waiting_for_confirmation'"
    )
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("options")
        batch.drop_column("security_analyzer")
        batch.drop_column("confirmation_policy")
        batch.alter_column("execution_status", existing_type=sa.String(32), type_=sa.String(16))
